"""A model's log file on the pod, with our own marker lines in it.

The server's output is appended to one file across restarts. Before each launch and after
each stop we append a marker line, so that (a) hints and stages are read only from the
current run, and (b) anyone, including a later dashboard or a headless ``ocrtui status``,
can tell a server that was stopped on purpose (``down``) from one that vanished
(``crashed``): the last marker says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from ocrtui.pod.base import Pod

MARK = "[ocrtui]"
Mark = Literal["launch", "stop"]
# Written when a start we waited on became ready; not a run boundary (parse_marker ignores
# it), only the end of a start's duration ("last start took N s").
READY: Literal["ready"] = "ready"

_APPEND_SH = 'printf "%s\\n" "$1" >>"$2"'
_LAST_MARK_SH = 'grep -F -- "$1" "$2" 2>/dev/null | tail -n 1'
_MARKS_SH = 'grep -F -- "$1" "$2" 2>/dev/null | tail -n 50'


def marker_line(kind: Mark | Literal["ready"], name: str) -> str:
    # Milliseconds: another observer compares the launch time with its agent sample's.
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    return f"{MARK} {kind} {name} {stamp}"


def parse_marker(line: str) -> Mark | None:
    if not line.startswith(MARK + " "):
        return None
    kind = line[len(MARK) + 1 :].split(" ", 1)[0]
    return kind if kind in ("launch", "stop") else None  # type: ignore[return-value]


def marker_time(line: str) -> float | None:
    """The Unix time a marker (or ready) line was written, else None."""
    if not line.startswith(MARK + " "):
        return None
    try:
        return datetime.fromisoformat(line.rsplit(" ", 1)[1]).timestamp()
    except (IndexError, ValueError):
        return None


def last_marker_time(lines: Sequence[str]) -> float | None:
    """When the last marker in ``lines`` was written (None: no marker, or no time on it)."""
    for line in reversed(lines):
        if parse_marker(line) is not None:
            return marker_time(line)
    return None


def current_run(lines: Sequence[str]) -> tuple[list[str], Mark | None]:
    """The lines after the last marker in ``lines``, and that marker's kind (None: none seen)."""
    for i in range(len(lines) - 1, -1, -1):
        kind = parse_marker(lines[i])
        if kind is not None:
            return list(lines[i + 1 :]), kind
    return list(lines), None


def start_duration(lines: Sequence[str]) -> float | None:
    """Seconds from the launch marker to the ready line of the last start that became ready
    in ``lines`` (all marker lines of a log, oldest first)."""
    ready_at: float | None = None
    for line in reversed(lines):
        if ready_at is None:
            if line.startswith(f"{MARK} {READY} "):
                ready_at = marker_time(line)
        elif parse_marker(line) == "launch":
            launched_at = marker_time(line)
            return None if launched_at is None else max(0.0, ready_at - launched_at)
    return None


async def last_start_duration(pod: Pod, path: str) -> float | None:
    """:func:`start_duration` over the whole log file on the pod."""
    result = await pod.run(["sh", "-c", _MARKS_SH, "sh", MARK + " ", path])
    return start_duration(result.stdout.splitlines())


async def append_marker(pod: Pod, path: str, kind: Mark | Literal["ready"], name: str) -> None:
    await pod.run(["sh", "-c", _APPEND_SH, "sh", marker_line(kind, name), path])


async def last_marker(pod: Pod, path: str) -> Mark | None:
    """The kind of the last marker in the whole file (a tail may not reach back to it)."""
    result = await pod.run(["sh", "-c", _LAST_MARK_SH, "sh", MARK + " ", path])
    return parse_marker(result.stdout.strip())
