"""CPU cost per streamed token of ``ocr_page``'s stream reading, and what it keeps per token.

    .venv/bin/python bench/client_stream_cost.py [--tokens 4096] [--repeats 5]

One page's answer as vLLM 0.32 streams it (one chunk per token, each chunk vLLM's own JSON
shape, then the usage chunk and ``[DONE]``) is served by client_ceiling.py's zero-time
endpoint in its own process, so the CPU timed (this process's) is the client's reading
through its real transport, with an ``on_delta`` that appends each piece as the panes do.
Figures:

- client_stream_us_per_token: µs of CPU per token, ours vs a baseline loop that only
  splits the same body into lines and ``json.loads`` each (the irreducible parse)
  [ratio <= 2];
- client_stream_kept_bytes_per_token: memory the page's outcome keeps (``tracemalloc``,
  after the read) per token, against its text's own size per token [ours <= 64: the
  text, and one float a gap in ``StreamTimings.itl``].
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import jsonl
from client_ceiling import target, zero_time_server

from ocrtui.compare.client import Outcome, ocr_page, open_session
from ocrtui.compare.render import RenderedPage

PAGE = RenderedPage(data=b"\xff\xd8\xff", mime="image/jpeg", width=1, height=1)


def stream_body(tokens: int) -> bytes:
    head = {"id": "chatcmpl-a99a02ee18142017", "object": "chat.completion.chunk",
            "created": 1796150985, "model": "lighton-ocr"}  # fmt: skip

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish,
                  "token_ids": None}  # fmt: skip
        return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": f" w{i % 97}"}) for i in range(tokens - 1)]
    parts.append(chunk({"content": " end"}, "length"))
    usage = {"prompt_tokens": 1000, "total_tokens": 1000 + tokens, "completion_tokens": tokens}
    parts.append(f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n")
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


async def read_page(url: str) -> Outcome:
    shown: list[str] = []
    async with open_session() as c:
        out = await ocr_page(c, target(url), PAGE, retries=0, timeout_s=60,
                             on_delta=shown.append)  # fmt: skip
    assert out.ok and out.timings is not None and "".join(shown) == out.text, out.error
    return out


def parse_only(body: bytes) -> int:
    n = 0
    for line in body.decode().split("\n"):
        if line.startswith("data: {"):
            json.loads(line[6:])
            n += 1
    return n


def cpu_us(fn: object, tokens: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t = time.process_time()
        fn()  # type: ignore[operator]
        runs.append((time.process_time() - t) / tokens * 1e6)
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    body = stream_body(args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        answer = Path(tmp) / "answer.sse"
        answer.write_bytes(body)
        with zero_time_server(answer) as url:
            asyncio.run(read_page(url))  # warm-up: imports, the first client
            ours = cpu_us(lambda: asyncio.run(read_page(url)), args.tokens, args.repeats)
            base = cpu_us(lambda: parse_only(body), args.tokens, args.repeats)
            jsonl.emit("client_stream_us_per_token", ours, base, 2.0, "µs CPU/token", False,
                       tokens=args.tokens, load_avg=round(os.getloadavg()[0], 2))  # fmt: skip
            tracemalloc.start()
            before, _ = tracemalloc.get_traced_memory()
            out = asyncio.run(read_page(url))
            kept, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    jsonl.emit("client_stream_kept_bytes_per_token", (kept - before) / args.tokens,
               sys.getsizeof(out.text) / args.tokens, 64.0, "bytes/token kept", False,
               goal_on="ours", tokens=args.tokens)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
