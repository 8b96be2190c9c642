"""How closely the simulator's synthetic engine reproduces a timing model, and what it costs.

    PYTHONPATH=. .venv/bin/python bench/sim_timing.py [--engine synthetic|rapidocr|tesseract]

Starts one simulator (default: the synthetic engine at its defaults, 0.36 s prefill + 400
tokens x 2 ms = 1.16 s/page, the seed's warm GLM-OCR latency), then measures warm
single-request latency (p50 over N), throughput at concurrency 5, and the CPU the API server
and EngineCore used. With a real engine it measures CPU OCR speed instead.

Goals: warm p50 within 1.1x of the seed's 1.16 s; throughput at 5 >= 0.8x ideal batching.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jsonl
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
SEED_S = 1.16  # the seed's hand-measured warm GLM-OCR latency


def _page() -> str:
    img = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, 28)
    for i in range(30):
        draw.text(
            (80, 80 + 52 * i),
            f"第{i + 1}条 Line {i + 1}: rent 12,000.00 per month 甲方乙方",
            fill="black",
            font=font,
        )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--engine", default="synthetic")
    p.add_argument("--warm", type=int, default=10)
    p.add_argument("--throughput", type=int, default=20)
    ns = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fd, log_name = tempfile.mkstemp(prefix="sim_timing_", suffix=".log")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ocrtui",
            "sim-vllm",
            "serve",
            "zai-org/GLM-OCR",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            "m",
            "--max-num-seqs",
            "16",
            "--engine",
            ns.engine,
            "--sim-startup-s",
            "0",
        ],
        stdout=fd,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                print(Path(log_name).read_text()[-2000:])
                return 1
            time.sleep(0.05)
        ready_s = time.monotonic() - t0
        body = {
            "model": "m",
            "max_tokens": 4096,
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _page()}}]}
            ],
        }
        client = httpx.Client(timeout=600)

        def one() -> float:
            t = time.monotonic()
            r = client.post(f"{url}/v1/chat/completions", json=body)
            r.raise_for_status()
            return time.monotonic() - t

        cold = one()
        pids = [
            proc.pid,
            *[
                int(x)
                for x in subprocess.run(
                    ["pgrep", "-g", str(proc.pid)], capture_output=True, text=True
                ).stdout.split()
                if int(x) != proc.pid
            ],
        ]
        cpu0 = {pid: _cpu_s(pid) for pid in pids}
        warm = [one() for _ in range(ns.warm)]
        t = time.monotonic()
        with ThreadPoolExecutor(5) as pool:
            list(pool.map(lambda _: one(), range(ns.throughput)))
        wall = time.monotonic() - t
        cpu = {pid: _cpu_s(pid) - cpu0[pid] for pid in pids}
        extra = {"engine": ns.engine, "ready_s": round(ready_s, 3), "cold_s": round(cold, 3),
                 "cpu_s": {str(k): round(v, 2) for k, v in cpu.items()}}  # fmt: skip
        p50 = statistics.median(warm)
        if ns.engine == "synthetic":
            # the timing model's own figure: 0.36 s + 399 x 2 ms, the seed's 1.16 s/page
            jsonl.emit("sim_warm_p50", p50, SEED_S, 1.1, "s", False, **extra)
        else:
            jsonl.emit("sim_warm_p50", p50, None, 60, "s", False, goal_on="ours", **extra)
        # ideal batching: 5 concurrent requests finish in one request's time
        jsonl.emit("sim_throughput_c5", ns.throughput / wall, 5 / p50, 0.8, "images/s", True,
                   **extra)  # fmt: skip
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
