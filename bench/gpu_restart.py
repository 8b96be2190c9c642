"""The seed's failure on a real GPU: kill -9 of the API server, then `ocrtui restart`.

Run on a GPU machine from the repo root (torch with CUDA, nvidia-ml-py, and ocrtui's
runtime dependencies importable)::

    PYTHONPATH=$PWD python3 bench/gpu_restart.py [--utilization 0.1]

The model server is `ocrtui sim-vllm` (the simulator; no vLLM here) with no simulated GPU, so
its EngineCore allocates its share of real VRAM with torch and the agent reads real NVML.
Steps, each checked through the headless CLI's JSON: `up` -> ready with the EngineCore's
VRAM attributed; SIGKILL of the API server -> `crashed` and an `orphan:<name>` row holding
the memory; `restart` -> ready with no orphan left; `down` -> the memory released.
PASS/FAIL lines; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gpu_cli
from gpu_cli import poll

NAME = "glm-ocr"
failures: list[str] = []


def result(ok: bool, what: str) -> None:
    print(("PASS: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def ocrtui(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return gpu_cli.ocrtui(config, *args, timeout=180, tail=8)


def rows(snap: dict[str, Any]) -> list[tuple[int, int, str | None, str]]:
    return [(p["pid"], p["used_mib"], p["model"], p["title"]) for p in snap.get("processes", [])]


def model(snap: dict[str, Any]) -> dict[str, Any]:
    return gpu_cli.model(snap, NAME)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--utilization", type=float, default=0.10)
    ap.add_argument("--port", type=int, default=18000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpu-restart-"))
    config = work / "ocrtui.toml"
    vllm = json.dumps([sys.executable, "-m", "ocrtui", "sim-vllm"])
    config.write_text(
        f"""
[pod]
kind = "local"
name = "gpu-restart"
workdir = "{work}"
python = "{sys.executable}"
vllm_command = {vllm}
agent_interval_s = 0.5

[[models]]
name = "{NAME}"
model = "zai-org/GLM-OCR"
port = {args.port}
gpu_memory_utilization = {args.utilization}
max_model_len = 8192
extra_args = ["--host", "127.0.0.1", "--engine", "synthetic", "--sim-startup-s", "1"]
env = {{ PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK = "True" }}
"""
    )
    try:
        up = ocrtui(config, "up")
        result(up.returncode == 0, "ocrtui up")
        snap = poll(config, lambda s: any(r[2] == NAME for r in rows(s)), 60)
        print(f"    gpus: {[(g['name'], g['used_mib'], g['total_mib']) for g in snap['gpus']]}")
        print(f"    processes: {rows(snap)}")
        result(model(snap).get("state") == "ready", f"{NAME} ready: {model(snap)}")
        mine = [r for r in rows(snap) if r[2] == NAME]
        result(bool(mine) and mine[0][1] > 1024, f"real VRAM attributed to {NAME}: {mine}")
        server = model(snap).get("pid")
        result(isinstance(server, int), f"API server pid {server}")
        if failures or not isinstance(server, int):
            return 1

        os.kill(server, signal.SIGKILL)
        snap = poll(
            config,
            lambda s: (
                model(s).get("state") == "crashed"
                and any(r[2] == f"orphan:{NAME}" for r in rows(s))
            ),
            30,
        )
        orphans = [r for r in rows(snap) if r[2] == f"orphan:{NAME}"]
        print(f"    processes: {rows(snap)}")
        result(model(snap).get("state") == "crashed", "crashed after SIGKILL of the API server")
        result(bool(orphans) and orphans[0][1] > 1024, f"orphan holds its VRAM: {orphans}")

        restart = ocrtui(config, "restart", NAME)
        result(restart.returncode == 0, f"ocrtui restart {NAME}")
        snap = poll(config, lambda s: model(s).get("state") == "ready", 60)
        print(f"    processes: {rows(snap)}")
        result(model(snap).get("state") == "ready", "ready again after restart")
        result(
            not any(str(r[2]).startswith("orphan:") for r in rows(snap)),
            "no orphan left after restart",
        )

        down = ocrtui(config, "down")
        result(down.returncode == 0, "ocrtui down")
        snap = poll(config, lambda s: not rows(s), 30)
        result(not rows(snap), f"VRAM released: {rows(snap)}")
    finally:
        ocrtui(config, "down")
    print(json.dumps({"failures": failures}))
    print("RESULT:", "FAIL" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
