"""What state each model's server is in.

One poll round every ``[ui] refresh_s``: every model's :class:`ModelProbe` concurrently,
each given the facts about its processes (server pid, alive, listening, orphans) read from
the agent monitor's :class:`~ocrtui.monitor.attribution.ModelProcesses` (which pid is the
server is decided there, once per sample); a launch the agent does not list yet counts as
alive as the monitor's :class:`~ocrtui.monitor.launches.Launches` says.

Subscribers are called after every round; :meth:`ModelWatcher.wait_model` waits on rounds
that began after the call (the lifecycle waits for ready/crashed through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace

from ocrtui.config import Config, ModelConfig
from ocrtui.monitor.agent_monitor import AgentMonitor, MonitorView
from ocrtui.pod.base import ConnState, Pod, PodConnectionLost
from ocrtui.status import ModelStatus
from ocrtui.vllm.plan import planned_total_mib
from ocrtui.vllm.probe import ModelProbe, ProbeResult
from ocrtui.vllm.state import ProcessFacts

# How long a first look (status, up) waits for a poll that had the agent's data.
FIRST_POLL_WAIT_S = 15.0


# The stages process_stage can name (before the log has any): beside stages.STAGES.
PROCESS_STAGES = ("launched", "engine spawned", "API server importing")


def process_stage(view: MonitorView, facts: ProcessFacts | None) -> str | None:
    """What the agent's process view says of a start the log says nothing of yet (vLLM
    imports for ~40 s before its first line): the API server runs, its EngineCore too."""
    sample = view.sample
    if sample is None or facts is None or facts.server_pid is None:
        return None
    server = facts.server_pid
    launched, spawned, importing = PROCESS_STAGES
    if not any(v.pid == server for v in sample.vllm):
        return launched
    if any(v.kind in ("engine", "spawned") and server in v.ancestors for v in sample.vllm):
        return spawned
    return importing


def with_usage(status: ModelStatus, model: ModelConfig, view: MonitorView) -> ModelStatus:
    """``status`` with the memory figures of ``view``: attributed MiB, planned MiB (on all
    its data-parallel ranks' GPUs), the resident memory of the server's tree and, while it
    sleeps, the memory it gave back."""
    procs = view.model(model.name)
    used = procs.used_mib if procs else 0
    planned = planned_total_mib(model, view.sample.gpus) if view.sample else None
    rss = procs.rss_mib if procs is not None and status.pid is not None else None
    back = max(0, planned - used) if status.sleeping and planned is not None else None
    now = (status.used_mib, status.planned_mib, status.rss_mib, status.given_back_mib)
    if (used, planned, rss, back) == now:
        return status
    return replace(status, used_mib=used, planned_mib=planned, rss_mib=rss, given_back_mib=back)


class ModelWatcher:
    def __init__(self, config: Config, pod: Pod, monitor: AgentMonitor) -> None:
        self.config = config
        self.pod = pod
        self.monitor = monitor
        self.launches = monitor.launches
        self._probes: dict[str, ModelProbe] = {}
        self._status: dict[str, ModelStatus] = {
            m.name: ModelStatus(m.name, m.port, "down", None) for m in config.models
        }
        self.polls = 0  # completed rounds (all models) since start
        self.informed_polls = 0  # rounds that had the agent's process data from their start
        self._listeners: list[Callable[[], None]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, urls: dict[str, str], workdir: str) -> None:
        """Poll every model at ``urls[name]`` (the pod's forwards), logs under ``workdir``."""
        for m in self.config.models:
            self._probes[m.name] = ModelProbe(m, self.pod, urls[m.name], m.log_path(workdir))
        self._task = asyncio.create_task(self._loop(), name="health-poll")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(p.aclose() for p in self._probes.values()))
        self._probes.clear()

    # -- observing ------------------------------------------------------------------------

    def status(self, name: str) -> ModelStatus:
        """The latest verdict, with the monitor's current memory figures."""
        return with_usage(self._status[name], self.config.model(name), self.monitor.view)

    def subscribe(self, cb: Callable[[], None]) -> Callable[[], None]:
        """Call ``cb`` after every poll round; returns the unsubscribe function."""
        self._listeners.append(cb)
        return lambda: self._listeners.remove(cb)

    async def _wait(self, pred: Callable[[], bool], timeout: float) -> None:
        async def _until() -> None:
            while True:
                changed = self._changed
                if pred():
                    return
                await changed.wait()

        await asyncio.wait_for(_until(), timeout)

    async def wait_informed(self, timeout: float) -> None:
        """Until a round that had the agent's data is done; raises TimeoutError."""
        await self._wait(lambda: self.informed_polls >= 1, timeout)

    async def wait_model(
        self,
        name: str,
        done: Callable[[ModelStatus], bool],
        timeout: float,
        on_change: Callable[[ModelStatus], None] | None = None,
    ) -> ModelStatus:
        """The model's status once ``done`` holds for it; raises TimeoutError."""
        # Only a poll that started after this call counts: an older verdict may predate
        # the action being waited on (e.g. "crashed" from before a relaunch).
        first = self.polls + 1

        def pred() -> bool:
            if self.polls <= first:
                return False
            status = self.status(name)
            if on_change is not None:
                on_change(status)
            return done(status)

        await self._wait(pred, timeout)
        return self.status(name)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for cb in list(self._listeners):
            cb()

    # -- polling --------------------------------------------------------------------------

    async def _loop(self) -> None:
        interval = self.config.ui.refresh_s
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            if self.pod.state is not ConnState.CONNECTED:
                # No probe can get through: keep the last verdicts (the pod panel shows the
                # link state) instead of reporting every server as refusing connections.
                self._notify()
                await self.pod.wait_for_state(ConnState.CONNECTED)
                continue
            informed = self.monitor.view.sample is not None
            results = await asyncio.gather(
                *(self._poll_one(m) for m in self.config.models), return_exceptions=True
            )
            for m, result in zip(self.config.models, results, strict=True):
                if isinstance(result, ModelStatus):
                    self._status[m.name] = result
                elif isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result
                elif not isinstance(result, PodConnectionLost):
                    # A dropped link keeps the last verdict silently (the pod panel shows the
                    # link); any other failure, if it recurred, would freeze the card with no
                    # sign (a bug, a pod out of file descriptors), so it says so.
                    last = self._status[m.name]
                    self._status[m.name] = replace(
                        last, hint=f"checking it failed ({result!r}); showing the last result"
                    )
            self.polls += 1
            self.informed_polls += informed
            self._notify()
            await asyncio.sleep(max(0.0, interval - (loop.time() - t0)))

    async def _poll_one(self, model: ModelConfig) -> ModelStatus:
        probe = self._probes[model.name]
        seen: list[tuple[MonitorView, ProcessFacts | None]] = []

        async def facts_now() -> ProcessFacts | None:
            view = self.monitor.view
            facts = await self._facts(model, view)
            seen.append((view, facts))
            return facts

        result = await probe.poll(facts_now, launching=self.launches.launching(model.name))
        view, facts = seen[-1] if seen else (self.monitor.view, None)
        return self._model_status(model, view, facts, result)

    async def _facts(self, model: ModelConfig, view: MonitorView) -> ProcessFacts | None:
        sample = view.sample
        procs = view.model(model.name)
        if sample is None or procs is None:
            return None
        server = procs.server_pid
        alive = server is not None
        if not alive:
            unlisted, pid = self.launches.unlisted(model.name, sample)
            if unlisted and pid is None:
                alive = True  # launching: the pid is not back yet
            elif unlisted and pid is not None and await self.pod.signal(pid, 0):
                server, alive = pid, True
        orphans = tuple((o.pid, o.used_mib or 0, o.rss_mib) for o in procs.orphans)
        return ProcessFacts(server, alive, procs.listening, orphans, sample.t)

    def _model_status(
        self,
        model: ModelConfig,
        view: MonitorView,
        facts: ProcessFacts | None,
        result: ProbeResult,
    ) -> ModelStatus:
        v = result.verdict
        state, stage = v.state, str(v.stage) if v.stage else None
        if state == "starting" and (stage is None or stage == "launched"):
            stage = process_stage(view, facts) or stage
        hint = v.hint
        if self.launches.is_stopping(model.name):
            # The stop under way is the answer to whatever the last verdict advised.
            state, stage, hint = "down", "stopping", None
        started_s = None
        if state == "starting" and result.launched_at is not None:
            started_s = round(max(0.0, time.time() - result.launched_at), 1)
        m = result.metrics
        status = ModelStatus(
            name=model.name,
            port=model.port,
            state=state,
            pid=facts.server_pid if facts else None,
            stage=stage,
            hint=hint,
            health_latency_ms=result.health.latency_ms if result.health else None,
            running=None if m is None or m.running is None else int(m.running),
            waiting=None if m is None or m.waiting is None else int(m.waiting),
            kv_cache_usage=m.kv_cache_usage if m else None,
            prompt_tokens_per_s=result.rates.prompt_per_s,
            generation_tokens_per_s=result.rates.generation_per_s,
            spec_decode_acceptance=result.rates.spec_decode_acceptance,
            success_by_reason=dict(m.success_by_reason) if m else {},
            last_lines=v.last_lines,
            max_model_len=result.max_model_len,
            started_s=started_s,
            last_start_s=result.last_start_s if started_s is not None else None,
            sleep_level=m.sleep_level if m is not None and state == "ready" else None,
        )
        return with_usage(status, model, view)
