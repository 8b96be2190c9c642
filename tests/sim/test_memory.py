"""The startup memory arithmetic reproduces the seed's facts with vLLM's exact messages."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from ocrtui.config import ModelConfig
from ocrtui.published import Profile
from ocrtui.sim.gpu import SimGpu
from ocrtui.sim.memory import A40_TOTAL_BYTES, KvPlan, check_free_memory, plan_kv_cache
from ocrtui.sim.model_numbers import (
    GENERIC,
    GLM_OCR,
    LIGHTON_OCR,
    MIB,
    ModelNumbers,
    numbers_for,
    tokenize,
)
from ocrtui.vllm.memory import min_utilization


def _plan(profile: ModelNumbers, utilization: float, max_model_len: int) -> KvPlan:
    requested = check_free_memory(A40_TOTAL_BYTES, A40_TOTAL_BYTES, utilization)
    return plan_kv_cache(profile, requested, max_model_len)


def test_free_memory_error_text() -> None:
    free = A40_TOTAL_BYTES - 18427 * MIB  # another server holds 0.40 of the A40
    with pytest.raises(ValueError) as exc:
        check_free_memory(free, A40_TOTAL_BYTES, 0.9)
    assert str(exc.value) == (
        "Free memory on device cuda:0 (26.99/44.99 GiB) on startup is less than desired GPU "
        "memory utilization (0.9, 40.49 GiB). Decrease GPU memory utilization or reduce GPU "
        "memory used by other processes."
    )


def test_glm_ocr_default_context_needs_about_025() -> None:
    plan = _plan(GLM_OCR, 0.40, 131072)
    assert plan.num_tokens >= 131072
    _plan(GLM_OCR, 0.25, 131072)
    with pytest.raises(ValueError) as exc:
        _plan(GLM_OCR, 0.24, 131072)
    assert re.fullmatch(
        r"To serve at least one request with the models's max seq len \(131072\), \(8\.0 GiB KV "
        r"cache is needed, which is larger than the available KV cache memory \([\d.]+ GiB\)\. "
        r"Based on the available memory, the estimated maximum model length is \d+\. Try "
        r"increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
        r"the engine\. See https://docs\.vllm\.ai/\S+ for more details\.",
        str(exc.value),
    ), str(exc.value)


@pytest.mark.parametrize(
    ("model", "profile", "max_model_len"),
    [("zai-org/GLM-OCR", "glm-ocr", 24576), ("lightonai/LightOnOCR-2-1B", "lighton-ocr", None)],
)
def test_starts_at_the_predicted_minimum_and_is_refused_below(
    model: str, profile: Profile, max_model_len: int | None
) -> None:
    """The simulator agrees with ocrtui.vllm.memory's prediction the way the GPU run checks
    vLLM against it (bench/gpu_seed_models.py step d): a start at the predicted minimum
    utilization succeeds, one at 0.75 of it is refused."""
    config = ModelConfig(
        name="m",
        model=model,
        port=8000,
        gpu_memory_utilization=0.4,
        profile=profile,
        max_model_len=max_model_len,
    )
    least = min_utilization(config, A40_TOTAL_BYTES // MIB)
    assert least is not None
    numbers = numbers_for(model)
    context = max_model_len or numbers.default_max_model_len
    _plan(numbers, least, context)
    with pytest.raises(ValueError, match="KV cache is needed"):
        _plan(numbers, 0.75 * least, context)


def test_smaller_context_fits_in_less_memory() -> None:
    _plan(GLM_OCR, 0.15, 16384)


def test_no_cache_blocks_when_weights_do_not_fit() -> None:
    with pytest.raises(
        ValueError,
        match=r"^No available memory for the cache blocks\. Try "
        r"increasing `gpu_memory_utilization` when initializing the engine\.",
    ):
        _plan(GLM_OCR, 0.05, 4096)


def test_seed_layout_fits_the_a40() -> None:
    first = check_free_memory(A40_TOTAL_BYTES, A40_TOTAL_BYTES, 0.40)
    second = check_free_memory(A40_TOTAL_BYTES - first, A40_TOTAL_BYTES, 0.55)
    plan_kv_cache(LIGHTON_OCR, second, 16384)


def test_profiles_by_model_id() -> None:
    assert numbers_for("zai-org/GLM-OCR") is GLM_OCR
    assert numbers_for("lightonai/LightOnOCR-2-1B") is LIGHTON_OCR
    assert numbers_for("Qwen/Qwen3-0.6B") is GENERIC


def test_image_tokens() -> None:
    assert GLM_OCR.image_tokens(1654, 2339) == 60 * 84
    # LightOnOCR resizes to 1540 px on the longest side and adds a break token per row.
    assert LIGHTON_OCR.image_tokens(1654 * 2, 2339 * 2) == 55 * 40


def test_tokenize_round_trips() -> None:
    text = "租赁合同 第一条\nRent: 12,000.00 per month\n\n  $x^2$"
    pieces = tokenize(text)
    assert "".join(pieces) == text
    assert pieces[:2] == ["租", "赁"]


def test_dead_holders_are_pruned_when_memory_is_taken(tmp_path: Path) -> None:
    gpu = SimGpu.create(tmp_path / "gpu")
    # Above any pid_max: a holder that can never be alive.
    (gpu.path / "holders" / "999999999.json").write_text(
        json.dumps({"pid": 999999999, "used_mib": 100, "gpu": 0})
    )
    assert gpu.used_mib() == 0  # never counted
    gpu.hold(os.getpid(), 1000)
    assert sorted(p.name for p in (gpu.path / "holders").iterdir()) == [f"{os.getpid()}.json"]
    assert gpu.used_mib() == 1000
