"""The watchdog: ``ocrtui watch`` (headless) and the dashboard's toggle.

Driven by the Controller's snapshots (no polling of its own): a model or service that is
``crashed``, or ``unhealthy`` for ``[watchdog] unhealthy_after_s``, is restarted through
:meth:`Controller.restart` (orphans killed, memory released, preflight), one restart at a
time per name. The crash-loop guard: once ``max_restarts`` restarts of one name fall within
``window_min`` minutes, it stops trying that one and says so (``WatchdogStatus`` state
``gave up`` with the last crash's hint, on the card and in ``status --json``) until it is
seen ``ready`` again (a person restarted it). Another process's ``ocrtui status`` reads the
guard's verdicts back from the events file (:func:`gave_up_from_events`). Every attempt's
log is kept: a model's log file is appended across restarts, each run after its
``[ocrtui] launch`` marker (``vllm/logfile.py``). Every action is a
:class:`WatchdogEvent`, appended as a JSON line to ``[watchdog] events`` and handed to
``on_event`` (the dashboard's notification and panel, ``ocrtui watch``'s stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from ocrtui.config import WatchdogConfig
from ocrtui.errors import OcrtuiError
from ocrtui.status import Snapshot, WatchdogState, WatchdogStatus


class Watched(Protocol):
    """What the watchdog needs of :class:`ocrtui.control.Controller` (the dashboard's
    ``PodSource`` has the same)."""

    @property
    def snapshot(self) -> Snapshot: ...

    def subscribe(self, cb: Callable[[Snapshot], None]) -> Callable[[], None]: ...
    async def restart(self, name: str) -> None: ...
    def set_watchdog(self, name: str, status: WatchdogStatus) -> None: ...


GAVE_UP: WatchdogState = "gave up"
EVENTS_TAIL_BYTES = 256 * 1024  # what `status` reads of the events file: the latest verdicts


@dataclass(frozen=True)
class WatchdogEvent:
    """One action: ``outcome`` is ``restarted``, ``failed: ...`` or ``gave up: ...``."""

    time: str  # ISO 8601, local time with offset
    model: str  # a model's or a service's name
    why: str
    outcome: str
    restarts: int  # the watchdog's restarts of this one within the guard's window
    hint: str | None  # the crash's known-failure hint, if any

    def line(self) -> str:
        return json.dumps(asdict(self))


def gave_up_from_events(path: Path) -> dict[str, WatchdogStatus]:
    """The names whose last event in the events file is the guard's ``gave up`` (for an
    ``ocrtui status`` beside a running ``ocrtui watch``); {} without the file."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - EVENTS_TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return {}
    last: dict[str, dict[str, object]] = {}
    for line in lines:
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and isinstance(event.get("model"), str):
                last[event["model"]] = event
    return {
        name: WatchdogStatus(GAVE_UP, int(str(e.get("restarts", 0))), _str(e.get("hint")))
        for name, e in last.items()
        if str(e.get("outcome", "")).startswith(GAVE_UP)
    }


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class Watchdog:
    def __init__(
        self,
        ctl: Watched,
        config: WatchdogConfig,
        *,
        on_event: Callable[[WatchdogEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ctl = ctl
        self._config = config
        self._on_event = on_event
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._attempts: dict[str, list[float]] = {}  # restart times, within the window
        self._unhealthy_since: dict[str, float] = {}
        self._gave_up: set[str] = set()
        self._hints: dict[str, str | None] = {}
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def running(self) -> bool:
        return self._unsubscribe is not None

    def start(self) -> None:
        if self._unsubscribe is not None:
            return
        self._unsubscribe = self._ctl.subscribe(self._on_snapshot)
        for name in self._names():
            self._set(name, "watching")
        self._on_snapshot(self._ctl.snapshot)

    async def close(self) -> None:
        """Stop watching; a restart under way is cancelled."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _names(self) -> list[str]:
        snap = self._ctl.snapshot
        return [m.name for m in snap.models] + [s.name for s in snap.services]

    def _set(self, name: str, state: WatchdogState) -> None:
        restarts = len(self._attempts.get(name, ()))
        self._ctl.set_watchdog(name, WatchdogStatus(state, restarts, self._hints.get(name)))

    def _on_snapshot(self, snap: Snapshot) -> None:
        units = [(m.name, m.state, m.hint) for m in snap.models]
        units += [(s.name, s.state, s.hint) for s in snap.services]
        now = self._clock()
        for name, state, hint in units:
            if state != "unhealthy":
                self._unhealthy_since.pop(name, None)
            if state == "ready" and name in self._gave_up:
                self._gave_up.discard(name)  # restarted by hand: watch it again
                self._attempts.pop(name, None)
                # Not from inside this publish: its other subscribers get this snapshot first.
                asyncio.get_running_loop().call_soon(self._set, name, "watching")
            if name in self._tasks or name in self._gave_up:
                continue
            why = None
            if state == "crashed":
                why = "crashed"
            elif state == "unhealthy":
                since = self._unhealthy_since.setdefault(name, now)
                if now - since >= self._config.unhealthy_after_s:
                    why = f"unhealthy for {now - since:.0f} s"
            if why is not None:
                self._hints[name] = hint
                self._tasks[name] = asyncio.create_task(self._act(name, why))

    async def _act(self, name: str, why: str) -> None:
        try:
            now = self._clock()
            window_s = self._config.window_min * 60
            recent = [t for t in self._attempts.get(name, []) if now - t < window_s]
            self._attempts[name] = recent
            if len(recent) >= self._config.max_restarts:
                self._gave_up.add(name)
                self._set(name, GAVE_UP)
                outcome = f"gave up: {len(recent)} restarts within {self._config.window_min:g} min"
                await self._record(name, why, outcome)
                return
            recent.append(now)
            self._set(name, "restarting")
            try:
                await self._ctl.restart(name)
                outcome = "restarted"
            except OcrtuiError as exc:
                outcome = f"failed: {exc}"
            self._unhealthy_since.pop(name, None)
            self._set(name, "watching")
            await self._record(name, why, outcome)
        finally:
            self._tasks.pop(name, None)

    async def _record(self, name: str, why: str, outcome: str) -> None:
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        restarts = len(self._attempts.get(name, ()))
        event = WatchdogEvent(stamp, name, why, outcome, restarts, self._hints.get(name))
        await asyncio.to_thread(_append, self._config.events_path, event.line())
        if self._on_event is not None:
            self._on_event(event)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
