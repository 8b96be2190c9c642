"""The service facade shared by the dashboard and the headless commands.

One :class:`Controller` per pod: it owns the connection, the agent monitor, the per-model
health pollers and the lifecycle operations, and publishes immutable :class:`Snapshot`s.
The TUI subscribes to snapshots and calls the operations; the CLI does the same headless.

A snapshot is published after every agent sample (GPU and process rows) and after every
health poll (model states, 1 Hz by default: ``[ui] refresh_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ocrtui.config import Config, ModelConfig
from ocrtui.monitor.agent_monitor import AgentMonitor, MonitorView
from ocrtui.pod.base import ConnState, Pod
from ocrtui.pod.factory import make_pod
from ocrtui.vllm.lifecycle import Lifecycle, LifecycleError, ModelStatusLike, is_server_of
from ocrtui.vllm.probe import ModelProbe, ProbeResult
from ocrtui.vllm.state import ModelState, ProcessFacts, without_probes

__all__ = [
    "Controller",
    "GpuStatus",
    "LifecycleError",
    "ModelState",
    "ModelStatus",
    "PodStatus",
    "ProcessStatus",
    "Progress",
    "Snapshot",
    "down_command",
    "restart_command",
    "status_command",
    "up_command",
]

# How long a headless status waits for the first agent sample and one health poll.
STATUS_WAIT_S = 15.0
LOG_TAIL_OVERREAD = 10


@dataclass(frozen=True)
class PodStatus:
    label: str
    connection: str  # ConnState value: connecting / connected / lost / reconnecting / closed
    connection_age_s: float
    data_age_s: float | None  # age of the newest agent sample; None before the first
    simulated_gpu: bool
    demo: bool
    agent_error: str | None = None


@dataclass(frozen=True)
class GpuStatus:
    index: int
    uuid: str
    name: str
    total_mib: int
    used_mib: int
    free_mib: int
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    simulated: bool


@dataclass(frozen=True)
class ProcessStatus:
    pid: int
    gpu: int
    used_mib: int
    model: str | None  # served name, "orphan:<name>", or None (other / unattributed)
    title: str  # process title, e.g. "VLLM::EngineCore"; "" when the pid is not visible
    visible: bool  # False when NVML reports a host pid this pod cannot see (container)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    port: int
    state: ModelState
    pid: int | None  # the API server (listening on the port, or the one we launched)
    stage: str | None = None  # startup stage from the log while "starting"; "stopping"
    hint: str | None = None  # known-failure hint: cause and fix in one line
    health_latency_ms: float | None = None
    running: int | None = None
    waiting: int | None = None
    kv_cache_usage: float | None = None  # 0..1
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    success_by_reason: dict[str, float] = field(default_factory=dict)
    planned_mib: int | None = None  # gpu_memory_utilization x total
    used_mib: int = 0  # VRAM attributed to this model now
    last_lines: tuple[str, ...] = ()  # the log's last lines when "crashed"
    max_model_len: int | None = None  # as /v1/models reports it


@dataclass(frozen=True)
class Snapshot:
    pod: PodStatus
    gpus: tuple[GpuStatus, ...]
    processes: tuple[ProcessStatus, ...]
    models: tuple[ModelStatus, ...]

    def to_json(self) -> dict[str, Any]:
        """The `ocrtui status --json` contract."""
        return {
            "pod": asdict(self.pod),
            "gpus": [asdict(g) for g in self.gpus],
            "processes": [asdict(p) for p in self.processes],
            "models": [asdict(m) for m in self.models],
        }

    def model(self, name: str) -> ModelStatus | None:
        for m in self.models:
            if m.name == name:
                return m
        return None


# Progress of a lifecycle operation: (model name, human-readable step), e.g.
# ("glm-ocr", "stopping"), ("glm-ocr", "waiting for VRAM"), ("glm-ocr", "starting: KV cache").
Progress = Callable[[str, str], None]


class Controller:
    def __init__(self, config: Config, *, pod: Pod | None = None, demo: bool = False) -> None:
        self.config = config
        self.demo = demo
        self.pod = pod or make_pod(config.pod)
        self.monitor = AgentMonitor(self.pod, config.pod, config.models)
        self.lifecycle: Lifecycle | None = None
        self._workdir = config.pod.workdir
        self._probes: dict[str, ModelProbe] = {}
        self._urls: dict[str, str] = {}
        self._models: dict[str, ModelStatus] = {
            m.name: ModelStatus(m.name, m.port, "down", None) for m in config.models
        }
        self._polls = 0
        self._informed_polls = 0  # polls that started with agent data in hand
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._changed = asyncio.Event()
        self._poll_task: asyncio.Task[None] | None = None
        self._unsubscribe_monitor: Callable[[], None] | None = None
        self._snapshot = self._build()

    # -- running --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (raises PodUnreachable), start the agent monitor and the health pollers."""
        await self.pod.connect()
        self._workdir = await self.pod.expand_dir(self.config.pod.workdir)
        for m in self.config.models:
            url = await self.pod.forward(m.port)
            self._urls[m.name] = url
            self._probes[m.name] = ModelProbe(m, self.pod, url, m.log_path(self._workdir))
        self.lifecycle = Lifecycle(self.config, self.pod, self.monitor, self, workdir=self._workdir)
        self._unsubscribe_monitor = self.monitor.subscribe(lambda _view: self._publish())
        self.pod.add_state_listener(self._on_link)
        await self.monitor.start()
        self._poll_task = asyncio.create_task(self._poll_loop(), name="health-poll")

    async def close(self) -> None:
        """Stop polling and close the link; the model servers keep running on the pod."""
        task, self._poll_task = self._poll_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unsubscribe_monitor is not None:
            self._unsubscribe_monitor()
            self._unsubscribe_monitor = None
            self.pod.remove_state_listener(self._on_link)
        await self.monitor.close()
        await asyncio.gather(*(p.aclose() for p in self._probes.values()))
        self._probes.clear()
        await self.pod.close()

    # -- observing ------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def polls(self) -> int:
        """Completed health-poll rounds (all models) since start."""
        return self._polls

    @property
    def informed_polls(self) -> int:
        """Completed polls that had the agent's process data from their start."""
        return self._informed_polls

    def subscribe(self, cb: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(cb)

        def unsubscribe() -> None:
            if cb in self._subscribers:
                self._subscribers.remove(cb)

        return unsubscribe

    async def wait_until(self, pred: Callable[[Snapshot], bool], timeout: float) -> Snapshot:
        """The first snapshot (now or later) satisfying ``pred``; raises TimeoutError."""

        async def _wait() -> Snapshot:
            while True:
                changed = self._changed
                if pred(self._snapshot):
                    return self._snapshot
                await changed.wait()

        return await asyncio.wait_for(_wait(), timeout)

    # ModelWatch, for the lifecycle layer.
    def model_status(self, name: str) -> ModelStatus | None:
        return self._models.get(name)

    async def wait_model(
        self,
        name: str,
        done: Callable[[ModelStatusLike], bool],
        timeout: float,
        on_change: Callable[[ModelStatusLike], None] | None = None,
    ) -> ModelStatusLike:
        # Only a poll that started after this call counts: an older verdict may predate
        # the action being waited on (e.g. "crashed" from before a relaunch).
        first = self._polls + 1

        def pred(s: Snapshot) -> bool:
            m = s.model(name)
            if m is None or self._polls <= first:
                return False
            if on_change is not None:
                on_change(m)
            return done(m)

        snap = await self.wait_until(pred, timeout)
        status = snap.model(name)
        assert status is not None
        return status

    # -- operations -----------------------------------------------------------------------

    def _lc(self) -> Lifecycle:
        if self.lifecycle is None:
            raise RuntimeError("Controller.start() was not called")
        return self.lifecycle

    async def up(self, progress: Progress | None = None) -> None:
        """Every model ready, starting those that are not, in start order."""
        # Decide on what the pod shows, not on "no poll yet": a healthy server found by
        # the first poll must not be restarted.
        # Without agent data in time (no python3 on the pod, say), go on with what is known.
        with contextlib.suppress(TimeoutError):
            await self.wait_until(lambda s: self._informed_polls >= 1, STATUS_WAIT_S)
        await self._lc().up(progress)

    async def down(self, progress: Progress | None = None) -> None:
        await self._lc().down(progress)

    async def stop_model(self, name: str, progress: Progress | None = None) -> None:
        await self._lc().stop(name, progress)

    async def restart(self, name: str, progress: Progress | None = None) -> None:
        await self._lc().restart(name, progress)

    async def kill_orphans(self, name: str | None = None) -> list[tuple[int, int]]:
        return await self._lc().kill_orphans(name)

    async def model_url(self, name: str) -> str:
        self.config.model(name)
        if name not in self._urls:
            raise RuntimeError("Controller.start() was not called")
        return self._urls[name]

    async def log_tail(self, name: str, lines: int = 200) -> list[str]:
        """The model log's last ``lines`` lines, less the 1 Hz probes' access-log lines."""
        model = self.config.model(name)
        # Probes log two lines a second: read further back so real lines still fill the pane.
        raw = await self.pod.tail(model.log_path(self._workdir), lines * LOG_TAIL_OVERREAD)
        return without_probes(raw)[-lines:]

    # -- polling --------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        interval = self.config.ui.refresh_s
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            if self.pod.state is not ConnState.CONNECTED:
                # No probe can get through: keep the last verdicts (the pod panel shows the
                # link state) instead of reporting every server as refusing connections.
                self._publish()
                await self.pod.wait_for_state(ConnState.CONNECTED)
                continue
            informed = self.monitor.view.sample is not None
            results = await asyncio.gather(
                *(self._poll_one(m) for m in self.config.models), return_exceptions=True
            )
            for m, result in zip(self.config.models, results, strict=True):
                if isinstance(result, ModelStatus):
                    self._models[m.name] = result
                elif isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result
                # A poll that failed (link dropped mid-command) keeps the last verdict.
            self._polls += 1
            self._informed_polls += informed
            self._publish()
            await asyncio.sleep(max(0.0, interval - (loop.time() - t0)))

    async def _poll_one(self, model: ModelConfig) -> ModelStatus:
        probe = self._probes[model.name]
        seen: list[tuple[MonitorView, ProcessFacts | None]] = []

        async def facts_now() -> ProcessFacts | None:
            view = self.monitor.view
            facts = await self._facts(model, view)
            seen.append((view, facts))
            return facts

        launching = self.lifecycle is not None and self.lifecycle.launching(model.name)
        result = await probe.poll(facts_now, launching=launching)
        view, facts = seen[-1] if seen else (self.monitor.view, None)
        return self._model_status(model, view, facts, result)

    async def _facts(self, model: ModelConfig, view: MonitorView) -> ProcessFacts | None:
        sample = view.sample
        if sample is None:
            return None
        lc = self.lifecycle
        launched = lc.launched.get(model.name) if lc else None
        apis = [v for v in sample.vllm if is_server_of(v, model)]
        api_pids = {v.pid for v in apis}
        rows = {v.pid: v for v in sample.vllm}
        usage = view.model(model.name)
        owner = usage.server_pid if usage is not None else None
        # The port owner is the server unless it is a server of some other model.
        foreign = owner in rows and rows[owner].kind == "api" and owner not in api_pids
        server: int | None = None
        if owner is not None and not foreign:
            server = owner
        elif launched is not None and launched in api_pids:
            server = launched
        elif apis:
            server = apis[0].pid
        alive = server is not None
        if not alive and lc is not None:
            unlisted, pid = lc.unlisted_launch(model.name, view)
            if unlisted and pid is None:
                alive = True  # launching: the pid is not back yet
            elif unlisted and pid is not None and await self.pod.signal(pid, 0):
                server, alive = pid, True
        orphans = tuple((o.pid, o.used_mib or 0) for o in view.orphans if o.model == model.name)
        listening = usage is not None and usage.port_state == "listen"
        return ProcessFacts(server, alive, listening, orphans)

    def _model_status(
        self,
        model: ModelConfig,
        view: MonitorView,
        facts: ProcessFacts | None,
        result: ProbeResult,
    ) -> ModelStatus:
        v = result.verdict
        state, stage = v.state, str(v.stage) if v.stage else None
        if self.lifecycle is not None and model.name in self.lifecycle.stopping:
            state, stage = "down", "stopping"
        m = result.metrics
        usage = view.model(model.name)
        gpu = view.sample.gpus[0] if view.sample and view.sample.gpus else None
        return ModelStatus(
            name=model.name,
            port=model.port,
            state=state,
            pid=facts.server_pid if facts else None,
            stage=stage,
            hint=v.hint,
            health_latency_ms=result.health.latency_ms if result.health else None,
            running=None if m is None or m.running is None else int(m.running),
            waiting=None if m is None or m.waiting is None else int(m.waiting),
            kv_cache_usage=m.kv_cache_usage if m else None,
            prompt_tokens_per_s=result.rates.prompt_per_s,
            generation_tokens_per_s=result.rates.generation_per_s,
            success_by_reason=dict(m.success_by_reason) if m else {},
            planned_mib=int(model.gpu_memory_utilization * gpu.total_mib) if gpu else None,
            used_mib=usage.used_mib if usage else 0,
            last_lines=v.last_lines,
            max_model_len=result.max_model_len,
        )

    # -- snapshots ------------------------------------------------------------------------

    def _on_link(self, _state: ConnState) -> None:
        self._publish()

    def _build(self) -> Snapshot:
        view = self.monitor.view
        pod = PodStatus(
            label=self.pod.label,
            connection=self.pod.state.value,
            connection_age_s=round(self.pod.state_age_s, 3),
            data_age_s=None if view.data_age_s is None else round(view.data_age_s, 3),
            simulated_gpu=view.simulated,
            demo=self.demo,
            agent_error=view.error,
        )
        gpus = tuple(
            GpuStatus(**g.status_fields())  # type: ignore[arg-type]
            for g in (view.sample.gpus if view.sample else ())
        )
        rows = view.attribution.rows if view.attribution else ()
        processes = tuple(ProcessStatus(**r.status_fields()) for r in rows)  # type: ignore[arg-type]
        models = []
        for m in self.config.models:
            status = self._models[m.name]
            usage = view.model(m.name)
            if usage is not None and usage.used_mib != status.used_mib:
                status = replace(status, used_mib=usage.used_mib)
            models.append(status)
        return Snapshot(pod, gpus, processes, tuple(models))

    def _publish(self) -> None:
        self._snapshot = self._build()
        self._changed.set()
        self._changed = asyncio.Event()
        for cb in list(self._subscribers):
            cb(self._snapshot)


# -- headless commands ---------------------------------------------------------------------


def _print_progress(name: str, step: str) -> None:
    print(f"{name}: {step}", flush=True)


async def _with_controller(
    config: Config, demo: bool, body: Callable[[Controller], Awaitable[int]]
) -> int:
    ctl = Controller(config, demo=demo)
    try:
        await ctl.start()
        return await body(ctl)
    finally:
        await ctl.close()


def _run_operation(
    config: Config, demo: bool, body: Callable[[Controller], Awaitable[None]]
) -> int:
    async def run(ctl: Controller) -> int:
        try:
            await body(ctl)
        except LifecycleError as exc:
            print(f"ocrtui: {exc.message}", file=sys.stderr)
            if exc.hint:
                print(f"hint: {exc.hint}", file=sys.stderr)
            return exc.exit_code
        return 0

    return asyncio.run(_with_controller(config, demo, run))


def status_command(config: Config, as_json: bool, *, demo: bool = False) -> int:
    """One snapshot, after one complete health poll that had the agent's data (bounded)."""

    async def run(ctl: Controller) -> int:
        with contextlib.suppress(TimeoutError):
            await ctl.wait_until(lambda s: ctl.informed_polls >= 1, STATUS_WAIT_S)
        snap = ctl.snapshot
        if as_json:
            print(json.dumps(snap.to_json(), indent=2))
        else:
            print(format_status(snap))
        return 0

    return asyncio.run(_with_controller(config, demo, run))


def format_status(snap: Snapshot) -> str:
    pod = snap.pod
    lines = [
        f"pod {pod.label}: {pod.connection}"
        + (" (DEMO)" if pod.demo else "")
        + (f"; agent: {pod.agent_error}" if pod.agent_error else "")
    ]
    for g in snap.gpus:
        sim = " (simulated GPU)" if g.simulated and "simulated" not in g.name else ""
        lines.append(
            f"GPU {g.index} {g.name}{sim}: {g.used_mib}/{g.total_mib} MiB used, {g.free_mib} free"
        )
    for p in snap.processes:
        lines.append(f"  pid {p.pid:>7} {p.used_mib:>7} MiB  {p.model or '-':<20} {p.title}")
    for m in snap.models:
        extra = f" ({m.stage})" if m.stage else ""
        lines.append(f"model {m.name} :{m.port} {m.state}{extra} pid={m.pid or '-'}")
        if m.hint:
            lines.append(f"  hint: {m.hint}")
    return "\n".join(lines)


def up_command(config: Config, demo: bool = False) -> int:
    return _run_operation(config, demo, lambda ctl: ctl.up(_print_progress))


def down_command(config: Config, *, demo: bool = False) -> int:
    return _run_operation(config, demo, lambda ctl: ctl.down(_print_progress))


def restart_command(config: Config, name: str, *, demo: bool = False) -> int:
    config.model(name)  # an unknown name is a usage error (exit 2) before connecting
    return _run_operation(config, demo, lambda ctl: ctl.restart(name, _print_progress))
