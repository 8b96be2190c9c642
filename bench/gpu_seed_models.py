"""The seed's two models (GLM-OCR, LightOnOCR-2) on real vLLM on the lent GPU, through ocrtui.

One driver, started once, detached, on the GPU machine, in the repo root of a copy of the
working tree::

    setsid env PYTHONPATH=/tmp/site:$PWD python3 bench/gpu_seed_models.py --out $OUT \\
        [--steps a,b,c,d] [--variants mtp,mtp-piecewise,mtp-eager,mtp-v1,no-mtp] \\
        [--budget-s 840] >/tmp/gpu-seed-models.out 2>&1 < /dev/null &

Before: the staged site extracted to ``/tmp/site`` and ``/tmp/lighton-site``
(bench/gpu_stage.py), the fixture model folders in ``.seed-models/GLM-OCR`` and
``.seed-models/LightOnOCR-2-1B``, and the sample suite generated here (it needs the CJK font
the GPU machine lacks) with ``python3 bench/gpu_seed_models.py --prepare``, which writes
``.seed-models/cache`` (carried with ``.seed-models``). ``--dry-run`` prints the plan (no GPU
needed); ``--summarise DIR [DIR ...]`` turns returned results folders into
``bench/results/gpu_seed_models_<gpu>.txt`` and ``.jsonl``; ``--pack DIR`` copies what a run
still going has written so far (``/tmp/gpu-seed-models``) into ``DIR``.

First, a random-weight bf16 checkpoint of each model in its published layout
(bench/seed_checkpoint.py: names and shapes from the config, GLM-OCR's MTP layer under
``model.language_model.layers.16.*``) is written into a Hugging Face cache
(``models--zai-org--GLM-OCR/snapshots/...``) so every config names the models by their hub
ids and vLLM's real loader reads them offline (where an id does not resolve there, the
snapshot's folder is served instead, and the checkpoint record says why). It runs in a child
process, so the driver itself never holds a CUDA context. Every server gets ``HF_HUB_OFFLINE=1
TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_USE_FLASHINFER_SAMPLER=0``; LightOnOCR-2
also ``PYTHONPATH=/tmp/lighton-site:/tmp/site`` (transformers 5.16.1, mistral_common).
Utilizations are the handoff's (0.40 and 0.55 of a 46068 MiB A40) scaled to the GPU's CUDA
total. Every request sends ``max_tokens`` 256: random weights rarely stop on their own.
Steps, each start bounded by a deadline, everything logged:

a. ``ocrtui up`` of LightOnOCR-2 without its site (the machine's transformers 5.17: the
   preflight should refuse, else vLLM fails at inspection, before the GPU is touched, so it
   runs beside the other start and reserves no memory), beside the real start of both
   models with ocrtui.example.toml's flags: time to ready, stages printed, ``status --json``
   with ``nvidia-smi`` beside it, each model's MiB against its planned MiB, the KV-cache
   lines of each log, ``/v1/models`` and ``/metrics`` excerpts. A model that ``up`` never
   launched (an ocrtui that stops at the first failed model) gets ``ocrtui restart``.
b. Last, once a's servers are down: GLM-OCR recipe variants (``--variants``), each its own
   start and port at the same utilization, with ``--kv-cache-memory-bytes`` fixed
   (``--variant-kv-gib``) so that starts may overlap without one start's allocations
   entering another's memory profile; as many at a time as the GPU's memory allows (a start
   waits for the room its planned MiB need), each with ``up --force``: the preflight's
   verdict on a recipe is printed, vLLM's is measured. MTP variants past the published one
   load ``--load-format dummy``: the published layout stops them at the checkpoint names
   before the graph capture they are about. Started or not, time, the cause line, and for a
   ready one the throughput of the same sample page sent ``--requests`` times at
   ``--concurrency`` through ocrtui's client (random weights: MTP accepts few drafts, so its
   speed here is a floor).
c. ``ocrtui compare --headless`` on both ready models with the sample suite, one real PDF
   (``--pdf``; default: the first PDF under /usr/share/doc, else one made with fpdf2) and
   the page images ``--images`` names (sizes where the processors' pixel caps apply): per
   page the prompt tokens vLLM reported against ``predicted_prompt_tokens`` (% difference),
   latency; the throughput phase, on step a's two servers (skipped, and said so, where one
   did not start); they are stopped when c ends.
d. Memory truth, beside c, one start at a time (a's servers are already sized, so no other
   start's allocations enter its memory profile): each model at the minimum
   utilization ``ocrtui.vllm.memory.min_utilization`` predicts (scaled to this GPU) must
   start; at ``--below`` times it (``up --force``, past the preflight) vLLM must refuse (its
   message recorded).

Results (the folder ``--out`` names receives them at the end; they are written elsewhere
first, as ``$OUT`` may be the folder the driver runs in). ``--dry-run`` gives each step's
rough time; what no longer fits ``--budget-s`` is skipped and says so:

    results.jsonl   one JSON object a line, ``"kind"`` first:
                    env         GPU, CUDA total MiB, versions
                    checkpoint  model, tensors, params, shards, bytes, seconds
                    start       step, label, model, variant, port, utilization, planned_mib,
                                ready, up_exit, up_s, stages, hint, cause, kv_cache_gib,
                                kv_tokens, max_concurrency, loading_gib, used_mib, smi_mib,
                                up_tail, max_model_len, metrics, log
                    throughput  step b: label, pages_s, p50_s, completion_tokens_s,
                                prompt_tokens, ok, failed, error
                    page        step c: doc, page, model, prompt_tokens,
                                predicted_prompt_tokens, diff_pct, latency_s, ok
                    phase       step c: model, phase, stats (compare's phases.jsonl)
                    note        what, and what was chosen (step c's PDF, step d's minimum)
                    skipped     what, why (the budget ran out, a step not asked for, ...)
                    error       what, error (a step that raised)
    results.txt     the same as readable tables (``format_tables``)
    logs.tar.gz     every vLLM log, ocrtui's outputs, status snapshots, compare's run folders
    driver.log      what the driver printed
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gpu_cli
import seed_checkpoint

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / ".seed-models"
SAMPLES_CACHE = SEED / "cache"
EXAMPLE = REPO / "ocrtui.example.toml"
RESULTS = REPO / "bench" / "results"
WORK = Path("/tmp/gpu-seed-models")
SITE, LIGHTON_SITE = "/tmp/site", "/tmp/lighton-site"
A40_MIB = 46068
STEPS = ("a", "b", "c", "d")
SERVE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_USE_FLASHINFER_SAMPLER": "0",
}
SPEC_FLAG = "--speculative-config"
PUBLISHED_MTP = '{"method": "mtp", "num_speculative_tokens": 3}'
MAX_TOKENS = 256  # random weights rarely stop: every request generates about this many


@dataclass(frozen=True)
class Seed:
    """One of the seed's models: its fixture folder, hub id and example-config profile."""

    key: str
    folder: str
    hub_id: str
    profile: str
    a40_utilization: float
    port: int
    env: tuple[tuple[str, str], ...] = ()


GLM = Seed("glm", "GLM-OCR", "zai-org/GLM-OCR", "glm-ocr", 0.40, 8000)
LIGHTON = Seed(
    "lighton",
    "LightOnOCR-2-1B",
    "lightonai/LightOnOCR-2-1B",
    "lighton-ocr",
    0.55,
    8001,
    (("PYTHONPATH", f"{LIGHTON_SITE}:{SITE}"),),
)
SEEDS = (GLM, LIGHTON)


@dataclass(frozen=True)
class Variant:
    """A GLM-OCR recipe: MTP on or off, flags and environment added to the example's."""

    name: str
    mtp: bool
    dummy: bool  # --load-format dummy: past the checkpoint-name refusal, to the graph capture
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    why: str = ""


VARIANTS = {
    v.name: v
    for v in (
        Variant("mtp", True, False, why="as published: checkpoint names or graph capture?"),
        Variant("mtp-dummy", True, True, why="as published, dummy weights: the graph capture"),
        Variant(
            "mtp-piecewise",
            True,
            True,
            ("--compilation-config", '{"cudagraph_mode": "PIECEWISE"}'),
            why="no FULL graph for the speculator's prefill",
        ),
        Variant("mtp-eager", True, True, ("--enforce-eager",), why="no CUDA graphs at all"),
        Variant("mtp-v1", True, True, env=(("VLLM_USE_V2_MODEL_RUNNER", "0"),), why="V1 runner"),
        Variant("no-mtp", False, False, why="the model alone"),
    )
}
DEFAULT_VARIANTS = ("mtp", "mtp-piecewise", "mtp-eager", "mtp-v1", "no-mtp")
# Rough wall seconds, for the plan and for skipping what no longer fits the budget.
ESTIMATE_S = {"checkpoints": 60, "a": 300, "b": 150, "c": 150, "d": 110}


@dataclass(frozen=True)
class Options:
    steps: tuple[str, ...] = STEPS
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    budget_s: float = 840.0
    variant_kv_gib: float = 14.0
    below: float = 0.75
    requests: int = 10
    concurrency: int = 5
    pdf: str | None = None
    images: tuple[str, ...] = ()


# --- pure parts: configs, log reading, tables (tested on any machine) ----------------------


def scaled_utilization(a40_utilization: float, total_mib: int) -> float:
    """The share of this GPU that gives what ``a40_utilization`` gives on a 46068 MiB A40."""
    return round(min(1.0, a40_utilization * A40_MIB / total_mib), 4)


def example_models(path: Path = EXAMPLE) -> dict[str, dict[str, Any]]:
    """The example config's model entries by profile, as TOML-ready dicts."""
    from ocrtui.config import load_config

    config = load_config(path)
    return {m.profile: m.model_dump(mode="json", exclude_none=True) for m in config.models}


def without_spec(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == SPEC_FLAG:
            skip = True
        elif not a.startswith(SPEC_FLAG + "="):
            out.append(a)
    return out


def model_entry(
    seed: Seed,
    example: dict[str, Any],
    *,
    name: str,
    port: int,
    utilization: float,
    log: Path,
    hf_home: Path,
    served_from: str | None = None,
    extra: tuple[str, ...] = (),
    env: tuple[tuple[str, str], ...] = (),
    own_site: bool = True,
    ready_timeout_s: float = 400.0,
) -> dict[str, Any]:
    """A [[models]] entry: the example's flags for ``seed``, served offline from the
    Hugging Face cache ``hf_home`` (or the folder ``served_from``); ``own_site=False``
    leaves LightOnOCR-2's site out."""
    entry = dict(example)
    entry.pop("start_order", None)
    entry.pop("min_memory_gib", None)  # the preflight's own figure is what is measured
    entry_env = {
        **entry.get("env", {}),
        **SERVE_ENV,
        "HF_HOME": str(hf_home),
        "PYTHONPATH": SITE,
        **dict(seed.env if own_site else ()),
        **dict(env),
    }
    entry.update(
        name=name,
        model=served_from or seed.hub_id,
        port=port,
        gpu_memory_utilization=utilization,
        log_file=str(log),
        env=entry_env,
        max_tokens=MAX_TOKENS,
        ready_timeout_s=ready_timeout_s,
        extra_args=[*entry.get("extra_args", []), "--host", "127.0.0.1", *extra],
    )
    return entry


def variant_args(example_args: list[str], variant: Variant, kv_bytes: int | None) -> list[str]:
    """The example's GLM-OCR flags turned into ``variant``'s."""
    args = without_spec(example_args)
    if variant.mtp:
        spec = PUBLISHED_MTP
        if SPEC_FLAG in example_args:
            spec = example_args[example_args.index(SPEC_FLAG) + 1]
        args += [SPEC_FLAG, spec]
    if variant.dummy:
        args += ["--load-format", "dummy"]
    args += list(variant.args)
    if kv_bytes is not None:
        args += ["--kv-cache-memory-bytes", str(kv_bytes)]
    return args


def config_toml(
    workdir: Path, vllm: Path, models: list[dict[str, Any]], compare: dict[str, Any] | None = None
) -> str:
    """A local-pod ocrtui config for these entries (validated by ocrtui's own parser)."""
    import tomli_w

    from ocrtui.config import parse_config

    data: dict[str, Any] = {
        "pod": {
            "kind": "local",
            "name": "seed-models",
            "workdir": str(workdir),
            "python": sys.executable,
            "vllm_command": [str(vllm)],
            "agent_interval_s": 1.0,
        },
        "models": [{**m, "start_order": i + 1} for i, m in enumerate(models)],
    }
    if compare:
        data["compare"] = compare
    parse_config(data, "gpu_seed_models")
    return tomli_w.dumps(data)


# The lines of a vLLM log this bench reads, first match kept.
LOG_FIGURES = {
    "kv_cache_gib": re.compile(r"Available KV cache memory: ([\d.]+) GiB"),
    "kv_tokens": re.compile(r"GPU KV cache size: ([\d,]+) tokens"),
    "max_concurrency": re.compile(r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x"),
    "loading_gib": re.compile(r"Model loading took ([\d.]+) GiB"),
    "compile_s": re.compile(r"torch\.compile took ([\d.]+) s in total"),
}
# Why a start failed, most telling first: the line of the log that says it.
CAUSES = (
    re.compile(r"Following weights were not initialized from checkpoint.*"),
    re.compile(r"operation not permitted when stream is capturing.*"),
    re.compile(r"ImportError: .*"),
    re.compile(r"ModuleNotFoundError: .*"),
    re.compile(r"Free memory on device .*"),
    re.compile(r"To serve at least one request .*"),
    re.compile(r"No available memory for the cache blocks.*"),
    re.compile(r"ValueError: .*"),
    re.compile(r"torch\.OutOfMemoryError: .*|CUDA out of memory.*"),
    re.compile(r"RuntimeError: .*"),
    re.compile(r"\w+Error: .*"),
)


# A cause line saying vLLM's loader did not take the checkpoint's tensors.
LOADER_REFUSED = re.compile(
    r"not initialized from checkpoint|KeyError|size mismatch|safetensors", re.IGNORECASE
)


def log_figures(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, pattern in LOG_FIGURES.items():
        m = pattern.search(text)
        if m:
            out[key] = float(m.group(1).replace(",", ""))
    return out


def cause(text: str) -> str | None:
    """The line that says why a start failed, by the most telling pattern that matches."""
    for pattern in CAUSES:
        m = pattern.search(text)
        if m:
            return m.group(0).strip()[:400]
    return None


METRICS_KEPT = (
    "kv_cache_usage",
    "num_requests",
    "prompt_tokens_total",
    "generation_tokens_total",
    "spec_decode",
    "num_preemptions",
)


def metrics_excerpt(text: str) -> list[str]:
    """The /metrics lines worth keeping: cache use, requests, tokens, spec-decode counts."""
    return [
        line
        for line in text.splitlines()
        if not line.startswith("#") and any(k in line for k in METRICS_KEPT)
    ][:40]


def diff_pct(reported: int | None, predicted: int | None) -> float | None:
    if not reported or predicted is None:
        return None
    return round(100.0 * (predicted - reported) / reported, 2)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, dict):
        return " ".join(f"{k}={_cell(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return " > ".join(map(str, v))
    return str(v)


def _table(title: str, cols: list[str], rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join
    return [
        title,
        line(c.ljust(w) for c, w in zip(cols, widths, strict=True)),
        line("-" * w for w in widths),
        *(line(x.ljust(w) for x, w in zip(row, widths, strict=True)) for row in cells),
        "",
    ]


def _lines(title: str, keys: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """One paragraph a row, for the long texts a table would stretch."""
    if not rows:
        return []
    out = [title]
    for r in rows:
        out.append(f"{r.get('label')} {r.get('name')}:")
        out += [f"    {k}: {_cell(r.get(k))}" for k in keys if r.get(k)]
    return [*out, ""]


def _speed(t: dict[str, Any] | None) -> dict[str, Any]:
    t = t or {}
    return {
        "pages_s": t.get("pages_s"),
        "p50_s": t.get("p50_s"),
        "tok_s": t.get("completion_tokens_s"),
    }


def format_tables(records: list[dict[str, Any]]) -> str:
    """results.jsonl's records as readable tables, one per kind."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault(str(r.get("kind")), []).append(r)
    speed = {t.get("label"): t for t in by.get("throughput", [])}
    starts = [{**s, **_speed(speed.get(s.get("label")))} for s in by.get("start", [])]
    out: list[str] = []
    out += _table("environment", ["gpu", "cuda_total_mib", "versions"], by.get("env", []))
    out += _table(
        "checkpoints (random bf16, published layout)",
        ["model", "params", "tensors", "shards", "bytes", "seconds"],
        by.get("checkpoint", []),
    )
    out += _table(
        "starts",
        [
            "gpu_run",
            "step",
            "label",
            "name",
            "utilization",
            "planned_mib",
            "ready",
            "up_s",
            "used_mib",
            "smi_mib",
            "kv_cache_gib",
            "kv_tokens",
            "max_concurrency",
            "pages_s",
            "p50_s",
            "tok_s",
        ],
        starts,
    )
    out += _lines("why (starts)", ["stages", "up_tail", "hint", "cause"], starts)
    out += _table(
        "pages (step c): prompt tokens reported vs predicted",
        [
            "gpu_run",
            "run",
            "model",
            "doc",
            "page",
            "prompt_tokens",
            "predicted_prompt_tokens",
            "diff_pct",
            "latency_s",
            "resized",
            "ok",
        ],
        by.get("page", []),
    )
    out += _table(
        "phases (step c)", ["gpu_run", "run", "model", "phase", "stats"], by.get("phase", [])
    )
    out += _table("skipped", ["what", "why"], by.get("skipped", []))
    out += _table("errors", ["what", "error"], by.get("error", []))
    return "\n".join(out)


def gpu_slug(records: list[dict[str, Any]]) -> str:
    """``h100`` / ``h200`` from the env record's GPU name (``gpu`` when unknown)."""
    name = next((str(r.get("gpu", "")) for r in records if r.get("kind") == "env"), "")
    m = re.search(r"\b([A-Z]\d{2,4})\b", name)
    return m.group(1).lower() if m else "gpu"


def plan(opts: Options) -> list[str]:
    """What a run does, in order, with its rough time (``--dry-run`` prints it)."""
    lines = [f"budget {opts.budget_s:.0f} s; steps {','.join(opts.steps)}"]
    lines.append(
        f"checkpoints: {', '.join(s.hub_id for s in SEEDS)} (~{ESTIMATE_S['checkpoints']} s)"
    )
    if "a" in opts.steps:
        lines.append(
            "a: up lighton-ocr with the machine's transformers (no GPU) | up glm-ocr + "
            f"lighton-ocr with the example's flags at 0.40/0.55 of an A40 (~{ESTIMATE_S['a']} s)"
        )
    if "b" in opts.steps:
        for name in opts.variants:
            v = VARIANTS[name]
            lines.append(
                f"b: glm-ocr {name}: mtp={v.mtp} dummy={v.dummy} {' '.join(v.args)} "
                f"{' '.join(f'{k}={x}' for k, x in v.env)} kv {opts.variant_kv_gib} GiB; "
                f"{opts.requests} pages at concurrency {opts.concurrency} ({v.why})"
            )
    if "c" in opts.steps:
        lines.append(
            f"c: compare --headless, sample suite + {opts.pdf or 'a PDF of the machine'} "
            f"(~{ESTIMATE_S['c']} s)"
        )
    if "d" in opts.steps:
        for s in SEEDS:
            lines.append(
                f"d: {s.hub_id} at min_utilization (must start), x{opts.below} "
                f"(must be refused) (~{2 * ESTIMATE_S['d']} s)"
            )
    return lines


# --- the run (GPU machine) ------------------------------------------------------------------


class Recorder:
    """results.jsonl and driver.log, written as things happen (a killed run keeps them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def say(self, line: str) -> None:
        stamped = f"[{time.monotonic() - self.t0:6.1f}s] {line}"
        with self.lock:
            print(stamped, flush=True)
            with (self.folder / "driver.log").open("a") as f:
                f.write(stamped + "\n")

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        rec = {"kind": kind, "t_s": round(time.monotonic() - self.t0, 1), **fields}
        with self.lock:
            self.records.append(rec)
            with (self.folder / "results.jsonl").open("a") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.say(f"{kind}: {json.dumps(fields, ensure_ascii=False)[:300]}")
        return rec


@dataclass
class Memory:
    """The GPU's MiB this driver has promised to its servers (starts wait for room)."""

    total_mib: int
    margin_mib: int = 2048
    held: dict[str, int] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def take(self, who: str, mib: int, deadline: float) -> bool:
        with self.cond:
            while sum(self.held.values()) + mib > self.total_mib - self.margin_mib:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(timeout=min(left, 5))
            self.held[who] = mib
            return True

    def keep_only(self, who: str, mib: int) -> None:
        """``who`` now holds ``mib`` (a model that failed to start freed its share)."""
        with self.cond:
            if who in self.held:
                self.held[who] = mib
            self.cond.notify_all()

    def give(self, who: str) -> None:
        with self.cond:
            self.held.pop(who, None)
            self.cond.notify_all()


class Run:
    def __init__(self, opts: Options, rec: Recorder, logs: Path) -> None:
        self.opts = opts
        self.rec = rec
        self.logs = logs
        self.deadline = time.monotonic() + opts.budget_s - 45  # room to pack
        self.hf_home = WORK / "hf"
        self.pod = WORK / "pod"  # the one pod workdir of every config (it must exist)
        self.pod.mkdir(parents=True, exist_ok=True)
        self.vllm = gpu_cli.vllm_entry(WORK)
        self.example = example_models()
        self.total_mib = smi_total_mib()  # until the checkpoint writer says CUDA's
        self.memory = Memory(self.total_mib)
        self.served_from: dict[str, str] = {}  # hub id -> snapshot folder, where ids fail
        self.ready: dict[str, tuple[dict[str, Any], Path]] = {}  # served name -> entry, config
        os.environ["HF_HOME"] = str(self.hf_home)
        os.environ.update(SERVE_ENV)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, what: str, estimate_s: float) -> bool:
        if self.left() >= estimate_s:
            return True
        self.rec.record(
            "skipped", what=what, why=f"{self.left():.0f} s left, needs ~{estimate_s:.0f} s"
        )
        return False

    def utilization(self, seed: Seed) -> float:
        return scaled_utilization(seed.a40_utilization, self.total_mib)

    # checkpoints ---------------------------------------------------------------------------

    def checkpoints(self) -> None:
        # In a process of its own: the driver holds no CUDA context (nvidia-smi shows servers).
        proc = subprocess.run(
            [sys.executable, str(Path(seed_checkpoint.__file__)),
             *(f"{s.hub_id}={SEED / s.folder}" for s in SEEDS)],
            capture_output=True, text=True, timeout=300, env=dict(os.environ),
        )  # fmt: skip
        (self.logs / "checkpoints.txt").write_text(proc.stdout + proc.stderr)
        for info in read_jsonl_text(proc.stdout):
            self.rec.record("checkpoint", **info)
            self.total_mib = int(info["cuda_total_mib"])
            if not info.get("resolves"):
                self.served_from[info["model"]] = info["snapshot"]
        self.memory = Memory(self.total_mib)
        if proc.returncode != 0:
            raise RuntimeError(f"checkpoint writer exit {proc.returncode}: {proc.stderr[-300:]}")

    # one start through ocrtui ---------------------------------------------------------------

    def start(
        self,
        step: str,
        label: str,
        entries: list[dict[str, Any]],
        *,
        variant: str | None = None,
        keep: bool = False,
        reserve: bool = True,
        force: bool = False,
    ) -> list[dict[str, Any]]:
        """``ocrtui up`` of ``entries`` (one config), recorded; stopped again unless ``keep``.
        The start waits until the GPU has room for the entries' planned MiB (``reserve``);
        ``force`` starts past the preflight's refusals (they are still printed)."""
        folder = self.logs / label
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "ocrtui.toml"
        config.write_text(config_toml(self.pod, self.vllm, entries))
        planned = {e["name"]: int(e["gpu_memory_utilization"] * self.total_mib) for e in entries}
        # `up` starts the entries one after another.
        timeout = max(30.0, min(self.left(), sum(e["ready_timeout_s"] for e in entries) + 60))
        if not self.memory.take(label, sum(planned.values()) if reserve else 0, self.deadline):
            self.rec.record("skipped", what=label, why="no GPU memory free before the deadline")
            return []
        try:
            t0 = time.monotonic()
            forced = ("--force",) if force else ()
            try:
                up = gpu_cli.ocrtui(
                    config, "up", *forced, timeout=timeout, say=self.rec.say, tail=0
                )
                out, code = up.stdout + up.stderr, up.returncode
            except subprocess.TimeoutExpired as exc:
                out, code = f"{exc.stdout!s}\n{exc.stderr!s}\n(timed out)", None
            up_s = round(time.monotonic() - t0, 1)
            (folder / "up.txt").write_text(out)
            # A failed model stops `up` on ocrtui versions that do not go on: start the
            # ones it never launched.
            for e in entries:
                if not Path(e["log_file"]).exists() and self.left() > 60:
                    with suppress(subprocess.TimeoutExpired):
                        r = gpu_cli.ocrtui(
                            config, "restart", e["name"], *forced, timeout=timeout, say=self.rec.say
                        )
                        (folder / f"restart_{e['name']}.txt").write_text(r.stdout + r.stderr)
            snap = gpu_cli.status(config)
            smi = gpu_cli.smi_apps()
            (folder / "status.json").write_text(json.dumps(snap, indent=1))
            (folder / "nvidia-smi.csv").write_text(smi_csv())
            records = []
            for e in entries:
                records.append(
                    self.measure(
                        step,
                        label,
                        e,
                        variant,
                        snap,
                        smi,
                        up_s,
                        code,
                        out,
                        planned[e["name"]],
                    )
                )
            # A model that did not start has freed its memory for the next starts.
            ready = sum(planned[r["name"]] for r in records if r["ready"])
            self.memory.keep_only(label, ready)
            return records
        finally:
            if not keep:
                self.down(config, label)

    def down(self, config: Path, label: str) -> None:
        with suppress(subprocess.TimeoutExpired):
            gpu_cli.ocrtui(config, "down", timeout=120, say=self.rec.say, tail=3)
        self.memory.give(label)

    def measure(
        self,
        step: str,
        label: str,
        entry: dict[str, Any],
        variant: str | None,
        snap: gpu_cli.Snapshot,
        smi: dict[int, int],
        up_s: float,
        code: int | None,
        out: str,
        planned: int,
    ) -> dict[str, Any]:
        name = entry["name"]
        m = gpu_cli.model(snap, name)
        log = Path(entry["log_file"])
        text = log.read_text(errors="replace") if log.exists() else ""
        ours = [r for r in gpu_cli.rows(snap) if r.get("model") == name]
        pids = {r["pid"] for r in ours}
        ready = m.get("state") == "ready"
        url = f"http://127.0.0.1:{entry['port']}"
        fields: dict[str, Any] = {
            "step": step,
            "label": label,
            "model": entry["model"],
            "name": name,
            "variant": variant,
            "port": entry["port"],
            "utilization": entry["gpu_memory_utilization"],
            "planned_mib": m.get("planned_mib") or planned,
            "ready": ready,
            "state": m.get("state"),
            "up_exit": code,
            "up_s": up_s,
            "stages": stages(out, name),
            "up_tail": [x for x in out.splitlines() if x.startswith(("ocrtui:", "hint:"))][-4:],
            "hint": m.get("hint"),
            "cause": None if ready else cause(text),
            **log_figures(text),
            "used_mib": m.get("used_mib"),
            "smi_mib": sum(mib for pid, mib in smi.items() if pid in pids) or None,
            "log": str(log.relative_to(self.logs)) if log.is_relative_to(self.logs) else str(log),
        }
        if ready:
            models = http_json(url + "/v1/models")
            cards = models.get("data", []) if isinstance(models, dict) else []
            fields["max_model_len"] = next((c.get("max_model_len") for c in cards), None)
            fields["metrics"] = metrics_excerpt(http_text(url + "/metrics"))
            self.ready[name] = (entry, self.logs / label / "ocrtui.toml")
        return self.rec.record("start", **fields)

    # steps ------------------------------------------------------------------------------------

    def entry(
        self, seed: Seed, name: str, port: int, util: float, label: str, **kw: Any
    ) -> dict[str, Any]:
        log = self.logs / label / f"vllm_{name}.log"
        return model_entry(
            seed,
            self.example[seed.profile],
            name=name,
            port=port,
            utilization=util,
            log=log,
            hf_home=self.hf_home,
            served_from=self.served_from.get(seed.hub_id),
            **kw,
        )

    def step_a(self) -> None:
        # No GPU memory: it fails before the engine starts (or the preflight refuses it).
        def without_site() -> None:
            e = self.entry(
                LIGHTON,
                "lighton-ocr-517",
                8101,
                self.utilization(LIGHTON),
                "a-lighton-517",
                own_site=False,
                ready_timeout_s=240,
            )
            self.start("a", "a-lighton-517", [e], reserve=False)

        side = threading.Thread(target=guarded(self.rec, "a-lighton-517", without_site))
        side.start()
        entries = [self.entry(s, s.profile, s.port, self.utilization(s), "a-both") for s in SEEDS]
        records = self.start("a", "a-both", entries, keep=True)
        side.join()
        # A random-weight checkpoint this bench wrote in a layout vLLM's loader refuses is
        # this bench's fault, not the recipe's: that model starts again on dummy weights, so
        # steps c and d still meet a served model (the record keeps the refusal).
        for r in records:
            if r["ready"] or not LOADER_REFUSED.search(r.get("cause") or ""):
                continue
            seed = next(s for s in SEEDS if s.profile == r["name"])
            e = self.entry(
                seed, seed.profile, seed.port, self.utilization(seed), "a-dummy",
                extra=("--load-format", "dummy"),
            )  # fmt: skip
            self.start("a", "a-dummy", [e], keep=True)

    def step_b(self) -> None:
        kv = int(self.opts.variant_kv_gib * 2**30)
        threads = []
        for i, name in enumerate(self.opts.variants):
            if not self.fits(f"b {name}", ESTIMATE_S["b"]):
                break
            start = functools.partial(self.variant, name, 8200 + i, kv)
            t = threading.Thread(target=guarded(self.rec, f"b {name}", start))
            t.start()
            threads.append(t)
            time.sleep(2)  # launches in list order
        for t in threads:
            t.join()

    def variant(self, name: str, port: int, kv: int) -> None:
        v = VARIANTS[name]
        label = f"b-{name}"
        args = variant_args(list(self.example[GLM.profile].get("extra_args", [])), v, kv)
        e = self.entry(
            GLM,
            f"glm-ocr-{name}",
            port,
            self.utilization(GLM),
            label,
            env=v.env,
            ready_timeout_s=300,
        )
        e["extra_args"] = [*args, "--host", "127.0.0.1"]
        # Past the preflight: whether vLLM starts the recipe is what is measured.
        recs = self.start("b", label, [e], variant=name, keep=True, force=True)
        try:
            if recs and recs[0]["ready"]:
                try:
                    tp = throughput(e, self.opts.requests, self.opts.concurrency)
                except Exception as exc:  # the start is still a result
                    tp = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                self.rec.record("throughput", label=label, **tp)
        finally:
            self.down(self.logs / label / "ocrtui.toml", label)

    def step_c(self) -> None:
        glm = self.ready.get("glm-ocr")
        lighton = self.ready.get("lighton-ocr")
        if glm is None or lighton is None or not self.fits("c", 60):
            self.rec.record("skipped", what="c", why=f"ready: {sorted(self.ready)}")
            return
        folder = self.logs / "c-compare"
        folder.mkdir(parents=True, exist_ok=True)
        compare = {
            "concurrency": self.opts.concurrency,
            "warm_runs": 2,
            "throughput_requests": self.opts.requests,
            "schedule": "parallel",
            "request_timeout_s": 120.0,
            "outage_budget_s": 60.0,
        }
        config = folder / "ocrtui.toml"
        config.write_text(config_toml(self.pod, self.vllm, [glm[0], lighton[0]], compare))
        names = f"{glm[0]['name']},{lighton[0]['name']}"
        env_cache = {"OCRTUI_CACHE_DIR": str(SAMPLES_CACHE)} if SAMPLES_CACHE.is_dir() else {}
        os.environ.update(env_cache)
        pdf, pdf_source = real_pdf(self.opts.pdf, folder)
        self.rec.record("note", what="c pdf", pdf=str(pdf), source=pdf_source)
        runs = [("suite", []), ("pdf", [str(pdf), "--pages", "1-2"])]
        if self.opts.images:
            runs.append(("images", list(self.opts.images)))
        for what, docs in runs:
            run_dir = folder / what
            try:
                proc = gpu_cli.ocrtui(
                    config,
                    "compare",
                    "--headless",
                    "--models",
                    names,
                    "--out",
                    str(run_dir),
                    *docs,
                    timeout=max(30.0, self.left() / 2),
                    say=self.rec.say,
                )
                (folder / f"{what}.txt").write_text(proc.stdout + proc.stderr)
                self.rec.record("note", what=f"c {what}", exit=proc.returncode)
            except subprocess.TimeoutExpired:
                self.rec.record("note", what=f"c {what}", exit=None, error="timed out")
            for line in read_jsonl(run_dir / "results.jsonl"):
                predicted = line.get("predicted_prompt_tokens")
                self.rec.record(
                    "page",
                    run=what,
                    model=line.get("model"),
                    doc=line.get("doc"),
                    page=line.get("page"),
                    prompt_tokens=line.get("prompt_tokens"),
                    predicted_prompt_tokens=predicted,
                    diff_pct=diff_pct(line.get("prompt_tokens"), predicted),
                    latency_s=line.get("latency_s"),
                    resized=line.get("resized"),
                    ok=line.get("ok"),
                    error=line.get("error"),
                )
            for line in read_jsonl(run_dir / "phases.jsonl"):
                self.rec.record(
                    "phase",
                    run=what,
                    model=line.get("model"),
                    phase=line.get("phase"),
                    stats=line.get("stats"),
                )

    def step_d(self) -> None:
        from ocrtui.config import parse_config
        from ocrtui.vllm.memory import min_utilization  # seed-tokens' prediction

        for seed in SEEDS:
            entry = self.entry(seed, "probe", 8300, 0.5, "d-probe")
            model = parse_config({"pod": {"kind": "local"}, "models": [entry]}, "d").models[0]
            util = min_utilization(model, self.total_mib)
            self.rec.record(
                "note",
                what=f"d {seed.hub_id} min_utilization",
                utilization=util,
                total_mib=self.total_mib,
            )
            if util is None:
                continue
            for how, u in (("min", util), ("below", round(util * self.opts.below, 4))):
                if not self.fits(f"d {seed.key} {how}", ESTIMATE_S["d"]):
                    return
                label = f"d-{seed.key}-{how}"
                e = self.entry(seed, f"{seed.profile}-{how}", 8300, u, label, ready_timeout_s=300)
                # Below the minimum the preflight may refuse: vLLM's own answer is the point.
                self.start("d", label, [e], force=how == "below")

    def run(self) -> None:
        """a; then c on a's servers with d beside it (d's starts come while a's servers are
        already sized, so they enter no other start's memory profile; c's timings are then
        taken with d's starts on the same GPU, which the results say); then b, the recipe
        variants, which only ask which start and are the first thing a short budget drops."""
        steps = self.opts.steps
        guarded(self.rec, "checkpoints", self.checkpoints)()
        self.rec.record("env", gpu=gpu_name(), cuda_total_mib=self.total_mib, versions=versions())
        if "a" in steps and self.fits("a", 120):
            guarded(self.rec, "a", self.step_a)()
        compare = threading.Thread(target=guarded(self.rec, "c", self.step_c))
        if "c" in steps:
            compare.start()
        if "d" in steps:
            if "c" in steps:
                self.rec.record(
                    "note", what="d", chosen="runs beside c (c's timings share the GPU)"
                )
            guarded(self.rec, "d", self.step_d)()
        if "c" in steps:
            compare.join()
        for label in ("a-both", "a-dummy"):
            if (self.logs / label / "ocrtui.toml").exists():
                self.down(self.logs / label / "ocrtui.toml", label)
        if "b" in steps:
            guarded(self.rec, "b", self.step_b)()


def guarded(rec: Recorder, what: str, fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` whose exception becomes an ``error`` record (the run goes on)."""

    def run() -> None:
        try:
            fn()
        except Exception as exc:  # any failure of one step is a result, not the end
            rec.record("error", what=what, error=f"{type(exc).__name__}: {exc}"[:500])

    return run


def stages(up_output: str, name: str) -> list[str]:
    """What ``ocrtui up`` printed for ``name`` (its ``name: step`` lines), in order, repeats
    dropped."""
    out: list[str] = []
    for line in up_output.splitlines():
        if line.startswith(f"{name}: "):
            step = line[len(name) + 2 :].strip()[:160]
            if not out or out[-1] != step:
                out.append(step)
    return out


def smi_csv() -> str:
    return subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv"],
        capture_output=True,
        text=True,
    ).stdout


def gpu_name() -> str:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def smi_total_mib() -> int:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
    ).stdout
    return int(out.split()[0]) if out.split() else 0


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "vllm", "triton", "safetensors"):
        with suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    for dist in glob.glob(f"{LIGHTON_SITE}/transformers-*.dist-info"):
        out["lighton transformers"] = Path(dist).name.split("-")[1]
    return out


def http_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode(errors="replace"))
    except OSError as exc:
        return f"# {exc}"


def http_json(url: str) -> Any:
    try:
        return json.loads(http_text(url))
    except json.JSONDecodeError:
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return read_jsonl_text(path.read_text()) if path.exists() else []


def read_jsonl_text(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with suppress(json.JSONDecodeError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                out.append(obj)
    return out


def real_pdf(given: str | None, folder: Path) -> tuple[Path, str]:
    """The PDF of step c: ``given``, else one the machine ships, else one made with fpdf2."""
    if given:
        return Path(given), "given"
    found = sorted(glob.glob("/usr/share/doc/**/*.pdf", recursive=True))
    if found:
        return Path(found[0]), "on the machine"
    from fpdf import FPDF

    pdf = FPDF(format="Letter")
    pdf.set_font("Helvetica", size=11)
    for n in (1, 2):
        pdf.add_page()
        pdf.multi_cell(0, 6, f"Page {n}. " + ("Optical character recognition of a page. " * 60))
    path = folder / "generated.pdf"
    pdf.output(str(path))
    return path, "generated with fpdf2"


def throughput(entry: dict[str, Any], requests: int, concurrency: int) -> dict[str, Any]:
    """The same rendered sample page sent ``requests`` times, ``concurrency`` in flight,
    through ocrtui's own client."""
    from ocrtui.compare.client import ModelTarget, ocr_page, open_session
    from ocrtui.compare.profiles import TARGETS
    from ocrtui.compare.render import render_page_sync
    from ocrtui.compare.sample_suite import sample_suite_path
    from ocrtui.config import parse_config

    model = parse_config({"pod": {"kind": "local"}, "models": [entry]}, "b").models[0]
    pdf = (
        sample_suite_path(SAMPLES_CACHE if SAMPLES_CACHE.is_dir() else None).parent / "en_latex.pdf"
    )
    page = render_page_sync(str(pdf), "pdf", None, 1, TARGETS[model.profile], "jpeg")
    target = ModelTarget(model, f"http://127.0.0.1:{model.port}")

    async def go() -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        outs = []
        async with open_session() as c:

            async def one() -> None:
                async with sem:
                    outs.append(await ocr_page(c, target, page, retries=0, timeout_s=120))

            start = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for _ in range(requests):
                    tg.create_task(one())
            wall = time.perf_counter() - start
        good = [o for o in outs if o.ok]
        lat = [o.latency_s for o in good if o.latency_s is not None]
        tokens = sum(o.completion_tokens or 0 for o in good)
        return {
            "pages_s": round(len(good) / wall, 3),
            "p50_s": round(statistics.median(lat), 3) if lat else None,
            "completion_tokens_s": round(tokens / wall, 1),
            "prompt_tokens": good[0].prompt_tokens if good else None,
            "ok": len(good),
            "failed": len(outs) - len(good),
            "error": next((o.error for o in outs if not o.ok), None),
        }

    return asyncio.run(go())


def pack(out: Path, work: Path) -> None:
    """The run's results (so far) into ``out``: four files."""
    results = work / "results"
    records = read_jsonl(results / "results.jsonl")
    (results / "results.txt").write_text(format_tables(records))
    with tarfile.open(results / "logs.tar.gz", "w:gz") as tar:
        tar.add(work / "logs", arcname="logs")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.jsonl", "results.txt", "logs.tar.gz", "driver.log"):
        if (results / name).exists():
            shutil.copy(results / name, out / name)


def summarise(folders: list[Path], results: Path = RESULTS) -> list[Path]:
    """Returned results folders -> ``results``/gpu_seed_models_<gpu>.{jsonl,txt}; the
    records of several runs (on one machine) carry ``gpu_run``, their folder's place, 1 up."""
    records = []
    for n, folder in enumerate(folders, 1):
        for r in read_jsonl(folder / "results.jsonl"):
            records.append({"gpu_run": n, **r} if len(folders) > 1 else r)
    slug = gpu_slug(records)
    results.mkdir(parents=True, exist_ok=True)
    jsonl = results / f"gpu_seed_models_{slug}.jsonl"
    txt = results / f"gpu_seed_models_{slug}.txt"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    txt.write_text(format_tables(records))
    return [jsonl, txt]


def prepare() -> Path:
    """The sample suite generated into .seed-models/cache (here: the CJK font is here)."""
    from ocrtui.compare.sample_suite import sample_suite_path

    return sample_suite_path(SAMPLES_CACHE)


def options(args: argparse.Namespace) -> Options:
    steps = tuple(s for s in args.steps.split(",") if s)
    variants = tuple(v for v in args.variants.split(",") if v)
    for s in steps:
        if s not in STEPS:
            raise SystemExit(f"unknown step {s!r}: {','.join(STEPS)}")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}: {','.join(VARIANTS)}")
    return Options(
        steps,
        variants,
        args.budget_s,
        args.variant_kv_gib,
        args.below,
        args.requests,
        args.concurrency,
        args.pdf,
        tuple(args.images),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, help="where the results go at the end ($OUT)")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    ap.add_argument("--budget-s", type=float, default=840.0, help="wall time of the whole run")
    ap.add_argument("--variant-kv-gib", type=float, default=14.0)
    ap.add_argument("--below", type=float, default=0.75, help="step d's refused start, x min")
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=5)
    ap.add_argument("--pdf", help="step c's real PDF (default: one the machine has)")
    ap.add_argument(
        "--images", nargs="*", default=[], help="step c: page images compared after the PDF"
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    mode.add_argument("--prepare", action="store_true", help="generate the sample suite here")
    mode.add_argument(
        "--pack", type=Path, metavar="DIR", help="what a run (still going) wrote so far -> DIR"
    )
    mode.add_argument(
        "--summarise",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="returned results (one run or several) -> bench/results",
    )
    args = ap.parse_args(argv)
    opts = options(args)
    if args.dry_run:
        print("\n".join(plan(opts)))
        return 0
    if args.prepare:
        print(prepare())
        return 0
    if args.pack:
        pack(args.pack, WORK)
        return 0
    if args.summarise:
        for path in summarise(args.summarise):
            print(path)
        return 0
    if args.out is None:
        ap.error("--out is needed for a run")
    if not gpu_cli.have_gpu():
        print(json.dumps({"bench": "gpu_seed_models", "skipped": "no GPU"}))
        return 0
    shutil.rmtree(WORK, ignore_errors=True)
    rec = Recorder(WORK / "results")
    logs = WORK / "logs"
    logs.mkdir(parents=True)
    run = Run(opts, rec, logs)
    try:
        run.run()
    finally:
        pack(args.out, WORK)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
