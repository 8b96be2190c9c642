"""The built-in demo pod's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrtui.config import ModelConfig
from ocrtui.sim import demo
from ocrtui.sim.args import parse_serve_args
from ocrtui.sim.gpu import SimGpu
from ocrtui.sim.memory import check_free_memory, plan_kv_cache
from ocrtui.sim.model_numbers import MIB, numbers_for
from ocrtui.vllm.plan import serve_argv


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _serve_argv(m: ModelConfig) -> list[str]:
    """What the lifecycle layer runs after ``vllm serve``."""
    return serve_argv((), m)[1:]


def test_demo_pod(state_home: Path) -> None:
    config = demo.demo_config()
    pod = config.pod
    assert pod.kind == "local" and pod.sim_gpu and pod.workdir
    assert Path(pod.workdir) == state_home / "ocrtui" / "demo"
    gpu = SimGpu(pod.sim_gpu)
    assert gpu.device()["name"] == "NVIDIA A40 (simulated)" and gpu.total_mib == 46068
    assert pod.vllm_command[1:] == ("-m", "ocrtui", "sim-vllm")
    by_name = {m.name: m for m in config.models}
    assert set(by_name) == {"demo-rapidocr", "demo-tesseract"}
    assert (by_name["demo-rapidocr"].port, by_name["demo-tesseract"].port) == (18000, 18001)
    assert by_name["demo-rapidocr"].profile == "glm-ocr"
    assert by_name["demo-tesseract"].profile == "lighton-ocr"
    for m in config.models:
        args = parse_serve_args(_serve_argv(m))
        assert args.engine == m.name.removeprefix("demo-")
        assert args.startup_s <= 5


def test_both_demo_servers_fit_the_simulated_a40() -> None:
    free = 46068 * MIB
    for m in demo.demo_config().ordered_models():
        args = parse_serve_args(_serve_argv(m))
        requested = check_free_memory(free, 46068 * MIB, args.gpu_memory_utilization)
        profile = numbers_for(args.model)
        plan_kv_cache(profile, requested, args.max_model_len or profile.default_max_model_len)
        free -= requested


def test_rapidocr_alone_without_tesseract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.shutil, "which", lambda name: None)
    config = demo.demo_config()
    names = [m.name for m in config.models]
    assert names == ["demo-rapidocr", "demo-rapidocr-2"]
    engines = {parse_serve_args(_serve_argv(m)).engine for m in config.models}
    assert engines == {"rapidocr"}
