"""Document-API arms against a real HTTP server (starlette + uvicorn on 127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ocrtui.compare.client import open_session
from ocrtui.compare.docapi import (
    DocApiTarget,
    PageError,
    PageText,
    arm_url,
    map_response,
    ocr_document_pages,
    page_spec_text,
)
from ocrtui.config import ApiArmConfig, parse_config
from ocrtui.pod.local import LocalPod

pytestmark = pytest.mark.timeout(30)

DOC = b"%PDF-1.4 fake document bytes"


def _pages(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


class Api:
    """The note's two APIs, plus misbehaving endpoints; records what each request sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()  # the slow endpoint answers only once set

    async def _form(self, request: Request) -> tuple[dict[str, Any], list[int]]:
        form = await request.form()
        upload = form["file"]
        assert not isinstance(upload, str)
        sent = {
            "fields": {k: v for k, v in form.items() if isinstance(v, str)},
            "filename": upload.filename,
            "content_type": upload.content_type,
            "data": await upload.read(),
        }
        self.requests.append(sent)
        return sent, _pages(str(form.get("pages", "1")))

    async def document(self, request: Request) -> Response:
        sent, pages = await self._form(request)
        extra = ",".join(f"{k}={v}" for k, v in sorted(sent["fields"].items()) if k != "pages")
        return JSONResponse(
            {
                "pages": [
                    {"page": p, "text": f"page {p} of {sent['filename']} {extra}"} for p in pages
                ]
            }
        )

    async def parse(self, request: Request) -> Response:
        _, pages = await self._form(request)
        # Answers in reverse order, page numbers as strings: page_path puts them right.
        return JSONResponse(
            {"results": [{"page": str(p), "markdown": f"# {p}"} for p in pages[::-1]]}
        )

    async def slow(self, request: Request) -> Response:
        await self._form(request)
        await self.release.wait()
        return JSONResponse({"pages": []})

    async def fail(self, request: Request) -> Response:
        await self._form(request)
        return PlainTextResponse("Internal Server Error: vLLM at :8000 refused\n", status_code=500)

    async def malformed(self, request: Request) -> Response:
        await self._form(request)
        return PlainTextResponse("<html>not json</html>")

    async def partial(self, request: Request) -> Response:
        _, pages = await self._form(request)
        return JSONResponse({"pages": [{"text": "only the first"}, {"text": None}][: len(pages)]})

    def app(self) -> Starlette:
        routes = [
            Route("/api/ocr/document", self.document, methods=["POST"]),
            Route("/api/parse", self.parse, methods=["POST"]),
            Route("/slow", self.slow, methods=["POST"]),
            Route("/fail", self.fail, methods=["POST"]),
            Route("/malformed", self.malformed, methods=["POST"]),
            Route("/partial", self.partial, methods=["POST"]),
        ]
        return Starlette(routes=routes)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Api, str]]:
    state = Api()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(state.app(), log_level="error", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = asyncio.get_running_loop().time() + 10
    while not server.started:  # uvicorn offers no event for it
        assert asyncio.get_running_loop().time() < deadline, "test API did not start"
        await asyncio.sleep(0.01)
    try:
        yield state, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        state.release.set()
        server.should_exit = True
        await task
        sock.close()


def arm(**keys: Any) -> ApiArmConfig:
    fields: dict[str, Any] = {
        "name": "glm-ocr-api",
        "url": "http://placeholder",
        "path": "/api/ocr/document",
        "text_path": "pages[*].text",
        **keys,
    }
    return ApiArmConfig(**fields)


async def run(base: str, document: Path | bytes = DOC, pages: list[int] = [1, 2, 3], **keys: Any):  # noqa: B006
    async with open_session() as client:
        return await ocr_document_pages(DocApiTarget(arm(**keys), base), client, document, pages)


async def test_whole_document_request_like_the_note(api: tuple[Api, str], tmp_path: Path) -> None:
    state, base = api
    doc = tmp_path / "租赁备案.pdf"
    doc.write_bytes(DOC)
    results = await run(base, doc, [1, 2, 3], form={"lang": "zh"})
    assert [type(r) for r in results] == [PageText] * 3
    assert [r.text for r in results if isinstance(r, PageText)] == [
        f"page {p} of 租赁备案.pdf lang=zh" for p in (1, 2, 3)
    ]
    (sent,) = state.requests
    assert sent["fields"] == {"lang": "zh", "pages": "1-3"}
    assert (sent["filename"], sent["content_type"], sent["data"]) == (
        "租赁备案.pdf",
        "application/pdf",
        DOC,
    )
    first = results[0]
    assert isinstance(first, PageText) and first.latency_s * 3 == pytest.approx(first.request_s)


async def test_one_request_per_page(api: tuple[Api, str]) -> None:
    state, base = api
    results = await run(base, DOC, [2, 5], split="page")
    assert [(r.page, getattr(r, "text", None)) for r in results] == [
        (2, "page 2 of document.pdf "),
        (5, "page 5 of document.pdf "),
    ]
    assert [s["fields"]["pages"] for s in state.requests] == ["2", "5"]


async def test_page_path_maps_by_number(api: tuple[Api, str]) -> None:
    state, base = api
    results = await run(
        base,
        DOC,
        [1, 2, 4],
        path="/api/parse",
        text_path="results[].markdown",
        page_path="results[*].page",
    )
    assert [(r.page, getattr(r, "text", None)) for r in results] == [
        (1, "# 1"),
        (2, "# 2"),
        (4, "# 4"),
    ]
    assert state.requests[0]["fields"]["pages"] == "1-2,4"


async def test_no_pages_field(api: tuple[Api, str]) -> None:
    state, base = api
    results = await run(base, DOC, [1], pages_field=None)
    assert isinstance(results[0], PageText)
    assert state.requests[0]["fields"] == {}


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/fail", "HTTP 500: Internal Server Error: vLLM at :8000 refused"),
        ("/malformed", "response is not JSON: '<html>not json</html>'"),
        ("/missing", "HTTP 404: Not Found"),
    ],
)
async def test_api_errors_become_page_failures(
    api: tuple[Api, str], path: str, reason: str
) -> None:
    _, base = api
    results = await run(base, DOC, [1, 2], path=path)
    assert [(type(r), r.page, getattr(r, "reason", None)) for r in results] == [
        (PageError, 1, reason),
        (PageError, 2, reason),
    ]


async def test_partial_response(api: tuple[Api, str]) -> None:
    _, base = api
    results = await run(base, DOC, [1, 2, 3], path="/partial")
    assert isinstance(results[0], PageText) and results[0].text == "only the first"
    assert [getattr(r, "reason", None) for r in results[1:]] == [
        "text of page 2 at pages[*].text is null, not a string",
        "no text for page 3 in the response (2 texts for 3 pages)",
    ]


async def test_slow_api_times_out_per_page(api: tuple[Api, str]) -> None:
    _, base = api
    results = await run(base, DOC, [1, 2], path="/slow", timeout_s=0.3)
    assert [getattr(r, "reason", None) for r in results] == ["timed out after 0.3 s"] * 2


async def test_unreachable_api() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    results = await run(f"http://127.0.0.1:{port}", DOC, [1])
    assert isinstance(results[0], PageError)
    assert results[0].reason.startswith(
        f"cannot reach http://127.0.0.1:{port}/api/ocr/document: ClientConnectorError"
    )


def test_map_response_missing_path() -> None:
    (err,) = map_response(arm(), {"data": []}, [1], 1.0)
    assert err == PageError(
        1, "response has nothing at pages[*].text: no key 'pages' at the top", 1.0
    )
    (err,) = map_response(arm(page_path="pages[*].n"), {"pages": [{"text": "a"}]}, [1], 1.0)
    assert isinstance(err, PageError) and "no key 'n' at pages[0]" in err.reason


def test_page_spec_text() -> None:
    assert page_spec_text([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"
    assert page_spec_text([5]) == "5"
    assert page_spec_text([3, 2, 1]) == "3,2,1"


async def test_arm_url_through_service_port_or_url() -> None:
    config = parse_config(
        {
            "pod": {"kind": "local"},
            "models": [{"name": "m", "model": "o/m", "port": 8000, "gpu_memory_utilization": 0.4}],
            "services": [{"name": "ocr-api", "command": ["x"], "port": 8007}],
            "api_arms": [
                {"name": "a", "service": "ocr-api", "path": "/p", "text_path": "t"},
                {"name": "b", "port": 8006, "path": "/p", "text_path": "t"},
                {
                    "name": "c",
                    "url": "http://pod.example.net:22167/",
                    "path": "/p",
                    "text_path": "t",
                },
            ],
        },
        "t.toml",
    )
    pod = LocalPod()
    urls = [await arm_url(a, config, pod) for a in config.api_arms]
    assert urls == [
        "http://127.0.0.1:8007",
        "http://127.0.0.1:8006",
        "http://pod.example.net:22167",
    ]
