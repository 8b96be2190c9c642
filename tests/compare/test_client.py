"""The OCR request as posted: one encoding of the page, the same bytes on every attempt."""

from __future__ import annotations

import base64
import json

import pytest

from ocrtui.compare import client as client_mod
from ocrtui.compare.client import ModelTarget, ocr_page, open_session
from ocrtui.compare.profiles import chat_payload
from ocrtui.compare.render import RenderedPage
from tests.plugins.compare_inputs import model
from tests.plugins.scripted_http import Answer, Sent, scripted_http

OK = {"choices": [{"message": {"content": "text"}, "finish_reason": "stop"}], "usage": {}}
OK_STREAM = [
    b'data: {"choices":[{"index":0,"delta":{"content":"text"},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


def answer(sent: Sent) -> Answer:
    if json.loads(sent.body).get("stream"):
        return Answer.sse(OK_STREAM)
    return Answer.json(200, OK)


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

    def handle(sent: Sent, n: int) -> Answer:
        if (n + 1) % 3:  # two connections closed unanswered, then an answer
            return Answer.dropped()
        return answer(sent)

    cfg = model("lighton-ocr", "lighton-ocr", stream=stream)
    page = RenderedPage(data=b"\xff\xd8\xff" * 1000, mime="image/jpeg", width=10, height=20)
    async with scripted_http(handle) as server, open_session() as c:
        target = ModelTarget(cfg, server.url)
        for _ in range(2):
            out = await ocr_page(c, target, page, retries=2, timeout_s=5)
            assert out.ok and out.text == "text", out.error
    posted = server.requests
    assert len(posted) == 6
    assert encodes == 1
    bodies = {r.body for r in posted}
    assert len(bodies) == 1
    assert json.loads(bodies.pop()) == chat_payload(cfg, page)
    assert all(r.headers["content-type"] == "application/json" for r in posted)
    assert {(r.method, r.path) for r in posted} == {("POST", "/v1/chat/completions")}


async def test_a_page_over_the_encoder_cache_says_which_size_fits() -> None:
    """vLLM #34040 / GLM-OCR #157: a tall page's image tokens exceed the encoder cache."""
    refusal = (
        "The decoder prompt contains a(n) image item with length 6132, which exceeds the "
        "pre-allocated encoder cache size 6084."
    )

    def handle(sent: Sent, n: int) -> Answer:
        return Answer.json(400, {"error": {"message": refusal, "code": 400}})

    page = RenderedPage(data=b"\xff\xd8\xff", mime="image/jpeg", width=867, height=6771)
    async with scripted_http(handle) as server, open_session() as c:
        target = ModelTarget(model("glm-ocr", "glm-ocr"), server.url)
        out = await ocr_page(c, target, page, retries=0, timeout_s=5)
    assert not out.ok and out.error is not None
    assert out.error.startswith("HTTP 400: The decoder prompt contains")
    assert out.error.endswith(
        "| the page's image needs 6132 tokens, more than the server's encoder cache (6084; "
        "vLLM #34040). Fix: send the page with its longest side at most 6720 px (now 6771)"
    )
