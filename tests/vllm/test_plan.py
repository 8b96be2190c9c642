"""The serve command, its environment, plan warnings and the free-memory check."""

from __future__ import annotations

from typing import Any

import pytest

from ocrtui.config import Config, ModelConfig, parse_config
from ocrtui.errors import LifecycleError
from ocrtui.monitor.agent_monitor import MonitorView
from ocrtui.monitor.agent_samples import parse_sample
from ocrtui.monitor.attribution import ModelRef, attribute
from ocrtui.vllm.plan import check_free_memory, plan_warnings, serve_argv, serve_env

A40_MIB = 46068


def seed_config(**glm: Any) -> Config:
    """The seed's pod: GLM-OCR 0.40 first, LightOnOCR-2 0.55."""
    glm_model = {
        "name": "glm-ocr",
        "model": "zai-org/GLM-OCR",
        "port": 8000,
        "gpu_memory_utilization": 0.40,
        "max_num_seqs": 16,
        "env": {"PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"},
    }
    glm_model.update(glm)
    return parse_config(
        {
            "pod": {"kind": "local"},
            "models": [
                glm_model,
                {
                    "name": "lighton-ocr",
                    "model": "lightonai/LightOnOCR-2-1B",
                    "port": 8001,
                    "gpu_memory_utilization": 0.55,
                    "extra_args": ["--limit-mm-per-prompt", '{"image": 1}'],
                },
            ],
        },
        "seed",
    )


def test_serve_argv_is_the_seed_command() -> None:
    cfg = seed_config(max_model_len=16384)
    assert serve_argv(("vllm",), cfg.models[0]) == [
        "vllm", "serve", "zai-org/GLM-OCR", "--port", "8000", "--served-model-name", "glm-ocr",
        "--gpu-memory-utilization", "0.4", "--max-num-seqs", "16", "--max-model-len", "16384",
    ]  # fmt: skip
    argv = serve_argv(("/opt/venv/bin/vllm",), cfg.models[1])
    assert argv[-2:] == ["--limit-mm-per-prompt", '{"image": 1}']
    assert "--max-model-len" not in argv


def test_api_key_goes_in_the_environment_never_on_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLM_KEY", "sk-secret-123")
    model = seed_config(api_key_env="GLM_KEY").models[0]
    assert not any("sk-secret-123" in a for a in serve_argv(("vllm",), model))
    env = serve_env(model, None)
    assert env == {"PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True", "VLLM_API_KEY": "sk-secret-123"}
    assert serve_env(model, "/tmp/gpu")["OCRTUI_SIM_GPU"] == "/tmp/gpu"


def test_seed_plan_warns_only_about_the_unset_context_length() -> None:
    warnings = plan_warnings(seed_config(), A40_MIB)
    assert [w[0] for w in warnings] == ["glm-ocr"]
    assert "131072" in warnings[0][1] and "max_model_len" in warnings[0][1]
    assert plan_warnings(seed_config(max_model_len=16384), A40_MIB) == []


def test_plan_warnings_for_oversubscription_and_too_little_memory() -> None:
    warnings = plan_warnings(seed_config(gpu_memory_utilization=0.30), A40_MIB)
    assert any("13.5 GiB, below the 17.5 GiB zai-org/GLM-OCR needs" in w for _, w in warnings)
    over = plan_warnings(seed_config(gpu_memory_utilization=0.45, max_model_len=8192), A40_MIB)
    assert over[0][0] == "*" and "sums to 1.00" in over[0][1]
    # The known minimum holds at the default context only; a shorter one needs less.
    short = plan_warnings(seed_config(gpu_memory_utilization=0.30, max_model_len=8192), A40_MIB)
    assert not any("below the" in w for _, w in short)
    custom = seed_config(min_memory_gib=30.0, max_model_len=8192)
    assert "below the 30 GiB" in dict(plan_warnings(custom, A40_MIB))["glm-ocr"]


def _view(procs: list[dict[str, Any]], vllm: list[dict[str, Any]], used: int) -> MonitorView:
    sample = parse_sample(
        {
            "v": 1,
            "seq": 5,
            "t": 0.0,
            "gpus": [
                {"index": 0, "uuid": "GPU-x", "name": "NVIDIA A40 (simulated)",
                 "total_mib": A40_MIB, "used_mib": used, "free_mib": A40_MIB - used,
                 "simulated": True}
            ],
            "procs": procs,
            "vllm": vllm,
            "ports": {"8000": {"pid": None, "state": None}},
        }
    )  # fmt: skip
    att = attribute(sample, [ModelRef("glm-ocr", 8000), ModelRef("lighton-ocr", 8001)])
    return MonitorView(sample, att, None, 0.1, False, True, 0, True)


def _model(cfg: Config, name: str) -> ModelConfig:
    return cfg.model(name)


def test_free_memory_check_names_the_orphan_and_suggests_restart() -> None:
    engine = {"pid": 777, "kind": "engine", "title": "VLLM::EngineCore", "ppid": 1, "pgid": 700,
              "start": 1.0, "nvidia": True, "stdout": "/root/vllm_glm-ocr.log"}  # fmt: skip
    row = {"gpu": 0, "pid": 777, "used_mib": 30000, "visible": True, "title": "VLLM::EngineCore",
           "ppid": 1, "pgid": 700, "start": 1.0}  # fmt: skip
    view = _view([row], [engine], 30000)
    cfg = seed_config()
    assert view.attribution is not None
    with pytest.raises(LifecycleError) as info:
        check_free_memory(_model(cfg, "lighton-ocr"), view)
    msg = info.value.message
    assert "needs 25337 MiB (0.55 x 46068 MiB), 16068 MiB free" in msg
    assert "pid 777 (" in msg and "30000 MiB" in msg


def test_free_memory_check_passes_and_returns_the_plan() -> None:
    view = _view([], [], 0)
    assert check_free_memory(_model(seed_config(), "glm-ocr"), view) == int(0.4 * A40_MIB)


def test_no_agent_data_is_a_clear_error() -> None:
    view = MonitorView(None, None, "no python3 on the pod", None, True, False, 0, False)
    with pytest.raises(LifecycleError, match="no python3 on the pod"):
        check_free_memory(_model(seed_config(), "glm-ocr"), view)
