"""What a run needs to know about the world outside it: is the link to the pod up, is each
model's server ready. The runner holds a model's requests while its gate says it is paused,
and retries a request that failed while an outage began (see runner.py).

``RunGate`` is the interface the runner sees; :class:`SnapshotGate` implements it over the
Controller's snapshots (``status.Snapshot``, the same ones ``ocrtui status`` prints), so the
runner never touches the pod, and the launcher (the headless CLI, the dashboard) builds it;
the run closes it when it ends. A model asleep (vLLM's sleep mode) is ``ready`` but paused
too, until it wakes.
With ``restart`` given (``ocrtui compare --auto-restart``), a model seen ``crashed`` is
restarted through it, at most ``MAX_RESTARTS`` times per run.

Arms on different pods (``[[pods]]``): :class:`PodsGate` holds one SnapshotGate per pod and
turns a pod's link pause into a pause of that pod's models (``link down (pod NAME)``), so
one pod's outage holds only its own arms' requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from ocrtui.status import Snapshot
from ocrtui.vllm.client import PROBE_TIMEOUT_S

LINK = None  # the pauses() key of the pod link (model names key their servers)
LINK_DOWN = "link down"
MAX_RESTARTS = 3
LINK_DOWN_STATES = frozenset({"connecting", "lost", "reconnecting"})
# "down" pauses only after the gate saw the model ready: the watcher says "down" before its
# first poll, and the run starts only once every model answered /health.
PAUSING_STATES = frozenset({"unhealthy", "crashed", "starting"})


class RunGate(Protocol):
    @property
    def grace_s(self) -> float:
        """How long after a failed request an outage may take to show in ``pauses()``."""
        ...

    def pauses(self) -> Mapping[str | None, str]:
        """Why requests must wait now: ``None`` (the link) and model names -> the reason."""
        ...

    def paused_since(self, key: str | None, t: float) -> bool:
        """Whether ``key`` was paused at some moment after ``t`` (``time.monotonic()``)."""
        ...

    async def changed(self) -> None:
        """Returns after the next update of what the gate knows."""
        ...

    async def close(self) -> None:
        """Stop following; the run calls it when it ends."""
        ...


class SnapshotSource(Protocol):
    @property
    def snapshot(self) -> Snapshot: ...

    def subscribe(self, cb: Callable[[Snapshot], None]) -> Callable[[], None]: ...


Restart = Callable[[str], Awaitable[None]]


class SnapshotGate:
    """A RunGate over a Controller's snapshots; ``close()`` when the run is over."""

    def __init__(
        self,
        source: SnapshotSource,
        models: tuple[str, ...],
        *,
        refresh_s: float,
        restart: Restart | None = None,
    ) -> None:
        self._models = models
        self._restart = restart
        # The watcher changes a verdict after two failed probes in a row (probe.py), each
        # up to PROBE_TIMEOUT_S plus a round; one more round and a margin to publish it.
        self._grace_s = 2 * (PROBE_TIMEOUT_S + refresh_s) + refresh_s + 1.0
        self._pauses: dict[str | None, str] = {}
        self._last_paused: dict[str | None, float] = {}
        self._seen_ready: set[str] = set()
        self._restarts: dict[str, int] = dict.fromkeys(models, 0)
        self._restart_error: dict[str, str] = {}
        self._restarting: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._on(source.snapshot)
        self._unsubscribe: Callable[[], None] | None = source.subscribe(self._on)

    @property
    def grace_s(self) -> float:
        return self._grace_s

    def pauses(self) -> Mapping[str | None, str]:
        return self._pauses

    def paused_since(self, key: str | None, t: float) -> bool:
        return key in self._pauses or self._last_paused.get(key, float("-inf")) >= t

    async def changed(self) -> None:
        await self.next_change().wait()

    def next_change(self) -> asyncio.Event:
        """The event the next update sets (taken now: an update after this call sets it)."""
        return self._changed

    def restarts(self, model: str) -> int:
        return self._restarts.get(model, 0)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in self._restarting.values():
            task.cancel()
        for task in list(self._restarting.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on(self, snap: Snapshot) -> None:
        pauses: dict[str | None, str] = {}
        if snap.pod.connection in LINK_DOWN_STATES:
            pauses[LINK] = LINK_DOWN
        for name in self._models:
            status = snap.model(name)
            if status is None:
                continue
            if status.state == "ready":
                self._seen_ready.add(name)
                self._restart_error.pop(name, None)
                if status.sleeping:
                    # vLLM holds requests while asleep: the run says why it waits.
                    pauses[name] = f"asleep (ocrtui wake {name})"
                continue
            if status.state in PAUSING_STATES or name in self._seen_ready:
                pauses[name] = self._reason(name, status.state)
            if status.state == "crashed" and LINK not in pauses:
                self._maybe_restart(name)
        now = time.monotonic()
        for key in pauses:
            self._last_paused[key] = now
        self._pauses = pauses
        self._changed.set()
        self._changed = asyncio.Event()

    def _reason(self, name: str, state: str) -> str:
        if name in self._restarting:
            return f"{state}; restarting (attempt {self._restarts[name]} of {MAX_RESTARTS})"
        if name in self._restart_error:
            return f"{state}; restart failed: {self._restart_error[name]}"
        return state

    def _maybe_restart(self, name: str) -> None:
        if self._restart is None or name in self._restarting:
            return
        if self._restarts[name] >= MAX_RESTARTS:
            return
        self._restarts[name] += 1
        self._restarting[name] = asyncio.create_task(
            self._restart_one(name), name=f"auto-restart-{name}"
        )

    async def _restart_one(self, name: str) -> None:
        assert self._restart is not None
        try:
            await self._restart(name)
        except Exception as exc:  # a failed restart is a pause reason, not a crash of the run
            self._restart_error[name] = str(exc) or type(exc).__name__
        finally:
            self._restarting.pop(name, None)


class PodsGate:
    """A RunGate over several pods' gates, each with the models served there."""

    def __init__(self, gates: Sequence[tuple[str, SnapshotGate, tuple[str, ...]]]) -> None:
        """``gates``: (pod name, its gate, its models)."""
        self._gates = tuple(gates)

    @property
    def grace_s(self) -> float:
        return max(g.grace_s for _, g, _ in self._gates)

    def pauses(self) -> Mapping[str | None, str]:
        out: dict[str | None, str] = {}
        for pod, gate, models in self._gates:
            pauses = gate.pauses()
            for key, reason in pauses.items():
                if key is not LINK:
                    out[key] = reason
            if LINK in pauses:
                for model in models:
                    out[model] = f"{pauses[LINK]} (pod {pod})"
        return out

    def paused_since(self, key: str | None, t: float) -> bool:
        for _, gate, models in self._gates:
            if key in models:
                return gate.paused_since(key, t) or gate.paused_since(LINK, t)
        return False  # no pod's link pauses every model: a link outage is a model's pause

    async def changed(self) -> None:
        # Each gate's event is taken now, not when a task first runs: an update in between
        # must not be missed.
        waits = [asyncio.ensure_future(g.next_change().wait()) for _, g, _ in self._gates]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def close(self) -> None:
        await asyncio.gather(*(g.close() for _, g, _ in self._gates))
