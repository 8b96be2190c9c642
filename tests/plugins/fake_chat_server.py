"""A small loopback stand-in for vLLM's chat endpoint, run on its own thread.

``respond(payload, n)`` returns (status, body) for the n-th request (0-based); the default
answers every request with a fixed text. A request with ``"stream": true`` gets a 200
body as vLLM streams it (server-sent events: the text in one chunk with its finish reason,
the usage chunk, ``[DONE]``); an error status is a JSON body either way, as with vLLM.
Used until a test needs the real simulator.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Responder = Callable[[dict[str, Any], int], tuple[int, dict[str, Any]]]


def completion(text: str, finish_reason: str = "stop") -> tuple[int, dict[str, Any]]:
    return 200, {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text},
             "finish_reason": finish_reason}
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": len(text), "total_tokens": 0},
    }  # fmt: skip


def _sse(body: dict[str, Any]) -> str:
    choices = [
        {"index": 0, "delta": {"content": c["message"]["content"]},
         "finish_reason": c.get("finish_reason")}
        for c in body.get("choices", [])
    ]  # fmt: skip
    chunks = [{"choices": choices}, {"choices": [], "usage": body.get("usage")}]
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


@dataclass
class FakeVllm:
    respond: Responder
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    client_ports: list[int] = field(default_factory=list)  # one per request: reuse shows
    url: str = ""

    async def _chat(self, request: Request) -> Response:
        payload = await request.json()
        n = len(self.requests)
        self.requests.append(payload)
        self.headers.append(dict(request.headers))
        self.client_ports.append(request.client.port if request.client else 0)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status, body = self.respond(payload, n)
        if payload.get("stream") and status == 200:
            return Response(_sse(body), media_type="text/event-stream")
        return JSONResponse(body, status_code=status)

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200)


@contextmanager
def fake_vllm(respond: Responder | None = None, delay_s: float = 0.0) -> Iterator[FakeVllm]:
    fake = FakeVllm(respond or (lambda p, n: completion(f"page text {n}")), delay_s)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", fake._chat, methods=["POST"]),
            Route("/health", fake._health),
        ]
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake vLLM did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
