"""Random-weight checkpoints of the seed's two models, in the layout their makers publish.

``tensors(config)`` is the table of every parameter the published checkpoint holds (its name
and shape), derived from the model folder's ``config.json`` alone, for the two architectures
of the seed:

- GLM-OCR (``GlmOcrForConditionalGeneration``): ``model.visual.*`` (CogViT: Conv3d patch
  embedding, q/k-normed attention, a biased gated MLP, a 2x2 downsample and a gated merger),
  ``model.language_model.*`` (GLM-4 decoder: four norms a layer, fused ``gate_up_proj``),
  ``lm_head.weight``, and the multi-token-prediction layer under the name the published
  checkpoint gives it: ``model.language_model.layers.<num_hidden_layers>.*`` (a decoder
  layer plus ``enorm``, ``hnorm``, ``eh_proj``, ``shared_head.norm``, ``shared_head.head``
  and ``embed_tokens``). vLLM 0.26.0's ``glm_ocr_mtp.py`` looks for it as
  ``model.layers.<n>.*`` (``get_spec_layer_idx_from_weight_name``) and so refuses this
  layout when MTP is on; ``glm4.py`` skips the layer for the main model.
- LightOnOCR-2 (``LightOnOCRForConditionalGeneration``): ``model.vision_encoder.*`` (Pixtral),
  ``model.vision_projection.*`` (RMSNorm, 2x2 patch merger, two linears) and
  ``model.language_model.*`` (Qwen3 with q/k norms); no ``lm_head.weight`` where the text
  config ties it to the embeddings (vLLM's ``lightonocr.py`` maps these prefixes).

The tables are checked (tests/vllm/test_seed_models_bench.py) against what is published:
LightOnOCR-2-1B's ``model.safetensors`` is, to the byte, one safetensors file of this table,
with a vision MLP of 4096 where the fixture's ``config.json`` says 8192 (so a checkpoint
written from that config has 1.31B parameters where the published one has 1.006B); GLM-OCR's
"0.9B" is its vision encoder and 16 decoder layers (0.925B), 1.33B with the embeddings, the
untied head and the MTP layer.

``write_checkpoint(model_dir, out_dir)`` writes bf16 random values for that table as
safetensors shards with ``model.safetensors.index.json``, next to copies of the folder's
config, processor and tokenizer files, so that vLLM's real weight loader runs (not
``--load-format dummy``). It imports torch and safetensors, so it runs on the GPU machine;
the table itself is plain Python and is tested on any machine. As a program (on the GPU
machine, in a process of its own so that the caller holds no CUDA context)::

    HF_HOME=DIR python3 bench/seed_checkpoint.py zai-org/GLM-OCR=.seed-models/GLM-OCR ...

it writes each model into that Hugging Face cache (``hub/models--ORG--NAME/snapshots/REV``,
``refs/main``), checks that ``huggingface_hub`` and ``transformers`` resolve the hub id there
offline, and prints one JSON line per model: what ``write_checkpoint`` returns, plus
``snapshot``, ``resolves`` (or ``resolve_error``) and ``cuda_total_mib``, the total vLLM
multiplies ``gpu_memory_utilization`` by.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GLM_OCR = "GlmOcrForConditionalGeneration"
LIGHTON_OCR = "LightOnOCRForConditionalGeneration"
SHARD_BYTES = 1_000_000_000
BF16_BYTES = 2
INDEX = "model.safetensors.index.json"
# A fixed revision: the cache layout needs one, and the same one every run.
REVISION = hashlib.sha1(b"ocrtui seed models, random weights").hexdigest()


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _glm_decoder_layer(p: str, t: dict[str, Any]) -> list[Tensor]:
    h, hd = t["hidden_size"], t["head_dim"]
    q, kv = t["num_attention_heads"] * hd, t["num_key_value_heads"] * hd
    out = [
        Tensor(f"{p}.input_layernorm.weight", (h,)),
        Tensor(f"{p}.post_self_attn_layernorm.weight", (h,)),
        Tensor(f"{p}.post_attention_layernorm.weight", (h,)),
        Tensor(f"{p}.post_mlp_layernorm.weight", (h,)),
        Tensor(f"{p}.self_attn.q_proj.weight", (q, h)),
        Tensor(f"{p}.self_attn.k_proj.weight", (kv, h)),
        Tensor(f"{p}.self_attn.v_proj.weight", (kv, h)),
        Tensor(f"{p}.self_attn.o_proj.weight", (h, q)),
        Tensor(f"{p}.mlp.gate_up_proj.weight", (2 * t["intermediate_size"], h)),
        Tensor(f"{p}.mlp.down_proj.weight", (h, t["intermediate_size"])),
    ]
    if t.get("attention_bias"):
        out += [
            Tensor(f"{p}.self_attn.q_proj.bias", (q,)),
            Tensor(f"{p}.self_attn.k_proj.bias", (kv,)),
            Tensor(f"{p}.self_attn.v_proj.bias", (kv,)),
        ]
    return out


def _glm_ocr(config: dict[str, Any]) -> list[Tensor]:
    t, v = config["text_config"], config["vision_config"]
    h, vocab = t["hidden_size"], t["vocab_size"]
    vh, vi, out_h = v["hidden_size"], v["intermediate_size"], v["out_hidden_size"]
    vhd, merge = vh // v["num_heads"], v["spatial_merge_size"]
    patch = v["patch_size"]
    vis = "model.visual"
    out = [
        Tensor(f"{vis}.patch_embed.proj.weight", (vh, 3, v["temporal_patch_size"], patch, patch)),
        Tensor(f"{vis}.patch_embed.proj.bias", (vh,)),
    ]
    for j in range(v["depth"]):
        b = f"{vis}.blocks.{j}"
        out += [
            Tensor(f"{b}.norm1.weight", (vh,)),
            Tensor(f"{b}.norm2.weight", (vh,)),
            Tensor(f"{b}.attn.qkv.weight", (3 * vh, vh)),
            Tensor(f"{b}.attn.qkv.bias", (3 * vh,)),
            Tensor(f"{b}.attn.proj.weight", (vh, vh)),
            Tensor(f"{b}.attn.proj.bias", (vh,)),
            Tensor(f"{b}.attn.q_norm.weight", (vhd,)),
            Tensor(f"{b}.attn.k_norm.weight", (vhd,)),
            Tensor(f"{b}.mlp.gate_proj.weight", (vi, vh)),
            Tensor(f"{b}.mlp.gate_proj.bias", (vi,)),
            Tensor(f"{b}.mlp.up_proj.weight", (vi, vh)),
            Tensor(f"{b}.mlp.up_proj.bias", (vi,)),
            Tensor(f"{b}.mlp.down_proj.weight", (vh, vi)),
            Tensor(f"{b}.mlp.down_proj.bias", (vh,)),
        ]
    # The merger's gated MLP is as wide as the text model's (vLLM: context_dim=intermediate).
    ti = t["intermediate_size"]
    out += [
        Tensor(f"{vis}.post_layernorm.weight", (vh,)),
        Tensor(f"{vis}.downsample.weight", (out_h, vh, merge, merge)),
        Tensor(f"{vis}.downsample.bias", (out_h,)),
        Tensor(f"{vis}.merger.proj.weight", (out_h, out_h)),
        Tensor(f"{vis}.merger.post_projection_norm.weight", (out_h,)),
        Tensor(f"{vis}.merger.post_projection_norm.bias", (out_h,)),
        Tensor(f"{vis}.merger.gate_proj.weight", (ti, out_h)),
        Tensor(f"{vis}.merger.up_proj.weight", (ti, out_h)),
        Tensor(f"{vis}.merger.down_proj.weight", (out_h, ti)),
    ]
    lm = "model.language_model"
    out.append(Tensor(f"{lm}.embed_tokens.weight", (vocab, h)))
    layers = t["num_hidden_layers"]
    for i in range(layers):
        out += _glm_decoder_layer(f"{lm}.layers.{i}", t)
    for i in range(layers, layers + t.get("num_nextn_predict_layers", 0)):
        p = f"{lm}.layers.{i}"
        out += _glm_decoder_layer(p, t)
        out += [
            Tensor(f"{p}.enorm.weight", (h,)),
            Tensor(f"{p}.hnorm.weight", (h,)),
            Tensor(f"{p}.eh_proj.weight", (h, 2 * h)),
            Tensor(f"{p}.shared_head.norm.weight", (h,)),
            Tensor(f"{p}.shared_head.head.weight", (vocab, h)),
            Tensor(f"{p}.embed_tokens.weight", (vocab, h)),
        ]
    out.append(Tensor(f"{lm}.norm.weight", (h,)))
    if not t.get("tie_word_embeddings", config.get("tie_word_embeddings", False)):
        out.append(Tensor("lm_head.weight", (vocab, h)))
    return out


def _lighton_ocr(config: dict[str, Any]) -> list[Tensor]:
    t, v = config["text_config"], config["vision_config"]
    vh, vi, patch = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    enc = "model.vision_encoder"
    out = [
        Tensor(f"{enc}.patch_conv.weight", (vh, v.get("num_channels", 3), patch, patch)),
        Tensor(f"{enc}.ln_pre.weight", (vh,)),
    ]
    for j in range(v["num_hidden_layers"]):
        b = f"{enc}.transformer.layers.{j}"
        out += [
            Tensor(f"{b}.attention_norm.weight", (vh,)),
            Tensor(f"{b}.attention.q_proj.weight", (vh, vh)),
            Tensor(f"{b}.attention.k_proj.weight", (vh, vh)),
            Tensor(f"{b}.attention.v_proj.weight", (vh, vh)),
            Tensor(f"{b}.attention.o_proj.weight", (vh, vh)),
            Tensor(f"{b}.ffn_norm.weight", (vh,)),
            Tensor(f"{b}.feed_forward.gate_proj.weight", (vi, vh)),
            Tensor(f"{b}.feed_forward.up_proj.weight", (vi, vh)),
            Tensor(f"{b}.feed_forward.down_proj.weight", (vh, vi)),
        ]
    h, merge = t["hidden_size"], config["spatial_merge_size"]
    proj = "model.vision_projection"
    out += [
        Tensor(f"{proj}.norm.weight", (vh,)),
        Tensor(f"{proj}.patch_merger.merging_layer.weight", (vh, vh * merge * merge)),
        Tensor(f"{proj}.linear_1.weight", (h, vh)),
        Tensor(f"{proj}.linear_2.weight", (h, h)),
    ]
    if config.get("multimodal_projector_bias"):
        out += [Tensor(f"{proj}.linear_1.bias", (h,)), Tensor(f"{proj}.linear_2.bias", (h,))]
    lm, hd, vocab = "model.language_model", t["head_dim"], t["vocab_size"]
    q, kv = t["num_attention_heads"] * hd, t["num_key_value_heads"] * hd
    out.append(Tensor(f"{lm}.embed_tokens.weight", (vocab, h)))
    for i in range(t["num_hidden_layers"]):
        p = f"{lm}.layers.{i}"
        out += [
            Tensor(f"{p}.input_layernorm.weight", (h,)),
            Tensor(f"{p}.post_attention_layernorm.weight", (h,)),
            Tensor(f"{p}.self_attn.q_proj.weight", (q, h)),
            Tensor(f"{p}.self_attn.k_proj.weight", (kv, h)),
            Tensor(f"{p}.self_attn.v_proj.weight", (kv, h)),
            Tensor(f"{p}.self_attn.o_proj.weight", (h, q)),
            Tensor(f"{p}.self_attn.q_norm.weight", (hd,)),
            Tensor(f"{p}.self_attn.k_norm.weight", (hd,)),
            Tensor(f"{p}.mlp.gate_proj.weight", (t["intermediate_size"], h)),
            Tensor(f"{p}.mlp.up_proj.weight", (t["intermediate_size"], h)),
            Tensor(f"{p}.mlp.down_proj.weight", (h, t["intermediate_size"])),
        ]
    out.append(Tensor(f"{lm}.norm.weight", (h,)))
    if not t.get("tie_word_embeddings", config.get("tie_word_embeddings", False)):
        out.append(Tensor("lm_head.weight", (vocab, h)))
    return out


ARCHITECTURES = {GLM_OCR: _glm_ocr, LIGHTON_OCR: _lighton_ocr}


def tensors(config: dict[str, Any]) -> list[Tensor]:
    """Every parameter of the published checkpoint of ``config``'s architecture, in order."""
    arch = config["architectures"][0]
    try:
        table = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"no checkpoint table for {arch}: only {sorted(ARCHITECTURES)}") from None
    return table(config)


def mtp_layers(config: dict[str, Any]) -> list[str]:
    """The name prefixes of the multi-token-prediction layers (none for most models)."""
    t = config.get("text_config", config)
    first = t["num_hidden_layers"]
    return [
        f"model.language_model.layers.{i}."
        for i in range(first, first + t.get("num_nextn_predict_layers", 0))
    ]


def shards(table: list[Tensor], max_bytes: int = SHARD_BYTES) -> list[list[Tensor]]:
    """The table cut into consecutive shards of at most ``max_bytes`` of bf16 (a larger
    single tensor gets a shard of its own)."""
    out: list[list[Tensor]] = [[]]
    size = 0
    for t in table:
        nbytes = t.numel * BF16_BYTES
        if out[-1] and size + nbytes > max_bytes:
            out.append([])
            size = 0
        out[-1].append(t)
        size += nbytes
    return out


def shard_names(count: int) -> list[str]:
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def index(parts: list[list[Tensor]]) -> dict[str, Any]:
    """``model.safetensors.index.json`` for these shards."""
    names = shard_names(len(parts))
    total = sum(t.numel for part in parts for t in part) * BF16_BYTES
    weight_map = {t.name: name for name, part in zip(names, parts, strict=True) for t in part}
    return {"metadata": {"total_size": total}, "weight_map": weight_map}


def write_checkpoint(
    model_dir: Path, out_dir: Path, device: str = "cuda", max_bytes: int = SHARD_BYTES
) -> dict[str, Any]:
    """Random bf16 weights for ``model_dir``'s config in ``out_dir`` (the folder's other
    files copied beside them); returns what was written (tensors, params, bytes, seconds)."""
    import torch
    from safetensors.torch import save_file

    started = time.monotonic()
    config = json.loads((model_dir / "config.json").read_text())
    table = tensors(config)
    parts = shards(table, max_bytes)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != INDEX:
            shutil.copy2(f, out_dir / f.name)
    gen = torch.Generator(device=device).manual_seed(0)
    for name, part in zip(shard_names(len(parts)), parts, strict=True):
        # Small values keep activations finite through the random layers; norms start at 1
        # as trained ones roughly do.
        state = {
            t.name: (
                torch.ones(t.shape, dtype=torch.bfloat16, device=device)
                if len(t.shape) == 1 and "norm" in t.name and t.name.endswith(".weight")
                else torch.randn(t.shape, generator=gen, dtype=torch.float32, device=device)
                .mul_(0.02)
                .to(torch.bfloat16)
            ).cpu()
            for t in part
        }
        save_file(state, str(out_dir / name), metadata={"format": "pt"})
    (out_dir / INDEX).write_text(json.dumps(index(parts), indent=1))
    return {
        "tensors": len(table),
        "params": sum(t.numel for t in table),
        "shards": len(parts),
        "bytes": sum(t.numel for t in table) * BF16_BYTES,
        "seconds": round(time.monotonic() - started, 1),
    }


def write_into_cache(hf_home: Path, hub_id: str, model_dir: Path) -> dict[str, Any]:
    """``write_checkpoint`` into the Hugging Face cache at ``hf_home`` as ``hub_id``, and
    whether the hub id resolves there offline."""
    repo = hf_home / "hub" / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    info = {"model": hub_id, **write_checkpoint(model_dir, snapshot), "snapshot": str(snapshot)}
    try:
        from huggingface_hub import snapshot_download
        from transformers import AutoConfig

        found = Path(snapshot_download(hub_id, local_files_only=True))
        AutoConfig.from_pretrained(hub_id)
        info["resolves"] = found.resolve() == snapshot.resolve()
    except Exception as exc:  # reported: the caller then serves the snapshot's path
        info["resolves"] = False
        info["resolve_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return info


def main(argv: list[str]) -> int:
    import torch

    hf_home = Path(os.environ["HF_HOME"])
    total_mib = int(torch.cuda.mem_get_info()[1] // 2**20)
    for arg in argv:
        hub_id, _, folder = arg.partition("=")
        info = write_into_cache(hf_home, hub_id, Path(folder))
        print(json.dumps({**info, "cuda_total_mib": total_mib}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
