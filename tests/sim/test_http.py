"""The HTTP surface against one shared simulator (synthetic engine): what clients see."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ocrtui.sim.gpu import SimGpu
from ocrtui.vllm.metrics import parse_metrics
from tests.plugins.ocr_pages import image_message, page_png
from tests.plugins.sim import SimServer, SimServers

KEY = "test-key-123"
TOKENS_PER_PAGE = 60
PREFILL_S = 0.05
PER_TOKEN_S = 0.001
MODEL = "simtest-glm"
# Real vLLM output, copied into the repository by the lifecycle tests.
FIXTURES = Path(__file__).parents[1] / "vllm" / "fixtures"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    tmp = tmp_path_factory.mktemp("sim_http")
    gpu = SimGpu.create(tmp / "gpu")
    with SimServers(tmp) as servers:
        yield servers.start(
            "zai-org/GLM-OCR",
            "--served-model-name",
            MODEL,
            "--max-num-seqs",
            "2",
            "--max-model-len",
            "4096",
            "--limit-mm-per-prompt",
            '{"image": 1}',
            "--api-key",
            KEY,
            "--sim-gpu",
            str(gpu.path),
            "--sim-prefill-s",
            str(PREFILL_S),
            "--sim-per-token-s",
            str(PER_TOKEN_S),
            "--sim-tokens-per-page",
            str(TOKENS_PER_PAGE),
        )


@pytest.fixture(scope="module")
def client(server: SimServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=30)


def _post(server: SimServer, body: object, key: str = KEY, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=timeout,
        headers={"Authorization": f"Bearer {key}"},
        content=body if isinstance(body, bytes) else json.dumps(body),
    )


def _metrics(server: SimServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = {"model_name": MODEL, "engine": "0", **labels}
    return metrics[(name, tuple(sorted(want.items())))]


def test_openai_client_chat_with_image(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=image_message(page_png(["hello"])),
        max_tokens=1000,
        temperature=0.8,
        top_p=0.9,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant" and choice.message.content
    assert r.model == MODEL and r.id.startswith("chatcmpl-")
    assert r.usage is not None
    # 600x300 px at 28 px per token = 22 x 11 image tokens, plus text and template tokens.
    assert r.usage.prompt_tokens > 22 * 11
    assert r.usage.completion_tokens == TOKENS_PER_PAGE
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_same_image_same_text(client: openai.OpenAI) -> None:
    texts = {
        client.chat.completions.create(
            model=MODEL,
            messages=image_message(page_png(["x"])),
            max_tokens=1000,
        )
        .choices[0]
        .message.content
        for _ in range(2)
    }
    assert len(texts) == 1


def test_streaming_with_usage(client: openai.OpenAI, server: SimServer) -> None:
    messages = image_message(page_png(["stream"]))
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=1000,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == TOKENS_PER_PAGE
    full = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1000)
    assert content == full.choices[0].message.content and full.usage is not None
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    raw = _post(server, {"model": MODEL, "messages": messages, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [e for e in raw.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


def test_max_tokens_truncates_with_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=image_message(page_png()),
        max_tokens=5,
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 5


def test_models_card(server: SimServer) -> None:
    body = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert body["object"] == "list"
    card = body["data"][0]
    assert card["id"] == MODEL and card["root"] == "zai-org/GLM-OCR"
    assert card["owned_by"] == "vllm" and card["parent"] is None
    assert card["max_model_len"] == 4096 and card["object"] == "model"
    assert card["permission"][0]["object"] == "model_permission"


def test_open_endpoints(server: SimServer) -> None:
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/ping").status_code == 200
    assert httpx.post(f"{server.url}/ping").status_code == 200
    assert "ocrtui.sim" in httpx.get(f"{server.url}/version").json()["version"]
    assert httpx.get(f"{server.url}/load").json() == {"server_load": 0}
    assert httpx.get(f"{server.url}/nope").json() == {"detail": "Not Found"}


def test_api_key_guards_v1_only(server: SimServer) -> None:
    for r in (
        httpx.get(f"{server.url}/v1/models"),
        httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer wrong"}),
        _post(server, {"messages": []}, key="wrong"),
    ):
        assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}
    assert httpx.get(f"{server.url}/metrics").status_code == 200


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == status
    return str(err["message"])


def test_too_many_images(server: SimServer) -> None:
    r = _post(server, {"model": MODEL, "messages": image_message(page_png(), page_png())})
    assert _error(r, 400).startswith("At most 1 image(s) may be provided in one prompt.")
    assert r.json()["error"]["type"] == "BadRequestError"


def test_prompt_too_long(server: SimServer) -> None:
    # 2000x2000 px is 72 x 72 = 5184 image tokens, over --max-model-len 4096.
    r = _post(server, {"model": MODEL, "messages": image_message(page_png(size=(2000, 2000)))})
    msg = _error(r, 400)
    assert re.fullmatch(
        r"Input length \(\d+\) exceeds model's maximum context length \(4096\)\.", msg
    )


def test_other_request_errors(server: SimServer) -> None:
    r = _post(server, {"model": "other", "messages": image_message(page_png())})
    assert _error(r, 404) == f"The model `other` does not exist. Valid aliases: {MODEL}."
    assert "'type': 'json_invalid', 'loc': 'body.1'" in _error(_post(server, b"{not json"), 400)
    bad_image = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
        }
    ]
    assert _error(_post(server, {"model": MODEL, "messages": bad_image}), 400).startswith(
        "Failed to load image: cannot identify image file"
    )
    remote = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}
            ],
        }
    ]
    assert "data: URL" in _error(_post(server, {"model": MODEL, "messages": remote}), 400)
    _error(
        _post(server, {"model": MODEL, "messages": image_message(page_png()), "temperature": -1}),
        400,
    )


def test_metrics_move_after_a_request(server: SimServer, client: openai.OpenAI) -> None:
    before = _metrics(server)
    r = client.chat.completions.create(
        model=MODEL,
        messages=image_message(page_png()),
        max_tokens=1000,
    )
    after = _metrics(server)
    assert r.usage is not None
    for name, delta in (
        ("vllm:prompt_tokens_total", r.usage.prompt_tokens),
        ("vllm:generation_tokens_total", r.usage.completion_tokens),
        ("vllm:time_to_first_token_seconds_count", 1),
        ("vllm:e2e_request_latency_seconds_count", 1),
        ("vllm:request_queue_time_seconds_count", 1),
    ):
        assert _value(after, name) - _value(before, name) == delta, name
    stop = ("vllm:request_success_total", {"finished_reason": "stop"})
    assert _value(after, stop[0], **stop[1]) - _value(before, stop[0], **stop[1]) == 1
    assert _value(after, "vllm:inter_token_latency_seconds_count") > _value(
        before, "vllm:inter_token_latency_seconds_count"
    )
    # The timing model: first token after the prefill, then one token per decode step.
    ttft = _value(after, "vllm:time_to_first_token_seconds_sum") - _value(
        before, "vllm:time_to_first_token_seconds_sum"
    )
    e2e = _value(after, "vllm:e2e_request_latency_seconds_sum") - _value(
        before, "vllm:e2e_request_latency_seconds_sum"
    )
    assert ttft >= PREFILL_S
    assert e2e >= PREFILL_S + (TOKENS_PER_PAGE - 1) * PER_TOKEN_S
    assert _value(after, "vllm:num_requests_running") == 0
    assert _value(after, "vllm:kv_cache_usage_perc") == 0
    info = [k for k in after if k[0] == "vllm:cache_config_info"]
    assert dict(info[0][1])["gpu_memory_utilization"] == "0.92"


def test_project_parser_reads_simulator_like_real_vllm(
    server: SimServer, client: openai.OpenAI
) -> None:
    client.chat.completions.create(
        model=MODEL,
        messages=image_message(page_png()),
        max_tokens=1000,
    )
    ours = parse_metrics(httpx.get(f"{server.url}/metrics").text)
    real = parse_metrics(
        (FIXTURES / "metrics_v1_kv_cache_usage_perc_approx_v0_11_qwen1_5_0_5b.txt").read_text()
    )
    for parsed in (ours, real):
        assert None not in (
            parsed.running,
            parsed.waiting,
            parsed.kv_cache_usage,
            parsed.prompt_tokens,
            parsed.generation_tokens,
        )
        assert {"stop", "length", "abort"} <= set(parsed.success_by_reason)
    assert ours.prompt_tokens and ours.prompt_tokens > 0
    assert ours.success_by_reason["stop"] >= 1


def test_queueing_beyond_max_num_seqs(sim_servers: SimServers) -> None:
    server = sim_servers.start(
        "zai-org/GLM-OCR",
        "--served-model-name",
        MODEL,
        "--max-num-seqs",
        "1",
        "--sim-prefill-s",
        "2.5",  # long enough for all three requests to arrive on a loaded 2-core box
        "--sim-tokens-per-page",
        "5",
    )
    body = {"model": MODEL, "messages": image_message(page_png()), "max_tokens": 100}

    def post_timed() -> tuple[httpx.Response, float]:
        response = _post(server, body)
        return response, time.monotonic()

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(post_timed) for _ in range(3)]
        seen = None
        end = time.monotonic() + 30
        while seen != (1, 2) and time.monotonic() < end:
            m = _metrics(server)
            seen = (_value(m, "vllm:num_requests_running"), _value(m, "vllm:num_requests_waiting"))
            both_waiting_at = time.monotonic()
            time.sleep(0.05)
        assert seen == (1, 2)
        responses, done_at = zip(*(f.result() for f in futures), strict=True)
        assert [r.status_code for r in responses] == [200] * 3, (
            [r.text for r in responses],
            server.log()[-3000:],
        )
    m = _metrics(server)
    assert (_value(m, "vllm:num_requests_running"), _value(m, "vllm:num_requests_waiting")) == (
        0,
        0,
    )
    # One at a time: the two seen waiting waited, from then on, until the first and then the
    # second finished (each at least its 2.5 s prefill later), whenever they arrived.
    first, second, _ = sorted(done_at)
    assert second - first >= 2.5 - 0.1
    waited_at_least = (first - both_waiting_at) + (second - both_waiting_at)
    # Less the time a finished response takes to reach the client, per request.
    assert _value(m, "vllm:request_queue_time_seconds_sum") >= waited_at_least - 2 * 0.2


def test_client_disconnect_aborts_the_request(sim_servers: SimServers) -> None:
    server = sim_servers.start(
        "zai-org/GLM-OCR",
        "--served-model-name",
        MODEL,
        "--sim-prefill-s",
        "0",
        "--sim-per-token-s",
        "0.05",
        "--sim-tokens-per-page",
        "200",
        "--max-num-seqs",
        "1",
    )
    body = {"model": MODEL, "messages": image_message(page_png()), "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    end = time.monotonic() + 10
    while True:
        m = _metrics(server)
        if _value(m, "vllm:request_success_total", finished_reason="abort") == 1:
            break
        assert time.monotonic() < end, "the aborted request was never counted"
        time.sleep(0.05)
    assert _value(m, "vllm:num_requests_running") == 0
    # The engine dropped it: with one sequence slot, a new request is served at once, not
    # after the 10 s the aborted one would have decoded for.
    r2 = _post(server, {**body, "stream": False, "max_tokens": 3}, timeout=5)
    assert r2.status_code == 200 and r2.json()["choices"][0]["finish_reason"] == "length"


def test_api_key_never_logged(server: SimServer) -> None:
    log = server.log()
    assert "'api_key': '<redacted>'" in log
    assert KEY not in log
