"""The GPU memory a model needs to start under vLLM, predicted from its architecture.

vLLM (0.26.0, ``v1/worker/gpu_worker.py`` ``determine_available_memory``) asks for
``gpu_memory_utilization x`` the CUDA total, profiles a forward pass, and gives the KV cache
what is left after the weights, the profiling peak, the non-torch memory it added (cuBLAS
workspaces, NCCL) and its estimate of the CUDA graphs; it refuses to start when that
cannot hold one request of ``max_model_len`` tokens (``v1/core/kv_cache_utils.py``
``check_enough_kv_cache_memory``). So the smallest memory a model starts with is

    weights + activation peak + runtime overhead + KV cache of one max_model_len request

* **weights**: the parameter count from the published config (``published.ARCHITECTURES``:
  text + vision + projector, + the MTP layer when ``--speculative-config`` asks for
  ``mtp``), 2 bytes each (bf16).
* **activation peak**: the larger of the encoder's profiling pass (vLLM profiles as many
  largest images as its encoder budget holds, ``max(max_num_batched_tokens, tokens of the
  largest image) // tokens of the largest image``; each patch's gated MLP) and the text
  model's pass over ``max_num_batched_tokens`` tokens plus the sampler's logits.
  ``max_num_batched_tokens`` is the flag when given, else vLLM's default for its API
  server: 8192 on a GPU of 70 GiB or more, 2048 below (``engine/arg_utils.py``
  ``get_batch_defaults``).
* **runtime overhead**: what a measured start held beyond the predicted weights and
  activations (non-torch memory, CUDA graphs, buffers loaded with the weights), from the
  table :data:`MEASURED` (the lead recalibrates it from a GPU run by adding a row there),
  plus :data:`MARGIN_MIB` for what varies between two starts.
* **KV cache**: ``2 (K and V) x layers (+ MTP layers) x kv_heads x head_dim x 2 bytes`` per
  token, for ``max_model_len`` rounded up to vLLM's 16-token blocks.

The CUDA context (~500 MiB) is not in the budget: vLLM measures after creating it (the
preflight's free-memory check counts it, ``plan.CUDA_CONTEXT_MIB``).

A model ocrtui has no architecture for has no prediction (None): its minimum is unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ocrtui.config import ModelConfig
from ocrtui.published import Architecture, ImageProcessor, architecture_for
from ocrtui.vllm.flags import json_option, serve_options
from ocrtui.vllm.image_tokens import max_image_tokens, processor_for

MIB = 1024 * 1024
BF16_BYTES = 2
KV_BLOCK_TOKENS = 16  # vLLM's default --block-size on CUDA
LARGE_GPU_MIB = 70 * 1024  # vLLM's default batch is 8192 tokens from here (2048 below)
LARGE_GPU_BATCH = 8192
SMALL_GPU_BATCH = 2048
# Room for what differs between two starts of the same plan (the CUDA-graph estimate,
# torch.compile's buffers, the 0.01 GiB rounding of the measured lines), so that a start at
# the predicted minimum does not fail on noise.
MARGIN_MIB = 128


@dataclass(frozen=True)
class StartMeasurement:
    """One vLLM start's memory lines (``Model loading took``, ``Available KV cache
    memory``, ``GPU KV cache size``) with the settings it ran at."""

    model: str  # the vLLM model id
    extra_args: tuple[str, ...]
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    total_mib: int  # CUDA's total of the GPU
    utilization: float
    weights_gib: float
    kv_cache_gib: float
    kv_cache_tokens: int
    source: str


MTP_ARGS = ("--speculative-config", '{"method": "mtp", "num_speculative_tokens": 3}')

# Every constant of the prediction that comes from a measurement, in one place.
MEASURED: tuple[StartMeasurement, ...] = (
    StartMeasurement(
        model="zai-org/GLM-OCR",
        extra_args=MTP_ARGS,
        max_model_len=24576,
        max_num_seqs=16,
        max_num_batched_tokens=8192,
        total_mib=81079,
        utilization=0.2273,
        weights_gib=2.28,
        kv_cache_gib=15.04,
        kv_cache_tokens=231856,
        source=(
            "vLLM 0.26.0 on one NVIDIA H100 80GB HBM3, 2026-12-07, config and processor "
            "files of zai-org/GLM-OCR with dummy weights (issue 20)"
        ),
    ),
    *(
        StartMeasurement(
            model=model,
            extra_args=(),
            max_model_len=max_len,
            max_num_seqs=16,
            max_num_batched_tokens=8192,
            total_mib=81079,
            utilization=utilization,
            weights_gib=weights,
            kv_cache_gib=kv_gib,
            kv_cache_tokens=kv_tokens,
            source=(
                "vLLM 0.26.0 on one NVIDIA H100 80GB HBM3, 2026-12-07, random weights in the "
                "published layout, ocrtui.example.toml's flags "
                "(bench/results/gpu_seed_models_h100.jsonl)"
            ),
        )
        for model, max_len, utilization, weights, kv_gib, kv_tokens in (
            ("zai-org/GLM-OCR", 24576, 0.2273, 2.21, 15.24, 249648),
            ("zai-org/GLM-OCR", 24576, 0.058, 2.21, 1.83, 30016),  # the predicted minimum
            ("lightonai/LightOnOCR-2-1B", 16384, 0.3125, 2.45, 21.8, 204128),
            ("lightonai/LightOnOCR-2-1B", 16384, 0.072, 2.45, 2.79, 26160),  # the minimum
        )
    ),
)


@dataclass(frozen=True)
class MemoryNeed:
    """The smallest memory a model starts with, in MiB, and its parts."""

    weights_mib: float
    activation_mib: float
    overhead_mib: float
    kv_cache_mib: float  # one max_model_len request
    max_model_len: int

    @property
    def total_mib(self) -> float:
        return self.weights_mib + self.activation_mib + self.overhead_mib + self.kv_cache_mib

    def describe(self) -> str:
        """The parts in GiB, for a warning line."""
        gib = 1024
        return (
            f"weights {self.weights_mib / gib:.1f} + activations {self.activation_mib / gib:.1f}"
            f" + runtime {self.overhead_mib / gib:.1f} + KV cache for one "
            f"{self.max_model_len}-token request {self.kv_cache_mib / gib:.1f} GiB"
        )


def uses_mtp(extra_args: tuple[str, ...]) -> bool:
    spec = json_option(serve_options(extra_args), "--speculative-config")
    return spec is not None and spec.get("method") == "mtp"


def parameters(arch: Architecture, mtp: bool) -> int:
    """The parameters vLLM loads: text, vision, projector, and the MTP layers with ``mtp``
    (they share the main model's embeddings and head)."""
    t, v = arch.text, arch.vision
    q, kv = t.heads * t.head_dim, t.kv_heads * t.head_dim
    layer = t.hidden * (q + 2 * kv) + q * t.hidden + 3 * t.hidden * t.intermediate + 4 * t.hidden
    head = 0 if t.tied_embeddings else t.vocab * t.hidden
    text = t.vocab * t.hidden + head + t.layers * layer + t.hidden
    if mtp:
        text += t.mtp_layers * (layer + 2 * t.hidden * t.hidden + 3 * t.hidden)
    patch = v.channels * v.temporal_patch_size * v.patch_size**2 * v.hidden
    block = 4 * v.hidden * v.hidden + 3 * v.hidden * v.intermediate + 6 * v.hidden
    vision = patch + v.position_grid * v.hidden + v.layers * block + 2 * v.hidden
    merged = v.hidden * arch.merge_size**2
    if arch.family == "glm_ocr":
        # 2x2 conv to the text width, then a projection and a gated MLP of the vision width.
        projector = merged * t.hidden + t.hidden * t.hidden + 3 * t.hidden * v.intermediate
    else:
        # Pixtral's patch merger, then two linear layers to the text width.
        projector = merged * v.hidden + v.hidden * t.hidden + t.hidden * t.hidden
    return text + vision + projector


def batched_tokens(model: ModelConfig, total_mib: int) -> int:
    """``--max-num-batched-tokens``, else vLLM's default for a GPU of ``total_mib``."""
    flag = serve_options(model.extra_args).get("--max-num-batched-tokens")
    if isinstance(flag, str) and flag.isdigit():
        return int(flag)
    return LARGE_GPU_BATCH if total_mib >= LARGE_GPU_MIB else SMALL_GPU_BATCH


def activation_bytes(
    arch: Architecture, proc: ImageProcessor | None, batched: int, max_num_seqs: int
) -> int:
    """The profiling pass's peak: the encoder's largest images or the text model's batch."""
    encoder = 0
    if proc is not None:
        per_image = max_image_tokens(proc)
        images = max(batched, per_image) // per_image
        patches = images * per_image * arch.merge_size**2
        encoder = patches * 3 * arch.vision.intermediate * BF16_BYTES  # gate, up, product
    text = batched * 3 * arch.text.intermediate * BF16_BYTES
    logits = max_num_seqs * arch.text.vocab * 4 * 2  # fp32 logits and probabilities
    return max(encoder, text + logits)


def _overhead_mib() -> float:
    """The measured non-KV memory beyond the predicted weights and activations: the largest
    over :data:`MEASURED`."""
    out = 0.0
    for m in MEASURED:
        arch = architecture_for(m.model)
        if arch is None:
            continue
        mtp = uses_mtp(m.extra_args)
        requested = math.ceil(m.total_mib * m.utilization * MIB) / MIB
        non_kv = requested - m.kv_cache_gib * 1024
        weights = parameters(arch, mtp) * BF16_BYTES / MIB
        proc = processor_for(m.model)
        activation = activation_bytes(arch, proc, m.max_num_batched_tokens, m.max_num_seqs) / MIB
        out = max(out, non_kv - weights - activation)
    return out


def min_memory(model: ModelConfig, total_mib: int) -> MemoryNeed | None:
    """The smallest memory ``model`` starts with on a GPU of ``total_mib`` (CUDA's total),
    at its max_model_len (the architecture's default when unset); None when ocrtui knows
    no architecture for it."""
    arch = architecture_for(model.model)
    if arch is None:
        return None
    mtp = uses_mtp(model.extra_args)
    max_len = model.max_model_len or arch.text.max_position_embeddings
    blocks = -(-max_len // KV_BLOCK_TOKENS)
    proc = processor_for(model.model)
    batched = min(batched_tokens(model, total_mib), model.max_num_seqs * max_len)
    return MemoryNeed(
        weights_mib=parameters(arch, mtp) * BF16_BYTES / MIB,
        activation_mib=activation_bytes(arch, proc, batched, model.max_num_seqs) / MIB,
        overhead_mib=_overhead_mib() + MARGIN_MIB,
        kv_cache_mib=blocks * KV_BLOCK_TOKENS * arch.text.kv_bytes_per_token(mtp) / MIB,
        max_model_len=max_len,
    )


def min_utilization(model: ModelConfig, total_mib: int) -> float | None:
    """The smallest ``gpu_memory_utilization`` ``model`` starts with on a GPU of
    ``total_mib`` (rounded up to 0.001); None when the minimum is unknown."""
    need = min_memory(model, total_mib)
    if need is None:
        return None
    return math.ceil(need.total_mib / total_mib * 1000) / 1000
