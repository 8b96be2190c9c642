"""Request bodies against the makers' own: the GLM-OCR SDK's and the LightOnOCR card's."""

from __future__ import annotations

import base64
import json

import pytest

from ocrtui.compare.profiles import (
    TARGETS,
    chat_body,
    chat_payload,
    fit_max_tokens,
    prompt_for,
)
from ocrtui.compare.render import RenderedPage, RenderTarget
from ocrtui.config import ModelConfig
from ocrtui.errors import ConfigError
from ocrtui.published import PAGE_MARKDOWN_PROMPT, PROFILES
from tests.plugins.compare_inputs import model

PAGE = RenderedPage(data=b"\xff\xd8\xff page", mime="image/jpeg", width=10, height=20)
URL = "data:image/jpeg;base64," + base64.b64encode(PAGE.data).decode("ascii")
IMAGE_PART = {"type": "image_url", "image_url": {"url": URL}}


def sdk_region_request(prompt: str) -> dict[str, object]:
    """What glmocr 0.1.5 posts for one region: page_loader.py build_request_from_image with
    config.yaml's page_loader values, plus the ``model`` ocr_client.py adds (ocr_api.model)."""
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": URL}},
                    {"type": "text", "text": prompt},
                ],
            }
        ],
        "max_tokens": 8192,
        "temperature": 0.0,
        "top_p": 0.00001,
        "top_k": 1,
        "repetition_penalty": 1.1,
        "model": "glm-ocr",
    }


@pytest.mark.parametrize(
    ("prompt", "sent"),
    [
        (None, "Text Recognition:"),
        ("text", "Text Recognition:"),
        ("table", "Table Recognition:"),
        ("formula", "Formula Recognition:"),
    ],
)
def test_glm_ocr_body_is_the_sdks_region_request(prompt: str | None, sent: str) -> None:
    body = chat_payload(model("glm-ocr", "glm-ocr", prompt=prompt, stream=False), PAGE)
    assert body == sdk_region_request(sent)
    assert isinstance(body["top_k"], int) and isinstance(body["temperature"], float)


def test_lighton_body_is_the_cards() -> None:
    # Card: one user message with the image alone; max_tokens 4096, temperature 0.2, top_p 0.9.
    body = chat_payload(model("lighton-ocr", "lighton-ocr", stream=False), PAGE)
    assert body == {
        "model": "lighton-ocr",
        "messages": [{"role": "user", "content": [IMAGE_PART]}],
        "max_tokens": 4096,
        "temperature": 0.2,
        "top_p": 0.9,
    }


def test_generic_body_sends_the_prompt_and_no_sampling() -> None:
    body = chat_payload(model("other", "generic", max_tokens=1000, stream=False), PAGE)
    assert body == {
        "model": "other",
        "messages": [
            {
                "role": "user",
                "content": [IMAGE_PART, {"type": "text", "text": PAGE_MARKDOWN_PROMPT}],
            }
        ],
        "max_tokens": 1000,
    }


def test_streamed_body_adds_what_vllm_bench_serve_sends() -> None:
    cfg = model("lighton-ocr", "lighton-ocr")
    assert cfg.stream  # the default
    streamed = chat_payload(cfg, PAGE)
    whole = chat_payload(cfg.model_copy(update={"stream": False}), PAGE)
    assert streamed == {**whole, "stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    "cfg",
    [
        model("glm-ocr", "glm-ocr"),
        model("lighton-ocr", "lighton-ocr"),
        model("other", "generic", max_tokens=1000),
        model('é "quoted"', "generic", prompt='Lis ça: "tout" \\ \n {"url": "x"}'),
    ],
)
def test_posted_body_is_the_payload_as_httpx_json_encodes_it(cfg: ModelConfig) -> None:
    body = chat_body(cfg, PAGE)
    payload = chat_payload(cfg, PAGE)
    assert json.loads(body) == payload
    # byte for byte what httpx 0.28's json=payload posted before the body was prebuilt
    as_httpx = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert body == as_httpx.encode("utf-8")


def test_prompts_presets_and_free_text() -> None:
    assert prompt_for(model("g", "glm-ocr", prompt="markdown")) == PAGE_MARKDOWN_PROMPT
    assert prompt_for(model("g", "glm-ocr", prompt="Read it:")) == "Read it:"
    assert prompt_for(model("l", "lighton-ocr", prompt="table")) == "Table Recognition:"


def test_render_targets_come_from_the_published_table() -> None:
    assert TARGETS["glm-ocr"] == RenderTarget(dpi=200, max_side=3500)
    assert TARGETS["lighton-ocr"] == RenderTarget(longest_side=1540)
    assert TARGETS["generic"] == RenderTarget(dpi=200, max_side=2048)
    assert set(TARGETS) == set(PROFILES)


def test_every_published_value_has_a_source_and_date() -> None:
    for p in PROFILES.values():
        for value in (p.prompt, p.presets, p.parts, p.sampling, p.max_tokens, p.render, p.image):
            assert value.source.where and value.source.url and value.source.checked


def test_default_max_tokens_is_capped_to_the_servers_limit() -> None:
    glm = model("glm-ocr", "glm-ocr")
    fitted, note = fit_max_tokens(glm, 4096)
    assert fitted.effective_max_tokens() == 4096
    assert chat_payload(fitted, PAGE)["max_tokens"] == 4096
    assert note == (
        "glm-ocr: max_tokens capped from 8192 (the glm-ocr profile's default) to the "
        "server's max_model_len 4096"
    )
    assert fit_max_tokens(glm, 8192) == (glm, None)
    assert fit_max_tokens(glm, None) == (glm, None)


def test_configured_max_tokens_above_the_servers_limit_is_refused() -> None:
    lighton = model("lighton-ocr", "lighton-ocr", max_tokens=4096)
    with pytest.raises(ConfigError) as err:
        fit_max_tokens(lighton, 512)
    assert str(err.value) == (
        "lighton-ocr: max_tokens 4096 is more than the server's max_model_len 512 "
        "(/v1/models): vLLM would refuse every request; lower max_tokens or restart the "
        "server with a larger max_model_len"
    )
