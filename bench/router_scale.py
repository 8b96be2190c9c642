"""Throughput through ``vllm-router`` over 1, 2 and 4 simulated replicas, as ratios to N x one
replica's, measured in one run.

    PYTHONPATH=. .venv/bin/python bench/router_scale.py [--requests-per-slot 3]

Each replica is an ``ocrtui sim-vllm`` server (synthetic engine: 0.2 s prefill + 100 tokens
x 10 ms, about 1.2 s a page of sleeping, so the 2-core box's CPU is not what is measured)
with ``--max-num-seqs 4``; the router (``vllm-router``, round robin) sits in front of them as
ocrtui's generated ``<name>-router`` service does. Every figure goes through the router, one
replica included, with 4 requests in flight per replica. Goal: N replicas >= 0.9 x N x one.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress

import httpx
import jsonl
from PIL import Image
from servers import free_port, sim_server

SEQS = 4
FLAGS = ("--engine", "synthetic", "--max-num-seqs", str(SEQS), "--sim-prefill-s", "0.2",
         "--sim-per-token-s", "0.01", "--sim-tokens-per-page", "100")  # fmt: skip


def _image() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@contextmanager
def router(workers: list[str]) -> Iterator[str]:
    exe = shutil.which("vllm-router") or os.path.join(
        os.path.dirname(sys.executable), "vllm-router"
    )
    port = free_port()
    argv = [exe, "--host", "127.0.0.1", "--port", str(port), "--policy", "round_robin",
            "--prometheus-port", str(free_port()), "--worker-urls", *workers]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vllm-router did not start: {argv}")
            time.sleep(0.2)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def throughput(url: str, requests: int, concurrency: int) -> float:
    body = {
        "model": "glm",
        "max_tokens": 200,
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _image()}}]}
        ],
    }
    with httpx.Client(timeout=120) as client:

        def one(_: int) -> None:
            client.post(f"{url}/v1/chat/completions", json=body).raise_for_status()

        one(0)  # warm the path
        start = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(requests)))
        return requests / (time.monotonic() - start)


def measure(replicas: int, per_slot: int) -> float:
    with ExitStack() as stack:
        urls = [stack.enter_context(sim_server("glm", *FLAGS)) for _ in range(replicas)]
        front = stack.enter_context(router(urls))
        slots = SEQS * replicas
        return throughput(front, slots * per_slot, slots)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests-per-slot", type=int, default=3)
    args = ap.parse_args()
    one = measure(1, args.requests_per_slot)
    for n in (2, 4):
        ours = measure(n, args.requests_per_slot)
        jsonl.emit(
            f"router_throughput_{n}_replicas",
            ours,
            n * one,
            0.9,
            "pages/s",
            True,
            replicas=n,
            one_replica_pages_s=round(one, 3),
        )


if __name__ == "__main__":
    main()
