"""What the dashboard needs from the pod: the Controller's interface, as a Protocol.

The dashboard reads ``snapshot`` on its own timer (so a fast publisher cannot flood it)
and calls the operations. Anything shaped like :class:`ocrtui.control.Controller` will
do; with several pods, each is a :class:`PodSlot`. Tests and benchmarks pass a
:class:`ReplaySource`, which plays recorded snapshots
through the same widgets so that screenshots of every state are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ocrtui.compare.arms import Placement
from ocrtui.config import Config
from ocrtui.pod.provider import ProviderState
from ocrtui.status import Snapshot, WatchdogStatus
from ocrtui.vllm.adopt import Stranger
from ocrtui.vllm.lifecycle import Progress
from ocrtui.vllm.served import Served


class PodSource(Protocol):
    @property
    def snapshot(self) -> Snapshot: ...

    def subscribe(self, cb: Callable[[Snapshot], None]) -> Callable[[], None]: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def up(self, progress: Progress | None = None) -> None: ...
    async def stop_model(self, name: str, progress: Progress | None = None) -> None: ...
    async def restart(self, name: str, progress: Progress | None = None) -> None: ...
    async def kill_orphans(self, name: str | None = None) -> list[tuple[int, int]]: ...
    async def sleep(self, name: str, level: int = 1, progress: Progress | None = None) -> None: ...
    async def wake(self, name: str) -> None: ...
    def set_watchdog(self, name: str, status: WatchdogStatus) -> None: ...
    def strangers(self) -> list[Stranger]: ...
    async def log_tail(self, name: str, lines: int = 200) -> list[str]: ...
    async def model_url(self, name: str) -> str: ...
    async def served(self, name: str) -> Served | None: ...
    def placement(self, name: str) -> Placement: ...
    async def power_state(self) -> ProviderState | None: ...
    async def start_pod(self) -> ProviderState: ...


@dataclass(frozen=True)
class PodSlot:
    """One pod as the dashboard has it: its config (one pod's) and its source."""

    config: Config
    source: PodSource

    @property
    def name(self) -> str:
        return self.config.pod.label


class ReplaySource:
    """Recorded snapshots and log lines, played on demand; operations are recorded, not done."""

    def __init__(
        self,
        snapshots: Sequence[Snapshot],
        logs: dict[str, list[str]] | None = None,
        urls: dict[str, str] | None = None,
        power: ProviderState | None = None,
    ) -> None:
        if not snapshots:
            raise ValueError("ReplaySource needs at least one snapshot")
        self._snapshots = list(snapshots)
        self._index = 0
        self.logs = dict(logs or {})
        self.urls = dict(urls or {})
        self.power = power  # what power_state() answers
        self.calls: list[tuple[str, str | None]] = []
        self.stranger_list: list[Stranger] = []  # what strangers() answers (the `a` dialog)
        self._subscribers: list[Callable[[Snapshot], None]] = []

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshots[self._index]

    def subscribe(self, cb: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(cb)
        return lambda: self._subscribers.remove(cb) if cb in self._subscribers else None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def publish(self, snapshot: Snapshot | None = None) -> Snapshot:
        """Advance to the next recorded snapshot, or make the given one current."""
        if snapshot is not None:
            self._snapshots.append(snapshot)
            self._index = len(self._snapshots) - 1
        else:
            self._index = min(self._index + 1, len(self._snapshots) - 1)
        for cb in list(self._subscribers):
            cb(self.snapshot)
        return self.snapshot

    async def up(self, progress: Progress | None = None) -> None:
        self.calls.append(("up", None))

    async def stop_model(self, name: str, progress: Progress | None = None) -> None:
        self.calls.append(("stop", name))

    async def restart(self, name: str, progress: Progress | None = None) -> None:
        self.calls.append(("restart", name))

    async def sleep(self, name: str, level: int = 1, progress: Progress | None = None) -> None:
        self.calls.append(("sleep", f"{name}: level {level}"))

    async def wake(self, name: str) -> None:
        self.calls.append(("wake", name))

    def set_watchdog(self, name: str, status: WatchdogStatus) -> None:
        self.calls.append(("set_watchdog", f"{name}: {status.state}"))

    def strangers(self) -> list[Stranger]:
        return list(self.stranger_list)

    async def kill_orphans(self, name: str | None = None) -> list[tuple[int, int]]:
        self.calls.append(("kill_orphans", name))
        return [
            (p.pid, p.used_mib)
            for p in self.snapshot.processes
            if p.kind == "orphan" and (name is None or p.owner == name)
        ]

    async def log_tail(self, name: str, lines: int = 200) -> list[str]:
        return self.logs.get(name, [])[-lines:]

    async def served(self, name: str) -> Served | None:
        return None  # recorded snapshots carry their advisories; no server to probe

    def placement(self, name: str) -> Placement:
        return Placement.of(self.snapshot, name)

    async def power_state(self) -> ProviderState | None:
        return self.power

    async def start_pod(self) -> ProviderState:
        self.calls.append(("start_pod", None))
        self.power = ProviderState("running", "started (replay)")
        return self.power

    async def model_url(self, name: str) -> str:
        try:
            return self.urls[name]
        except KeyError:
            raise LookupError(f"no recorded URL for model {name!r}") from None
