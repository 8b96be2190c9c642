"""AgentMonitor's states over a scripted pod: mismatch, staleness, link loss, launch diffs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ocrtui.config import ModelConfig, PodConfig
from ocrtui.monitor.agent_monitor import AgentMonitor, agent_argv
from ocrtui.pod.base import CommandResult, ConnState, Pod, PodConnectionLost

DATA = Path(__file__).parent / "data"
MODELS = [
    ModelConfig(name="glm-ocr", model="zai-org/GLM-OCR", port=8000, gpu_memory_utilization=0.4),
    ModelConfig(
        name="lighton-ocr",
        model="lightonai/LightOnOCR-2-1B",
        port=8001,
        gpu_memory_utilization=0.55,
    ),
]
CONFIG = PodConfig(kind="local", agent_interval_s=1.0)


def line(name: str, **changes: Any) -> str:
    data = json.loads((DATA / name).read_text())
    data.update(changes)
    return json.dumps(data)


class ScriptedPod(Pod):
    """Each stream() call plays the next script: lines, then an end ("exit" or "lost")."""

    def __init__(self, scripts: list[tuple[list[str], str]], python: str = "3.11") -> None:
        super().__init__("scripted")
        self.scripts = scripts
        self.python = python
        self.streams: list[list[str]] = []
        self.feed: asyncio.Queue[str | None] = asyncio.Queue()

    async def connect(self) -> None:
        self._set_state(ConnState.CONNECTED)

    async def close(self) -> None:
        self._set_state(ConnState.CLOSED)

    async def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        if self.python == "missing":
            return CommandResult(tuple(argv), 127, "", "sh: 1: python3: not found\n")
        return CommandResult(tuple(argv), 0, self.python + "\n", "")

    async def stream(
        self, argv: Sequence[str], *, input: str | None = None
    ) -> AsyncGenerator[str, None]:
        self.streams.append(list(argv))
        assert input is not None and "PROTOCOL_VERSION = 1" in input
        if not self.scripts:
            while (item := await self.feed.get()) is not None:  # live: fed by the test
                yield item
            return
        lines, end = self.scripts.pop(0)
        for item in lines:
            yield item
        if end == "lost":
            self._set_state(ConnState.LOST)
            raise PodConnectionLost("link dropped")

    async def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> str:
        raise NotImplementedError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_agent_command_line_from_config() -> None:
    cfg = PodConfig(kind="local", python="/opt/py/bin/python3", agent_interval_s=0.5, sim_gpu="~/g")
    assert agent_argv(cfg, [8000, 8001]) == [
        "/opt/py/bin/python3", "-u", "-", "--interval", "0.5",
        "--port", "8000", "--port", "8001", "--sim-gpu", "~/g",
    ]  # fmt: skip


async def test_protocol_mismatch_is_an_error_state() -> None:
    pod = ScriptedPod([([line("no_driver.json", v=2)], "exit")])
    await pod.connect()
    mon = AgentMonitor(pod, CONFIG, MODELS, backoff_s=(60.0,))
    await mon.start()
    try:
        v = await mon.wait_for(lambda v: v.error is not None, 5)
        assert v.error is not None and "agent protocol version 2, monitor expects 1" in v.error
        assert v.sample is None and v.stale
    finally:
        await mon.close()


async def test_data_age_grows_and_goes_stale_when_samples_stop() -> None:
    clock = Clock()
    pod = ScriptedPod([])
    await pod.connect()
    mon = AgentMonitor(pod, CONFIG, MODELS, clock=clock)
    await mon.start()
    try:
        pod.feed.put_nowait(line("nvml_normal.json"))
        v = await mon.wait_for(lambda v: v.sample is not None, 5)
        assert (v.data_age_s, v.stale, v.error) == (0.0, False, None)
        clock.now += 2.5
        assert (mon.view.data_age_s, mon.view.stale) == (2.5, False)
        clock.now += 1.0  # > 3 intervals without a sample
        assert (mon.view.data_age_s, mon.view.stale) == (3.5, True)
        pod.feed.put_nowait(line("nvml_normal.json", seq=813))
        v = await mon.next_samples(1, timeout=5)
        assert (v.data_age_s, v.stale) == (0.0, False)
    finally:
        pod.feed.put_nowait(None)
        await mon.close()


async def test_link_loss_waits_for_reconnect_then_restarts_the_agent() -> None:
    pod = ScriptedPod([([line("nvml_normal.json")], "lost")])
    await pod.connect()
    mon = AgentMonitor(pod, CONFIG, MODELS, backoff_s=(0.0,))
    await mon.start()
    try:
        v = await mon.wait_for(lambda v: v.error == "waiting for the connection to scripted", 5)
        assert v.sample is not None and v.stale  # the last data stays, marked stale
        assert len(pod.streams) == 1
        await pod.connect()
        pod.feed.put_nowait(line("nvml_normal.json", seq=1))
        v = await mon.wait_for(
            lambda v: v.running and v.sample is not None and v.sample.seq == 1, 5
        )
        assert v.error is None and v.restarts == 1 and len(pod.streams) == 2
    finally:
        pod.feed.put_nowait(None)
        await mon.close()


async def test_launch_bracketing_attributes_invisible_rows_in_a_container() -> None:
    pod = ScriptedPod([])
    await pod.connect()
    mon = AgentMonitor(pod, CONFIG, MODELS)
    await mon.start()
    container = json.loads((DATA / "container_invisible.json").read_text())
    procs = {p["pid"]: p for p in container["procs"]}

    async def feed(seq: int, pids: list[int]) -> None:
        pod.feed.put_nowait(line("container_invisible.json", seq=seq,
                                 procs=[procs[p] for p in pids]))  # fmt: skip
        await mon.wait_for(lambda v: v.sample is not None and v.sample.seq == seq, 5)

    try:
        await feed(1, [1913])
        mon.launches.begin("glm-ocr")
        mon.launches.started("glm-ocr", 37)
        await feed(2, [1913, 2281934])
        assert mon.launches.end("glm-ocr")
        mon.launches.begin("lighton-ocr")
        await feed(3, [1913, 2281934, 2282120])
        assert mon.launches.end("lighton-ocr")
        await feed(4, [1913, 2281934, 2282120])
        v = mon.view
        assert v.attribution is not None
        assert {r.pid: r.model for r in v.attribution.rows} == {
            1913: None,
            2281934: "glm-ocr",
            2282120: "lighton-ocr",
        }
        glm, lighton = v.model("glm-ocr"), v.model("lighton-ocr")
        assert glm is not None and lighton is not None
        assert glm.held_mib == 18386 and lighton.held_mib == 25310
        assert glm.tree_pids == (37, 112) and glm.groups == (37,)
        assert v.orphans == ()
    finally:
        pod.feed.put_nowait(None)
        await mon.close()


@pytest.mark.parametrize("model", ["glm-ocr", "nonexistent"])
async def test_model_queries_before_any_sample_are_empty(model: str) -> None:
    mon = AgentMonitor(ScriptedPod([]), CONFIG, MODELS)
    assert mon.view.model(model) is None and mon.view.orphans == ()
    assert mon.view.data_age_s is None and mon.view.stale


@pytest.mark.parametrize(
    ("python", "error"),
    [
        (
            "missing",
            "no python3 on the pod: the GPU agent needs Python >= 3.8 "
            "(install python3 or set pod.python in the config)",
        ),
        ("3.6", "python3 on the pod is 3.6; the GPU agent needs >= 3.8"),
    ],
)
async def test_agent_that_prints_nothing_is_diagnosed(python: str, error: str) -> None:
    pod = ScriptedPod([([], "exit")], python=python)
    await pod.connect()
    mon = AgentMonitor(pod, CONFIG, MODELS, backoff_s=(60.0,))
    await mon.start()
    try:
        v = await mon.wait_for(lambda v: v.error is not None, 5)
        assert v.error == error and not v.running
    finally:
        await mon.close()


async def test_a_launch_end_without_its_begin_claims_no_rows() -> None:
    pod = ScriptedPod([])
    await pod.connect()
    mon = AgentMonitor(pod, CONFIG, MODELS)
    await mon.start()
    try:
        pod.feed.put_nowait(line("container_invisible.json"))
        await mon.wait_for(lambda v: v.sample is not None, 5)
        assert not mon.launches.end("glm-ocr")
        v = mon.view
        assert v.attribution is not None
        assert {r.model for r in v.attribution.rows} == {None}
    finally:
        pod.feed.put_nowait(None)
        await mon.close()
