"""Per-model request profiles: render size, prompt, sampling, headers.

Every value comes from the table in ``ocrtui/published.py`` (with its source); this module
only builds the request from it:

- ``glm-ocr``: the image part, then a text prompt (``Text Recognition:`` by default;
  ``text``, ``table``, ``formula`` name the card's prompts, ``markdown`` ocrtui's whole-page
  prompt, any other string is sent as written), then the SDK's sampling (temperature 0,
  top_p 1e-5, top_k 1, repetition_penalty 1.1) and max_tokens 8192: the body the glmocr
  0.1.5 SDK sends for one region, here for the whole page. 200 DPI capped at 3500 px.
- ``lighton-ocr``: the image alone (a text prompt makes LightOnOCR repeat it), temperature
  0.2, top_p 0.9, max_tokens 4096, longest side 1540 px (the model card's settings).
- ``generic``: image then ``prompt`` (default: the whole-page Markdown prompt), the
  server's sampling, 200 DPI capped at 2048 px.

``max_tokens`` is always sent: vLLM otherwise allows max_model_len minus the prompt, and a
looping model then runs for minutes. It must not exceed the server's max_model_len (vLLM
answers 400): the config refuses that at load when ``max_model_len`` is set, and
:func:`fit_max_tokens` checks it against ``/v1/models`` at run start.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ocrtui.compare.render import RenderedPage, RenderTarget
from ocrtui.config import ModelConfig
from ocrtui.errors import ConfigError
from ocrtui.published import PRESETS, PROFILES

TARGETS = {
    name: RenderTarget(
        dpi=p.render.value.dpi,
        max_side=p.render.value.max_side,
        longest_side=p.render.value.longest_side,
    )
    for name, p in PROFILES.items()
}


def render_target(model: ModelConfig) -> RenderTarget:
    """How the model's pages are rendered: its profile's, unless render_longest_side."""
    if model.render_longest_side is not None:
        return RenderTarget(longest_side=model.render_longest_side)
    return TARGETS[model.profile]


def prompt_for(model: ModelConfig) -> str | None:
    """The text part sent after the image, or None for image-only profiles."""
    raw = model.prompt if model.prompt is not None else PROFILES[model.profile].prompt.value
    if raw is None:
        return None
    return PRESETS.get(raw, raw)


def chat_payload(model: ModelConfig, page: RenderedPage) -> dict[str, Any]:
    return _payload(model, page.data_url)


def chat_body(model: ModelConfig, page: RenderedPage) -> bytes:
    """:func:`chat_payload` as the bytes httpx's ``json=`` sends, without JSON-escaping the
    image for every request: the rest of the body is encoded with a placeholder for the
    data URL (base64 and a MIME type need no escaping), which is spliced in."""
    before, after = _json(_payload(model, _IMAGE_SLOT)).split(f'"{_IMAGE_SLOT}"')
    url = page.data_url.encode("ascii")
    return b"".join((before.encode(), b'"', url, b'"', after.encode()))


# Random, so no prompt or model name can contain it: the split above finds it exactly once.
_IMAGE_SLOT = secrets.token_hex(16)


def _json(payload: dict[str, Any]) -> str:
    # httpx 0.28's json= encoding, so a body is the same whichever way it is sent
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _payload(model: ModelConfig, image_url: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_url}}]
    prompt = prompt_for(model)
    if prompt is not None:
        content.append({"type": "text", "text": prompt})
    return {
        "model": model.name,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": model.effective_max_tokens(),
        **PROFILES[model.profile].sampling.value,
        **(_STREAM if model.stream else {}),
    }


# What `vllm bench serve` sends: the last chunk then carries the usage (token counts).
_STREAM = {"stream": True, "stream_options": {"include_usage": True}}


def fit_max_tokens(
    model: ModelConfig, served_max_model_len: int | None
) -> tuple[ModelConfig, str | None]:
    """The model config to send with, given ``/v1/models``' ``max_model_len`` at run start,
    and a warning line when it was changed.

    Above the server's limit vLLM refuses every request (HTTP 400), so: a max_tokens set in
    the config is refused (ConfigError naming both values); the profile's default is capped
    to the limit (pages that need more end with ``length``).
    """
    tokens = model.effective_max_tokens()
    if served_max_model_len is None or tokens <= served_max_model_len:
        return model, None
    if model.max_tokens is not None:
        raise ConfigError(
            f"{model.name}: max_tokens {tokens} is more than the server's max_model_len "
            f"{served_max_model_len} (/v1/models): vLLM would refuse every request; lower "
            "max_tokens or restart the server with a larger max_model_len"
        )
    note = (
        f"{model.name}: max_tokens capped from {tokens} (the {model.profile} profile's "
        f"default) to the server's max_model_len {served_max_model_len}"
    )
    return model.model_copy(update={"max_tokens": served_max_model_len}), note


def headers(model: ModelConfig) -> dict[str, str]:
    key = model.api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}
