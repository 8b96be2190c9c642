"""The memory prediction against the GPU starts it was calibrated and checked on, and the
config's sizes."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ocrtui.config import ModelConfig
from ocrtui.published import architecture_for
from ocrtui.vllm.memory import (
    MARGIN_MIB,
    MEASURED,
    MIB,
    MTP_ARGS,
    min_memory,
    min_utilization,
    parameters,
)

A40_MIB = 46068
FIXTURES = Path(__file__).parent / "fixtures/seed_models"
GIB = 1024 * MIB


def _glm(**kw: object) -> ModelConfig:
    base: dict[str, object] = {
        "name": "glm-ocr",
        "model": "zai-org/GLM-OCR",
        "port": 8000,
        "gpu_memory_utilization": 0.4,
        "max_num_seqs": 16,
        "max_model_len": 24576,
        "extra_args": MTP_ARGS,
    }
    return ModelConfig.model_validate(base | kw)


def test_glm_ocr_kv_cache_per_token_is_the_measured_one() -> None:
    arch = architecture_for("zai-org/GLM-OCR")
    assert arch is not None
    # 17 attention layers with MTP x 8 KV heads x 128 x 2 (K, V) x 2 bytes.
    assert arch.text.kv_bytes_per_token(mtp=True) == 17 * 4096 == 69632
    assert arch.text.kv_bytes_per_token(mtp=False) == 16 * 4096
    (h100,) = [m for m in MEASURED if m.extra_args == MTP_ARGS]
    measured = h100.kv_cache_gib * GIB / h100.kv_cache_tokens  # 69,650 B
    assert abs(measured / 69632 - 1) < 0.001


def test_the_h100_start_is_reproduced() -> None:
    """At the measured start's settings the prediction (less its margin) leaves the KV
    cache vLLM reported: 15.04 GiB, 231,856 tokens; the weights are within 10 % of `Model
    loading took`."""
    (h100,) = [m for m in MEASURED if m.extra_args == MTP_ARGS]
    model = _glm(
        gpu_memory_utilization=h100.utilization,
        extra_args=(*MTP_ARGS, "--max-num-batched-tokens", str(h100.max_num_batched_tokens)),
    )
    need = min_memory(model, h100.total_mib)
    assert need is not None
    requested_mib = math.ceil(h100.total_mib * h100.utilization * MIB) / MIB
    kv_mib = requested_mib - (need.total_mib - need.kv_cache_mib - MARGIN_MIB)
    assert abs(kv_mib / 1024 - h100.kv_cache_gib) < 0.005
    tokens = kv_mib * MIB // 69632 // 16 * 16
    assert abs(tokens / h100.kv_cache_tokens - 1) < 0.001
    arch = architecture_for("zai-org/GLM-OCR")
    assert arch is not None
    weights_gib = parameters(arch, mtp=True) * 2 / GIB
    assert 0.9 < weights_gib / h100.weights_gib < 1.0


def test_every_measured_start_needed_no_more_than_the_prediction() -> None:
    """What each start on the GPU needed to serve one max_model_len request (its memory
    less the KV cache beyond that request) is at most the predicted minimum, and the
    prediction is at most 25 % above it (LightOnOCR-2: 21 %, its encoder's profiling peak
    is overestimated). Also the KV bytes per token vLLM reported for each model."""
    for m in MEASURED:
        arch = architecture_for(m.model)
        assert arch is not None
        mtp = m.extra_args == MTP_ARGS
        per_token = arch.text.kv_bytes_per_token(mtp)
        assert abs(m.kv_cache_gib * GIB / m.kv_cache_tokens / per_token - 1) < 0.01
        model = ModelConfig(
            name="m",
            model=m.model,
            port=8000,
            gpu_memory_utilization=m.utilization,
            max_num_seqs=m.max_num_seqs,
            max_model_len=m.max_model_len,
            extra_args=m.extra_args,
        )
        need = min_memory(model, m.total_mib)
        assert need is not None
        requested_mib = m.total_mib * m.utilization
        needed_mib = requested_mib - m.kv_cache_gib * 1024 + need.kv_cache_mib
        assert needed_mib <= need.total_mib <= 1.25 * needed_mib, (m.model, m.utilization)


def test_the_smallest_utilization_on_an_a40() -> None:
    need = min_memory(_glm(), A40_MIB)
    assert need is not None
    assert need.kv_cache_mib == 24576 * 69632 / MIB == 1632
    assert min_utilization(_glm(), A40_MIB) == 0.104  # 4.68 GiB of 45 GiB
    # Without MTP: one layer less of weights and KV cache.
    assert min_utilization(_glm(extra_args=()), A40_MIB) == 0.101
    # The model's default context (131072 tokens): 8.5 GiB of KV cache for one request.
    assert min_utilization(_glm(max_model_len=None), A40_MIB) == 0.258
    lighton = ModelConfig(
        name="lighton-ocr",
        model="lightonai/LightOnOCR-2-1B",
        port=8001,
        gpu_memory_utilization=0.55,
        max_num_seqs=16,
    )
    assert min_utilization(lighton, A40_MIB) == 0.115  # its default context, 16384 tokens


def test_a_model_without_a_published_architecture_has_no_minimum() -> None:
    assert min_utilization(_glm(model="Qwen/Qwen2-VL-2B-Instruct"), A40_MIB) is None


def test_the_architecture_table_holds_the_published_configs() -> None:
    for model_id, folder in (
        ("zai-org/GLM-OCR", "GLM-OCR"),
        ("lightonai/LightOnOCR-2-1B", "LightOnOCR-2-1B"),
    ):
        arch = architecture_for(model_id)
        assert arch is not None
        config = json.loads((FIXTURES / folder / "config.json").read_text())
        text, vision = config["text_config"], config["vision_config"]
        assert (
            arch.text.layers,
            arch.text.hidden,
            arch.text.intermediate,
            arch.text.heads,
            arch.text.kv_heads,
            arch.text.head_dim,
            arch.text.vocab,
            arch.text.tied_embeddings,
            arch.text.max_position_embeddings,
            arch.text.mtp_layers,
        ) == (
            text["num_hidden_layers"],
            text["hidden_size"],
            text["intermediate_size"],
            text["num_attention_heads"],
            text["num_key_value_heads"],
            text["head_dim"],
            text["vocab_size"],
            text.get("tie_word_embeddings", False),
            text["max_position_embeddings"],
            text.get("num_nextn_predict_layers", 0),
        )
        layers = vision.get("depth", vision.get("num_hidden_layers"))
        assert (arch.vision.layers, arch.vision.hidden, arch.vision.intermediate) == (
            layers,
            vision["hidden_size"],
            vision["intermediate_size"],
        )
        assert arch.vision.patch_size == vision["patch_size"]
        assert arch.vision.temporal_patch_size == vision.get("temporal_patch_size", 1)
        merge = vision.get("spatial_merge_size", config.get("spatial_merge_size"))
        assert arch.merge_size == merge
        # GLM-OCR's vision tower learns a position per patch of its image_size; Pixtral has
        # rotary positions only.
        grid = (vision["image_size"] // vision["patch_size"]) ** 2
        assert arch.vision.position_grid == (grid if arch.family == "glm_ocr" else 0)
