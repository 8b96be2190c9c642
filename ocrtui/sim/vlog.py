"""vLLM-shaped log lines: ``(APIServer pid=N) INFO 08-01 20:59:09 [file.py:NN] message``.

vLLM 0.32 prefixes what its own processes print (its logger, tracebacks) with the process
role and pid; uvicorn's lines go out bare (``INFO:     Started server process [N]``). The
lifecycle layer reads the startup stage and failure hints from these lines, so the simulator
writes them the same way.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from typing import TextIO


class PrefixedStream(io.TextIOBase):
    """A text stream that writes whole lines, each prefixed, in one write to ``target``.

    The API server and its EngineCore share one log file; whole-line writes keep their
    lines from interleaving mid-line.
    """

    def __init__(self, target: TextIO, prefix: str) -> None:
        self._target = target
        self._prefix = prefix
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self._lock:
            text = self._partial + s
            *lines, self._partial = text.split("\n")
            if lines:
                self._target.write("".join(f"{self._prefix}{line}\n" for line in lines))
                self._target.flush()
        return len(s)

    def flush(self) -> None:
        with self._lock:
            self._target.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._target.fileno()


def install_prefix(role: str) -> None:
    """Prefix everything this process prints with ``(role pid=N) ``, as vLLM does."""
    prefix = f"({role} pid={os.getpid()}) "
    sys.stdout = PrefixedStream(sys.__stdout__ or sys.stdout, prefix)
    sys.stderr = PrefixedStream(sys.__stderr__ or sys.stderr, prefix)


_BANNER = (
    "",
    "       █     █     █▄   ▄█",
    " ▄▄ ▄█ █     █     █ ▀▄▀ █  version {version}",
    "  █▄█▀ █     █     █     █  model   {model}",
    "   ▀▀  ▀▀▀▀▀ ▀▀▀▀▀ ▀     ▀",
    "",
)


def banner(version: str, model: str) -> None:
    """vLLM's start-up logo with its version and model."""
    for line in _BANNER:
        info("api_utils.py:347", line.format(version=version, model=model))


def _emit(level: str, where: str, message: str) -> None:
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"{level} {stamp} [{where}] {message}", file=sys.stdout, flush=True)


def info(where: str, message: str) -> None:
    _emit("INFO", where, message)


def warning(where: str, message: str) -> None:
    _emit("WARNING", where, message)


def error(where: str, message: str) -> None:
    _emit("ERROR", where, message)


def error_block(where: str, text: str) -> None:
    """A multi-line error (a traceback), each line carrying the ERROR header like vLLM's."""
    for line in text.rstrip("\n").split("\n"):
        error(where, line)
