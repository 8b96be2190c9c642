"""The simulator's sleep mode: vLLM's development endpoints (``VLLM_SERVER_DEV_MODE=1``),
``vllm:engine_sleep_state`` and the memory each level gives back on the simulated GPU."""

from __future__ import annotations

import asyncio
import base64
import io
import re

import httpx
import pytest
from PIL import Image

from ocrtui.sim.gpu import SimGpu
from tests.plugins.sim import SimServer, SimServers

DEV = {"VLLM_SERVER_DEV_MODE": "1"}
GLM = ("zai-org/GLM-OCR", "--served-model-name", "glm", "--gpu-memory-utilization", "0.4")
SLOW = ("--sim-prefill-s", "0.01", "--sim-per-token-s", "0.05", "--sim-tokens-per-page", "400")


def page_request(max_tokens: int) -> dict[str, object]:
    """A chat request with one page (the synthetic engine reads 400 tokens off it)."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "read"}]
    return {
        "model": "glm",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    }


def sleep_state(server: SimServer) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'vllm:engine_sleep_state\{.*sleep_state="(\w+)"\} (\S+)', text)
    }


def held_mib(gpu: SimGpu, server: SimServer) -> int:
    return next(h.used_mib for h in gpu.holders() if h.pid == server.engine_pid())


def test_sleep_level_1_gives_back_weights_and_kv_then_wakes(
    sim_servers: SimServers, sim_gpu: SimGpu
) -> None:
    server = sim_servers.start(*GLM, "--enable-sleep-mode", "--sim-gpu", str(sim_gpu.path), env=DEV)
    awake = held_mib(sim_gpu, server)
    assert awake == int(0.4 * sim_gpu.total_mib * 1024 * 1024) // (1024 * 1024)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/is_sleeping").json() == {"is_sleeping": False}
        assert sleep_state(server) == {"awake": 1, "weights_offloaded": 0, "discard_all": 0}
        r = http.post("/sleep", params={"level": 1})
        assert (r.status_code, r.json()) == (200, {"status": "sleeping", "level": 1})
        assert http.get("/is_sleeping").json() == {"is_sleeping": True}
        assert sleep_state(server) == {"awake": 0, "weights_offloaded": 1, "discard_all": 0}
        asleep = held_mib(sim_gpu, server)
        assert 0 < asleep < awake / 10  # the CUDA context and graphs stay
        assert "Sleep mode freed" in server.log()

        r = http.post("/wake_up")
        assert (r.status_code, r.json()) == (200, {"status": "awake", "tags": None})
        assert http.get("/is_sleeping").json() == {"is_sleeping": False}
        assert sleep_state(server) == {"awake": 1, "weights_offloaded": 0, "discard_all": 0}
        assert held_mib(sim_gpu, server) == awake


def test_without_sleep_mode_it_pauses_but_frees_nothing(
    sim_servers: SimServers, sim_gpu: SimGpu
) -> None:
    server = sim_servers.start(*GLM, "--sim-gpu", str(sim_gpu.path), env=DEV)
    awake = held_mib(sim_gpu, server)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/sleep", params={"level": 2}).status_code == 200
        assert sleep_state(server) == {"awake": 0, "weights_offloaded": 0, "discard_all": 1}
        assert held_mib(sim_gpu, server) == awake


def test_wake_fails_while_another_process_holds_the_memory(
    sim_servers: SimServers, sim_gpu: SimGpu
) -> None:
    server = sim_servers.start(*GLM, "--enable-sleep-mode", "--sim-gpu", str(sim_gpu.path), env=DEV)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/sleep", params={"level": 2}).status_code == 200
        # Another server takes what was given back (0.7 of the GPU).
        sim_servers.start(
            "lightonai/LightOnOCR-2-1B", "--gpu-memory-utilization", "0.7",
            "--sim-gpu", str(sim_gpu.path),
        )  # fmt: skip
        r = http.post("/wake_up")
        assert r.status_code == 500 and "CUDA out of memory" in r.json()["error"]["message"]
        assert http.get("/is_sleeping").json() == {"is_sleeping": True}


def test_no_sleep_endpoints_without_dev_mode(sim_servers: SimServers) -> None:
    server = sim_servers.start(*GLM, "--enable-sleep-mode")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/sleep").status_code == 404
        assert http.get("/is_sleeping").status_code == 404
    assert sleep_state(server)["awake"] == 1  # the gauge is there either way


@pytest.mark.parametrize("level", ["3", "-1", "x"])
def test_a_bad_level_is_refused_as_vllm_does(sim_servers: SimServers, level: str) -> None:
    server = sim_servers.start(*GLM, env=DEV)
    r = httpx.post(f"{server.url}/sleep", params={"level": level}, timeout=10)
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == "query.level"
    assert error["message"].startswith("1 validation error:") and repr(level) in error["message"]


async def test_requests_in_flight_are_aborted_and_new_ones_wait_for_the_wake(
    sim_servers: SimServers,
) -> None:
    server = sim_servers.start(*GLM, *SLOW, "--enable-sleep-mode", env=DEV)
    body = page_request(400)  # 20 s of decoding at SLOW's pace: asleep long before its end
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        running = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        deadline = asyncio.get_running_loop().time() + 10
        while (await http.get("/load")).json()["server_load"] == 0:
            assert asyncio.get_running_loop().time() < deadline, "the request never arrived"
            await asyncio.sleep(0.02)
        assert (await http.post("/sleep", params={"level": 1})).status_code == 200
        aborted = await running
        assert aborted.json()["choices"][0]["finish_reason"] == "abort"
        short = page_request(10)
        waiting = asyncio.create_task(http.post("/v1/chat/completions", json=short))
        deadline = asyncio.get_running_loop().time() + 10
        while (await http.get("/load")).json()["server_load"] == 0:
            assert asyncio.get_running_loop().time() < deadline, "the request never arrived"
            await asyncio.sleep(0.02)
        assert not waiting.done()  # paused: it waits
        assert (await http.post("/wake_up")).status_code == 200
        done = await asyncio.wait_for(waiting, 20)
        assert done.json()["choices"][0]["finish_reason"] == "length"  # its 10 tokens
