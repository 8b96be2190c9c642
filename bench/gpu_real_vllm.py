"""The seed's failure with REAL vLLM on a real GPU, driven through ocrtui's headless CLI.

Run on the GPU machine from the repo root, with vLLM and ocrtui's dependencies importable
(bench/gpu_stage.py packs it on a machine that reaches PyPI; docs/sim.md, "Real vLLM on a GPU")::

    PYTHONPATH=/tmp/site:$PWD python3 bench/gpu_real_vllm.py --out DIR

Two dummy-weight Qwen2 models (no weights anywhere: config + a tokenizer trained here) are
served like the seed's pair: A at gpu_memory_utilization 0.40 with ``--enforce-eager``, B at
0.55 without it, so the torch.compile and CUDA-graph stages are seen. Steps, each checked
through ``ocrtui status --json``: ``up`` -> both ready, rows equal ``nvidia-smi``; ``kill -9``
of A's API server -> ``orphan:A`` rows holding VRAM; ``restart A`` -> ready, no orphan;
``down`` -> memory released. A second observer runs ``status --json`` in a loop during every
start and records any ``orphan:`` row or ``crashed`` state of a starting model (there must be
none). PASS/FAIL lines and one JSON summary line; exit 1 on any failure. Prints one line with
``"skipped": "no GPU"`` where ``nvidia-smi`` finds no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gpu_cli
from gpu_cli import have_gpu, model, poll, rows, smi_apps, status, vllm_entry

failures: list[str] = []
log_lines: list[str] = []


def say(line: str) -> None:
    print(line, flush=True)
    log_lines.append(line)


def result(ok: bool, what: str) -> None:
    say(("PASS: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def make_model(out: Path) -> None:
    """A Qwen2 config with random (dummy) weights and a byte-level BPE trained on local text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=8000,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [p.read_text(errors="replace") for p in Path(os.__file__).parent.glob("*.py")]
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] "
        "+ '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    fast.save_pretrained(out)
    eos = tok.token_to_id("<|im_end|>")
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "num_hidden_layers": 8,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "head_dim": 64,
        "hidden_act": "silu",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "vocab_size": 8192,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "bos_token_id": 0,
        "eos_token_id": eos,
        "pad_token_id": 0,
        "use_sliding_window": False,
    }
    (out / "config.json").write_text(json.dumps(config))
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))


def write_config(work: Path, model_dir: Path, vllm: Path) -> Path:
    env = {
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_USE_FLASHINFER_SAMPLER": "0",
    }
    env_toml = ", ".join(f'{k} = "{v}"' for k, v in env.items())
    models = []
    for name, port, util, order, eager in (
        ("A", 8000, 0.40, 1, True),
        ("B", 8001, 0.55, 2, False),
    ):
        extra = ["--load-format", "dummy", "--host", "127.0.0.1"]
        if eager:
            extra.append("--enforce-eager")
        models.append(
            f"""
[[models]]
name = "{name}"
model = "{model_dir}"
port = {port}
gpu_memory_utilization = {util}
max_num_seqs = 16
max_model_len = 4096
start_order = {order}
log_file = "{work}/vllm_{name}.log"
extra_args = {json.dumps(extra)}
env = {{ {env_toml} }}
profile = "generic"
ready_timeout_s = 400
"""
        )
    config = work / "ocrtui.toml"
    config.write_text(
        f"""
[pod]
kind = "local"
name = "h200-real-vllm"
workdir = "{work}"
python = "{sys.executable}"
vllm_command = ["{vllm}"]
agent_interval_s = 1.0
"""
        + "".join(models)
    )
    return config


def ocrtui(config: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return gpu_cli.ocrtui(config, *args, timeout=timeout, say=say)


class Observer(threading.Thread):
    """A second `status --json` observer: records what it sees of starting models."""

    def __init__(self, config: Path, out: Path) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.out = out.open("w")
        self.starting: set[str] = set()
        self.begun: set[str] = set()
        self.old: set[int] = set()  # orphans from before the start being watched
        self.violations: list[str] = []
        self.samples = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop_event.is_set():
            snap = status(self.config)
            if not snap:
                continue
            self.samples += 1
            t = time.monotonic() - t0
            self.out.write(json.dumps({"t": round(t, 2), "snap": snap}) + "\n")
            for name in list(self.starting):
                state = model(snap, name).get("state")
                # A restart begins from the crashed state and its old orphans: judge only
                # what this start made (after it was seen starting) and its own pids.
                if state in ("starting", "ready"):
                    self.begun.add(name)
                if state == "crashed" and name in self.begun:
                    self.violations.append(f"{t:.1f}s: starting {name} shown crashed")
                for row in rows(snap):
                    if row.get("model") == f"orphan:{name}" and row["pid"] not in self.old:
                        self.violations.append(
                            f"{t:.1f}s: starting {name}'s pid {row['pid']} shown as orphan"
                        )

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=90)
        self.out.close()


def check_rows_vs_smi(snap: dict[str, Any], what: str) -> None:
    apps = smi_apps()
    ours: dict[int, int] = {}
    for r in rows(snap):
        if r.get("used_mib"):
            ours[r["pid"]] = ours.get(r["pid"], 0) + r["used_mib"]
    result(ours == apps, f"{what}: status rows {ours} == nvidia-smi {apps}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--agent-bench", action="store_true", help="run bench/agent_vs_tools.py too")
    args = ap.parse_args()
    if not have_gpu():
        print(json.dumps({"bench": "gpu_real_vllm", "skipped": "no GPU"}))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/gpu-real-vllm")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    vllm = vllm_entry(work)
    make_model(work / "model")
    config = write_config(work, work / "model", vllm)
    observer = Observer(config, args.out / "observer.jsonl")
    timings: dict[str, float] = {}
    try:
        observer.starting = {"A", "B"}
        observer.start()
        t0 = time.monotonic()
        up = ocrtui(config, "up")
        timings["up_s"] = round(time.monotonic() - t0, 1)
        observer.starting = set()
        result(up.returncode == 0, "ocrtui up")
        snap = poll(
            config,
            lambda s: (
                all(model(s, n).get("state") == "ready" for n in "AB")
                and sum(1 for r in rows(s) if r.get("model") in ("A", "B") and r.get("used_mib"))
                >= 2
            ),
            120,
        )
        (args.out / "status_up.json").write_text(json.dumps(snap, indent=1))
        for n in "AB":
            result(model(snap, n).get("state") == "ready", f"{n} ready")
        check_rows_vs_smi(snap, "after up")
        for n in "AB":
            held = sum(r["used_mib"] for r in rows(snap) if r.get("model") == n)
            result(held > 10000, f"{n} holds {held} MiB (attributed)")
        if args.agent_bench:
            bench = subprocess.run(
                [sys.executable, "bench/agent_vs_tools.py"], capture_output=True, text=True
            )
            (args.out / "agent_vs_tools.jsonl").write_text(bench.stdout + bench.stderr)
            say(bench.stdout.strip())

        server = model(snap, "A").get("pid")
        result(isinstance(server, int), f"A's API server pid {server}")
        if isinstance(server, int):
            t_kill = time.monotonic()
            os.kill(server, signal.SIGKILL)
            snap = poll(
                config,
                lambda s: (
                    model(s, "A").get("state") == "crashed"
                    and any(r.get("model") == "orphan:A" and r.get("used_mib") for r in rows(s))
                ),
                60,
            )
            timings["kill_to_orphan_s"] = round(time.monotonic() - t_kill, 1)
            (args.out / "status_killed.json").write_text(json.dumps(snap, indent=1))
            orphans = [r for r in rows(snap) if r.get("model") == "orphan:A"]
            result(model(snap, "A").get("state") == "crashed", "A crashed after kill -9")
            result(
                any(r.get("used_mib", 0) > 10000 for r in orphans),
                f"orphan:A rows hold VRAM: {[(r['pid'], r['used_mib']) for r in orphans]}",
            )
            check_rows_vs_smi(snap, "after kill -9")

            observer.old = {r["pid"] for r in orphans}
            observer.begun = set()
            observer.starting = {"A"}
            t0 = time.monotonic()
            restart = ocrtui(config, "restart", "A")
            timings["restart_s"] = round(time.monotonic() - t0, 1)
            observer.starting = set()
            result(restart.returncode == 0, "ocrtui restart A")
            snap = poll(config, lambda s: model(s, "A").get("state") == "ready", 120)
            (args.out / "status_restarted.json").write_text(json.dumps(snap, indent=1))
            result(model(snap, "A").get("state") == "ready", "A ready after restart")
            result(
                not any(str(r.get("model")).startswith("orphan:") for r in rows(snap)),
                "no orphan after restart",
            )
            check_rows_vs_smi(snap, "after restart")

        t0 = time.monotonic()
        down = ocrtui(config, "down")
        timings["down_s"] = round(time.monotonic() - t0, 1)
        result(down.returncode == 0, "ocrtui down")
        result(not smi_apps(), f"VRAM released: nvidia-smi apps {smi_apps()}")
    finally:
        observer.stop()
        ocrtui(config, "down")
        for name in ("vllm_A.log", "vllm_B.log"):
            if (work / name).exists():
                shutil.copy(work / name, args.out / name)
    result(not observer.violations, f"second observer: {observer.violations[:10]}")
    log_b = work / "vllm_B.log"
    stages_b = log_b.read_text(errors="replace") if log_b.exists() else ""
    captured = "CUDA graph" in stages_b or "cudagraph" in stages_b.lower()
    result(captured, "B logged CUDA-graph capture")
    summary = {
        "bench": "gpu_real_vllm",
        "failures": failures,
        "timings": timings,
        "observer_samples": observer.samples,
    }
    say(json.dumps(summary))
    (args.out / "summary.txt").write_text("\n".join(log_lines) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
