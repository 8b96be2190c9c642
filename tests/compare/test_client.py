"""The OCR request as posted: one encoding of the page, the same bytes on every attempt."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from ocrtui.compare import client as client_mod
from ocrtui.compare.client import ModelTarget, ocr_page
from ocrtui.compare.profiles import chat_payload
from ocrtui.compare.render import RenderedPage
from tests.plugins.compare_inputs import model

OK = {"choices": [{"message": {"content": "text"}, "finish_reason": "stop"}], "usage": {}}
OK_STREAM = (
    'data: {"choices":[{"index":0,"delta":{"content":"text"},"finish_reason":"stop"}]}\n\n'
    "data: [DONE]\n\n"
)


def answer(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        return httpx.Response(200, text=OK_STREAM, headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json=OK)


@pytest.mark.parametrize("stream", [True, False])
async def test_page_is_encoded_once_and_retries_post_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setattr(client_mod, "BACKOFF_BASE_S", 0.0)
    encodes = 0
    real_b64 = base64.b64encode

    def counting_b64(data: bytes) -> bytes:
        nonlocal encodes
        encodes += 1
        return real_b64(data)

    monkeypatch.setattr(base64, "b64encode", counting_b64)
    posted: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        if len(posted) % 3:  # two connection errors, then an answer
            raise httpx.ConnectError("refused", request=request)
        return answer(request)

    cfg = model("lighton-ocr", "lighton-ocr", stream=stream)
    target = ModelTarget(cfg, "http://pod")
    page = RenderedPage(data=b"\xff\xd8\xff" * 1000, mime="image/jpeg", width=10, height=20)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as c:
        for _ in range(2):
            out = await ocr_page(c, target, page, retries=2, timeout_s=5)
            assert out.ok and out.text == "text"
    assert len(posted) == 6
    assert encodes == 1
    bodies = {r.content for r in posted}
    assert len(bodies) == 1
    assert json.loads(bodies.pop()) == chat_payload(cfg, page)
    assert all(r.headers["content-type"] == "application/json" for r in posted)
