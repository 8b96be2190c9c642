"""Streamed OCR requests: the same outcome as non-streamed, plus vllm bench serve's timings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import pytest

from ocrtui.compare import client as client_mod
from ocrtui.compare.client import ModelTarget, Outcome, ocr_page, open_session
from ocrtui.compare.render import RenderedPage
from tests.plugins.compare_inputs import model
from tests.plugins.fake_chat_server import fake_vllm
from tests.plugins.ocr_pages import page_png
from tests.plugins.scripted_http import Answer, Sent, scripted_http
from tests.plugins.sim import SimServer, SimServers
from tests.plugins.vllm_logs import fixture_text

PAGE = RenderedPage(data=b"\xff\xd8\xff" * 100, mime="image/jpeg", width=10, height=20)
REAL_STREAM = fixture_text("sse_chat_completion_stream_v0_32_cpu_tiny_length.txt")


def target(stream: bool, url: str = "http://pod") -> ModelTarget:
    return ModelTarget(model("lighton-ocr", "lighton-ocr", stream=stream), url)


def sse(*chunks: dict[str, object] | str) -> list[bytes]:
    return [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n".encode() for c in chunks]


def delta(text: str, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


async def send(
    respond: Callable[[Sent, int], Answer], stream: bool, **kw: object
) -> tuple[Outcome, list[Sent]]:
    """One page through the real transport to a server answering with ``respond``."""
    async with scripted_http(respond) as server, open_session() as c:
        args = {"retries": 0, "timeout_s": 5, **kw}
        out = await ocr_page(c, target(stream, server.url), PAGE, **args)  # type: ignore[arg-type]
    return out, server.requests


async def test_real_vllm_stream_is_read_like_vllm_bench_serve() -> None:
    deltas: list[str] = []
    out, seen = await send(
        lambda _s, _n: Answer.sse([REAL_STREAM.encode()]), True, on_delta=deltas.append
    )
    body = json.loads(seen[0].body)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert out.ok, out.error
    assert out.text == " critical oper pan writtom attitecbase"
    assert "".join(deltas) == out.text and len(deltas) == 8
    assert (out.prompt_tokens, out.completion_tokens, out.finish_reason) == (15, 8, "length")
    t = out.timings
    assert t is not None and t.output_tokens == 8
    # 9 chunks with a choice (the role chunk is the first token's arrival); usage is not one
    assert len(t.itl) == 8
    assert 0 <= t.ttft <= t.e2el <= out.latency_s  # type: ignore[operator]
    assert t.e2el == pytest.approx(t.ttft + sum(t.itl))
    assert t.tpot == pytest.approx((t.e2el - t.ttft) / 7)


async def test_not_streamed_has_no_timings_and_one_delta() -> None:
    answer = {"choices": [{"message": {"content": "abc"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1}}  # fmt: skip
    deltas: list[str] = []
    out, seen = await send(lambda _s, _n: Answer.json(200, answer), False, on_delta=deltas.append)
    assert "stream" not in json.loads(seen[0].body)
    assert out.ok and out.text == "abc" and deltas == ["abc"] and out.timings is None
    assert out.completion_tokens == 1


async def test_disconnect_after_the_first_token_is_transient_and_not_retried() -> None:
    out, seen = await send(
        lambda _s, _n: Answer.sse(sse(delta("Hel"), delta("lo")), end="cut"), True, retries=3
    )
    assert len(seen) == 1
    assert not out.ok and out.transient and out.fatal is None
    assert out.text == "Hello"
    assert out.error is not None and out.error.startswith("stream cut after 2 chunks")


async def test_disconnect_before_the_first_token_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_mod, "BACKOFF_BASE_S", 0.0)

    def handle(sent: Sent, n: int) -> Answer:
        if n == 0:
            return Answer.sse([], end="cut")
        return Answer.sse(sse(delta("ok", "stop"), "[DONE]"))

    out, seen = await send(handle, True, retries=1)
    assert len(seen) == 2
    assert out.ok and out.text == "ok" and out.finish_reason == "stop"


async def test_an_answer_that_is_not_http_is_retried_like_a_cut_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_mod, "BACKOFF_BASE_S", 0.0)

    def handle(sent: Sent, n: int) -> Answer:
        return Answer(raw=b"SSH-2.0-OpenSSH_9.2\r\n\r\n") if n == 0 else Answer.sse(sse("[DONE]"))

    out, seen = await send(handle, True, retries=1)
    assert len(seen) == 2 and out.ok, out.error
    out, _ = await send(lambda _s, _n: Answer(raw=b"garbage\r\n\r\n"), True, retries=0)
    assert not out.ok and out.transient
    assert out.error is not None and out.error.startswith("connection error to ")


@pytest.mark.parametrize(("code", "transient"), [(500, True), (400, False)])
@pytest.mark.parametrize("flat", [False, True])  # older vLLM: the fields at the top
async def test_error_event_in_the_stream(code: int, transient: bool, flat: bool) -> None:
    err = {"message": "boom", "type": "ServerError", "param": None, "code": code}
    event: dict[str, object] = {"object": "error", **err} if flat else {"error": err}

    out, _ = await send(lambda _s, _n: Answer.sse(sse(delta("a"), event, "[DONE]")), True)
    assert not out.ok and out.error == f"HTTP {code}: boom"
    assert out.transient is transient and out.fatal is None


@pytest.mark.parametrize("stream", [True, False])
async def test_http_error_is_the_same_streamed_or_not(stream: bool) -> None:
    msg = "max_tokens=4096 cannot be greater than max_model_len=2048"

    answer = Answer.json(400, {"error": {"message": msg, "code": 400}})
    out, _ = await send(lambda _s, _n: answer, stream)
    assert not out.ok and not out.transient
    assert out.error == f"HTTP 400: {msg}" and out.fatal == out.error


async def test_timeout_bounds_the_whole_stream() -> None:
    # the server goes quiet mid-page
    stalls = Answer.sse(sse(delta("a")), end="stall")
    out, _ = await asyncio.wait_for(send(lambda _s, _n: stalls, True, timeout_s=0.2), 10)
    assert not out.ok and out.transient and out.error == "timeout after 0.2 s"


async def test_cancelling_a_page_mid_stream_cancels_it() -> None:
    """A cancelled comparison (Ctrl-C, the dashboard's stop) must not be turned into a
    failed page: the cancellation goes through, whatever the transport raises inside."""
    stalls = Answer.sse(sse(delta("a")), end="stall")
    async with scripted_http(lambda _s, _n: stalls) as server, open_session() as c:
        first_token = asyncio.Event()  # the stream is open
        task = asyncio.create_task(
            ocr_page(c, target(True, server.url), PAGE, retries=3, timeout_s=30,
                     on_delta=lambda _text: first_token.set())
        )  # fmt: skip
        async with asyncio.timeout(10):
            await first_token.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [Answer(raw=b"garbage\r\n\r\n"), Answer.dropped(), Answer.sse(sse(delta("a")), end="cut")],
)
async def test_the_api_key_is_in_no_failure(
    monkeypatch: pytest.MonkeyPatch, answer: Answer
) -> None:
    key = "sk-secret-0123456789"
    monkeypatch.setenv("OCR_KEY", key)
    cfg = model("lighton-ocr", "lighton-ocr", api_key_env="OCR_KEY")
    async with scripted_http(lambda _s, _n: answer) as server, open_session() as c:
        out = await ocr_page(c, ModelTarget(cfg, server.url), PAGE, retries=0, timeout_s=5)
    assert server.requests[0].headers["authorization"] == f"Bearer {key}"
    assert not out.ok and out.error is not None
    assert key not in out.error and key not in repr(out)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    with SimServers(tmp_path_factory.mktemp("sim")) as servers:
        yield servers.start(
            "lightonai/LightOnOCR-2-1B", "--served-model-name", "lighton-ocr",
            "--sim-tokens-per-page", "40", "--sim-prefill-s", "0.01", "--sim-per-token-s", "0",
        )  # fmt: skip


async def test_simulator_gives_the_same_page_streamed_and_not(sim: SimServer) -> None:
    png = RenderedPage(data=page_png(["streamed"]), mime="image/png", width=600, height=300)
    outs: dict[bool, Outcome] = {}
    deltas: list[str] = []
    async with open_session() as c:
        for stream in (True, False):
            outs[stream] = await ocr_page(
                c, target(stream, sim.url), png, retries=0, timeout_s=30,
                on_delta=deltas.append if stream else None,
            )  # fmt: skip
    streamed, whole = outs[True], outs[False]
    assert streamed.ok and whole.ok, (streamed.error, whole.error)
    assert streamed.text == whole.text == "".join(deltas) != ""
    assert streamed.completion_tokens == whole.completion_tokens == 40
    assert streamed.prompt_tokens == whole.prompt_tokens
    assert streamed.finish_reason == whole.finish_reason
    assert whole.timings is None
    t = streamed.timings
    assert t is not None and t.output_tokens == 40 and t.tpot is not None
    # The simulator, like vLLM, may send several tokens in one chunk: one gap per chunk.
    assert t.e2el == pytest.approx(t.ttft + sum(t.itl))
    assert 1 <= len(t.itl) + 1 <= 40 + 2  # the role chunk and the finish chunk may add one each


@pytest.mark.parametrize(
    ("answer", "transient"),
    [
        # a server (or proxy) that ignored "stream": true: no page must pass as empty
        (Answer.json(200, {"choices": [{"message": {"content": "x"}}]}), False),
        (Answer.sse(sse(delta("a"))), True),
    ],
)
async def test_a_stream_without_done_is_no_answer(answer: Answer, transient: bool) -> None:
    out, _ = await send(lambda _s, _n: answer, True)
    assert not out.ok and out.transient is transient
    assert out.error is not None and "without data: [DONE]" in out.error


@pytest.mark.parametrize("stream", [True, False])
async def test_pages_reuse_one_connection(stream: bool) -> None:
    # A streamed response closed before its body's end cannot go back to the pool: each
    # page then paid a new TCP connection.
    with fake_vllm() as fake:
        async with open_session() as c:
            for n in range(3):
                out = await ocr_page(c, target(stream, fake.url), PAGE, retries=0, timeout_s=10)
                assert out.ok and out.text == f"page text {n}", out.error
    assert len(fake.client_ports) == 3
    assert len(set(fake.client_ports)) == 1
