"""One OCR request against vLLM's OpenAI-compatible chat endpoint.

Connection errors (refused, reset, closed mid-response) are retried with exponential
backoff; HTTP errors and timeouts are recorded with their reason and not retried (a 400
will not get better, and a timeout has already cost its full budget).

An outcome says what its failure means for the next request: ``transient`` (connection
error, timeout, 5xx: the server or the link may be going away; the runner asks its gate)
or ``fatal`` (an error every request of this model will get: a refused API key, a model
the server does not serve, a request the server's settings rule out; the runner stops the
model after the first).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ocrtui.compare.profiles import chat_body, headers
from ocrtui.compare.render import RenderedPage
from ocrtui.config import ModelConfig
from ocrtui.vllm.hints import encoder_cache_hint

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
_CONNECTION_ERRORS = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class ModelTarget:
    """A model and the base URL it answers on (through the pod's port forward), with its
    server's max_model_len as /v1/models reports it (None: not asked, or not answered)."""

    config: ModelConfig
    url: str
    max_model_len: int | None = None

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Outcome:
    ok: bool
    latency_s: float | None
    text: str = ""
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    transient: bool = False  # may succeed once the server or the link is back
    fatal: str | None = None  # every request of this model will fail so: why, in one line


# 400 messages of vLLM that depend on the server's settings or model, not on the page.
_MODEL_WIDE_400 = (
    "cannot be greater than max_model_len",
    "is not a multimodal model",
    "At most 0 image",
)


def fatal_reason(config: ModelConfig, status: int, message: str) -> str | None:
    """Why every request of this model would fail like this one, or None."""
    if status in (401, 403):
        env = config.api_key_env
        if env is None:
            fix = "the server wants an API key: set api_key_env to the variable holding it"
        elif not config.api_key():
            fix = f"api_key_env = {env!r}, but ${env} is not set"
        else:
            fix = f"the server refused the key in ${env} (api_key_env)"
        return f"{message}; {fix}"
    if status == 404 or (status == 400 and any(m in message for m in _MODEL_WIDE_400)):
        return message
    return None


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    msg = ""
    if isinstance(body, dict):
        err = body.get("error", body.get("message"))
        if isinstance(err, dict):
            msg = str(err.get("message") or "")
        elif err is not None:
            msg = str(err)
    if not msg:
        msg = resp.text.strip()[:300]
    return f"HTTP {resp.status_code}" + (f": {msg}" if msg else "")


def _parse(body: Any) -> tuple[str, str | None, int | None, int | None]:
    choice = body["choices"][0]
    text = choice["message"].get("content") or ""
    usage = body.get("usage") or {}
    return (
        text,
        choice.get("finish_reason"),
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
    )


async def ocr_page(
    client: httpx.AsyncClient,
    target: ModelTarget,
    page: RenderedPage,
    *,
    retries: int,
    timeout_s: float,
) -> Outcome:
    body = chat_body(target.config, page)  # once: retries send the same bytes
    url = target.url.rstrip("/") + "/v1/chat/completions"
    hdrs = {**headers(target.config), "Content-Type": "application/json"}
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))
        start = time.monotonic()
        try:
            resp = await client.post(url, content=body, headers=hdrs, timeout=timeout_s)
        except httpx.TimeoutException:
            return Outcome(
                False,
                time.monotonic() - start,
                error=f"timeout after {timeout_s:g} s",
                transient=True,
            )
        except _CONNECTION_ERRORS as exc:
            # The URL names the link: a pod's forward (127.0.0.1:PORT) or the server itself.
            what = f"{type(exc).__name__}: {exc}".rstrip(": ")
            last_error = f"connection error to {target.url}: {what}"
            continue
        latency = time.monotonic() - start
        if resp.status_code >= 400:
            msg = _error_message(resp)
            # A page too large for the server's encoder cache: say what size would fit.
            if hint := encoder_cache_hint(msg, (page.width, page.height)):
                msg = f"{msg} | {hint}"
            return Outcome(
                False,
                latency,
                error=msg,
                transient=resp.status_code >= 500,
                fatal=fatal_reason(target.config, resp.status_code, msg),
            )
        try:
            text, finish, pt, ct = _parse(resp.json())
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Outcome(False, latency, error="malformed response: " + resp.text[:200])
        return Outcome(True, latency, text, None, pt, ct, finish)
    tries = f" (after {retries + 1} attempts)" if retries else ""
    return Outcome(False, None, error=last_error + tries, transient=True)
