"""The watchdog (ocrtui/watchdog.py) against the simulator: a model whose API server is
SIGKILLed again and again is restarted each time, then the crash-loop guard stops trying and
says so in the snapshot and the events file (from which another process's ``ocrtui status``
reads it back)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from ocrtui.config import WatchdogConfig
from ocrtui.control import Controller
from ocrtui.status import Snapshot, WatchdogStatus
from ocrtui.watchdog import Watchdog, WatchdogEvent, gave_up_from_events
from tests.plugins.sim_pod import SimPod, start_controller

pytestmark = pytest.mark.timeout(90)

EVENT_WAIT_S = 40.0


def _kill_api_server(snap: Snapshot) -> int:
    pid = snap.model("glm").pid  # type: ignore[union-attr]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def _ready_again(old_pid: int) -> Callable[[Snapshot], bool]:
    def ready(snap: Snapshot) -> bool:
        glm = snap.model("glm")
        return glm is not None and glm.state == "ready" and glm.pid != old_pid

    return ready


def _launches(log_path: str) -> int:
    lines = Path(log_path).read_text().splitlines()
    return sum(line.startswith("[ocrtui] launch glm ") for line in lines)


async def test_a_model_killed_repeatedly_is_restarted_then_the_guard_gives_up(
    sim_pod: SimPod, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ctl: Controller = await start_controller(sim_pod, (sim_pod.model("glm"),), "local", request)
    events_path = tmp_path / "state" / "events.jsonl"
    events: asyncio.Queue[WatchdogEvent] = asyncio.Queue()
    dog = Watchdog(
        ctl,
        WatchdogConfig(max_restarts=2, window_min=10, events=str(events_path)),
        on_event=events.put_nowait,
    )
    try:
        await ctl.up()
        dog.start()
        assert ctl.snapshot.model("glm").watchdog.state == "watching"  # type: ignore[union-attr]
        for _ in range(2):
            old = _kill_api_server(ctl.snapshot)
            event = await asyncio.wait_for(events.get(), EVENT_WAIT_S)
            assert (event.model, event.why, event.outcome) == ("glm", "crashed", "restarted")
            snap = await ctl.wait_until(_ready_again(old), EVENT_WAIT_S)
        _kill_api_server(snap)
        event = await asyncio.wait_for(events.get(), EVENT_WAIT_S)
        assert event.outcome == "gave up: 2 restarts within 10 min", event
        snap = await ctl.wait_until(
            lambda s: s.model("glm").state == "crashed",  # type: ignore[union-attr]
            EVENT_WAIT_S,
        )
        glm = snap.to_json()["models"][0]
        assert glm["watchdog"] == {"state": "gave up", "restarts": 2, "last_hint": glm["hint"]}
        # It stays given up: no further attempt while the model stays crashed.
        assert events.empty() and snap.model("glm").restarts == 2  # type: ignore[union-attr]
    finally:
        await dog.close()
        await ctl.close()

    lines = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert [(e["model"], e["why"], e["outcome"].split(":")[0]) for e in lines] == [
        ("glm", "crashed", "restarted"),
        ("glm", "crashed", "restarted"),
        ("glm", "crashed", "gave up"),
    ]
    assert all(e["time"] for e in lines) and [e["restarts"] for e in lines] == [1, 2, 2]
    # What `ocrtui status` in another process reads back: the guard's verdict.
    assert gave_up_from_events(events_path) == {"glm": WatchdogStatus("gave up", 2, glm["hint"])}
    # Every attempt's log is kept: one file, a launch marker before each run.
    assert _launches(ctl.config.model("glm").log_path(str(sim_pod.workdir))) == 3
