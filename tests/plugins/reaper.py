"""No test leaves a process behind.

Every server a test starts (a simulated vLLM API server, its ``VLLM::EngineCore``, orphaned
or not, an agent) writes its output under the test's ``tmp_path``. After each test that used
``tmp_path``, and once more for the whole session's temporary root at the end, every process
whose stdout or stderr is a file under that root is SIGKILLed. The environment is no use for
finding them: setproctitle overwrites /proc/<pid>/environ along with argv.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def pids_writing_under(root: Path) -> list[int]:
    """Live processes (zombies excluded) whose stdout or stderr is a file under ``root``."""
    prefix = str(root) + os.sep
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            targets = [os.readlink(entry / "fd" / fd) for fd in ("1", "2")]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(t.startswith(prefix) for t in targets):
            found.append(int(entry.name))
    return found


def kill_writing_under(root: Path, timeout: float = 10.0) -> None:
    """SIGKILL everything writing under ``root`` until nothing is left (bounded)."""
    deadline = time.monotonic() + timeout
    while pids := pids_writing_under(root):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes writing under {root} survived SIGKILL: {pids}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _reap_test_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is not None:
        kill_writing_under(root)


@pytest.fixture(autouse=True, scope="session")
def _reap_session_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    kill_writing_under(tmp_path_factory.getbasetemp())
