"""The service facade shared by the dashboard and the headless commands.

One :class:`Controller` per pod assembles the connection, the agent monitor
(``monitor/``), the model watcher and the lifecycle (``vllm/watch.py``,
``vllm/lifecycle.py``), and publishes immutable snapshots (``status.py``) after every agent
sample (GPU and process rows), every poll round of the watcher (model states, 1 Hz by
default: ``[ui] refresh_s``), every round of the services' statuses (``services.py``, at the
same period, never faster) and every change of the link. Each GPU's owner breakdown is the
attribution's, with the models' plans from ``vllm/plan.py``; the "other" rows of a ``gpu =
true`` service's processes are shown as that service's (kind ``service``). ``up`` and
``down`` go through models and services in the waves of ``config.start_order`` (``up`` goes
on past a failed model, skipping only the services that wait for it); ``restart``
takes a model's or a service's name; model restarts and killed orphans are counted for the
snapshot (``ModelStatus.restarts``, ``Snapshot.orphans_killed``), and the watchdog's
verdicts (``set_watchdog``, from ``watchdog.py``) are shown with their model or service.
The TUI subscribes to snapshots and calls the operations; ``headless.py`` does the same for
the CLI.

The `Controller` assembles pod, `AgentMonitor`, `ModelWatcher` and `Lifecycle` and publishes
snapshots (after every agent sample, every watcher poll round, every link change):

```python
class Controller:
    def __init__(self, config: Config, *, pod: Pod | None = None, demo: bool = False)
    async def start(self) -> None          # connect, forwards, agent monitor, model watcher
    async def close(self) -> None          # stop polling, close the link; servers keep running
    @property snapshot -> Snapshot         # the latest
    def subscribe(cb: Callable[[Snapshot], None]) -> Callable[[], None]   # returns unsubscribe
    async def wait_until(pred: Callable[[Snapshot], bool], timeout: float) -> Snapshot
    async def up(progress: Progress | None = None, *, force=False) -> None   # waits for the
                                          # first poll with agent data; ready models stay
    async def down(progress: Progress | None = None) -> None
    async def stop_model(name, progress=None) -> None
    async def restart(name, progress=None, *, force=False, serve=None) -> None   # LifecycleError
                                          # (message, hint); serve: a ModelConfig to start with
    async def kill_orphans(name: str | None = None) -> list[tuple[int, int]]   # (pid, MiB)
    async def sleep(name, level=1, progress=None) -> None   # vLLM's sleep mode (vllm/sleep.py)
    async def wake(name) -> None                             # LifecycleError(message, hint)
    def set_watchdog(name, status: WatchdogStatus) -> None   # watchdog.py's verdict
    def strangers() -> list[Stranger]       # servers no [[models]] names (vllm/adopt.py)
    async def model_url(name) -> str        # base URL through the pod's forward
    def placement(name) -> Placement        # the pod and GPU it runs on (a run's arms)
    async def log_tail(name, lines=200) -> list[str]
    watcher: ModelWatcher                   # polls, informed_polls, wait_informed(timeout)
```

With ``[[pods]]`` (``config.Fleet``), a :class:`FleetController` holds one Controller per
pod, each with its own connection, agent and reconnect, so one pod's link failing touches
nothing of another's; it finds the pod of a model, service or API arm by name:

```python
class FleetController:
    def __init__(self, fleet: Fleet, *, demo=False)
    controllers: dict[str, Controller]      # by pod name, in config order
    async def start(self) -> dict[str, OcrtuiError]   # every pod at once; who failed, why
    async def close(self) -> None
    def owner(name) -> Controller           # of a model, service or API arm
    async def model_url(name) / served(name) / restart(name, progress, force=, serve=)
    def placement(name) -> Placement       # its pod and GPU (compare/arms.py)
```

`Progress` (`vllm/lifecycle.py`) is `(model name, step) -> None`. Lifecycle operations take a
per-model lock; `LifecycleError` (`errors.py`, exit code 1) carries `message` and `hint`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ocrtui.compare.arms import Placement
from ocrtui.compare.docapi import arm_url
from ocrtui.config import Config, Fleet, ModelConfig, start_order
from ocrtui.errors import ConfigError, LifecycleError, OcrtuiError
from ocrtui.monitor.agent_monitor import AgentMonitor, MonitorView
from ocrtui.monitor.agent_samples import GpuSample
from ocrtui.monitor.attribution import GpuUsage
from ocrtui.pod.base import ConnState, Pod
from ocrtui.pod.factory import make_pod
from ocrtui.pod.provider import POWER_RECHECK_S, PowerWatch, ProviderState
from ocrtui.services import ServiceRunner, ServiceWatch, in_waves
from ocrtui.status import (
    GpuStatus,
    ModelShare,
    ModelStatus,
    OrphanStatus,
    PodStatus,
    ProcessStatus,
    ServiceStatus,
    Snapshot,
    WatchdogStatus,
)
from ocrtui.vllm import sleep as sleep_mode
from ocrtui.vllm.adopt import Stranger, strangers
from ocrtui.vllm.client import VllmClient
from ocrtui.vllm.lifecycle import Lifecycle, Progress
from ocrtui.vllm.plan import gpus_for, planned_mib
from ocrtui.vllm.served import Served, ServedWatch
from ocrtui.vllm.state import without_probes
from ocrtui.vllm.watch import FIRST_POLL_WAIT_S, ModelWatcher

LOG_TAIL_OVERREAD = 10


class Controller:
    def __init__(self, config: Config, *, pod: Pod | None = None, demo: bool = False) -> None:
        self.config = config
        self.demo = demo
        self.pod = pod or make_pod(config.pod)
        self.monitor = AgentMonitor(
            self.pod, config.pod, config.models, service_ports=[s.port for s in config.services]
        )
        self.watcher = ModelWatcher(config, self.pod, self.monitor)
        self.servers = ServedWatch(config, self.pod, self.watcher, self._publish)
        self.lifecycle: Lifecycle | None = None
        self.services: ServiceRunner | None = None
        self.service_watch = ServiceWatch(self._publish, config.ui.refresh_s)
        self.power = PowerWatch(config.pod.provider, self._publish, recheck_s=POWER_RECHECK_S)
        self._workdir = config.pod.workdir
        self._urls: dict[str, str] = {}
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._restarts: dict[str, int] = {}  # by model, for the snapshot (the exporter's)
        self._orphans_killed = 0
        self._watchdog: dict[str, WatchdogStatus] = {}  # by model or service (watchdog.py)
        self._active_at = time.monotonic()  # a model last had a request (the idle notice)
        self._changed = asyncio.Event()
        self._unsubscribe: list[Callable[[], None]] = []
        self._snapshot = self._build()

    # -- running --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (raises PodUnreachable), start the agent monitor and the model watcher;
        ConfigError when the pod's workdir does not exist."""
        self.power.ask(force=True)
        await self.pod.connect()
        try:
            self._workdir = await self.pod.expand_dir(self.config.pod.workdir)
        except FileNotFoundError as exc:
            raise ConfigError(f"pod.workdir: {exc}: create it or fix the config") from None
        for m in (*self.config.models, *self.config.routed):
            self._urls[m.name] = await self.pod.forward(m.port)
        self.lifecycle = Lifecycle(
            self.config, self.pod, self.monitor, self.watcher, workdir=self._workdir
        )
        self._unsubscribe = [
            self.monitor.subscribe(lambda _view: self._publish()),
            self.watcher.subscribe(self._publish),
        ]
        self.pod.add_state_listener(self._on_link)
        await self.monitor.start()
        await self.watcher.start(self._urls, self._workdir)
        self.servers.start(self._urls)

        if self.config.services:
            self.services = ServiceRunner(self.config, self.pod, workdir=self._workdir)
        self.service_watch.start(self.services)

    async def wait_services(self, timeout: float) -> None:
        """Until the services' statuses were read once (TimeoutError after ``timeout``)."""
        await self.service_watch.wait(timeout)

    async def close(self) -> None:
        """Stop polling and close the link; the model servers keep running on the pod."""
        await self.power.close()
        await self.service_watch.close()
        if self.services is not None:
            await self.services.aclose()
        await self.servers.close()
        await self.watcher.close()
        if self._unsubscribe:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe = []
            self.pod.remove_state_listener(self._on_link)
        await self.monitor.close()
        await self.pod.close()

    # -- observing ------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

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

    # -- operations -----------------------------------------------------------------------

    def _lc(self) -> Lifecycle:
        if self.lifecycle is None:
            raise RuntimeError("Controller.start() was not called")
        return self.lifecycle

    def _runner(self) -> ServiceRunner:
        if self.services is None:
            raise RuntimeError("Controller.start() was not called, or no [[services]]")
        return self.services

    def is_service(self, name: str) -> bool:
        return any(s.name == name for s in self.config.services)

    async def up(self, progress: Progress | None = None, *, force: bool = False) -> None:
        """Every model and service ready, wave after wave (``config.start_order``): models
        each after the one before, a service once its ``after`` are ready. A model that
        fails (and frees its memory) does not stop the models after it; only the services
        that wait for it are skipped. The failures are raised together at the end."""
        lc = self._lc()
        # Decide on what the pod shows, not on "no poll yet": a healthy server found by the
        # first poll must not be restarted. Without agent data in time (no python3 on the
        # pod, say), go on with what is known.
        with contextlib.suppress(TimeoutError):
            await self.watcher.wait_informed(FIRST_POLL_WAIT_S)

        async def one(name: str) -> None:
            try:
                if self.is_service(name):
                    await self._runner().start(name, progress)
                else:
                    await lc.ensure_ready(name, progress, force=force)
            except LifecycleError as exc:
                if progress is not None:
                    progress(name, f"failed: {exc}")
                raise

        def needs(name: str) -> tuple[str, ...]:
            return self.config.service(name).after if self.is_service(name) else ()

        outcome = await in_waves(start_order(self.config), one, needs)
        outcome.raise_failures()

    async def down(self, progress: Progress | None = None) -> None:
        """Everything stopped, in the reverse waves (services before the models they need)."""
        lc = self._lc()

        async def one(name: str) -> None:
            if self.is_service(name):
                await self._runner().stop(name, progress)
            else:
                await lc.stop(name, progress)

        (await in_waves(list(reversed(start_order(self.config))), one)).raise_failures()

    async def stop_model(self, name: str, progress: Progress | None = None) -> None:
        await self._lc().stop(name, progress)

    async def restart(
        self,
        name: str,
        progress: Progress | None = None,
        *,
        force: bool = False,
        serve: ModelConfig | None = None,
    ) -> None:
        """Restart a model (raises LifecycleError(message, hint)) or a service by name;
        ``serve``: a model's settings for this start instead of the configured ones
        (``Lifecycle.restart``, a serve sweep's flag set)."""
        if self.is_service(name):
            await self._runner().restart(name, progress)
        else:
            self._restarts[name] = self._restarts.get(name, 0) + 1
            self._publish()
            await self._lc().restart(name, progress, force=force, serve=serve)

    def set_watchdog(self, name: str, status: WatchdogStatus) -> None:
        """The watchdog's verdict on a model or service, shown with it in the snapshot."""
        self._watchdog[name] = status
        self._publish()

    def strangers(self) -> list[Stranger]:
        """The vLLM servers in the latest agent sample that no ``[[models]]`` names."""
        sample = self.monitor.view.sample
        return strangers(sample, self.config) if sample is not None else []

    async def sleep(self, name: str, level: int = 1, progress: Progress | None = None) -> None:
        """vLLM's sleep mode (vllm/sleep.py): raises LifecycleError(message, hint)."""
        model = self.config.model(name)
        await self.watcher.wait_informed(FIRST_POLL_WAIT_S)  # its state known before asking
        client = VllmClient(
            await self.model_url(name), api_key=model.api_key(), timeout=sleep_mode.HTTP_TIMEOUT_S
        )
        try:
            for warning in await sleep_mode.sleep(client, model, self.watcher, level):
                if progress is not None:
                    progress(name, f"warning: {warning}")
        finally:
            await client.aclose()
        self._publish()

    async def wake(self, name: str) -> None:
        """Wake a sleeping model (vllm/sleep.py): raises LifecycleError(message, hint)."""
        model = self.config.model(name)
        await self.watcher.wait_informed(FIRST_POLL_WAIT_S)
        client = VllmClient(
            await self.model_url(name), api_key=model.api_key(), timeout=sleep_mode.HTTP_TIMEOUT_S
        )
        try:
            await sleep_mode.wake(client, model, self.watcher)
        finally:
            await client.aclose()
        self._publish()

    async def kill_orphans(self, name: str | None = None) -> list[tuple[int, int]]:
        killed = await self._lc().kill_orphans(name)
        self._orphans_killed += len(killed)
        self._publish()
        return killed

    async def model_url(self, name: str) -> str:
        """A comparison arm's base URL: a model's forward (a routed model's: its router's),
        or an API arm's (its ``url``, or its service's or port's forward:
        ``docapi.arm_url``)."""
        api = next((a for a in self.config.api_arms if a.name == name), None)
        if api is not None:
            return await arm_url(api, self.config, self.pod)
        if not self.config.replicas_of(name):
            self.config.model(name)
        if name not in self._urls:
            raise RuntimeError("Controller.start() was not called")
        return self._urls[name]

    def placement(self, name: str) -> Placement:
        """The pod and GPU a model runs on, as the latest snapshot has them."""
        return Placement.of(self._snapshot, name)

    async def served(self, name: str) -> Served | None:
        """The running server's versions, argv and advisories (probed now if not yet); for a
        routed model, its first replica's."""
        replicas = self.config.replicas_of(name)
        if replicas:
            name = replicas[0].name
        self.config.model(name)
        return await self.servers.inspect(name)

    async def log_tail(self, name: str, lines: int = 200) -> list[str]:
        """The model log's last ``lines`` lines, less the 1 Hz probes' access-log lines (a
        service's log as it is)."""
        if self.is_service(name):
            return await self._runner().log_tail(name, lines)
        model = self.config.model(name)
        # Probes log two lines a second: read further back so real lines still fill the pane.
        raw = await self.pod.tail(model.log_path(self._workdir), lines * LOG_TAIL_OVERREAD)
        return without_probes(raw)[-lines:]

    # -- snapshots ------------------------------------------------------------------------

    def _on_link(self, state: ConnState) -> None:
        if state in (ConnState.LOST, ConnState.RECONNECTING):
            self.power.ask()  # a link that keeps failing: is the pod stopped?
        self._publish()

    # -- the pod's power ([pod.provider]) --------------------------------------------------

    async def power_state(self) -> ProviderState | None:
        return await self.power.now()

    async def start_pod(self) -> ProviderState:
        """Start the pod through the provider; the SSH host and port it gives are where the
        next connect goes."""
        state = await self.power.start()
        if state.state == "running":
            self.pod.move_to(state.ssh_host, state.ssh_port)
        return state

    def _build(self) -> Snapshot:
        view = self.monitor.view
        models = tuple(self._model_status(m.name) for m in self.config.models)
        pod = PodStatus(
            label=self.pod.label,
            connection=self.pod.state.value,
            connection_age_s=round(self.pod.state_age_s, 3),
            data_age_s=None if view.data_age_s is None else round(view.data_age_s, 3),
            simulated_gpu=view.simulated,
            demo=self.demo,
            agent_error=view.error,
            power=self.power.state.state if self.power.state else None,
            power_detail=self.power.state.detail if self.power.state else None,
            price_per_hr=self.power.state.price_per_hr if self.power.state else None,
            **self._idle(models),
        )
        rows = view.attribution.rows if view.attribution else ()
        processes = _with_services(
            tuple(ProcessStatus(**r.status_fields()) for r in rows),  # type: ignore[arg-type]
            self.service_watch.statuses,
        )
        orphans = tuple(
            OrphanStatus(o.pid, o.model, o.used_mib, o.rss_mib, o.title) for o in view.orphans
        )
        return Snapshot(
            pod,
            self._gpus(view),
            processes,
            models,
            orphans=orphans,
            services=tuple(
                replace(s, watchdog=self._watchdog.get(s.name)) for s in self.service_watch.statuses
            ),
            orphans_killed=self._orphans_killed,
        )

    def _idle(self, models: tuple[ModelStatus, ...]) -> dict[str, Any]:
        """``idle_s`` since a model last had a request running or waiting (a comparison's
        included), and the notice once ``[pod.provider] idle_notice_min`` has passed."""
        now = time.monotonic()
        if any((m.running or 0) + (m.waiting or 0) > 0 for m in models):
            self._active_at = now
        idle_s = round(now - self._active_at, 1)
        provider = self.config.pod.provider
        notice = None
        limit = provider.idle_notice_min if provider is not None else None
        if limit is not None and idle_s >= limit * 60:
            price = self.power.state.price_per_hr if self.power.state else None
            notice = f"idle {idle_s / 60:.0f} min" + (
                f" at ${price:.2f}/h" if price is not None else ""
            )
        return {"idle_s": idle_s, "idle_notice": notice}

    def _model_status(self, name: str) -> ModelStatus:
        status = replace(
            self.watcher.status(name),
            restarts=self._restarts.get(name, 0),
            watchdog=self._watchdog.get(name),
        )
        served = self.servers.served(name)
        return replace(status, advisories=served.advisories) if served else status

    def _gpus(self, view: MonitorView) -> tuple[GpuStatus, ...]:
        """Each GPU with its owners as attributed, and the plans of the models it runs."""
        samples = view.sample.gpus if view.sample else ()
        usages = {u.index: u for u in view.attribution.gpus} if view.attribution else {}
        plans: dict[int, dict[str, int]] = {}
        for m in self.config.models:
            for gpu in gpus_for(m, samples):
                plans.setdefault(gpu.index, {})[m.name] = planned_mib(m, gpu)
        asleep = frozenset(
            m.name for m in self.config.models if self.watcher.status(m.name).sleeping
        )
        return tuple(
            _gpu_status(g, usages.get(g.index), plans.get(g.index, {}), self.config, asleep)
            for g in samples
        )

    def _publish(self) -> None:
        self._snapshot = self._build()
        self._changed.set()
        self._changed = asyncio.Event()
        for cb in list(self._subscribers):
            cb(self._snapshot)


def _with_services(
    processes: tuple[ProcessStatus, ...], services: tuple[ServiceStatus, ...]
) -> tuple[ProcessStatus, ...]:
    """Rows of no model that a ``gpu = true`` service's session holds are that service's."""
    owner = {pid: s.name for s in services if s.gpu for pid in s.pids}
    if not owner:
        return processes
    return tuple(
        replace(p, kind="service", owner=owner[p.pid])
        if p.kind in ("other", "unattributed") and p.pid in owner
        else p
        for p in processes
    )


def _gpu_status(
    g: GpuSample,
    usage: GpuUsage | None,
    plans: dict[str, int],
    config: Config,
    asleep: frozenset[str],
) -> GpuStatus:
    used = usage.model_mib if usage else {}
    shares = tuple(
        ModelShare(m.name, used.get(m.name, 0), plans.get(m.name), sleeping=m.name in asleep)
        for m in config.models
        if m.name in plans or used.get(m.name, 0) > 0
    )
    return GpuStatus(
        **g.status_fields(),  # type: ignore[arg-type]
        models=shares,
        orphan_mib=usage.orphan_mib if usage else 0,
        other_mib=usage.owner_other_mib if usage else g.used_mib,
        unattributed_mib=usage.unattributed_mib if usage else 0,
        planned_mib=sum(plans.values()),
    )


class FleetController:
    """One :class:`Controller` per pod of a :class:`~ocrtui.config.Fleet`."""

    def __init__(self, fleet: Fleet, *, demo: bool = False) -> None:
        self.fleet = fleet
        self.controllers = {c.pod.label: Controller(c, demo=demo) for c in fleet.pods}

    async def start(self) -> dict[str, OcrtuiError]:
        """Start every pod's Controller at once; those that could not start (unreachable,
        a missing workdir), by pod name. The others run; a pod that failed is not retried
        here (``close()`` closes every Controller either way)."""
        names = list(self.controllers)
        outcomes = await asyncio.gather(
            *(self.controllers[n].start() for n in names), return_exceptions=True
        )
        failed: dict[str, OcrtuiError] = {}
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, OcrtuiError):
                failed[name] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return failed

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.controllers.values()))

    def owner(self, name: str) -> Controller:
        """The Controller of the pod whose model, service or API arm ``name`` is."""
        return self.controllers[self.fleet.owner(name).pod.label]

    async def model_url(self, name: str) -> str:
        return await self.owner(name).model_url(name)

    async def served(self, name: str) -> Served | None:
        return await self.owner(name).served(name)

    def placement(self, name: str) -> Placement:
        return self.owner(name).placement(name)

    async def restart(
        self,
        name: str,
        progress: Progress | None = None,
        *,
        force: bool = False,
        serve: ModelConfig | None = None,
    ) -> None:
        await self.owner(name).restart(name, progress, force=force, serve=serve)
