"""Per-model request profiles: render size, prompt, sampling, headers.

- ``glm-ocr``: image part then a text prompt (``Text Recognition:`` by default; the SDK's
  whole-page Markdown prompt with ``prompt = "markdown"``), pages at 200 DPI capped at
  3500 px (the GLM-OCR SDK's rendering).
- ``lighton-ocr``: the image alone (a text prompt makes LightOnOCR repeat it), temperature
  0.2, top_p 0.9, longest side 1540 px (the model card's settings).
- ``generic``: image then ``prompt`` (default: the page Markdown prompt), 200 DPI capped at
  2048 px.

``max_tokens`` is always sent: vLLM otherwise allows max_model_len minus the prompt, and a
looping model then runs for minutes.
"""

from __future__ import annotations

import base64
from typing import Any

from ocrtui.compare.render import RenderedPage, RenderTarget
from ocrtui.config import ModelConfig

GLM_TEXT_PROMPT = "Text Recognition:"
PAGE_MARKDOWN_PROMPT = (
    "Recognize the text in the image and output in Markdown format. Preserve the original "
    "layout (headings/paragraphs/tables/formulas). Do not fabricate content that does not "
    "exist in the image."
)
# Named prompts selectable with ModelConfig.prompt; any other value is sent as written.
PROMPT_PRESETS = {
    "text": GLM_TEXT_PROMPT,
    "table": "Table Recognition:",
    "formula": "Formula Recognition:",
    "markdown": PAGE_MARKDOWN_PROMPT,
}

TARGETS = {
    "glm-ocr": RenderTarget(dpi=200, max_side=3500),
    "lighton-ocr": RenderTarget(longest_side=1540),
    "generic": RenderTarget(dpi=200, max_side=2048),
}


def render_target(model: ModelConfig) -> RenderTarget:
    return TARGETS[model.profile]


def prompt_for(model: ModelConfig) -> str | None:
    """The text part sent after the image, or None for image-only profiles."""
    if model.profile == "lighton-ocr" and model.prompt is None:
        return None
    default = GLM_TEXT_PROMPT if model.profile == "glm-ocr" else PAGE_MARKDOWN_PROMPT
    raw = model.prompt if model.prompt is not None else default
    return PROMPT_PRESETS.get(raw, raw)


def chat_payload(model: ModelConfig, page: RenderedPage) -> dict[str, Any]:
    url = f"data:{page.mime};base64,{base64.b64encode(page.data).decode('ascii')}"
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}}]
    prompt = prompt_for(model)
    if prompt is not None:
        content.append({"type": "text", "text": prompt})
    payload: dict[str, Any] = {
        "model": model.name,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": model.max_tokens,
    }
    if model.profile == "lighton-ocr":
        payload["temperature"] = 0.2
        payload["top_p"] = 0.9
    elif model.profile == "glm-ocr":
        # Near-greedy for a comparison; the SDK's 0.8 adds run-to-run noise to the CER.
        payload["temperature"] = 0.01
    return payload


def headers(model: ModelConfig) -> dict[str, str]:
    key = model.api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}
