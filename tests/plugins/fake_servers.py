"""Fake vLLM process trees (fake_vllm_process.py) on a simulated GPU, for the agent tests;
cleaned up by pid. The ``sim_gpu`` fixture is tests/plugins/sim.py's."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocrtui.sim.gpu import SimGpu
from tests.plugins.sim import free_port

FAKE_VLLM = Path(__file__).parent / "fake_vllm_process.py"


@dataclass
class FakeServer:
    proc: subprocess.Popen[str]
    port: int
    engine_pid: int


class FakeServers:
    def __init__(self, tmp: Path, gpu: SimGpu) -> None:
        self.gpu = gpu
        self.exe = tmp / "bin" / "vllm"
        self.exe.parent.mkdir()
        shutil.copy(FAKE_VLLM, self.exe)
        self.started: list[FakeServer] = []

    def start(self, served: str, mib: int, model: str = "zai-org/GLM-OCR") -> FakeServer:
        argv = [
            sys.executable,
            str(self.exe),
            "serve",
            model,
            "--port",
            # The port it listens on, in its argv as in every real launch (attribution
            # reads a dead server's port from there).
            str(free_port()),
            "--served-model-name",
            served,
            "--sim-gpu",
            str(self.gpu.path),
            "--mib",
            str(mib),
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().split()  # blocks until the engine registered its memory
        assert line[:1] == ["ready"], line
        server = FakeServer(proc, int(line[1]), int(line[2]))
        self.started.append(server)
        return server

    def cleanup(self) -> None:
        for s in self.started:
            for pid in (s.engine_pid, s.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            s.proc.wait()


@pytest.fixture
def fake_servers(tmp_path: Path, sim_gpu: SimGpu) -> Iterator[FakeServers]:
    servers = FakeServers(tmp_path, sim_gpu)
    try:
        yield servers
    finally:
        servers.cleanup()
