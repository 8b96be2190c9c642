"""A comparison of a vLLM arm (the simulator) and a document-API arm (a real HTTP server
with the handoff note's multipart shape) in one run, through `ocrtui compare --headless`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ocrtui.cli import _parser
from ocrtui.compare.cli import request_from_args, run_headless
from ocrtui.compare.launch import resolve
from ocrtui.config import Config, parse_config
from ocrtui.errors import ConfigError
from tests.plugins.compare_inputs import MakePdf
from tests.plugins.sim import SimServers

pytestmark = pytest.mark.timeout(120)

FAST = ["--sim-prefill-s", "0.01", "--sim-per-token-s", "0.0001", "--sim-tokens-per-page", "40"]
TEXTS = {1: "Born digital page one.", 2: "Page two of the paper."}


class NoteApi:
    """POST /api/ocr/document -F file=@doc.pdf -F pages=1-2: every page's text, as JSON."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def document(self, request: Request) -> Response:
        form = await request.form()
        upload = form["file"]
        assert not isinstance(upload, str)
        data = await upload.read()
        self.requests.append({"pages": form.get("pages"), "pdf": data.startswith(b"%PDF")})
        first, _, last = str(form["pages"]).partition("-")
        pages = range(int(first), int(last or first) + 1)
        return JSONResponse({"pages": [{"page": p, "text": TEXTS[p]} for p in pages]})


@pytest.fixture
async def note_api() -> AsyncIterator[tuple[NoteApi, str]]:
    api = NoteApi()
    app = Starlette(routes=[Route("/api/ocr/document", api.document, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 10
    while not server.started:  # uvicorn offers no event for it
        assert asyncio.get_running_loop().time() < deadline, "test API did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield api, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def config(api_url: str) -> Config:
    return parse_config(
        {
            "pod": {"kind": "local"},
            "models": [
                {"name": "glm-ocr", "model": "zai-org/GLM-OCR", "port": 9100,
                 "gpu_memory_utilization": 0.4, "profile": "glm-ocr"}
            ],
            "api_arms": [
                {"name": "ocr-api", "url": api_url, "path": "/api/ocr/document",
                 "text_path": "pages[*].text", "page_path": "pages[*].page"}
            ],
            "compare": {"warm_runs": 2, "throughput_requests": 2},
        },
        "test",
    )  # fmt: skip


async def test_vllm_arm_and_api_arm_in_one_run(
    sim_servers: SimServers,
    note_api: tuple[NoteApi, str],
    make_pdf: MakePdf,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api, api_url = note_api
    glm = sim_servers.start(
        "zai-org/GLM-OCR", "--served-model-name", "glm-ocr", "--engine", "synthetic", *FAST,
        timeout=90,
    )  # fmt: skip
    pdf = make_pdf("paper.pdf", [TEXTS[1], TEXTS[2]])
    cfg = config(api_url)
    args = _parser().parse_args(
        ["compare", "--headless", "--out", str(tmp_path / "run"), "--reference", "text-layer",
         "--models", "glm-ocr,ocr-api", str(pdf)]
    )  # fmt: skip
    setup = resolve(cfg, request_from_args(args))
    urls = {"glm-ocr": glm.url, "ocr-api": api_url}

    async def model_url(name: str) -> str:
        return urls[name]

    assert await run_headless(setup, model_url, Console(width=250)) == 0
    out = capsys.readouterr().out
    assert "ocr-api (via API)" in out and "the run stopped" not in out
    assert "ocr-api" in (tmp_path / "run/report.html").read_text()
    assert api.requests == [{"pages": "1-2", "pdf": True}]  # the whole document, once
    rows = [json.loads(x) for x in (tmp_path / "run/results.jsonl").read_text().splitlines()]
    assert sorted((r["page"], r["model"]) for r in rows) == [
        (1, "glm-ocr"), (1, "ocr-api"), (2, "glm-ocr"), (2, "ocr-api")
    ]  # fmt: skip
    by_api = {r["page"]: r for r in rows if r["model"] == "ocr-api"}
    assert by_api[1]["ok"] and by_api[1]["text"] == TEXTS[1] and by_api[1]["cer"] == 0
    assert by_api[2]["latency_s"] > 0 and by_api[2]["finish_reason"] is None
    assert by_api[2]["completion_tokens"] is None
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["models"]["ocr-api"]["kind"] == "api"
    assert summary["models"]["glm-ocr"]["kind"] == "vllm"
    assert summary["models"]["ocr-api"]["speed"] == {}  # no speed phases for an API arm
    assert summary["models"]["glm-ocr"]["latency_warm_p50_s"] > 0
    assert summary["models"]["ocr-api"]["pages_per_s"] > 0
    assert "ocr-api (via API)" in (tmp_path / "run/report.md").read_text()


def test_models_option_names_models_and_arms() -> None:
    cfg = config("http://127.0.0.1:1")
    args = _parser().parse_args(["compare", "--models", "nope"])
    with pytest.raises(ConfigError, match=r"no model or API arm named 'nope'.*glm-ocr, ocr-api"):
        resolve(cfg, request_from_args(args))


async def test_an_api_arm_that_read_no_page_has_no_speed(
    note_api: tuple[NoteApi, str], make_pdf: MakePdf, tmp_path: Path
) -> None:
    _, api_url = note_api
    cfg = config(api_url)
    cfg = cfg.model_copy(
        update={"api_arms": [cfg.api_arms[0].model_copy(update={"path": "/no/such/route"})]}
    )
    args = _parser().parse_args(
        ["compare", "--headless", "--out", str(tmp_path / "run"), "--models", "ocr-api",
         str(make_pdf("paper.pdf", [TEXTS[1], TEXTS[2]]))]
    )  # fmt: skip
    setup = resolve(cfg, request_from_args(args))

    async def model_url(name: str) -> str:
        return api_url

    await run_headless(setup, model_url, Console(width=250))
    rows = [json.loads(x) for x in (tmp_path / "run/results.jsonl").read_text().splitlines()]
    assert rows and not any(r["ok"] for r in rows)
    phases = [json.loads(x) for x in (tmp_path / "run/phases.jsonl").read_text().splitlines()]
    [document] = [p for p in phases if p["phase"].startswith("document:")]
    assert document["stats"]["pages_ok"] == 0
    assert document["stats"]["pages_per_s"] is None  # not a measured 0.00
