"""The fault suite (marker ``faults``): faults injected into a running comparison through the
real code path (Controller, SSHPod to a real sshd or LocalPod, the simulator's servers
launched by the lifecycle), each checked for pages lost, duplicated and failed.

Render-worker deaths and kill -9 of ``ocrtui compare`` itself are in tests/compare
(test_render.py, test_cli.py, also marked ``faults``). Every wait has a deadline; the
simulator's synthetic engine keeps each run to a few seconds of work.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ocrtui.compare import launch
from ocrtui.compare.cli import run_headless
from ocrtui.compare.launch import CompareRequest, resolve
from ocrtui.config import Config, PodConfig, parse_config
from ocrtui.control import Controller
from ocrtui.monitor.agent_monitor import AgentMonitor
from ocrtui.pod.base import ConnState
from ocrtui.pod.local import LocalPod
from ocrtui.sim.gpu import SimGpu
from ocrtui.status import Snapshot
from tests.plugins.reaper import kill_writing_under
from tests.plugins.sim import free_port, write_vllm_shim
from tests.plugins.sshd import Sshd

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

REFRESH_S = 0.25
MODELS = (("glm-ocr", "zai-org/GLM-OCR", 0.40), ("lighton-ocr", "lightonai/LightOnOCR-2-1B", 0.50))
# How long the pod's sshd is gone: a parameter of the test that takes it down. Past the
# reconnect backoff's 2 s cap three times over (ocrtui/pod/ssh.py BACKOFF_MAX_S), so the link
# is retried at the cap and the run sits paused; a longer one adds wall time, not a path.
OUTAGES_S = (6.0,)
SESSION_KILLS = 10
WAIT_S = 60.0


def sim_flags(prefill_s: float) -> list[str]:
    return [
        "--host", "127.0.0.1", "--engine", "synthetic", "--sim-startup-s", "0.3",
        "--sim-prefill-s", str(prefill_s), "--sim-per-token-s", "0.0001",
        "--sim-tokens-per-page", "20",
    ]  # fmt: skip


class Bench:
    """A pod workdir with a simulated GPU and the `vllm` shim, a PDF, and configs."""

    def __init__(self, root: Path, pdf: Path) -> None:
        self.root = root
        self.pdf = pdf
        self.gpu = SimGpu.create(root / "gpu")
        self.shim = write_vllm_shim(root / "bin")
        self.workdir = root / "work"
        self.workdir.mkdir()

    def config(
        self, pod: PodConfig | None = None, prefill_s: float = 0.05, **compare: Any
    ) -> Config:
        pod_data: dict[str, Any] = (
            pod.model_dump(exclude_none=True) if pod is not None else {"kind": "local"}
        )
        pod_data.update(
            workdir=str(self.workdir), vllm_command=[str(self.shim)], sim_gpu=str(self.gpu.path),
            agent_interval_s=0.25,
        )  # fmt: skip
        models = [
            {"name": n, "model": m, "port": free_port(), "gpu_memory_utilization": u,
             "max_model_len": 8192, "extra_args": sim_flags(prefill_s), "ready_timeout_s": 60.0,
             "profile": "generic"}
            for n, m, u in MODELS
        ]  # fmt: skip
        settings = {"warm_runs": 1, "throughput_requests": 2, "concurrency": 2, **compare}
        data = {"pod": pod_data, "models": models, "ui": {"refresh_s": REFRESH_S},
                "compare": settings}  # fmt: skip
        return parse_config(data, "faults config")


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    from fpdf import FPDF

    pdf = FPDF(format=(80, 40))  # mm: small pages render fast
    pdf.set_font("Helvetica", size=12)
    for i in range(1, 121):
        pdf.add_page()
        pdf.cell(0, 10, f"page {i}")
    path = tmp_path / "doc.pdf"
    pdf.output(str(path))
    b = Bench(tmp_path, path)
    try:
        yield b
    finally:
        kill_writing_under(b.workdir)


@pytest.fixture
async def controller() -> AsyncIterator[Callable[..., Any]]:
    started: list[Controller] = []

    async def make(config: Config, pod: Any = None) -> Controller:
        ctl = Controller(config, pod=pod)
        started.append(ctl)
        await ctl.start()
        await ctl.up()
        return ctl

    yield make
    for ctl in started:
        await ctl.close()


def pids(snap: Snapshot) -> dict[str, int | None]:
    return {m.name: m.pid for m in snap.models}


def rows(run_dir: Path) -> list[dict[str, Any]]:
    try:
        text = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


async def until_rows(run_dir: Path, n: int, run: asyncio.Task[int]) -> None:
    """Until results.jsonl holds ``n`` lines (the run must still be going)."""
    async with asyncio.timeout(WAIT_S):
        while len(rows(run_dir)) < n:
            assert not run.done(), "the run ended before the fault was injected"
            await asyncio.sleep(0.05)  # polling a file another task appends to


def check_every_page_once(run_dir: Path, pages: int) -> None:
    got = rows(run_dir)
    keys = [(r["doc"], r["page"], r["model"]) for r in got]
    assert len(keys) == len(set(keys)), "duplicated pages"
    assert len(keys) == pages * len(MODELS), "lost pages"
    assert [r for r in got if not r["ok"]] == [], "failed pages"


def start(setup: launch.RunSetup, ctl: Controller, out: io.StringIO) -> asyncio.Task[int]:
    gate = launch.gate_for(setup, [ctl], REFRESH_S)
    console = Console(file=out, width=200)
    return asyncio.ensure_future(run_headless(setup, ctl.model_url, console, gate))


@pytest.mark.sshd
@pytest.mark.parametrize("outage_s", OUTAGES_S, ids=lambda s: f"outage-{s:g}s")
async def test_ssh_session_kills_and_a_listener_outage(
    bench: Bench, sshd: Sshd, controller: Callable[..., Any], outage_s: float
) -> None:
    pages = 80
    config = bench.config(sshd.pod_config(), prefill_s=0.2)
    pod = sshd.make_pod(workdir=str(bench.workdir), vllm_command=(str(bench.shim),),
                        sim_gpu=str(bench.gpu.path), agent_interval_s=0.25)  # fmt: skip
    ctl: Controller = await controller(config, pod)
    servers = pids(ctl.snapshot)
    run_dir = bench.root / "run"
    setup = resolve(config, CompareRequest((str(bench.pdf),), pages=f"1-{pages}", out=str(run_dir)))
    out = io.StringIO()
    run = start(setup, ctl, out)
    await until_rows(run_dir, 4, run)
    sshd.stop()
    await ctl.pod.wait_for_state(ConnState.LOST, ConnState.RECONNECTING, timeout=10)
    stalled = len(rows(run_dir))
    await asyncio.sleep(outage_s)  # the fault itself: the pod's sshd is gone this long
    assert len(rows(run_dir)) <= stalled + 2 * 2  # only requests already answered land
    sshd.start()
    await ctl.pod.wait_for_state(ConnState.CONNECTED, timeout=WAIT_S)
    await until_rows(run_dir, stalled + 1, run)  # going again
    for _ in range(SESSION_KILLS):
        await ctl.pod.wait_for_state(ConnState.CONNECTED, timeout=WAIT_S)
        assert not run.done(), "the run ended before the session kills"
        for pid in sshd.session_pids():
            os.kill(pid, signal.SIGKILL)
        await ctl.pod.wait_for_state(ConnState.LOST, ConnState.RECONNECTING, timeout=10)
    async with asyncio.timeout(WAIT_S * 2):
        code = await run
    log = out.getvalue()
    assert code == 0, log
    assert "all models: paused: link down" in log and "all models: resumed after" in log
    check_every_page_once(run_dir, pages)
    await ctl.wait_until(lambda s: all(m.state == "ready" for m in s.models), WAIT_S)
    assert pids(ctl.snapshot) == servers  # the servers were never touched


async def test_kill_9_of_an_api_server_with_auto_restart(
    bench: Bench, controller: Callable[..., Any]
) -> None:
    pages = 30
    config = bench.config(prefill_s=0.1)
    ctl: Controller = await controller(config)
    before = pids(ctl.snapshot)
    run_dir = bench.root / "run"
    request = CompareRequest((str(bench.pdf),), pages=f"1-{pages}", out=str(run_dir),
                             auto_restart=True)  # fmt: skip
    setup = resolve(config, request)
    out = io.StringIO()
    run = start(setup, ctl, out)
    await until_rows(run_dir, 6, run)
    victim = before["glm-ocr"]
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    async with asyncio.timeout(WAIT_S * 2):
        code = await run
    log = out.getvalue()
    assert code == 0, log
    assert "glm-ocr: paused: crashed" in log and "glm-ocr: resumed after" in log
    check_every_page_once(run_dir, pages)
    after = pids(ctl.snapshot)
    assert after["glm-ocr"] not in (None, victim) and after["lighton-ocr"] == before["lighton-ocr"]


async def test_sigstop_of_a_server_times_out_shows_unhealthy_and_resumes(
    bench: Bench, controller: Callable[..., Any]
) -> None:
    pages = 24
    config = bench.config(prefill_s=0.1, request_timeout_s=2.0)
    ctl: Controller = await controller(config)
    run_dir = bench.root / "run"
    setup = resolve(config, CompareRequest((str(bench.pdf),), pages=f"1-{pages}", out=str(run_dir)))
    out = io.StringIO()
    run = start(setup, ctl, out)
    await until_rows(run_dir, 6, run)
    victim = pids(ctl.snapshot)["lighton-ocr"]
    assert victim is not None
    os.kill(victim, signal.SIGSTOP)
    try:
        await ctl.wait_until(lambda s: s.model("lighton-ocr").state == "unhealthy", WAIT_S)  # type: ignore[union-attr]
        stalled = len([r for r in rows(run_dir) if r["model"] == "lighton-ocr"])
    finally:
        os.kill(victim, signal.SIGCONT)
    async with asyncio.timeout(WAIT_S * 2):
        code = await run
    log = out.getvalue()
    assert code == 0, log
    assert "lighton-ocr: paused: unhealthy" in log
    assert stalled < pages  # it was stopped mid-run, and continued after SIGCONT
    check_every_page_once(run_dir, pages)


async def test_a_killed_agent_is_restarted_and_its_data_marked_stale(tmp_path: Path) -> None:
    gpu = SimGpu.create(tmp_path / "gpu")
    config = PodConfig(kind="local", workdir=str(tmp_path), sim_gpu=str(gpu.path),
                       agent_interval_s=0.25)  # fmt: skip
    pod = LocalPod()
    await pod.connect()
    mon = AgentMonitor(pod, config, [], backoff_s=(0.5,))
    await mon.start()
    try:
        first = await mon.wait_for(lambda v: v.sample is not None, WAIT_S)
        agent = first.sample.agent_pid  # type: ignore[union-attr]
        assert agent is not None
        os.kill(agent, signal.SIGKILL)
        gone = await mon.wait_for(lambda v: v.error is not None, WAIT_S)
        assert gone.stale and "agent exited" in (gone.error or "")
        back = await mon.wait_for(
            lambda v: v.sample is not None and v.sample.agent_pid != agent and not v.stale, WAIT_S
        )
        assert back.restarts == 1 and back.error is None
    finally:
        await mon.close()
        await pod.close()
