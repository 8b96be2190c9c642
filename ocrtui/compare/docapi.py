"""Comparison arms that are HTTP document APIs (``[[api_arms]]``), not vLLM chat endpoints.

The handoff note compares the models through two such servers on the pod::

    curl -X POST http://POD:8007/api/ocr/document -F file=@doc.pdf -F pages=1-3
    curl -X POST http://POD:8006/api/parse        -F file=@doc.pdf -F pages=1-3

One request is a multipart POST of the whole document to ``url + path``: the file under
``file_field`` (with its name and content type), every ``form`` field, and the page spec
under ``pages_field`` (``1-3,7``; no field when ``pages_field`` is unset). ``split =
"document"`` asks for all pages at once; ``split = "page"`` sends one request per page
(``pages=N``), one after the other, which gives per-page latencies. To send one page
alone (a rendered image, a one-page PDF), pass its bytes with ``pages=[p]`` and an arm
without ``pages_field``: the single text belongs to page ``p``.

The response must be JSON. ``text_path`` (ocrtui/jsonpath.py) says where the texts are,
e.g. ``pages[*].text`` or ``results[].markdown``. Without ``page_path`` the texts belong to
the requested pages in order; with it (e.g. ``pages[*].page``: 1-based page numbers, ints or
digit strings) each text belongs to the page it names.

Every failure is a per-page :class:`PageError` with a one-line reason, never an exception:
a non-2xx status (with the start of the body), a body that is not JSON, no value at the path,
a page the response does not cover, a text that is not a string, a timeout, no connection.
Latency: a request's time divided evenly among the pages it carried (``request_s`` is the
whole).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ocrtui.config import ApiArmConfig, Config
from ocrtui.jsonpath import PathMissing, compile_path
from ocrtui.pod.base import Pod

BODY_SNIPPET = 200


@dataclass(frozen=True)
class DocApiTarget:
    """An API arm and the base URL it answers on (the pod's forward, or its own url)."""

    config: ApiArmConfig
    url: str

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class PageText:
    page: int
    text: str
    latency_s: float  # this page's share of the request
    request_s: float  # the whole request that carried it


@dataclass(frozen=True)
class PageError:
    page: int
    reason: str
    latency_s: float | None = None


PageResult = PageText | PageError


async def arm_url(arm: ApiArmConfig, config: Config, pod: Pod) -> str:
    """The base URL of an arm: its ``url`` as is, else its port through the pod's forward."""
    if arm.url is not None:
        return arm.url.rstrip("/")
    port = arm.port if arm.port is not None else config.service(str(arm.service)).port
    return await pod.forward(port)


def page_spec_text(pages: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"`` (the note's ``pages=1-3``), in the order given."""
    parts: list[str] = []
    start = prev = None
    for p in pages:
        if prev is not None and p == prev + 1:
            prev = p
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = p
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def map_response(
    arm: ApiArmConfig, body: Any, pages: Sequence[int], request_s: float
) -> list[PageResult]:
    """The texts in a parsed JSON body, one result per requested page."""
    share = request_s / len(pages)
    try:
        texts = compile_path(arm.text_path).extract(body)
        numbers = compile_path(arm.page_path).extract(body) if arm.page_path else None
    except PathMissing as exc:
        where = arm.text_path if arm.page_path is None else f"{arm.text_path} / {arm.page_path}"
        return [PageError(p, f"response has nothing at {where}: {exc}", share) for p in pages]
    by_page: dict[int, Any] = {}
    if numbers is None:
        by_page = dict(zip(pages, texts, strict=False))
    elif len(numbers) != len(texts):
        reason = f"{len(texts)} texts but {len(numbers)} page numbers in the response"
        return [PageError(p, reason, share) for p in pages]
    else:
        for number, text in zip(numbers, texts, strict=True):
            if isinstance(number, str) and number.strip().isdigit():
                number = int(number)
            if isinstance(number, int) and not isinstance(number, bool):
                by_page[number] = text
    out: list[PageResult] = []
    for p in pages:
        if p not in by_page:
            out.append(
                PageError(
                    p,
                    f"no text for page {p} in the response ({len(texts)} "
                    f"text{'s' if len(texts) != 1 else ''} for {len(pages)} "
                    f"page{'s' if len(pages) != 1 else ''})",
                    share,
                )
            )
        elif not isinstance(by_page[p], str):
            kind = "null" if by_page[p] is None else type(by_page[p]).__name__
            out.append(
                PageError(p, f"text of page {p} at {arm.text_path} is {kind}, not a string", share)
            )
        else:
            out.append(PageText(p, by_page[p], share, request_s))
    return out


def _snippet(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text[:BODY_SNIPPET] + ("..." if len(text) > BODY_SNIPPET else "")


async def _request(
    target: DocApiTarget,
    client: aiohttp.ClientSession,
    data: bytes,
    filename: str,
    pages: Sequence[int],
) -> list[PageResult]:
    arm = target.config
    form = dict(arm.form)
    if arm.pages_field is not None:
        form[arm.pages_field] = page_spec_text(pages)
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    url = target.url.rstrip("/") + arm.path
    # 8-bit file names as they are (a contract named in Chinese), not percent-encoded
    body = aiohttp.FormData(form, quote_fields=False)
    body.add_field(arm.file_field, data, filename=filename, content_type=content_type)
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(arm.timeout_s):
            async with client.post(url, data=body) as resp:
                status, raw = resp.status, await resp.read()
    except TimeoutError:
        reason = f"timed out after {arm.timeout_s:g} s"
        return [PageError(p, reason, time.monotonic() - t0) for p in pages]
    except aiohttp.ClientError as exc:
        reason = f"cannot reach {url}: {type(exc).__name__} {exc}".rstrip()
        return [PageError(p, reason) for p in pages]
    request_s = time.monotonic() - t0
    share = request_s / len(pages)
    if not 200 <= status < 300:
        reason = f"HTTP {status}: {_snippet(raw)}"
        return [PageError(p, reason, share) for p in pages]
    try:
        answer = json.loads(raw)
    except ValueError:
        reason = f"response is not JSON: {_snippet(raw)!r}"
        return [PageError(p, reason, share) for p in pages]
    return map_response(arm, answer, pages, request_s)


async def ocr_document_pages(
    target: DocApiTarget,
    client: aiohttp.ClientSession,
    document: Path | bytes,
    pages: Sequence[int],
    *,
    filename: str | None = None,
) -> list[PageResult]:
    """OCR ``pages`` (1-based) of a document through the API; one result per page, in order.

    ``document`` is a file (read off the event loop) or its bytes; ``filename`` (default: the
    file's name, else ``document.pdf``) is what the API is told, and gives the content type.
    """
    if not pages:
        return []
    if isinstance(document, Path):
        data = await asyncio.to_thread(document.read_bytes)
        filename = filename or document.name
    else:
        data = document
    filename = filename or "document.pdf"
    if target.config.split == "document":
        return await _request(target, client, data, filename, pages)
    out: list[PageResult] = []
    for p in pages:
        out.extend(await _request(target, client, data, filename, [p]))
    return out
