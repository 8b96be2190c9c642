"""One OCR request against vLLM's OpenAI-compatible chat endpoint.

Connection errors (refused, reset, closed mid-response) are retried with exponential
backoff; HTTP errors and timeouts are recorded with their reason and not retried (a 400
will not get better, and a timeout has already cost its full budget).
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
    """A model and the base URL it answers on (through the pod's port forward)."""

    config: ModelConfig
    url: str

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
            return Outcome(False, time.monotonic() - start, error=f"timeout after {timeout_s:g} s")
        except _CONNECTION_ERRORS as exc:
            last_error = f"connection error: {type(exc).__name__}: {exc}".rstrip(": ")
            continue
        latency = time.monotonic() - start
        if resp.status_code >= 400:
            return Outcome(False, latency, error=_error_message(resp))
        try:
            text, finish, pt, ct = _parse(resp.json())
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Outcome(False, latency, error="malformed response: " + resp.text[:200])
        return Outcome(True, latency, text, None, pt, ct, finish)
    tries = f" (after {retries + 1} attempts)" if retries else ""
    return Outcome(False, None, error=last_error + tries)
