"""Processes on this machine, as the tests see them: every pod in the tests (LocalPod, and
SSHPod through the test sshd) runs its commands here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def process_state(pid: int) -> str | None:
    """The state letter /proc/PID/stat shows ("S", "Z", ...); None when there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int) -> bool:
    """Running: the pid exists and is not a zombie."""
    return process_state(pid) not in (None, "Z")


def pgid_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])


async def eventually(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``pred`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout} s: {what or pred}")
        await asyncio.sleep(0.02)
