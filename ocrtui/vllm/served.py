"""What each running model server is: its versions, its argv and the advisories on them.

:class:`ServedWatch` (owned by the Controller) probes a model once when it becomes ready
(a new server pid), never on the 1 Hz poll: one ``advisories.probe_pod`` command on the pod
(the vllm_command's vLLM/transformers/torch versions and ``/proc/PID/cmdline`` of the API
server) plus the server's ``GET /version``, then ``advisories.advisories`` on them. A model
that is no longer ready loses its record; a probe the link dropped under is tried again on
the next round. :meth:`ServedWatch.inspect` probes on demand (a comparison's start: the arm
records of compare/arms.py); asked before the watcher has decided a round with the agent's
data (a Controller just started, as ``ocrtui compare --headless`` starts one), it waits for
that first verdict, up to ``FIRST_POLL_WAIT_S`` once for all callers, since until then every
model reads ``down``.

The vLLM version that names a server (``Versions.get("vllm")``) is its own ``GET /version``:
``[pod] python`` often imports another vLLM, or none (vLLM in a venv or a container).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx

from ocrtui.config import Config, ModelConfig
from ocrtui.pod.base import ConnState, Pod
from ocrtui.status import AdvisoryStatus
from ocrtui.vllm.advisories import Versions, advisories, probe_pod, to_status
from ocrtui.vllm.client import VllmClient
from ocrtui.vllm.watch import FIRST_POLL_WAIT_S, ModelWatcher


@dataclass(frozen=True)
class Served:
    """One running server as probed: ``server_argv`` None when its cmdline was unreadable."""

    pid: int
    versions: Versions
    server_argv: tuple[str, ...] | None
    advisories: tuple[AdvisoryStatus, ...]


class ServedWatch:
    def __init__(
        self, config: Config, pod: Pod, watcher: ModelWatcher, on_change: Callable[[], None]
    ) -> None:
        self.config = config
        self.pod = pod
        self.watcher = watcher
        self._on_change = on_change
        self._urls: dict[str, str] = {}
        self._served: dict[str, Served] = {}
        self._tasks: dict[str, asyncio.Task[Served]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._first: asyncio.Task[None] | None = None  # the wait for the first verdict

    def start(self, urls: dict[str, str]) -> None:
        self._urls = urls
        self._unsubscribe = self.watcher.subscribe(self._on_round)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks: list[asyncio.Task[Served] | asyncio.Task[None]] = list(self._tasks.values())
        if self._first is not None:
            tasks.append(self._first)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def served(self, name: str) -> Served | None:
        """The record of the model's server now (None: not ready, or not probed yet)."""
        served = self._served.get(name)
        status = self.watcher.status(name)
        if served is None or status.state != "ready" or status.pid != served.pid:
            return None
        return served

    async def inspect(self, name: str) -> Served | None:
        """The model's record, probing now unless its current server was probed already;
        None when it is not ready (after the watcher's first verdict, waited for, bounded)."""
        await self._first_verdict()
        status = self.watcher.status(name)
        if status.state != "ready" or status.pid is None:
            return None
        if (known := self.served(name)) is not None:
            return known
        return await self._probe_task(self.config.model(name), status.pid)

    async def _first_verdict(self) -> None:
        """Until the watcher's first round with the agent's data (the first that can say
        ready, with a pid); one bounded wait shared by every caller, so a pod whose agent
        says nothing costs one FIRST_POLL_WAIT_S, not one per model."""
        if self.watcher.informed_polls:
            return
        if self._first is None:
            self._first = asyncio.create_task(self._wait_first(), name="served-first-verdict")
        await asyncio.shield(self._first)

    async def _wait_first(self) -> None:
        with contextlib.suppress(TimeoutError):
            await self.watcher.wait_informed(FIRST_POLL_WAIT_S)

    def _on_round(self) -> None:
        changed = False
        for m in self.config.models:
            status = self.watcher.status(m.name)
            known = self._served.get(m.name)
            if status.state != "ready" or status.pid is None:
                changed |= self._served.pop(m.name, None) is not None
            elif (known is None or known.pid != status.pid) and m.name not in self._tasks:
                self._probe_task(m, status.pid)
        if changed:
            self._on_change()

    def _probe_task(self, model: ModelConfig, pid: int) -> asyncio.Task[Served]:
        task = self._tasks.get(model.name)
        if task is None:
            task = asyncio.create_task(self._probe(model, pid), name=f"probe-{model.name}")
            self._tasks[model.name] = task
            task.add_done_callback(lambda _t: self._tasks.pop(model.name, None))
        return task

    async def _probe(self, model: ModelConfig, pid: int) -> Served:
        served = await probe_server(self.pod, self.config, model, self._urls.get(model.name), pid)
        if self.pod.state is ConnState.CONNECTED:  # a probe cut by a drop is tried again
            self._served[model.name] = served
            self._on_change()
        return served


async def probe_server(
    pod: Pod, config: Config, model: ModelConfig, url: str | None, pid: int
) -> Served:
    """One probe of the model's running server ``pid`` (its GET /version at ``url``)."""
    probe = await probe_pod(pod, config.pod, model, pid)
    versions = replace(probe.versions, server_vllm=await _server_version(model, url))
    found = advisories(model, versions, probe.server_argv, image_format=config.compare.image_format)
    return Served(pid, versions, probe.server_argv, tuple(to_status(a) for a in found))


async def _server_version(model: ModelConfig, url: str | None) -> str | None:
    if url is None:
        return None
    client = VllmClient(url, api_key=model.api_key())
    try:
        return await client.version()
    except (httpx.HTTPError, ValueError):
        return None
    finally:
        await client.aclose()
