"""The selected model's server log, following the tail until the user scrolls up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import Log

from ocrtui.tui.widgets.format import visible_log_line

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


class FollowingLog(Log):
    """A Log that follows its tail until the user scrolls up, and again once back at the end.

    Log's own rule (scroll only if at the end before the write) loses the tail as soon as a
    long line adds a horizontal scrollbar and the view shrinks by a row; this keeps the
    user's intent as a flag instead (toolong's ``tail``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(auto_scroll=False, **kwargs)
        self.following = True

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new >= self.max_scroll_y:
            self.following = True
        elif new < old:
            self.following = False

    def on_resize(self) -> None:
        # A shorter pane (the cards above it grew) leaves the view above the tail.
        if self.following:
            self.scroll_end(animate=False, x_axis=False)

    def append(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        # Log scrolls only when the view was at the end before the write, which a first
        # write before layout or a new horizontal scrollbar breaks: scroll by our own flag,
        # after the refresh that gives the new size.
        self.write_lines(lines, scroll_end=False)
        if self.following:
            self.scroll_end(animate=False, x_axis=False)


class LogPane(FollowingLog):
    DEFAULT_CSS = """
    LogPane { border: round $panel-lighten-2; height: 1fr; min-height: 4; }
    LogPane:focus { border: round $primary; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=MAX_LINES, **kwargs)
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
        """Append what a fresh tail adds (each line through ``visible_log_line``: the log is
        the server's, not ours); Log keeps following only while scrolled to the end."""
        if name != self.model:
            return
        lines, continues = new_lines(self._tail, tail)
        lines = [visible_log_line(line) for line in lines]
        self._tail = list(tail)
        if not continues:
            lines = ["── log replaced or lines skipped ──", *lines]
        self.append(lines)
        subtitle = "following" if self.following else "paused (End to follow)"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
