"""Requests/s the comparison's client sustains against a zero-time engine, vs a plain client.

    .venv/bin/python bench/client_ceiling.py [--requests 400] [--concurrency 5 16 32]

The server is a minimal starlette/uvicorn endpoint in its own process (reads the whole
body, answers a fixed one-token streamed completion at once): the simulator's API server
does real work per image (decoding the data URL, engine IPC), so it would measure itself,
not the client. The payload is a real page rendered for LightOnOCR (1540 px longest side, JPEG)
through ocrtui's renderer. Figures, per concurrency:

- client_ceiling_cN: requests/s of ``ocr_page`` (its body built per request from the page,
  whose base64 is encoded once, as the runner does) driven like the runner's throughput
  phase (a semaphore of N, one task per request, one shared ``open_session()``)
  [ours >= 100/s]; baseline a plain asyncio+aiohttp client (N workers, each posting the
  same prebuilt body and reading each answer whole: the transport's own floor), same
  server, same run, in ABAB order. When the goal is missed, the line carries the top
  entries of a cProfile of our client (``profile``);
- client_cpu_per_request_cN: the client process's CPU ms per request, ours vs the plain
  client [ours <= 10 ms, i.e. 100/s on one core whatever the server costs].
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
import jsonl
from compare_render import make_pdf

from ocrtui.compare.client import ModelTarget, ocr_page, open_session
from ocrtui.compare.profiles import TARGETS, chat_body
from ocrtui.compare.render import RenderedPage, render_page_sync
from ocrtui.config import parse_config

SERVER = """
import json, socket, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

# The streamed answer (the request streams, the models' default): one token, the usage;
# or the file named by argv[1] (bench/client_stream_cost.py's long answer).
CHUNKS = [{"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]},
          {"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 1}}]
BODY = ("".join(f"data: {json.dumps(c)}\\n\\n" for c in CHUNKS) + "data: [DONE]\\n\\n").encode()
if len(sys.argv) > 1:
    BODY = open(sys.argv[1], "rb").read()

async def chat(request):
    await request.body()
    return Response(BODY, media_type="text/event-stream")

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
"""


@contextmanager
def zero_time_server(body: Path | None = None) -> Iterator[str]:
    """The zero-time endpoint in its own process (answering ``body``'s bytes when given);
    its base URL."""
    argv = [sys.executable, "-c", SERVER, *([str(body)] if body else [])]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.post(url + "/v1/chat/completions", content=b"{}")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        server.kill()
        server.wait()


def page() -> RenderedPage:
    with tempfile.TemporaryDirectory() as tmp:
        pdf = Path(tmp) / "page.pdf"
        make_pdf(pdf, 1)
        return render_page_sync(str(pdf), "pdf", None, 1, TARGETS["lighton-ocr"], "jpeg")


def target(url: str) -> ModelTarget:
    cfg = parse_config(
        {
            "pod": {"kind": "local", "name": "bench"},
            "models": [{"name": "lighton-ocr", "model": "org/lighton", "port": 8000,
                        "profile": "lighton-ocr", "gpu_memory_utilization": 0.5}],
        },
        "bench",
    )  # fmt: skip
    return ModelTarget(cfg.models[0], url)


async def ours(url: str, img: RenderedPage, n: int, concurrency: int) -> float:
    tgt = target(url)
    sem = asyncio.Semaphore(concurrency)
    async with open_session() as c:

        async def one() -> None:
            async with sem:
                out = await ocr_page(c, tgt, img, retries=2, timeout_s=60)
            assert out.ok, out.error

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(one())
        return n / (time.perf_counter() - start)


async def plain(url: str, img: RenderedPage, n: int, concurrency: int) -> float:
    body = chat_body(target(url).config, img)
    endpoint = url + "/v1/chat/completions"
    hdrs = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as c:

        async def worker(count: int) -> None:
            for _ in range(count):
                async with c.post(endpoint, data=body, headers=hdrs) as r:
                    r.raise_for_status()
                    await r.read()

        start = time.perf_counter()
        share = [n // concurrency + (i < n % concurrency) for i in range(concurrency)]
        await asyncio.gather(*(worker(k) for k in share))
        return n / (time.perf_counter() - start)


def profile_top(url: str, img: RenderedPage, n: int, concurrency: int) -> list[str]:
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(ours(url, img, n, concurrency))
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).sort_stats("tottime")
    rows = []
    for (file, line, fn), (_, _, tt, ct, _) in list(stats.stats.items()):  # type: ignore[attr-defined]
        rows.append((tt, f"{Path(file).name}:{line}({fn}) tottime {tt:.3f}s cum {ct:.3f}s"))
    return [r for _, r in sorted(rows, reverse=True)[:8]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[5, 16, 32])
    args = ap.parse_args()
    img = page()
    with zero_time_server() as url:
        for conc in args.concurrency:
            asyncio.run(ours(url, img, 20, conc))  # warm-up: connections, imports
            # ABAB, half the requests each, so drift on the shared box hits both alike
            half = args.requests // 2
            wall = {"plain": 0.0, "ours": 0.0}
            cpu = {"plain": 0.0, "ours": 0.0}
            for _ in range(2):
                for name, run in (("plain", plain), ("ours", ours)):
                    c0 = time.process_time()
                    wall[name] += half / asyncio.run(run(url, img, half, conc))
                    cpu[name] += time.process_time() - c0
            base, mine = 2 * half / wall["plain"], 2 * half / wall["ours"]
            cpu_base, cpu_ours = (cpu[k] * 1000 / (2 * half) for k in ("plain", "ours"))
            extra: dict[str, object] = {
                "concurrency": conc,
                "payload_kib": len(img.data) // 1024,
                "image": f"{img.width}x{img.height} {img.mime}",
                "load_avg": round(os.getloadavg()[0], 2),
            }
            if mine < 100:
                extra["profile"] = profile_top(url, img, args.requests // 4, conc)
            jsonl.emit(f"client_ceiling_c{conc}", mine, base, 100, "requests/s", True,
                       goal_on="ours", **extra)  # fmt: skip
            # The server shares the cores: the client's own CPU per request says what it
            # alone would sustain on one core (10 ms = 100/s).
            jsonl.emit(f"client_cpu_per_request_c{conc}", cpu_ours, cpu_base, 10.0, "ms CPU",
                       False, goal_on="ours", concurrency=conc)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
