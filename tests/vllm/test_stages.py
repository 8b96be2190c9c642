"""Startup stages read from real vLLM startup logs, line by line as they would arrive."""

from __future__ import annotations

import pytest

from ocrtui.vllm.stages import STAGES, Stage, startup_stage, strip_ansi
from tests.plugins.vllm_logs import fixture_lines

# Every real startup log, with the stages it must pass through in this order.
EXPECTED = {
    "startup_log_v0_9_0_1_llama3_2_1b_eager_ci.txt": [
        "initializing engine", "loading weights", "model loading", "profiling", "KV cache",
        "starting API server", "API server up",
    ],
    "startup_log_v0_9_1_dotsocr_wsl.txt": [
        "initializing engine", "loading weights", "model loading", "profiling", "KV cache",
        "init engine", "starting API server", "API server up",
    ],
    "startup_log_v0_9_2_cpu_v0_engine_qwen3_0_6b.txt": [
        "initializing engine", "loading weights", "model loading", "KV cache",
        "starting API server", "API server up",
    ],
    "startup_log_v0_11_0_llama_l4_ansi.txt": [
        "initializing engine", "loading weights", "model loading", "profiling", "KV cache",
        "graph capture", "init engine", "starting API server", "API server up",
    ],
    "startup_log_v0_11_0_qwen3vl_embedding_eager_t4.txt": [
        "initializing engine", "loading weights", "model loading", "profiling", "KV cache",
        "starting API server", "API server up",
    ],
    "startup_log_v0_12_0_qwen3_vl_30b_a3b_tp2_ansi.txt": [
        "initializing engine", "loading weights", "model loading", "profiling", "KV cache",
        "graph capture", "init engine", "starting API server", "API server up",
    ],
    "startup_and_sigterm_shutdown_log_v0_25_1.txt": [
        "initializing engine", "loading weights", "model loading", "profiling", "KV cache",
        "graph capture", "init engine", "starting API server", "API server up",
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
