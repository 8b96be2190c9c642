"""Fixtures for tests that need a vLLM stand-in: the simulator (``ocrtui sim-vllm``).

Fixtures (function scope):

``sim_gpu`` -> ``SimGpu``
    A fresh simulated GPU (NVIDIA A40 (simulated), 46068 MiB) in ``tmp_path/gpu``; pass
    ``--sim-gpu str(sim_gpu.path)`` (or set ``OCRTUI_SIM_GPU``) to a server to use it.
``vllm_shim`` -> ``Path``
    Writes an executable ``vllm`` (``exec <this python> -m ocrtui sim-vllm "$@"``, with this
    checkout first on ``PYTHONPATH``, also over SSH) into ``tmp_path/bin`` and puts that
    first on ``PATH``, so the exact ``vllm serve ...`` command the lifecycle layer builds for
    real vLLM runs the simulator of the code under test.
``sim_servers`` -> ``SimServers``
    ``sim_servers.start(model, *flags, command=..., env=..., port=..., wait=True)`` starts a
    server detached (own session: ``pgid == pid``), by default with
    ``--host 127.0.0.1 --engine synthetic --sim-startup-s 0`` (flags given later win;
    ``defaults=False`` leaves them out) and a free port, and waits for
    ``/health`` 200 within a deadline (``wait=False`` returns at once). At teardown every
    server's whole process group is SIGKILLed, including an EngineCore left orphaned by a
    killed API server.

For other scopes use the helpers directly: ``write_vllm_shim(dir)``, ``free_port()`` and
``SimServers(workdir)`` as a context manager, e.g. a module-scoped fixture::

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        with SimServers(tmp_path_factory.mktemp("sim")) as servers:
            yield servers.start("zai-org/GLM-OCR", "--served-model-name", "glm-ocr")

``SimServer`` has ``pid``, ``port``, ``url`` (``http://127.0.0.1:PORT``), ``log_path``,
``log()``, ``wait_ready(timeout)``, ``wait_log(text, timeout)``, ``wait_exit(timeout)``,
``engine_pid(timeout)`` (the ``VLLM::EngineCore`` of its process group) and ``kill_group()``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import pytest

import ocrtui
from ocrtui.sim.gpu import SimGpu

ENGINE_TITLE = "VLLM::EngineCore"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The checkout whose ocrtui the tests imported. A command started through the sshd gets
# none of this process's environment (PYTHONPATH): without it, `python -m ocrtui` there
# imports whatever tree the venv's editable install points at, another clone's with a
# shared venv (seen: a simulated server over SSH dying of another checkout's merge).
TREE = Path(ocrtui.__file__).resolve().parents[1]


def write_vllm_shim(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "vllm"
    python, tree = shlex.quote(sys.executable), shlex.quote(str(TREE))
    pythonpath = f"PYTHONPATH={tree}${{PYTHONPATH:+:$PYTHONPATH}}"
    shim.write_text(f'#!/bin/sh\n{pythonpath} exec {python} -m ocrtui sim-vllm "$@"\n')
    shim.chmod(0o755)
    return shim


def _poll(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class SimServer:
    def __init__(self, argv: Sequence[str], port: int, log_path: Path, env: dict[str, str]):
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _fail(self, why: str) -> AssertionError:
        return AssertionError(f"{why}; server log:\n{self.log()[-4000:]}")

    def health(self) -> int | None:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code
        except httpx.TransportError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> SimServer:
        deadline = time.monotonic() + timeout
        while self.health() != 200:
            if self.proc.poll() is not None:
                raise self._fail(f"server exited with {self.proc.returncode} before ready")
            if time.monotonic() > deadline:
                raise self._fail(f"server not ready after {timeout} s")
            time.sleep(0.05)
        return self

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        try:
            _poll(lambda: text in self.log(), timeout, repr(text))
        except TimeoutError as exc:
            raise self._fail(str(exc)) from None

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"server still running after {timeout} s") from None

    def group_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == self.pid and stat[0] != "Z":
                pids.append(int(entry.name))
        return pids

    def engine_pid(self, timeout: float = 30.0) -> int:
        found: list[int] = []

        def look() -> bool:
            for pid in self.group_pids():
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(ENGINE_TITLE.encode()):
                        found.append(pid)
                        return True
            return False

        _poll(look, timeout, "the VLLM::EngineCore process")
        return found[0]

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        # Orphans are reparented away from us; wait until the whole group is gone.
        with contextlib.suppress(TimeoutError):
            _poll(lambda: not self.group_pids(), 10, "the process group to exit")


class SimServers:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.servers: list[SimServer] = []

    def start(
        self,
        model: str = "zai-org/GLM-OCR",
        *flags: str,
        command: Sequence[str] = (sys.executable, "-m", "ocrtui", "sim-vllm"),
        env: dict[str, str] | None = None,
        port: int | None = None,
        defaults: bool = True,
        wait: bool = True,
        timeout: float = 60.0,
    ) -> SimServer:
        port = port or free_port()
        argv = [*command, "serve", model, "--port", str(port)]
        if defaults:
            argv += ["--host", "127.0.0.1", "--engine", "synthetic", "--sim-startup-s", "0"]
        argv += list(flags)
        log = self.workdir / f"sim_{len(self.servers)}_{port}.log"
        server = SimServer(argv, port, log, {**os.environ, **(env or {})})
        self.servers.append(server)
        if wait:
            server.wait_ready(timeout)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.kill_group()

    def __enter__(self) -> SimServers:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def start_pair(sim_servers: SimServers, engines: tuple[str, str], *extra: str) -> list[str]:
    """GLM-OCR and LightOnOCR-2 simulated with the given engines; their base URLs."""
    glm = sim_servers.start(
        "zai-org/GLM-OCR", "--served-model-name", "glm-ocr", "--engine", engines[0], *extra,
        timeout=90,
    )  # fmt: skip
    lighton = sim_servers.start(
        "lightonai/LightOnOCR-2-1B", "--served-model-name", "lighton-ocr",
        "--limit-mm-per-prompt", '{"image": 1}', "--engine", engines[1], *extra, timeout=90,
    )  # fmt: skip
    return [glm.url, lighton.url]


@pytest.fixture
def sim_gpu(tmp_path: Path) -> SimGpu:
    return SimGpu.create(tmp_path / "gpu")


@pytest.fixture
def vllm_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shim = write_vllm_shim(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return shim


@pytest.fixture
def sim_servers(tmp_path: Path) -> Iterator[SimServers]:
    with SimServers(tmp_path / "sim") as servers:
        yield servers
