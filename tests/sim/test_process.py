"""Process behaviour: EngineCore child, signals, memory, startup failures, port readiness."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from ocrtui.sim.gpu import SimGpu
from tests.plugins.processes import pid_alive
from tests.plugins.sim import SimServers, free_port

GLM = "zai-org/GLM-OCR"
A40_040_MIB = int(0.40 * 46068 * 1024**2) // 1024**2


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()


def test_sigkill_leaves_engine_core_holding_memory_and_restart_is_refused(
    sim_servers: SimServers, sim_gpu: SimGpu
) -> None:
    gpu = ["--sim-gpu", str(sim_gpu.path)]
    server = sim_servers.start(GLM, "--gpu-memory-utilization", "0.40", *gpu)
    engine = server.engine_pid()
    assert _title(engine) == "VLLM::EngineCore"
    assert Path(f"/proc/{engine}/comm").read_text().strip() == "VLLM::EngineCor"
    # The API server keeps its argv; the EngineCore holds the memory.
    assert "sim-vllm" in Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
    assert [(h.pid, h.used_mib) for h in sim_gpu.holders()] == [(engine, A40_040_MIB)]

    os.kill(server.pid, signal.SIGKILL)
    assert server.wait_exit(10) == -signal.SIGKILL
    # It has seen its parent go (the socket closed at once) and must stay, memory and all.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert pid_alive(engine)
        time.sleep(0.1)
    assert [(h.pid, h.used_mib) for h in sim_gpu.holders()] == [(engine, A40_040_MIB)]
    assert server.health() is None  # the port is free at once

    # Same port: the orphan does not hold it (the failure is memory, not the address).
    again = sim_servers.start(
        GLM, "--gpu-memory-utilization", "0.70", *gpu, port=server.port, wait=False
    )
    assert again.wait_exit(30) == 1
    log = again.log()
    assert (
        "ValueError: Free memory on device cuda:0 (26.99/44.99 GiB) on startup is less than "
        "desired GPU memory utilization (0.7, 31.49 GiB). Decrease GPU memory utilization or "
        "reduce GPU memory used by other processes."
    ) in log
    assert "RuntimeError: Engine core initialization failed. See root cause above." in log
    assert [h.pid for h in sim_gpu.holders()] == [engine]


def test_sigterm_shuts_down_both_and_frees_memory(sim_servers: SimServers, sim_gpu: SimGpu) -> None:
    server = sim_servers.start(GLM, "--sim-gpu", str(sim_gpu.path))
    engine = server.engine_pid()
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait_exit(20) == 0
    assert not pid_alive(engine)
    assert sim_gpu.holders() == []
    log = server.log()
    for line in (
        "[shutdown] API server: shutdown triggered",
        f"(EngineCore pid={engine}) INFO",
        "[shutdown] EngineCore: trigger received signal=SIGTERM",
        "INFO:     Shutting down",
        "INFO:     Application shutdown complete.",
    ):
        assert line in log


def test_engine_death_makes_health_503_then_server_exits(sim_servers: SimServers) -> None:
    server = sim_servers.start(GLM)
    os.kill(server.engine_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while server.health() != 503:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.02)
    assert server.wait_exit(10) == 1
    log = server.log()
    assert "[shutdown] MPClient: engine core exited unexpectedly; starting cleanup" in log
    assert "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue." in log


def test_kv_cache_too_small_for_max_model_len(sim_servers: SimServers, sim_gpu: SimGpu) -> None:
    server = sim_servers.start(
        GLM, "--gpu-memory-utilization", "0.20", "--sim-gpu", str(sim_gpu.path), wait=False
    )
    assert server.wait_exit(30) == 1
    log = server.log()
    assert "ValueError: To serve at least one request with the models's max seq len (131072)" in log
    assert "Available KV cache memory: 6.07" in log
    assert "EngineCore failed to start." in log
    assert sim_gpu.holders() == []


def test_port_refuses_until_ready(sim_servers: SimServers) -> None:
    server = sim_servers.start(GLM, "--sim-startup-s", "2", wait=False)
    server.wait_log("Starting to load model")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2)
    assert "Application startup complete." not in server.log()
    server.wait_ready(30)
    log = server.log()
    stages = [
        "Starting to load model",
        "Loading weights took",
        "Model loading took",
        "Available KV cache memory",
        "GPU KV cache size",
        "Maximum concurrency",
        "Graph capturing finished",
        "init engine (profile, create kv cache, warmup model)",
        "Starting vLLM server on",
        "Available routes are:",
        "Started server process",
        "Waiting for application startup.",
        "Application startup complete.",
    ]
    positions = [log.index(s) for s in stages]
    assert positions == sorted(positions)


def test_vllm_shim_runs_the_real_serve_command(sim_servers: SimServers, vllm_shim: Path) -> None:
    server = sim_servers.start(
        GLM,
        "--served-model-name",
        "simtest-shim",
        "--engine",
        "synthetic",
        "--sim-startup-s",
        "0",
        "--host",
        "127.0.0.1",
        command=("vllm",),
        defaults=False,
    )
    models = httpx.get(f"{server.url}/v1/models").json()
    assert models["data"][0]["id"] == "simtest-shim"


def test_address_in_use(sim_servers: SimServers) -> None:
    port = free_port()
    sim_servers.start(GLM, port=port)
    second = sim_servers.start(GLM, port=port, wait=False)
    assert second.wait_exit(30) == 1
    assert "OSError: [Errno 98] Address already in use" in second.log()


def test_sigterm_during_startup(sim_servers: SimServers, sim_gpu: SimGpu) -> None:
    server = sim_servers.start(
        GLM, "--sim-startup-s", "60", "--sim-gpu", str(sim_gpu.path), wait=False
    )
    server.wait_log("Starting to load model")
    engine = server.engine_pid()
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert not pid_alive(engine)
    assert sim_gpu.holders() == []


def _titled(server_pids: list[int]) -> dict[str, int]:
    out = {}
    for pid in server_pids:
        with contextlib.suppress(OSError):
            out[_title(pid)] = pid
    return out


def test_data_parallel_ranks_each_hold_their_own_gpu_and_one_dead_rank_ends_the_server(
    sim_servers: SimServers, tmp_path: Path
) -> None:
    gpu = SimGpu.create(tmp_path / "gpu2", count=2)
    server = sim_servers.start(
        GLM, "--gpu-memory-utilization", "0.40", "--sim-gpu", str(gpu.path), "-dp", "2"
    )
    wanted = {
        "VLLM::EngineCore_DP0", "VLLM::EngineCore_DP1", "VLLM::Worker_DP0", "VLLM::Worker_DP1",
        "VLLM::APIServer_0", "VLLM::APIServer_1", "VLLM::DPCoordinator",
    }  # fmt: skip
    deadline = time.monotonic() + 15  # children retitle themselves once their imports ran
    while not wanted <= set(titles := _titled(server.group_pids())):
        assert time.monotonic() < deadline, sorted(titles)
        time.sleep(0.05)
    ranks = [titles["VLLM::EngineCore_DP0"], titles["VLLM::EngineCore_DP1"]]
    assert sorted((h.gpu, h.pid, h.used_mib) for h in gpu.holders()) == [
        (0, ranks[0], A40_040_MIB),
        (1, ranks[1], A40_040_MIB),
    ]

    os.kill(ranks[1], signal.SIGKILL)
    # vLLM: one dead rank takes the whole server down, the other rank with it.
    assert server.wait_exit(20) == 1
    assert not pid_alive(ranks[0])
    assert gpu.holders() == []
