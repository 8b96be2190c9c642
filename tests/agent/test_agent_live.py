"""The real agent, shipped over LocalPod.stream, against a simulated GPU and real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ocrtui.agent import agent
from ocrtui.config import ModelConfig, PodConfig
from ocrtui.monitor.agent_monitor import AGENT_SOURCE, AgentMonitor, MonitorView
from ocrtui.monitor.agent_samples import parse_line
from ocrtui.monitor.attribution import ModelRef, attribute
from ocrtui.pod.local import LocalPod
from ocrtui.sim.gpu import SimGpu
from tests.plugins.fake_servers import FakeServers
from tests.plugins.processes import eventually, process_state

pytestmark = pytest.mark.timeout(60)


def model(name: str, port: int) -> ModelConfig:
    return ModelConfig(name=name, model="zai-org/GLM-OCR", port=port, gpu_memory_utilization=0.4)


def pod_config(**kw: object) -> PodConfig:
    base: dict[str, object] = {"kind": "local", "python": sys.executable, "agent_interval_s": 0.25}
    return PodConfig(**{**base, **kw})  # type: ignore[arg-type]


async def test_sigkilled_server_leaves_orphan_flagged_within_two_samples(
    sim_gpu: SimGpu, fake_servers: FakeServers
) -> None:
    glm = fake_servers.start("glm-ocr", 18000)
    other = fake_servers.start("not-configured", 700, model="someone/else")
    pod = LocalPod()
    await pod.connect()
    mon = AgentMonitor(pod, pod_config(sim_gpu=str(sim_gpu.path)), [model("glm-ocr", glm.port)])
    await mon.start()
    try:

        def rows(v: MonitorView) -> dict[int, str | None]:
            return {r.pid: r.model for r in v.attribution.rows} if v.attribution else {}

        v = await mon.wait_for(lambda v: rows(v).get(glm.engine_pid) == "glm-ocr", 20)
        assert rows(v)[other.engine_pid] is None
        assert v.simulated and v.sample is not None and v.sample.simulated
        (gpu,) = v.sample.gpus
        assert gpu.simulated and "(simulated)" in gpu.name and gpu.used_mib == 18700
        assert all(p.simulated and p.visible for p in v.sample.procs)
        assert v.attribution is not None and v.attribution.gpus[0].other_mib == 0
        assert mon.model_pids("glm-ocr").tree == (glm.proc.pid, glm.engine_pid)
        engine_row = next(p for p in v.sample.procs if p.pid == glm.engine_pid)
        assert engine_row.title == "VLLM::EngineCore" and engine_row.ppid == glm.proc.pid

        before_kill = v.sample.seq
        os.kill(glm.proc.pid, signal.SIGKILL)
        glm.proc.wait()
        v = await mon.wait_for(lambda v: bool(mon.orphans("glm-ocr")), 10)
        assert v.sample is not None and v.sample.seq - before_kill <= 2
        (orphan,) = mon.orphans("glm-ocr")
        assert (orphan.pid, orphan.used_mib, orphan.title) == (
            glm.engine_pid,
            18000,
            "VLLM::EngineCore",
        )
        assert rows(v)[glm.engine_pid] == "orphan:glm-ocr"
        assert mon.model_pids("glm-ocr").orphans == (glm.engine_pid,)
        assert mon.held_mib("glm-ocr") == 18000

        os.kill(glm.engine_pid, signal.SIGKILL)
        v = await mon.wait_for(lambda v: mon.held_mib("glm-ocr") == 0, 10)
        assert v.sample is not None and v.sample.gpus[0].used_mib == 700
        assert mon.orphans() == []
    finally:
        await mon.close()
        await pod.close()


_UNREAPED_CHILDREN = """
import ctypes, os, sys, time
pids = []
for i in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        ctypes.CDLL(None).prctl(15, b"VLLM::EngineCor" if i % 2 else b"python3", 0, 0, 0)
        os._exit(0)
    pids.append(pid)
print(*pids, flush=True)
time.sleep(600)
"""


async def test_zombies_are_not_listed_but_a_killed_server_still_names_its_orphan(
    sim_gpu: SimGpu, fake_servers: FakeServers, tmp_path: Path
) -> None:
    glm = fake_servers.start("glm-ocr", 18000)
    sampler = agent.Sampler(agent.SimGpu(str(sim_gpu.path)), [glm.port], 1.0)
    assert glm.proc.pid in {row["pid"] for row in sampler.sample()["vllm"]}
    # A parent that never reaps, as a container's PID 1 often is: vLLM-named zombies.
    out = tmp_path / "unreaped.out"
    with out.open("w") as f:
        maker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _UNREAPED_CHILDREN, "30", stdout=f
        )
    try:
        await eventually(lambda: len(out.read_text().split()) == 30, 10, "the children")
        zombies = {int(pid) for pid in out.read_text().split()}
        await eventually(lambda: {process_state(pid) for pid in zombies} == {"Z"}, 10, "zombies")
        os.kill(glm.proc.pid, signal.SIGKILL)  # not waited for: it stays a zombie too
        await eventually(lambda: process_state(glm.proc.pid) == "Z", 10, "the server a zombie")

        after = sampler.sample()
        listed = {row["pid"]: row for row in after["vllm"]}
        assert not zombies & set(listed)
        # The dead server still leads its EngineCore's group, so it stays listed (a zombie)
        # and names the orphan's model even for an observer with no earlier sample.
        assert (listed[glm.proc.pid]["state"], listed[glm.engine_pid]["state"]) == ("Z", "S")
        refs = (ModelRef("glm-ocr", glm.port),)
        orphans = attribute(parse_line(json.dumps(after)), refs, (), {}).orphans
        assert [(o.pid, o.model) for o in orphans] == [(glm.engine_pid, "glm-ocr")]
    finally:
        maker.kill()
        await maker.wait()


async def test_agent_killed_is_restarted_and_data_marked_stale(sim_gpu: SimGpu) -> None:
    pod = LocalPod()
    await pod.connect()
    mon = AgentMonitor(pod, pod_config(sim_gpu=str(sim_gpu.path)), [], backoff_s=(0.5,))
    await mon.start()
    try:
        v = await mon.wait_for(lambda v: v.sample is not None, 20)
        assert not v.stale and v.restarts == 0 and v.error is None
        assert v.sample is not None and v.sample.agent_pid is not None
        first = v.sample.agent_pid
        os.kill(first, signal.SIGKILL)
        down = await mon.wait_for(lambda v: not v.running, 10)
        assert down.stale and down.error == "the GPU agent exited"
        assert down.data_age_s is not None and down.sample is not None  # last data kept
        up = await mon.wait_for(
            lambda v: v.running and v.sample is not None and v.sample.agent_pid != first, 20
        )
        assert up.restarts == 1 and not up.stale and up.error is None
    finally:
        await mon.close()
        await pod.close()


async def test_agent_that_stops_answering_is_ended_and_restarted(sim_gpu: SimGpu) -> None:
    pod = LocalPod()
    await pod.connect()
    mon = AgentMonitor(
        pod, pod_config(sim_gpu=str(sim_gpu.path)), [], backoff_s=(0.5,), silence_s=2.0
    )
    await mon.start()
    try:
        v = await mon.wait_for(lambda v: v.sample is not None, 20)
        assert v.sample is not None and v.sample.agent_pid is not None
        hung = v.sample.agent_pid
        os.kill(hung, signal.SIGSTOP)  # alive, silent: its last sample must not stand
        silent = await mon.wait_for(lambda v: not v.running, 10)
        assert silent.stale
        assert silent.error == "the GPU agent sent no sample for 2 s; restarting it"
        up = await mon.wait_for(
            lambda v: v.running and v.sample is not None and v.sample.agent_pid != hung, 20
        )
        assert up.restarts == 1 and not up.stale and up.error is None
        with pytest.raises(ProcessLookupError):  # ended and reaped before the restart
            os.kill(hung, 0)
    finally:
        await mon.close()
        await pod.close()


async def test_no_python_on_the_pod_is_reported_clearly(tmp_path: Path) -> None:
    pod = LocalPod()
    await pod.connect()
    missing = str(tmp_path / "nowhere" / "python3")
    mon = AgentMonitor(pod, pod_config(python=missing), [], backoff_s=(30.0,))
    await mon.start()
    try:
        v = await mon.wait_for(lambda v: v.error is not None, 20)
        assert v.error == (
            f"no {missing} on the pod: the GPU agent needs Python >= 3.8 "
            "(install python3 or set pod.python in the config)"
        )
        assert v.sample is None and v.stale and v.data_age_s is None
    finally:
        await mon.close()
        await pod.close()


async def test_no_driver_is_a_state_and_ports_still_stream(fake_servers: FakeServers) -> None:
    glm = fake_servers.start("glm-ocr", 1000)
    pod = LocalPod()
    await pod.connect()
    # This machine has pynvml but no NVIDIA driver: the real NVMLError_LibraryNotFound path.
    mon = AgentMonitor(pod, pod_config(), [model("glm-ocr", glm.port)])
    await mon.start()
    try:
        v = await mon.wait_for(lambda v: v.sample is not None, 20)
        assert v.error == "no NVIDIA driver (NVML Shared Library Not Found)"
        assert v.sample is not None and v.sample.backend == "nvml" and v.sample.gpus == ()
        assert v.running and not v.simulated
        owner = v.sample.ports[glm.port]
        assert (owner.pid, owner.state, owner.pgid) == (glm.proc.pid, "listen", glm.proc.pid)
        api = next(p for p in v.sample.vllm if p.pid == glm.proc.pid)
        assert (api.kind, api.served, api.model) == ("api", "glm-ocr", "zai-org/GLM-OCR")
        engine = next(p for p in v.sample.vllm if p.pid == glm.engine_pid)
        assert (engine.kind, engine.title, engine.ancestors[0]) == (
            "engine",
            "VLLM::EngineCore",
            glm.proc.pid,
        )
    finally:
        await mon.close()
        await pod.close()


def test_agent_without_pynvml_or_nvidia_smi_reports_no_driver(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "PYTHONNOUSERSITE": "1"}
    out = subprocess.run(
        [sys.executable, "-S", "-u", "-", "--count", "1", "--port", "1"],
        input=AGENT_SOURCE.read_text(),
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    assert '"backend":"none"' in out.stdout
    assert "pynvml is not importable and nvidia-smi is not on PATH" in out.stdout


async def test_real_simulator_leak_through_the_lifecycle_path(
    sim_gpu: SimGpu, tmp_path: Path
) -> None:
    """`ocrtui sim-vllm` started detached as the lifecycle layer does; kill -9; orphan; kill."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pod = LocalPod()
    await pod.connect()
    mon = AgentMonitor(pod, pod_config(sim_gpu=str(sim_gpu.path)), [model("glm-ocr", port)])
    await mon.start()
    server = None
    try:
        await mon.wait_for(lambda v: v.sample is not None, 20)
        mon.begin_launch("glm-ocr")
        server = await pod.start_detached(
            [sys.executable, "-m", "ocrtui", "sim-vllm", "serve", "zai-org/GLM-OCR",
             "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "glm-ocr",
             "--gpu-memory-utilization", "0.4", "--engine", "synthetic",
             "--sim-startup-s", "0", "--sim-gpu", str(sim_gpu.path)],
            log_file=str(tmp_path / "vllm_glm-ocr.log"),
        )  # fmt: skip
        v = await mon.wait_for(
            lambda v: (
                v.sample is not None
                and v.sample.ports[port].state == "listen"
                and mon.held_mib("glm-ocr") > 0
                # The Worker comes last; on a loaded box after the port listens.
                and any(p.kind == "worker" and p.pgid == server for p in v.sample.vllm)
            ),
            40,
        )
        mon.end_launch("glm-ocr", server_pid=server)
        assert v.sample is not None
        (engine,) = [p for p in v.sample.vllm if p.kind == "engine" and p.ppid == server]
        assert engine.title == "VLLM::EngineCore"
        # Like real vLLM 0.32: API server, its resource tracker, EngineCore, Worker.
        group = {p.pid: p.kind for p in v.sample.vllm if p.pgid == server}
        assert sorted(group.values()) == ["api", "engine", "tracker", "worker"]
        assert set(mon.model_pids("glm-ocr").tree) == set(group)
        held = mon.held_mib("glm-ocr")

        before = (await mon.next_samples(1)).sample
        assert before is not None
        assert await pod.signal(server, "KILL")
        v = await mon.wait_for(lambda v: bool(mon.orphans("glm-ocr")), 10)
        assert v.sample is not None and v.sample.seq - before.seq <= 2
        orphans = {o.pid: o.used_mib for o in mon.orphans("glm-ocr")}
        assert set(orphans) == set(group) - {server}  # tracker and Worker live on too
        assert orphans[engine.pid] == held and not any(
            mib for pid, mib in orphans.items() if pid != engine.pid
        )
        assert mon.held_mib("glm-ocr") == held  # the leak: nothing listens, memory still held

        assert await pod.signal(server, "KILL", group=True)
        await mon.wait_for(lambda v: mon.held_mib("glm-ocr") == 0 and not mon.orphans(), 10)
    finally:
        if server is not None:
            await pod.signal(server, "KILL", group=True)
        await mon.close()
        await pod.close()
