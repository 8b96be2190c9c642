"""vLLM's sleep mode with REAL vLLM on a real GPU, driven through ocrtui's headless CLI.

Run on the GPU machine from the repo root, with vLLM and ocrtui's dependencies importable
(the stage of docs/sim.md, "Real vLLM on a GPU")::

    PYTHONPATH=/tmp/site:$PWD python3 bench/gpu_sleep.py --out DIR

or here against the simulator (its simulated A40), the same steps::

    PYTHONPATH=$PWD .venv/bin/python bench/gpu_sleep.py --out DIR --sim

Model S (gpu_memory_utilization 0.40, ``--enable-sleep-mode``; a dummy-weight Qwen2, as in
gpu_real_vllm.py) and model T (0.70, never started by ``up``). Steps, each checked through
``ocrtui status --json`` and ``nvidia-smi``: ``restart S`` -> ready, a chat answers;
``sleep S`` -> sleep_level 1, the memory given back, a chat sent meanwhile waits; ``wake S``
-> the memory back, the chat answers; ``sleep S --level 2`` and ``wake S`` (weights
reloaded) -> a chat answers; ``sleep S`` again, then ``restart T`` -> refused by the
preflight (T fits only in S's memory), ``restart T --force`` -> T ready, ``wake S`` -> exit 1
(CUDA out of memory), S still asleep; ``down``. PASS/FAIL lines, the sleep lines of S's log,
and one JSON summary line; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import gpu_cli
from gpu_cli import have_gpu, model, poll, rows, smi_apps, status, vllm_entry

failures: list[str] = []
log_lines: list[str] = []
measured: dict[str, Any] = {}


def say(line: str) -> None:
    print(line, flush=True)
    log_lines.append(line)


def result(ok: bool, what: str) -> None:
    say(("PASS: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def ocrtui(config: Path, *args: str, timeout: float = 600) -> Any:
    t0 = time.monotonic()
    proc = gpu_cli.ocrtui(config, *args, timeout=timeout, say=say)
    measured[f"{' '.join(args)} s"] = round(time.monotonic() - t0, 2)
    return proc


def write_config(work: Path, model_dir: str, vllm: list[str], sim: bool) -> Path:
    env: dict[str, str] = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_USE_FLASHINFER_SAMPLER": "0",
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    flags = ["--host", "127.0.0.1"]
    flags += ["--engine", "synthetic", "--sim-startup-s", "0.5"] if sim else ["--enforce-eager"]
    if not sim:
        flags += ["--load-format", "dummy"]
    pod = {
        "kind": "local",
        "name": "sleep-bench",
        "workdir": str(work),
        "python": sys.executable,
        "vllm_command": vllm,
        "agent_interval_s": 0.5,
    }
    if sim:
        pod["sim_gpu"] = str(work / "gpu")
    models = [
        {
            "name": name,
            "model": model_dir,
            "port": port,
            "gpu_memory_utilization": util,
            "max_num_seqs": 16,
            "max_model_len": 4096,
            "start_order": order,
            "extra_args": flags + extra,
            "env": env,
            "profile": "generic",
            "ready_timeout_s": 400,
        }
        for name, port, util, order, extra in (
            ("S", 8100, 0.40, 1, ["--enable-sleep-mode"]),
            ("T", 8101, 0.70, 2, []),
        )
    ]
    config = work / "ocrtui.toml"
    config.write_text(json_to_toml({"pod": pod, "models": models, "ui": {"refresh_s": 0.5}}))
    return config


def json_to_toml(data: dict[str, Any]) -> str:
    """The config as TOML (stdlib only: no tomli_w on the GPU machine): JSON's strings,
    numbers, arrays and inline tables are TOML's too."""
    out = []
    for key in ("pod", "ui"):
        out.append(f"[{key}]")
        out += [f"{k} = {json.dumps(v)}" for k, v in data[key].items()]
    for m in data["models"]:
        out.append("[[models]]")
        for k, v in m.items():
            if isinstance(v, dict):
                inner = ", ".join(f"{ik} = {json.dumps(iv)}" for ik, iv in v.items())
                out.append(f"{k} = {{ {inner} }}")
            else:
                out.append(f"{k} = {json.dumps(v)}")
    return "\n".join(out) + "\n"


def chat(port: int, timeout: float) -> str:
    """One chat request; its status, or ``timeout`` when it did not answer in time."""
    body = json.dumps(
        {"model": "S", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    ).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return str(r.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except (TimeoutError, urllib.error.URLError) as exc:
        return "timeout" if "timed out" in str(exc) else f"error {exc}"


def held(snap: dict[str, Any], name: str) -> int:
    """What the model's processes hold by nvidia-smi (the simulator: by ocrtui's rows)."""
    pids = {r["pid"] for r in rows(snap) if r.get("model") == name}
    apps = smi_apps() if have_gpu() else {}
    if apps:
        return sum(mib for pid, mib in apps.items() if pid in pids)
    return sum(r["used_mib"] for r in rows(snap) if r.get("model") == name)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--sim", action="store_true", help="the simulator instead of real vLLM")
    ns = p.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    if not ns.sim and not have_gpu():
        print(json.dumps({"skipped": "no GPU"}))
        return 0
    work = Path(tempfile.mkdtemp(prefix="gpu_sleep_"))
    if ns.sim:
        vllm = [sys.executable, "-m", "ocrtui", "sim-vllm"]
        model_dir = "org/tiny"
    else:
        from gpu_real_vllm import make_model

        make_model(work / "model")
        vllm = [str(vllm_entry(work))]
        model_dir = str(work / "model")
    cfg = write_config(work, model_dir, vllm, ns.sim)
    try:
        run(cfg)
    finally:
        ocrtui(cfg, "down")
        log = work / "vllm_S.log"
        if log.exists():
            keep = ("sleep", "Sleep", "wake", "asleep", "Loading weights", "out of memory")
            for line in log.read_text(errors="replace").splitlines():
                if any(k in line for k in keep):
                    say(f"    S log: {line[:300]}")
    summary = {"failures": failures, "measured": measured, "sim": ns.sim}
    say(json.dumps(summary))
    (ns.out / "gpu_sleep.txt").write_text("\n".join(log_lines) + "\n")
    return 1 if failures else 0


def run(cfg: Path) -> None:
    up = ocrtui(cfg, "restart", "S")
    result(up.returncode == 0, "restart S: ready")
    if up.returncode != 0:
        return
    snap = poll(cfg, lambda s: model(s, "S").get("used_mib", 0) > 0, 30)
    awake = held(snap, "S")
    planned = model(snap, "S").get("planned_mib")
    measured["S awake MiB"], measured["S planned MiB"] = awake, planned
    result(chat(8100, 60) == "200", "a chat to S answers")

    # Level 1: the memory back, a request meanwhile waits for the wake-up.
    slept = ocrtui(cfg, "sleep", "S")
    snap = status(cfg)
    s = model(snap, "S")
    measured["S asleep (1) MiB"] = asleep = held(snap, "S")
    measured["S given_back_mib (1)"] = s.get("given_back_mib")
    result(slept.returncode == 0 and s.get("sleep_level") == 1, "sleep S: level 1")
    result(asleep < awake / 4, f"asleep S holds {asleep} MiB of its {awake} awake")
    waiting: list[str] = []
    sender = threading.Thread(target=lambda: waiting.append(chat(8100, 120)), daemon=True)
    sender.start()
    sender.join(5)
    result(not waiting, "a chat sent to the sleeping S waits")
    woke = ocrtui(cfg, "wake", "S")
    sender.join(60)
    snap = status(cfg)
    measured["S woken MiB"] = back = held(snap, "S")
    result(woke.returncode == 0 and model(snap, "S").get("sleep_level") is None, "wake S")
    result(back >= awake * 0.95, f"woken S holds {back} MiB again")
    result(waiting == ["200"], f"the waiting chat answered after the wake-up: {waiting}")

    # Level 2: weights discarded, reloaded on the wake-up.
    slept = ocrtui(cfg, "sleep", "S", "--level", "2")
    snap = status(cfg)
    measured["S asleep (2) MiB"] = held(snap, "S")
    result(slept.returncode == 0 and model(snap, "S").get("sleep_level") == 2, "sleep S: level 2")
    woke = ocrtui(cfg, "wake", "S")
    result(woke.returncode == 0, "wake S from level 2 (weights reloaded)")
    result(chat(8100, 60) == "200", "a chat to S answers after the level-2 wake-up")

    # The wake-up's memory: the preflight keeps it; taken anyway, the wake-up fails.
    ocrtui(cfg, "sleep", "S")
    refused = ocrtui(cfg, "restart", "T")
    result(
        refused.returncode == 1 and "asleep there" in refused.stderr,
        "restart T refused: it fits only in the memory S takes back",
    )
    forced = ocrtui(cfg, "restart", "T", "--force")
    result(forced.returncode == 0, "restart T --force: ready")
    woke = ocrtui(cfg, "wake", "S")
    snap = status(cfg)
    result(
        woke.returncode == 1 and model(snap, "S").get("sleep_level") == 1,
        "wake S with its memory taken: exit 1, still asleep",
    )
    say(f"    wake S said: {woke.stderr.strip()[:400]}")


if __name__ == "__main__":
    sys.exit(main())
