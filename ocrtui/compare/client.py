"""One OCR request against vLLM's OpenAI-compatible chat endpoint, streamed or not.

The transport is aiohttp, the client ``vllm bench serve`` itself uses: one
:func:`open_session` per comparison carries every request of its arms (pages, document-API
uploads, ``/metrics`` scrapes). httpx's connection pool walked every pooled connection on
each request's start and end and took about half the client's CPU at 32 concurrent pages,
competing with a CPU-bound server for the same cores (README, Performance).

A model's ``stream`` setting (config.py, default on) picks the request: streamed, the
answer arrives as server-sent events (``data: {chunk}`` lines, then ``data: [DONE]``) and
the outcome carries :class:`StreamTimings`, measured as ``vllm bench serve`` measures them
(vLLM's ``benchmarks/lib/endpoint_request_func.py``: every chunk with a choice is a token
arrival; the usage chunk is not); ``on_delta`` receives each piece of text as it arrives.
Either way the outcome's text, token counts and finish reason are the same.

Connection errors (refused, reset, closed mid-response) are retried with exponential
backoff; HTTP errors and timeouts are recorded with their reason and not retried (a 400
will not get better, and a timeout has already cost its full budget). ``timeout_s`` bounds
the whole request, the stream included. A streamed request that loses its connection after
its first token is a transient failure and is not retried: ``on_delta`` has already shown
its text. An error event in the stream (vLLM's ``data: {"error": ...}``, or the older flat
``{"object": "error", ...}``, once status 200 is sent) is an HTTP error with its code.

An outcome says what its failure means for the next request: ``transient`` (connection
error, timeout, 5xx: the server or the link may be going away; the runner asks its gate)
or ``fatal`` (an error every request of this model will get: a refused API key, a model
the server does not serve, a request the server's settings rule out; the runner stops the
model after the first).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from ocrtui.compare.profiles import chat_body, headers
from ocrtui.compare.render import RenderedPage
from ocrtui.config import ModelConfig
from ocrtui.vllm.hints import encoder_cache_hint

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
# Refused, reset or closed connections, a body cut before its end, an answer that is not
# HTTP (aiohttp raises ClientResponseError for it; raise_for_status is never used here).
_CONNECTION_ERRORS = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
)


def open_session() -> aiohttp.ClientSession:
    """The HTTP session of one comparison (on the running loop; the caller closes it).

    No limit on connections: the runner bounds the requests in flight, and a pool limit
    would queue requests inside the client, timed as the server's latency. No aiohttp
    timeout: ``ocr_page`` bounds each whole request, and each caller its own. No proxy or
    netrc from the environment, as for the project's other HTTP clients (vllm/client.py):
    the URLs are the pod's loopback forwards, and aiohttp would look both up in a thread
    on every request (a tenth of the client's CPU at 32 in flight).
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=None),
    )


@dataclass(frozen=True)
class ModelTarget:
    """A model and the base URL it answers on (through the pod's port forward), with its
    server's max_model_len as /v1/models reports it (None: not asked, or not answered).
    ``arm``: the arm's name when it is not the served model's (a serve sweep's flag set,
    compare/serve_sweep.py); requests always name the served model (``config.name``)."""

    config: ModelConfig
    url: str
    max_model_len: int | None = None
    arm: str | None = None

    @property
    def name(self) -> str:
        """The arm's name: results, events and phases are keyed by it."""
        return self.arm or self.config.name


@dataclass(frozen=True)
class StreamTimings:
    """A streamed request's timings in seconds, named as ``vllm bench serve`` names them.

    ``ttft``: request sent to the first chunk with a choice; ``itl``: the gaps between
    successive such chunks (one per token, or per several when the server bundles them, as
    with speculative decoding); ``e2el``: request sent to the last such chunk.
    """

    ttft: float
    itl: tuple[float, ...]
    e2el: float
    output_tokens: int | None  # the usage chunk's completion_tokens

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first; None for fewer than two tokens."""
        if self.output_tokens is None or self.output_tokens < 2:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)


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
    timings: StreamTimings | None = None  # a streamed request that got its first token


class _StreamError(Exception):
    """An error event inside a 200 stream: vLLM's status code and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


async def _error_message(resp: aiohttp.ClientResponse) -> str:
    raw = (await resp.read()).decode("utf-8", "replace")
    try:
        body = json.loads(raw)
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
        msg = raw.strip()[:300]
    return f"HTTP {resp.status}" + (f": {msg}" if msg else "")


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
    client: aiohttp.ClientSession,
    target: ModelTarget,
    page: RenderedPage,
    *,
    retries: int,
    timeout_s: float,
    on_delta: Callable[[str], None] | None = None,
) -> Outcome:
    """Send ``page`` to ``target``, streamed when its config says so (module docstring).

    ``on_delta`` is called on the event loop with each non-empty piece of text of a
    streamed answer, in order (their concatenation is the outcome's text); it must not
    block. A non-streamed answer is one piece.
    """
    body = chat_body(target.config, page)  # once: retries send the same bytes
    url = target.url.rstrip("/") + "/v1/chat/completions"
    hdrs = {**headers(target.config), "Content-Type": "application/json"}
    send = _streamed if target.config.stream else _whole
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                outcome = await send(client, url, body, hdrs, target, start, on_delta)
            # A page too large for the server's encoder cache: say what size would fit.
            if outcome.error and (
                hint := encoder_cache_hint(outcome.error, (page.width, page.height))
            ):
                outcome = replace(outcome, error=f"{outcome.error} | {hint}")
            return outcome
        except TimeoutError:
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
    tries = f" (after {retries + 1} attempts)" if retries else ""
    return Outcome(False, None, error=last_error + tries, transient=True)


def _http_error(target: ModelTarget, status: int, msg: str, latency: float) -> Outcome:
    return Outcome(
        False,
        latency,
        error=msg,
        transient=status >= 500,
        fatal=fatal_reason(target.config, status, msg),
    )


async def _whole(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    hdrs: dict[str, str],
    target: ModelTarget,
    start: float,
    on_delta: Callable[[str], None] | None,
) -> Outcome:
    async with client.post(url, data=body, headers=hdrs) as resp:
        if resp.status >= 400:
            msg = await _error_message(resp)
            return _http_error(target, resp.status, msg, time.monotonic() - start)
        raw = await resp.read()
    latency = time.monotonic() - start
    try:
        text, finish, pt, ct = _parse(json.loads(raw))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        shown = raw[:200].decode("utf-8", "replace")
        return Outcome(False, latency, error="malformed response: " + shown)
    if on_delta is not None and text:
        on_delta(text)
    return Outcome(True, latency, text, None, pt, ct, finish)


async def _lines(body: aiohttp.StreamReader) -> AsyncIterator[str]:
    """The body's lines as its bytes arrive, split at each line feed (a carriage return
    before it is left on: data lines are stripped). Split here rather than by aiohttp's
    readline, which waits once per line: 5.6 against 8.8 µs of CPU a token
    (bench/client_stream_cost.py)."""
    rest = b""
    async for piece in body.iter_any():
        *lines, rest = (rest + piece).split(b"\n")
        for line in lines:
            yield line.decode()
    if rest:
        yield rest.decode()


async def _streamed(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    hdrs: dict[str, str],
    target: ModelTarget,
    start: float,
    on_delta: Callable[[str], None] | None,
) -> Outcome:
    pieces: list[str] = []
    itl: list[float] = []
    first: float | None = None  # monotonic time of the first chunk with a choice
    last = start
    finish: str | None = None
    usage: dict[str, Any] = {}
    done = False
    line = ""
    async with client.post(url, data=body, headers=hdrs) as resp:
        if resp.status >= 400:
            msg = await _error_message(resp)
            return _http_error(target, resp.status, msg, time.monotonic() - start)
        try:
            async for line in _lines(resp.content):
                if not line.startswith("data:"):
                    continue  # blank separators, SSE comments (":ping"), other fields
                data = line[5:].strip()
                if data == "[DONE]":
                    # Read on to the body's end (vLLM ends it here): a response released
                    # unread is closed, and every page would pay a new connection.
                    done = True
                    continue
                chunk = json.loads(data)
                # {"error": {...}} in current vLLM; older ones put its fields at the top
                err = chunk.get("error", chunk)
                if "error" in chunk or chunk.get("object") == "error":
                    raise _StreamError(int(err.get("code") or 500), str(err.get("message")))
                now = time.monotonic()
                if choices := chunk.get("choices"):
                    if first is None:
                        first = now
                    else:
                        itl.append(now - last)
                    last = now
                    choice = choices[0]
                    if content := choice["delta"].get("content"):
                        pieces.append(content)
                        if on_delta is not None:
                            on_delta(content)
                    finish = choice.get("finish_reason") or finish
                if chunk.get("usage"):
                    usage = chunk["usage"]
        except _CONNECTION_ERRORS as exc:
            if first is None:
                raise  # nothing shown yet: retried like any connection error
            what = f"{type(exc).__name__}: {exc}".rstrip(": ")
            return Outcome(
                False,
                time.monotonic() - start,
                "".join(pieces),
                error=f"stream cut after {len(itl) + 1} chunks from {target.url}: {what}",
                transient=True,
            )
        except _StreamError as exc:
            msg = f"HTTP {exc.status}: {exc}"
            return _http_error(target, exc.status, msg, time.monotonic() - start)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Outcome(False, time.monotonic() - start, error="malformed stream: " + line[:200])
    latency = time.monotonic() - start
    if not done:
        # vLLM always ends with [DONE]: a body without it is not a whole answer (a closed
        # connection after some tokens, or a server that ignored "stream" and sent JSON).
        what = f"after {len(itl) + 1} chunks" if first is not None else "before any data event"
        return Outcome(
            False,
            latency,
            "".join(pieces),
            error=f"malformed stream: it ended {what} without data: [DONE]",
            transient=first is not None,
        )
    ct = usage.get("completion_tokens")
    timings = None
    if first is not None:
        timings = StreamTimings(first - start, tuple(itl), last - start, ct)
    pt = usage.get("prompt_tokens")
    return Outcome(True, latency, "".join(pieces), None, pt, ct, finish, timings=timings)
