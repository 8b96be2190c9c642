"""The log lines that explain why a vLLM server died, picked out of the exit noise.

On the CPU build every exit ends with ~40 lines of ``nanobind: leaked …`` (triton) and
``resource_tracker … leaked …`` warnings, and a failed start ends with the API server's
``RuntimeError: Engine core initialization failed. See root cause above.`` traceback while
the root cause (``ValueError: Free memory on device …``, ``No module named …``) sits 60-90
lines earlier (tests/vllm/fixtures/real_v0_*). A plain "last 12 lines" shows only noise.

:func:`crash_lines` reads a whole run (the lines after ocrtui's last marker) and returns the
explaining lines first: the known-failure line (:mod:`ocrtui.vllm.hints`), then the last
traceback's innermost frame and its exception message; and, separately, the tail less noise.

It is also the one traceback reader of the package: :func:`is_exception_line` and
:func:`ending_exception` (the exception of a traceback that ends a log, which is what a
service's crash hint shows: ``ocrtui/services.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ocrtui.vllm.hints import find_hint
from ocrtui.vllm.stages import strip_ansi

TAIL_LINES = 12

# Printed by every CPU-build exit, whatever the cause.
_NOISE = re.compile(
    r"^nanobind: |^ - leaked (instance|type|function) |^ - \.\.\. skipped remainder"
    r"|^See https://nanobind\.|resource_tracker: There appear to be \d+ leaked"
    r"|^\s+warnings\.warn\('resource_tracker"
)
# "(APIServer pid=1) (EngineCore pid=2) ERROR 12-01 19:07:13 [core.py:1330] " and the like.
_PREFIX = re.compile(
    r"^(?:\(\S+ pid=\d+\) )*(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"\d\d-\d\d \d\d:\d\d:\d\d \[[^\]]*\] ?)?"
)
_FRAME = re.compile(r'^\s*File "[^"]+", line \d+')
_EXCEPTION = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b(?::|$)")
_CARETS = re.compile(r"^\s*[\^~]+\s*$")
# The lines Python prints between a traceback's frames and chained exceptions.
_TRACEBACK_HEADS = (
    "Traceback (most recent call last)",
    "During handling of the above exception",
    "The above exception was the direct cause",
)


@dataclass(frozen=True)
class CrashLines:
    cause: tuple[str, ...]  # the lines that explain the crash, in log order
    tail: tuple[str, ...]  # the run's last lines, exit noise removed

    @property
    def lines(self) -> tuple[str, ...]:
        """What a crashed model shows: the cause first, then the tail not already in it."""
        return self.cause + tuple(line for line in self.tail if line not in self.cause)


def is_noise(line: str) -> bool:
    return bool(_NOISE.search(line))


def crash_lines(run: Sequence[str], tail: int = TAIL_LINES) -> CrashLines:
    """The explaining lines and the noiseless tail of one run's log (pure)."""
    lines = [strip_ansi(line) for line in run]
    picked: set[int] = set()
    hint = find_hint(lines)
    if hint is not None:
        picked.add(max(i for i, line in enumerate(lines) if line.strip() == hint.line))
    picked |= _last_exception(lines)
    cause = tuple(lines[i] for i in sorted(picked))
    clean = [line for line in lines if not is_noise(line)]
    return CrashLines(cause, tuple(clean[-tail:]))


def body(line: str) -> str:
    """The line without vLLM's ``(Proc pid=N) LEVEL date [file:line]`` prefixes."""
    return _PREFIX.sub("", line)


def is_exception_line(line: str) -> bool:
    """``ValueError: ...``, ``torch.AcceleratorError: ...``, a bare ``KeyboardInterrupt``:
    the message line that ends a traceback (after vLLM's prefixes)."""
    return bool(_EXCEPTION.match(body(line)))


def in_traceback(line: str) -> bool:
    """A frame, a code line or a chaining line of a traceback (after vLLM's prefixes)."""
    text = body(line)
    return text.startswith((" ", "\t")) or text.startswith(_TRACEBACK_HEADS)


def ending_exception(lines: Sequence[str]) -> str | None:
    """The exception line of a traceback that ends ``lines`` (blank lines ignored), or None:
    a traceback that was logged and survived is followed by more lines of the program."""
    for line in reversed([line for line in lines if line.strip()]):
        if is_exception_line(line):
            return line
        if not in_traceback(line):
            return None
    return None


def _last_exception(lines: Sequence[str]) -> set[int]:
    """Indexes of the last exception message and the innermost frame (and its code line)
    above it; empty when the run has no traceback."""
    bodies = [body(line) for line in lines]
    for i in range(len(bodies) - 1, -1, -1):
        if not _EXCEPTION.match(bodies[i]):
            continue
        found = {i}
        for j in range(i - 1, max(-1, i - 8), -1):
            if _FRAME.match(bodies[j]):
                found.add(j)
                if j + 1 < i and not _CARETS.match(bodies[j + 1]):
                    found.add(j + 1)
                break
        return found
    return set()
