"""Typed messages from the app's workers to the screens."""

from __future__ import annotations

from textual.message import Message


class OperationProgress(Message):
    """A lifecycle operation on a model moved on; ``step`` None means it ended."""

    def __init__(self, model: str, step: str | None, *, failed: bool = False) -> None:
        super().__init__()
        self.model = model
        self.step = step
        self.failed = failed


class LogTail(Message):
    def __init__(self, model: str, lines: list[str]) -> None:
        super().__init__()
        self.model = model
        self.lines = lines
