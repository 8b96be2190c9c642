"""The selected model's server log, following the tail until the user scrolls up."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import Log

MAX_LINES = 2000


def new_lines(old: Sequence[str], new: Sequence[str]) -> tuple[list[str], bool]:
    """Lines of ``new`` (a fresh tail) not yet shown, and whether they continue ``old``.

    The longest suffix of ``old`` that is a prefix of ``new`` is what was already shown; no
    overlap at all means the file was replaced (a restart truncated it) or moved on further
    than one tail, so the caller shows a break before the lines.
    """
    if not old:
        return list(new), True
    for overlap in range(min(len(old), len(new)), 0, -1):
        if list(old[-overlap:]) == list(new[:overlap]):
            return list(new[overlap:]), True
    return list(new), False


class LogPane(Log):
    DEFAULT_CSS = """
    LogPane { border: round $panel-lighten-2; height: 1fr; min-height: 4; }
    LogPane:focus { border: round $primary; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=True, **kwargs)  # type: ignore[arg-type]
        self.model: str | None = None
        self._tail: list[str] = []

    def show_model(self, name: str) -> None:
        if name == self.model:
            return
        self.model = name
        self._tail = []
        self.clear()
        self.border_title = f"log: {name}"

    def feed(self, name: str, tail: Sequence[str]) -> None:
        """Append what a fresh tail adds; Log keeps following only while scrolled to the end."""
        if name != self.model:
            return
        lines, continues = new_lines(self._tail, tail)
        self._tail = list(tail)
        if not continues:
            lines = ["── log replaced or lines skipped ──", *lines]
        if lines:
            self.write_lines(lines)
        following = self.is_vertical_scroll_end or not self.lines
        subtitle = "following" if following else "paused (End to follow)"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
