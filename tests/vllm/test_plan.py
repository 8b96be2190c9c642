"""The serve command, its environment, plan warnings and the free-memory check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ocrtui.config import Config, ModelConfig, parse_config
from ocrtui.monitor.agent_monitor import MonitorView
from ocrtui.monitor.agent_samples import parse_sample
from ocrtui.monitor.attribution import ModelRef, attribute
from ocrtui.vllm.plan import (
    Check,
    WakeNeed,
    devices_for,
    gpus_for,
    plan_warnings,
    preflight_checks,
    serve_argv,
    serve_env,
)

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
    # GLM-OCR with MTP at 24576 tokens: 2.1 GiB of weights, 0.6 of activations, 0.4 of
    # runtime, 1.6 of KV cache for one request (memory.min_memory).
    mtp = ["--speculative-config", '{"method": "mtp", "num_speculative_tokens": 3}']
    low = seed_config(gpu_memory_utilization=0.09, max_model_len=24576, extra_args=mtp)
    assert dict(plan_warnings(low, A40_MIB))["glm-ocr"] == (
        "gpu_memory_utilization 0.09 gives 4.0 GiB, below the 4.7 GiB zai-org/GLM-OCR needs "
        "(weights 2.1 + activations 0.6 + runtime 0.4 + KV cache for one 24576-token request "
        "1.6 GiB): vLLM will refuse to start (KV cache too small for one request); use at "
        "least 0.104"
    )
    enough = seed_config(gpu_memory_utilization=0.11, max_model_len=24576, extra_args=mtp)
    assert plan_warnings(enough, A40_MIB) == []
    over = plan_warnings(seed_config(gpu_memory_utilization=0.45, max_model_len=8192), A40_MIB)
    assert over[0][0] == "*" and "sums to 1.00" in over[0][1]
    # The whole default context needs its KV cache: 0.20 is below that, 0.30 is not.
    whole = plan_warnings(seed_config(gpu_memory_utilization=0.20), A40_MIB)
    assert any("0.2 gives 9.0 GiB, below the 11.0 GiB" in w for _, w in whole)
    wider = plan_warnings(seed_config(gpu_memory_utilization=0.30), A40_MIB)
    assert not any("below" in w for _, w in wider)
    custom = seed_config(min_memory_gib=30.0, max_model_len=8192)
    assert (
        "below the 30 GiB of its min_memory_gib" in dict(plan_warnings(custom, A40_MIB))["glm-ocr"]
    )


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
    att = attribute(
        sample, [ModelRef("glm-ocr", 8000, "vllm_glm-ocr.log"), ModelRef("lighton-ocr", 8001)]
    )
    return MonitorView(sample, att, None, 0.1, False, True, 0, True)


def _model(cfg: Config, name: str) -> ModelConfig:
    return cfg.model(name)


def _refusals(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == "refuse"]


def test_free_memory_check_names_the_orphan_and_suggests_restart() -> None:
    engine = {"pid": 777, "kind": "engine", "title": "VLLM::EngineCore", "ppid": 1, "pgid": 700,
              "start": 1.0, "nvidia": True, "stdout": "/root/vllm_glm-ocr.log"}  # fmt: skip
    row = {"gpu": 0, "pid": 777, "used_mib": 30000, "visible": True, "title": "VLLM::EngineCore",
           "ppid": 1, "pgid": 700, "start": 1.0}  # fmt: skip
    view = _view([row], [engine], 30000)
    cfg = seed_config()
    assert view.attribution is not None
    planned, checks = preflight_checks(_model(cfg, "lighton-ocr"), view)
    (refusal,) = _refusals(checks)
    assert planned == 25337
    assert "needs 25337 MiB (0.55 x 46068 MiB), 16068 MiB free" in refusal.message
    assert "pid 777 (orphan:glm-ocr VLLM::EngineCore) 30000 MiB" in refusal.message


def test_free_memory_check_passes_and_returns_the_plan() -> None:
    view = _view([], [], 0)
    assert preflight_checks(_model(seed_config(), "glm-ocr"), view) == (int(0.4 * A40_MIB), [])


H200_MIB = 143771


def test_h200_start_vllm_refused_is_refused_by_preflight() -> None:
    """Recorded on the H200: 0.0459 (6.42 GiB of CUDA's 139.8 GiB) with 6802 MiB free by NVML
    passed the old preflight and vLLM refused it 52 s later, its CUDA context already up."""
    sample = parse_sample(
        {
            "v": 1, "seq": 1, "t": 0.0, "procs": [], "vllm": [], "ports": {},
            "gpus": [{"index": 0, "uuid": "GPU-7804", "name": "NVIDIA H200", "total_mib": H200_MIB,
                      "used_mib": H200_MIB - 6802 - 616, "free_mib": 6802, "reserved_mib": 616}],
        }
    )  # fmt: skip
    view = MonitorView(sample, attribute(sample, []), None, 0.1, False, True, 0, False)
    model = seed_config(gpu_memory_utilization=0.0459).models[0]
    planned, checks = preflight_checks(model, view)
    assert planned == int(0.0459 * (H200_MIB - 616))
    assert round(planned / 1024, 2) == 6.42
    (refusal,) = _refusals(checks)
    assert "0.0459 x 143155 MiB CUDA total" in refusal.message
    assert "less ~525 MiB for its CUDA context" in refusal.message


def _no_gpu_view(mem_available_mib: int | None, ports: dict[str, Any]) -> MonitorView:
    sample = parse_sample(
        {"v": 1, "seq": 1, "t": 0.0, "backend": "none", "gpus": [], "procs": [], "ports": ports,
         "error": "no NVIDIA driver: pynvml is not importable and nvidia-smi is not on PATH",
         "vllm": [{"pid": 99, "kind": "api", "title": "vllm serve other --port 8000",
                   "ppid": 1, "pgid": 99, "start": 1.0, "served": "other", "port": 8000}],
         "mem_available_mib": mem_available_mib}
    )  # fmt: skip
    refs = [ModelRef(m.name, m.port) for m in seed_config().models]
    return MonitorView(sample, attribute(sample, refs), sample.error, 0.1, False, True, 0, False)


def test_without_a_gpu_the_preflight_warns_and_checks_host_ram() -> None:
    free_port = {"8000": {"pid": None, "state": None}}
    planned, checks = preflight_checks(seed_config().models[0], _no_gpu_view(17210, free_port))
    assert planned is None and not _refusals(checks)
    assert "cannot check GPU memory: no NVIDIA driver" in checks[0].message
    assert "17210 MiB available" in checks[1].message
    cpu = seed_config(env={"VLLM_CPU_KVCACHE_SPACE": "8"}).models[0]
    assert _refusals(preflight_checks(cpu, _no_gpu_view(17210, free_port))[1]) == []
    (refusal,) = _refusals(preflight_checks(cpu, _no_gpu_view(6000, free_port))[1])
    assert "needs about 10492 MiB" in refusal.message and "6000 MiB available" in refusal.message


def test_a_taken_port_is_refused_naming_its_owner() -> None:
    taken = {"8000": {"pid": 99, "state": "listen", "pgid": 99}}
    (refusal,) = _refusals(preflight_checks(seed_config().models[0], _no_gpu_view(None, taken))[1])
    assert "port 8000 is taken by pid 99 (vllm serve other --port 8000)" in refusal.message


def test_the_model_s_own_server_on_its_port_is_not_refused() -> None:
    view = _no_gpu_view(None, {"8000": {"pid": 99, "state": "listen", "pgid": 99}})
    assert view.sample is not None
    own = view.sample.vllm[0]
    assert (own.served, own.port) == ("other", 8000)
    model = seed_config().models[0].model_copy(update={"name": "other"})
    view = MonitorView(
        view.sample, attribute(view.sample, [ModelRef("other", 8000)]), None, 0.1, False, True,
        0, False,
    )  # fmt: skip
    assert _refusals(preflight_checks(model, view)[1]) == []


def test_a_processor_cache_larger_than_the_free_host_ram_is_a_warning() -> None:
    free_port = {"8000": {"pid": None, "state": None}}
    default = seed_config().models[0]  # vLLM's default cache: 4 GiB per API server
    assert "--mm-processor-cache-gb" not in default.extra_args
    _, checks = preflight_checks(default, _no_gpu_view(3000, free_port))
    (warning,) = [c for c in checks if "processor cache" in c.message]
    assert warning.level == "warn"
    assert warning.message.startswith("host RAM: multi-modal processor cache: 4 GiB")
    assert "up to 4096 MiB, 3000 MiB available" in warning.message
    off = seed_config(extra_args=["--mm-processor-cache-gb", "0"]).models[0]
    _, checks = preflight_checks(off, _no_gpu_view(3000, free_port))
    assert not [c for c in checks if "processor cache" in c.message]
    _, checks = preflight_checks(default, _no_gpu_view(17210, free_port))
    assert not [c for c in checks if "processor cache" in c.message]


# -- data parallel -------------------------------------------------------------------------

DP2_SERVING = Path(__file__).parent.parent / "monitor" / "data" / "sim_dp2_serving.json"


def _dp2_view(used: tuple[int, int]) -> MonitorView:
    """The recorded two-GPU simulated pod, each GPU with ``used`` MiB held by no listed row."""
    data = json.loads(DP2_SERVING.read_text())
    data.update(procs=[], vllm=[], nvidia_holders=[], ports={})
    for gpu, mib in zip(data["gpus"], used, strict=True):
        gpu.update(used_mib=mib, free_mib=gpu["total_mib"] - mib)
    sample = parse_sample(data)
    return MonitorView(sample, attribute(sample, []), None, 0.1, False, True, 0, True)


def _dp(size: str, **glm: Any) -> ModelConfig:
    return seed_config(extra_args=["--data-parallel-size", size], **glm).model("glm-ocr")


def test_a_data_parallel_model_takes_one_gpu_per_rank_honouring_cuda_visible_devices() -> None:
    gpus = _dp2_view((0, 0)).sample.gpus  # type: ignore[union-attr]
    assert [g.index for g in gpus_for(_dp("2"), gpus)] == [0, 1]
    pinned = _dp("2", env={"CUDA_VISIBLE_DEVICES": "1,0"})
    assert devices_for(pinned) == (1, 0)
    assert devices_for(seed_config(extra_args=["-dp", "2"]).model("glm-ocr")) == (0, 1)
    assert devices_for(seed_config().model("glm-ocr")) == (0,)


def test_preflight_checks_the_utilization_on_every_gpu_a_rank_takes() -> None:
    per_rank = int(0.4 * A40_MIB)
    assert preflight_checks(_dp("2"), _dp2_view((0, 0))) == (2 * per_rank, [])
    # GPU 0 has room; GPU 1 does not: the rank that would fail there is named.
    planned, checks = preflight_checks(_dp("2"), _dp2_view((0, 40000)))
    (refusal,) = _refusals(checks)
    assert planned == 2 * per_rank
    assert refusal.message.startswith(
        "not enough free GPU memory for glm-ocr (one of its 2 data-parallel ranks): "
        f"needs {per_rank} MiB"
    )
    assert "6068 MiB free on GPU 1" in refusal.message


def test_preflight_refuses_more_ranks_than_the_pod_has_gpus() -> None:
    _, checks = preflight_checks(_dp("4"), _dp2_view((0, 0)))
    (refusal,) = _refusals(checks)
    assert refusal.message == (
        "glm-ocr runs 4 data-parallel ranks, one GPU each, on GPUs 0, 1, 2, 3; "
        "the pod has GPUs 0, 1"
    )


def test_utilization_adds_up_per_gpu_not_across_gpus() -> None:
    # GLM-OCR 0.6 pinned to GPU 1, LightOnOCR-2 0.55 on GPU 0: no GPU is oversubscribed.
    apart = seed_config(gpu_memory_utilization=0.6, env={"CUDA_VISIBLE_DEVICES": "1"})
    assert not [w for who, w in plan_warnings(apart, A40_MIB) if who == "*"]
    # Two ranks, the second on GPU 1 beside it: GPU 1 sums 0.6 + 0.55.
    both = seed_config(
        gpu_memory_utilization=0.6,
        env={"CUDA_VISIBLE_DEVICES": "1,0"},
        extra_args=["--data-parallel-size", "2"],
    )
    (warning,) = [w for who, w in plan_warnings(both, A40_MIB) if who == "*"]
    assert warning.startswith("planned gpu_memory_utilization sums to 1.15 on GPU 0")


def test_a_replica_is_served_under_its_model_s_name_too() -> None:
    replica = seed_config(served_aliases=["glm"]).model("glm-ocr")
    argv = serve_argv(("vllm",), replica)
    at = argv.index("--served-model-name")
    assert argv[at : at + 4] == [
        "--served-model-name",
        "glm-ocr",
        "glm",
        "--gpu-memory-utilization",
    ]


def test_a_port_held_by_a_leaked_api_server_process_points_at_restart() -> None:
    killed = Path(__file__).parent.parent / "monitor" / "data" / "sim_dp2_killed.json"
    sample = parse_sample(json.loads(killed.read_text()))
    att = attribute(sample, [ModelRef("glm-ocr", 8000, "vllm_glm-ocr.log")])
    view = MonitorView(sample, att, None, 0.1, False, True, 0, True)
    _, checks = preflight_checks(_dp("2"), view)
    port = next(c for c in _refusals(checks) if c.message.startswith("port 8000"))
    assert port.message == (
        "port 8000 is taken by pid 22410 (VLLM::APIServer_0), an orphan of glm-ocr: "
        "glm-ocr would exit with 'Address already in use'"
    )
    assert port.hint == "`ocrtui restart glm-ocr` kills this model's orphans first"


def test_sleep_mode_turns_on_vllm_s_development_endpoints() -> None:
    cfg = seed_config(extra_args=["--enable-sleep-mode"])
    assert serve_env(cfg.models[0], None)["VLLM_SERVER_DEV_MODE"] == "1"
    assert "VLLM_SERVER_DEV_MODE" not in serve_env(cfg.models[1], None)


def who_warned(cfg: Config, warning: str) -> str:
    return next(who for who, w in plan_warnings(cfg, A40_MIB) if w == warning)


def test_sleep_mode_with_dev_mode_switched_off_is_a_warning() -> None:
    cfg = seed_config(extra_args=["--enable-sleep-mode"], env={"VLLM_SERVER_DEV_MODE": "0"})
    assert serve_env(cfg.models[0], None)["VLLM_SERVER_DEV_MODE"] == "0"  # the config's wins
    (warning,) = [w for who, w in plan_warnings(cfg, A40_MIB) if "DEV_MODE" in w]
    assert who_warned(cfg, warning) == "glm-ocr"
    assert "VLLM_SERVER_DEV_MODE='0'" in warning and "ocrtui sleep glm-ocr" in warning


def test_a_sleeping_model_s_wake_up_need_is_counted() -> None:
    """GLM-OCR asleep gave 25000 MiB back: free enough for LightOnOCR-2, but then GLM-OCR
    could not wake; refused, naming it."""
    view = _view([], [], 0)
    lighton = _model(seed_config(), "lighton-ocr")
    asleep = [WakeNeed("glm-ocr", 0, 25000)]
    planned, checks = preflight_checks(lighton, view, asleep)
    (refusal,) = _refusals(checks)
    assert planned == 25337
    assert "25000 MiB of it belong to the models asleep there" in refusal.message
    assert "glm-ocr (25000 MiB)" in refusal.message and "ocrtui wake" in (refusal.hint or "")
    # Asleep on another GPU, or its own (a restart of the sleeper): not counted.
    assert preflight_checks(lighton, view, [WakeNeed("glm-ocr", 1, 25000)])[1] == []
    assert preflight_checks(lighton, view, [WakeNeed("lighton-ocr", 0, 25000)])[1] == []
