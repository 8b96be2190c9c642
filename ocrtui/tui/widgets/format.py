"""Pure formatting helpers shared by the widgets (no Textual state).

:func:`visible` is the one gate for text that comes from outside (model output, server log
lines, error bodies, the provider's output, hints built from them): every widget passes such
text through it before it reaches the screen. A model's output is untrusted (the pages come
from anyone), and a terminal obeys the escape sequences in what it is sent: an OSC 0 sets the
window title, an OSC 52 writes the clipboard (tmux hands it on to the outer terminal), and a
stray cursor move breaks the panes' borders. Markup is the widgets' part: they pass outside
text as plain text (Content, Text, Log lines, ``markup=False``), never where a str is read as
markup (a DataTable cell, a Static's string, a notification).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SPARK = "▁▂▃▄▅▆▇█"

# C0 controls but newline and tab, DEL, and the C1 controls (0x9b is a one-byte CSI to some
# terminals).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# vLLM's own log lines are coloured with SGR sequences (ESC [ ... m) on a terminal.
_SGR = re.compile("\x1b\\[[0-9;:]*m")
CONTROL_PICTURE_BASE = 0x2400  # Unicode's Control Pictures: U+241B "␛" is ESC's
DEL_PICTURE = "\u2421"  # "␡"


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(CONTROL_PICTURE_BASE + code)
    if code == 0x7F:
        return DEL_PICTURE
    return f"<{code:#04x}>"  # C1 controls have no pictures


def visible(text: str) -> str:
    """``text`` with every control character but newline and tab shown as a visible sign
    (ESC as ``␛``, BEL as ``␇``, C1 controls as ``<0x9b>``), so none reaches the terminal."""
    return _CONTROL.sub(_picture, text)


def visible_log_line(line: str) -> str:
    """A server log line for the screen: its SGR colour sequences dropped (the log pane is
    plain text), every other control character shown by :func:`visible`."""
    return visible(_SGR.sub("", line))


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f}"


def sparkline(values: Iterable[float], top: float) -> str:
    """One character per value, scaled to ``top`` (e.g. the GPU's total memory)."""
    if top <= 0:
        return ""
    last = len(SPARK) - 1
    return "".join(SPARK[max(0, min(last, round(v / top * last)))] for v in values)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def segments(parts: list[tuple[int, str]], total: int, width: int) -> list[tuple[int, str]]:
    """Split ``width`` cells among (MiB, style) parts by share of ``total``, largest remainder.

    A non-zero part gets at least one cell so a small leak is still visible; the cells left
    over are returned with style "" (free memory).
    """
    if total <= 0 or width <= 0:
        return [(width, "")] if width > 0 else []
    exact = [(mib / total * width, style) for mib, style in parts if mib > 0]
    cells = [max(1, int(x)) for x, _ in exact]
    while sum(cells) > width and max(cells, default=0) > 1:
        cells[cells.index(max(cells))] -= 1
    spare = width - sum(cells)
    order = sorted(range(len(exact)), key=lambda i: exact[i][0] - int(exact[i][0]), reverse=True)
    used_share = sum(x for x, _ in exact)
    for i in order:
        if spare <= 0 or sum(cells) >= round(min(used_share, width)):
            break
        cells[i] += 1
        spare -= 1
    out = [(n, style) for n, (_, style) in zip(cells, exact, strict=True) if n > 0]
    free = width - sum(n for n, _ in out)
    if free > 0:
        out.append((free, ""))
    return out
