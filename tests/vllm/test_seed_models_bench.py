"""The GPU bench of the seed's models (bench/gpu_seed_models.py), its parts that need no GPU:
the published checkpoint tables, the configs it generates, the log reading, the tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
CONFIGS = Path(__file__).parent / "fixtures/seed_models"
sys.path.insert(0, str(BENCH))  # the bench's modules import each other as top-level modules

import gpu_seed_models as g  # noqa: E402
import seed_checkpoint as ck  # noqa: E402

from ocrtui.config import load_config  # noqa: E402


def config(folder: str) -> dict[str, Any]:
    return json.loads((CONFIGS / folder / "config.json").read_text())


def params(table: list[ck.Tensor], prefix: str = "") -> int:
    return sum(t.numel for t in table if t.name.startswith(prefix))


def test_glm_ocr_table_holds_the_mtp_layer_under_the_published_name() -> None:
    c = config("GLM-OCR")
    table = {t.name: t.shape for t in ck.tensors(c)}
    mtp = "model.language_model.layers.16."
    assert ck.mtp_layers(c) == [mtp]
    assert table[mtp + "enorm.weight"] == (1536,)
    assert table[mtp + "hnorm.weight"] == (1536,)
    assert table[mtp + "eh_proj.weight"] == (1536, 3072)
    assert table[mtp + "shared_head.norm.weight"] == (1536,)
    assert table[mtp + "shared_head.head.weight"] == (59392, 1536)
    assert table[mtp + "embed_tokens.weight"] == (59392, 1536)
    assert table[mtp + "mlp.gate_up_proj.weight"] == (9216, 1536)
    assert table["model.language_model.layers.15.self_attn.k_proj.weight"] == (1024, 1536)
    assert table["model.visual.patch_embed.proj.weight"] == (1024, 3, 2, 14, 14)
    assert table["model.visual.downsample.weight"] == (1536, 1024, 2, 2)
    assert table["model.visual.merger.gate_proj.weight"] == (4608, 1536)
    assert table["lm_head.weight"] == (59392, 1536)  # not tied
    assert not [n for n in table if n.startswith("model.layers.")]  # vLLM's MTP looks there
    assert "model.language_model.layers.17.enorm.weight" not in table


def test_glm_ocr_counts_its_published_size() -> None:
    # GLM-OCR is called 0.9B: its vision encoder and its 16 decoder layers (0.925B); the
    # embeddings, the untied head and the MTP layer come on top.
    table = ck.tensors(config("GLM-OCR"))
    layers = sum(params(table, f"model.language_model.layers.{i}.") for i in range(16))
    assert params(table, "model.visual.") == 434_120_192
    assert params(table, "model.visual.") + layers == 924_952_064
    assert params(table, "model.language_model.layers.16.") == 217_852_416
    assert params(table) == 1_325_258_240


def test_lighton_table_matches_the_published_file_size() -> None:
    c = config("LightOnOCR-2-1B")
    table = {t.name: t.shape for t in ck.tensors(c)}
    assert "lm_head.weight" not in table  # tied to the embeddings
    assert table["model.vision_encoder.patch_conv.weight"] == (1024, 3, 14, 14)
    assert table["model.vision_projection.patch_merger.merging_layer.weight"] == (1024, 4096)
    assert table["model.language_model.layers.27.self_attn.q_norm.weight"] == (128,)
    assert params(ck.tensors(c)) == 1_307_637_760  # as the config says (vision MLP 8192)
    # The mirror's model.safetensors (tests/vllm/fixtures/seed_models/SOURCES.md) is 2,011,367,489
    # bytes: to the byte, this table's names and shapes as one safetensors file (8-byte
    # length, JSON header sorted by name, bf16 data), with a vision MLP of 4096.
    c["vision_config"]["intermediate_size"] = 4096
    published = sorted(ck.tensors(c), key=lambda t: t.name)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in published:
        size = t.numel * ck.BF16_BYTES
        header[t.name] = {
            "dtype": "BF16",
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    assert 8 + len(json.dumps(header, separators=(",", ":"))) + offset == 2_011_367_489
    assert params(published) == 1_005_647_872


@pytest.mark.parametrize(
    ("folder", "prefixes"),
    [
        # the prefixes vLLM 0.26.0's hf_to_vllm_mapper knows for each architecture
        ("GLM-OCR", ("model.visual.", "model.language_model.", "lm_head.")),
        (
            "LightOnOCR-2-1B",
            ("model.vision_encoder.", "model.vision_projection.", "model.language_model."),
        ),
    ],
)
def test_every_name_is_one_vllm_maps_and_none_repeats(folder: str, prefixes: tuple) -> None:
    names = [t.name for t in ck.tensors(config(folder))]
    assert len(names) == len(set(names))
    assert [n for n in names if not n.startswith(prefixes)] == []


def test_shards_and_index_cover_every_tensor_once() -> None:
    table = ck.tensors(config("GLM-OCR"))
    parts = ck.shards(table, max_bytes=500_000_000)
    assert len(parts) > 3
    assert [t for part in parts for t in part] == table
    for part in parts:
        size = sum(t.numel for t in part) * ck.BF16_BYTES
        assert size <= 500_000_000 or len(part) == 1
    index = ck.index(parts)
    assert sorted(index["weight_map"]) == sorted(t.name for t in table)
    assert set(index["weight_map"].values()) == set(ck.shard_names(len(parts)))
    assert index["metadata"]["total_size"] == params(table) * 2


def test_an_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="no checkpoint table for Qwen2ForCausalLM"):
        ck.tensors({"architectures": ["Qwen2ForCausalLM"]})


def test_utilization_is_the_a40_share_on_the_lent_gpu() -> None:
    # 0.40 of a 46068 MiB A40 on an H100's 81079 MiB (CUDA's total): what the last run used
    assert g.scaled_utilization(0.40, 81079) == 0.2273
    assert g.scaled_utilization(0.55, 81079) == 0.3125
    assert g.scaled_utilization(0.55, 20000) == 1.0


def test_variants_turn_the_example_flags_into_their_recipe() -> None:
    example = ["--speculative-config", '{"method": "mtp", "num_speculative_tokens": 1}', "--x"]
    assert g.variant_args(example, g.VARIANTS["no-mtp"], None) == ["--x"]
    assert g.variant_args(example, g.VARIANTS["mtp-eager"], 1024) == [
        "--x",
        "--speculative-config",
        '{"method": "mtp", "num_speculative_tokens": 1}',
        "--load-format",
        "dummy",
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        "1024",
    ]
    # an example that no longer serves MTP: the published recipe
    assert g.variant_args(["--x"], g.VARIANTS["mtp"], None) == [
        "--x",
        "--speculative-config",
        g.PUBLISHED_MTP,
    ]
    assert g.without_spec(["--speculative-config={}", "--y"]) == ["--y"]


def test_generated_config_serves_the_example_models_offline(tmp_path: Path) -> None:
    examples = g.example_models()
    entries = [
        g.model_entry(
            seed,
            examples[seed.profile],
            name=seed.profile,
            port=seed.port,
            utilization=0.3,
            log=tmp_path / f"{seed.key}.log",
            hf_home=tmp_path / "hf",
        )
        for seed in g.SEEDS
    ]
    entries.append(
        g.model_entry(
            g.LIGHTON,
            examples["lighton-ocr"],
            name="lighton-517",
            port=8101,
            utilization=0.3,
            log=tmp_path / "517.log",
            hf_home=tmp_path / "hf",
            own_site=False,
        )
    )
    path = tmp_path / "ocrtui.toml"
    path.write_text(g.config_toml(tmp_path / "pod", tmp_path / "vllm", entries))
    cfg = load_config(path)
    glm, lighton, lighton_517 = cfg.models
    assert cfg.pod.kind == "local"
    assert (glm.model, lighton.model) == ("zai-org/GLM-OCR", "lightonai/LightOnOCR-2-1B")
    assert glm.max_model_len == 24576 and glm.max_num_seqs == 16
    assert glm.extra_args[-2:] == ("--host", "127.0.0.1")
    assert "--limit-mm-per-prompt" in lighton.extra_args
    assert lighton.env["PYTHONPATH"] == "/tmp/lighton-site:/tmp/site"
    assert lighton_517.env["PYTHONPATH"] == glm.env["PYTHONPATH"] == "/tmp/site"
    for m in cfg.models:
        assert m.env["HF_HUB_OFFLINE"] == "1" and m.env["HF_HOME"] == str(tmp_path / "hf")
        assert m.max_tokens == g.MAX_TOKENS


GLM_LOG = """\
(EngineCore pid=1391) INFO 12-07 02:53:10 [model_runner.py:305] Model loading took 2.28 GiB and 2.361134 seconds
(EngineCore pid=1391) INFO 12-07 02:53:39 [monitor.py:53] torch.compile took 26.66 s in total
(EngineCore pid=1391) INFO 12-07 02:53:45 [gpu_worker.py:560] Available KV cache memory: 15.04 GiB
(EngineCore pid=1391) INFO 12-07 02:53:45 [kv_cache_utils.py:2177] GPU KV cache size: 231,856 tokens
(EngineCore pid=1391) INFO 12-07 02:53:45 [kv_cache_utils.py:2178] Maximum concurrency for 24,576 tokens per request: 9.43x
(EngineCore pid=1391) ERROR 12-07 02:53:48 [core.py:1330]     inputs_embeds[positions[0] == 0] = 0
(EngineCore pid=1391) ERROR 12-07 02:53:48 [core.py:1330] torch.AcceleratorError: CUDA error: operation not permitted when stream is capturing
(EngineCore pid=1391) ERROR 12-07 02:53:48 [core.py:1330] RuntimeError: Engine core initialization failed. See root cause above.
"""  # noqa: E501 (log lines as vLLM prints them)


def test_the_log_gives_the_kv_figures_and_the_cause() -> None:
    assert g.log_figures(GLM_LOG) == {
        "kv_cache_gib": 15.04,
        "kv_tokens": 231856.0,
        "max_concurrency": 9.43,
        "loading_gib": 2.28,
        "compile_s": 26.66,
    }
    # the root cause, not the RuntimeError that follows it
    assert g.cause(GLM_LOG) == "operation not permitted when stream is capturing"
    lighton = (
        "ImportError: cannot import name 'PixtralRotaryEmbedding' from "
        "'transformers.models.pixtral.modeling_pixtral'\n"
        "ValueError: Model architectures ['LightOnOCRForConditionalGeneration'] failed to be "
        "inspected."
    )
    assert "PixtralRotaryEmbedding" in str(g.cause(lighton))
    assert g.cause("INFO all good") is None


def test_stages_are_the_models_own_progress_lines() -> None:
    out = "glm-ocr: launching\nglm-ocr: starting (KV cache)\nglm-ocr: starting (KV cache)\n"
    out += "lighton-ocr: launching\nhint: read the log\nglm-ocr: crashed\n"
    assert g.stages(out, "glm-ocr") == ["launching", "starting (KV cache)", "crashed"]


def test_tables_and_summary_from_returned_results(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"kind": "env", "gpu": "NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04", "cuda_total_mib": 81079},  # noqa: E501
        {"kind": "checkpoint", "model": "zai-org/GLM-OCR", "params": 1325258240, "tensors": 526},
        {"kind": "start", "step": "b", "label": "b-no-mtp", "ready": True, "up_s": 71.5,
         "kv_cache_gib": 14.0, "stages": ["launching", "ready"], "cause": None},
        {"kind": "start", "step": "b", "label": "b-mtp", "ready": False, "up_s": 60.2,
         "cause": "Following weights were not initialized from checkpoint: {...}"},
        {"kind": "throughput", "label": "b-no-mtp", "pages_s": 2.5, "p50_s": 1.9},
        {"kind": "page", "model": "glm-ocr", "doc": "en_latex.pdf", "page": 1,
         "prompt_tokens": 4693, "predicted_prompt_tokens": 4693, "diff_pct": 0.0},
        {"kind": "skipped", "what": "d", "why": "10 s left"},
    ]  # fmt: skip
    text = g.format_tables(records)
    no_mtp = next(line for line in text.splitlines() if line.split()[1:3] == ["b", "b-no-mtp"])
    assert "yes" in no_mtp and "71.5" in no_mtp and "2.5" in no_mtp
    assert "cause: Following weights were not initialized" in text
    assert "launching > ready" in text
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    written = g.summarise([tmp_path / "run"], tmp_path / "results")
    assert [p.name for p in written] == ["gpu_seed_models_h100.jsonl", "gpu_seed_models_h100.txt"]
    assert written[1].read_text() == text
    # two runs on one machine: each record says which
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "results.jsonl").write_text(json.dumps(records[0]) + "\n")
    both = g.summarise([tmp_path / "run", tmp_path / "run2"], tmp_path / "results")
    runs = [json.loads(line)["gpu_run"] for line in both[0].read_text().splitlines()]
    assert runs == [1] * len(records) + [2]
    assert g.diff_pct(4693, 4700) == 0.15 and g.diff_pct(None, 10) is None
    # a run still going: what it wrote so far, packed
    work = tmp_path / "work"
    (work / "logs" / "a-both").mkdir(parents=True)
    (work / "logs" / "a-both" / "vllm_glm-ocr.log").write_text("INFO started\n")
    (work / "results").mkdir()
    (work / "results" / "results.jsonl").write_text(
        (tmp_path / "run" / "results.jsonl").read_text()
    )
    g.pack(tmp_path / "out", work)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "logs.tar.gz",
        "results.jsonl",
        "results.txt",
    ]
    assert (tmp_path / "out" / "results.txt").read_text() == text


def test_dry_run_prints_the_plan_without_a_gpu() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "gpu_seed_models.py"), "--dry-run", "--steps", "a,b",
         "--variants", "mtp,no-mtp"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "budget 840 s; steps a,b"
    assert [line.split(":")[1].strip() for line in lines if line.startswith("b:")] == [
        "glm-ocr mtp",
        "glm-ocr no-mtp",
    ]
    assert not [line for line in lines if line.startswith(("c:", "d:"))]


def test_an_unknown_variant_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "gpu_seed_models.py"), "--dry-run", "--variants", "fast"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 1
    assert "unknown variant 'fast'" in out.stderr


def test_starts_wait_for_memory_and_a_failed_start_frees_its_share() -> None:
    memory = g.Memory(total_mib=81079, margin_mib=2048)
    now = 0.0  # a deadline already past: a take that must wait returns at once
    assert memory.take("a-both", 43764, deadline=now)
    assert memory.take("b-no-mtp", 18427, deadline=now)
    assert not memory.take("b-mtp", 18427, deadline=now)  # 80618 MiB > 79031
    memory.keep_only("a-both", 25337)  # its GLM-OCR did not start
    assert memory.take("b-mtp", 18427, deadline=now)
    memory.give("a-both")
    assert memory.held == {"b-no-mtp": 18427, "b-mtp": 18427}
