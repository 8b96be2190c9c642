"""The HTTP probes against a tiny local server, and /v1/models parsing on real bodies."""

from __future__ import annotations

import asyncio
import json
import socket
import types
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from ocrtui.config import parse_config
from ocrtui.pod.base import Pod
from ocrtui.vllm.client import VllmClient, parse_models
from ocrtui.vllm.probe import ModelProbe
from ocrtui.vllm.state import ProcessFacts
from tests.plugins.vllm_logs import FIXTURES, fixture_text

MODELS_FIXTURES = sorted(p.name for p in FIXTURES.glob("models_list_*.json"))


@pytest.mark.parametrize("name", MODELS_FIXTURES)
def test_every_models_list_fixture_parses(name: str) -> None:
    cards = parse_models(fixture_text(name))
    assert cards
    assert all(c.id for c in cards)
    # Base models carry max_model_len; LoRA adapters (with a parent) may not.
    assert all(isinstance(c.max_model_len, int) for c in cards if c.parent is None)


def test_glm_ocr_card() -> None:
    (card,) = parse_models(fixture_text("models_list_v0_18_1rc1_glm_ocr.json"))
    assert (card.id, card.root, card.max_model_len) == ("glm-ocr", "zai-org/GLM-OCR", 2048)


def test_lora_adapters_are_listed_with_parent() -> None:
    cards = parse_models(fixture_text("models_list_v0_7_lora_adapters.json"))
    assert cards[0].parent is None
    assert any(c.parent for c in cards[1:])


@pytest.mark.parametrize("body", ['{"object": "list"}', "[]", '{"data": [{"object": "model"}]}'])
def test_non_models_bodies_are_rejected(body: str) -> None:
    with pytest.raises(ValueError, match="/v1/models"):
        parse_models(body)


class _Server:
    """A minimal HTTP/1.1 server: fixed answers per path, records request headers."""

    def __init__(self, routes: dict[str, tuple[int, str]]) -> None:
        self.routes = routes
        self.headers: dict[str, dict[str, str]] = {}
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readline()
                if not request:
                    return
                path = request.decode().split()[1]
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = line.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                self.headers[path] = headers
                status, body = self.routes.get(path, (404, ""))
                data = body.encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
                )
                await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> _Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    routes = {
        "/health": (200, ""),
        "/v1/models": (200, fixture_text("models_list_v0_18_1rc1_glm_ocr.json")),
        "/version": (200, '{"version":"0.32.0"}'),  # vllm-0.32-cpu/http/version.body
        "/metrics": (
            200,
            fixture_text("metrics_v1_kv_cache_usage_perc_approx_v0_11_qwen1_5_0_5b.txt"),
        ),
    }
    async with _Server(routes) as s:
        yield s


async def test_probes_and_key_only_on_v1(server: _Server) -> None:
    client = VllmClient(f"http://127.0.0.1:{server.port}", api_key="s3cret-key")
    try:
        health = await client.health()
        assert health.ok and health.latency_ms is not None and health.latency_ms >= 0
        assert [c.id for c in await client.models()] == ["glm-ocr"]
        assert (await client.metrics()).kv_cache_usage == 0.0
        assert await client.version() == "0.32.0"
    finally:
        await client.aclose()
    assert server.headers["/v1/models"]["authorization"] == "Bearer s3cret-key"
    assert "authorization" not in server.headers["/health"]
    assert "authorization" not in server.headers["/metrics"]
    assert "authorization" not in server.headers["/version"]
    assert "s3cret" not in repr(client)


async def test_503_and_refused(server: _Server) -> None:
    server.routes["/health"] = (503, "")
    client = VllmClient(f"http://127.0.0.1:{server.port}")
    try:
        h = await client.health()
        assert h.status == 503 and not h.ok and not h.refused
    finally:
        await client.aclose()
    with socket.socket() as sock:  # a port nothing listens on: bound, then released
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    dead = VllmClient(f"http://127.0.0.1:{free_port}")
    try:
        h = await dead.health()
        assert h.refused and h.status is None
    finally:
        await dead.aclose()


def test_fixture_bodies_are_json() -> None:
    for name in MODELS_FIXTURES:
        json.loads(fixture_text(name))


class _QuietPod:
    """Just enough of a Pod for ModelProbe: an empty log."""

    async def tail(self, path: str, lines: int = 50) -> list[str]:
        return []

    async def run(self, argv: Any, **kw: Any) -> Any:
        return types.SimpleNamespace(stdout="", ok=True)


@pytest.mark.parametrize(
    ("key_env", "env_value", "expected"),
    [
        (None, None, "the server wants an API key (/v1/models answered 401). Fix: set api_key_env"),
        ("GLM_KEY", None, "the server wants an API key (/v1/models answered 401) and $GLM_KEY"),
        ("GLM_KEY", "sk-wrong-1", "the server refused the API key in $GLM_KEY"),
    ],
)
async def test_401_says_which_api_key_is_missing_or_refused(
    monkeypatch: pytest.MonkeyPatch, key_env: str | None, env_value: str | None, expected: str
) -> None:
    """Real vLLM with VLLM_API_KEY: /health open, /v1/* 401 {"error":"Unauthorized"}."""
    monkeypatch.delenv("GLM_KEY", raising=False)
    if env_value:
        monkeypatch.setenv("GLM_KEY", env_value)
    model = parse_config(
        {"pod": {"kind": "local"},
         "models": [{"name": "glm-ocr", "model": "zai-org/GLM-OCR", "port": 8000,
                     "gpu_memory_utilization": 0.4, "api_key_env": key_env}]},
        "test",
    ).models[0]  # fmt: skip
    routes = {"/health": (200, ""), "/v1/models": (401, '{"error":"Unauthorized"}')}
    async with _Server(routes) as s:
        probe = ModelProbe(model, cast(Pod, _QuietPod()), f"http://127.0.0.1:{s.port}", "log")
        try:
            result = await probe.poll(_alive)
        finally:
            await probe.aclose()
    assert result.verdict.state == "unhealthy"
    assert result.verdict.hint is not None and result.verdict.hint.startswith(expected)
    assert "sk-wrong-1" not in result.verdict.hint


async def _alive() -> ProcessFacts:
    return ProcessFacts(server_pid=100, alive=True, listening=True)


class _TailPod(_QuietPod):
    """A log whose tail the test sets between polls."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def tail(self, path: str, lines: int = 50) -> list[str]:
        return self.lines[-lines:]


async def test_a_starting_stage_never_falls_back_to_no_marker() -> None:
    """A tail of traceback lines only (an error no hint knows) holds no stage marker: the
    start keeps the stage it had, and a tail that reaches its launch marker decides again."""
    model = parse_config(
        {"pod": {"kind": "local"},
         "models": [{"name": "glm", "model": "zai-org/GLM-OCR", "port": 8000,
                     "gpu_memory_utilization": 0.4}]},
        "test",
    ).models[0]  # fmt: skip
    pod = _TailPod()
    with socket.socket() as closed:  # a port nothing listens on: vLLM before it is ready
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    probe = ModelProbe(model, cast(Pod, pod), f"http://127.0.0.1:{port}", "log")
    try:
        pod.lines = ["INFO [kv_cache_utils.py:1] GPU KV cache size: 231,856 tokens"]
        first = await probe.poll(_starting)
        pod.lines = ['  File "x.py", line 1, in f', *["    frame()"] * 250]
        later = await probe.poll(_starting)
        pod.lines = ["[ocrtui] launch glm 2026-12-07T02:51:28.808+00:00"]
        fresh = await probe.poll(_starting)
    finally:
        await probe.aclose()
    assert str(first.verdict.stage) == "KV cache"
    assert later.verdict.state == "starting" and str(later.verdict.stage) == "KV cache"
    assert fresh.verdict.stage is None


async def _starting() -> ProcessFacts:
    return ProcessFacts(server_pid=100, alive=True, listening=False)
