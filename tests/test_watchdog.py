"""The watchdog's decisions over recorded snapshots, on a clock of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ocrtui.config import WatchdogConfig
from ocrtui.status import Snapshot, WatchdogStatus
from ocrtui.watchdog import Watchdog, WatchdogEvent
from tests.plugins import recorded

WAIT_S = 10.0


class FakeController:
    def __init__(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.restarted: list[str] = []
        self.verdicts: dict[str, WatchdogStatus] = {}
        self.changed = asyncio.Event()  # set by every verdict
        self._subscribers: list[Callable[[Snapshot], None]] = []

    def subscribe(self, cb: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(cb)
        return lambda: self._subscribers.remove(cb)

    def publish(self, snap: Snapshot) -> None:
        self.snapshot = snap
        for cb in list(self._subscribers):
            cb(snap)

    async def restart(self, name: str) -> None:
        self.restarted.append(name)

    def set_watchdog(self, name: str, status: WatchdogStatus) -> None:
        self.verdicts[name] = status
        self.changed.set()


def _glm_unhealthy() -> Snapshot:
    snap = recorded.READY
    return replace(snap, models=(replace(snap.models[0], state="unhealthy"), *snap.models[1:]))


async def test_an_unhealthy_model_is_restarted_only_once_unhealthy_for_the_set_time(
    tmp_path: Path,
) -> None:
    now = [100.0]
    ctl = FakeController(recorded.READY)
    events: asyncio.Queue[WatchdogEvent] = asyncio.Queue()
    config = WatchdogConfig(unhealthy_after_s=30, events=str(tmp_path / "events.jsonl"))
    dog = Watchdog(ctl, config, on_event=events.put_nowait, clock=lambda: now[0])
    dog.start()
    try:
        ctl.publish(_glm_unhealthy())
        now[0] += 29
        ctl.publish(_glm_unhealthy())
        assert ctl.restarted == [] and ctl.verdicts["glm-ocr"].state == "watching"
        now[0] += 1
        ctl.publish(_glm_unhealthy())
        event = await asyncio.wait_for(events.get(), WAIT_S)
        assert (event.model, event.why, event.outcome) == (
            "glm-ocr",
            "unhealthy for 30 s",
            "restarted",
        )
        assert ctl.restarted == ["glm-ocr"]
        # Healthy in between: the time starts again.
        ctl.publish(recorded.READY)
        now[0] += 100
        ctl.publish(_glm_unhealthy())
        assert ctl.restarted == ["glm-ocr"]
    finally:
        await dog.close()


def _glm_crashed() -> Snapshot:
    snap = recorded.READY
    return replace(snap, models=(replace(snap.models[0], state="crashed"), *snap.models[1:]))


async def _verdict(ctl: FakeController, name: str, want: WatchdogStatus) -> None:
    async def wait() -> None:
        while ctl.verdicts.get(name) != want:
            ctl.changed.clear()
            await ctl.changed.wait()

    await asyncio.wait_for(wait(), WAIT_S)


async def test_after_giving_up_a_model_seen_ready_again_is_watched_again(tmp_path: Path) -> None:
    ctl = FakeController(_glm_crashed())
    events: asyncio.Queue[WatchdogEvent] = asyncio.Queue()
    config = WatchdogConfig(max_restarts=1, events=str(tmp_path / "events.jsonl"))
    dog = Watchdog(ctl, config, on_event=events.put_nowait)
    dog.start()
    try:
        assert (await asyncio.wait_for(events.get(), WAIT_S)).outcome == "restarted"
        ctl.publish(_glm_crashed())  # the restart did not hold
        assert (await asyncio.wait_for(events.get(), WAIT_S)).outcome.startswith("gave up")
        ctl.publish(_glm_crashed())
        assert ctl.restarted == ["glm-ocr"] and ctl.verdicts["glm-ocr"].state == "gave up"
        ctl.publish(recorded.READY)  # someone restarted it by hand
        await _verdict(ctl, "glm-ocr", WatchdogStatus("watching", 0, None))
        ctl.publish(_glm_crashed())
        assert (await asyncio.wait_for(events.get(), WAIT_S)).outcome == "restarted"
        assert ctl.restarted == ["glm-ocr", "glm-ocr"]
    finally:
        await dog.close()
