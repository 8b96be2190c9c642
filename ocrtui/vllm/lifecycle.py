"""Start, stop and restart vLLM servers on the pod, so that a restart works the first time.

* Launch: the exact ``vllm serve`` command from config, detached in its own session and
  process group (``Pod.start_detached``), output appended to the model's log file, in the
  pod's workdir. The API key travels as ``VLLM_API_KEY`` in the environment, never as a flag.
* Stop: SIGTERM to the server's process group, wait, then SIGKILL the group and every vLLM
  process of that model the agent knows (orphaned EngineCores included), then wait until
  the agent shows the model's GPU memory released.
* Preflight before any start: enough free VRAM (else the holders are named), plus warnings
  for plans that are known to fail (research/vllm_and_models.md §2, §4).
* Restart = stop + preflight + launch + wait ready. ``ensure_ready`` is one model's step of
  ``up`` (the waves of models and services are the Controller's).

Process knowledge comes from the agent monitor (port owners, trees, orphans, memory per
row); the model state from the :class:`ModelWatcher` below it. What is launched and how
much memory it needs is decided in ``plan.py``; the launch bookkeeping the watcher reads
(pids launched, launches and stops in progress) is kept in :class:`Launches`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Callable

from ocrtui.config import Config, ModelConfig
from ocrtui.errors import LifecycleError
from ocrtui.monitor.agent_monitor import AgentMonitor, MonitorView
from ocrtui.pod.base import Pod
from ocrtui.status import ModelStatus
from ocrtui.vllm.logfile import append_marker
from ocrtui.vllm.plan import check_free_memory, gpu_for, plan_warnings, serve_argv, serve_env
from ocrtui.vllm.watch import ModelWatcher, is_server_of

# Progress of a lifecycle operation: (model name, human-readable step), e.g.
# ("glm-ocr", "stopping"), ("glm-ocr", "waiting for VRAM"), ("glm-ocr", "starting: KV cache").
Progress = Callable[[str, str], None]

STOP_TIMEOUT_S = 30.0
RELEASE_TIMEOUT_S = 30.0
SAMPLE_TIMEOUT_S = 15.0


# -- operations ----------------------------------------------------------------------------


class Lifecycle:
    def __init__(
        self,
        config: Config,
        pod: Pod,
        monitor: AgentMonitor,
        watcher: ModelWatcher,
        *,
        workdir: str,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        release_timeout_s: float = RELEASE_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.pod = pod
        self.monitor = monitor
        self.watcher = watcher
        self.launches = watcher.launches
        self.workdir = workdir
        self.stop_timeout_s = stop_timeout_s
        self.release_timeout_s = release_timeout_s
        self._locks: dict[str, asyncio.Lock] = {}

    def log_path(self, model: ModelConfig) -> str:
        return model.log_path(self.workdir)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _fresh_view(self) -> MonitorView:
        """The first sample taken after this call (the state before an action)."""
        try:
            return await self.monitor.next_samples(1, timeout=SAMPLE_TIMEOUT_S)
        except TimeoutError:
            view = self.monitor.view
            raise LifecycleError(
                f"no fresh data from the pod agent for {SAMPLE_TIMEOUT_S:g} s"
                + (f": {view.error}" if view.error else ""),
                "check the connection and the agent in the pod panel",
            ) from None

    # -- stop ---------------------------------------------------------------------------

    def _model_pids(self, name: str, view: MonitorView) -> tuple[set[int], set[int]]:
        """(process groups to signal, every known pid) of the model, orphans included.

        The port owner's tree counts only when the owner is this model's API server (or the
        pid we launched): a stranger on the port is named by preflight, never killed here.
        """
        model = self.config.model(name)
        usage = view.model(name)
        sample = view.sample
        launched = self.launches.pids.get(name)
        apis = {v.pid: v for v in sample.vllm if is_server_of(v, model)} if sample else {}
        pids: set[int] = set(apis)
        groups = {v.pgid for v in apis.values() if v.pgid > 1}
        zombies = {v.pid for v in sample.vllm if v.state == "Z"} if sample else set()
        if launched is not None:
            groups.add(launched)  # start_detached: the server leads its own process group
        if usage is not None:
            if usage.server_pid is not None and (
                usage.server_pid in apis or usage.server_pid == launched
            ):
                pids |= set(usage.tree_pids)
            pids |= set(usage.orphan_pids)
        return groups, pids - zombies

    def _gone(self, name: str, view: MonitorView) -> bool:
        _, pids = self._model_pids(name, view)
        usage = view.model(name)
        return not pids and (usage is None or usage.held_mib == 0)

    async def _signal_all(self, groups: set[int], pids: set[int], sig: str) -> None:
        await asyncio.gather(
            *(self.pod.signal(g, sig, group=True) for g in sorted(groups)),
            *(self.pod.signal(p, sig) for p in sorted(pids)),
        )

    async def stop(self, name: str, progress: Progress | None = None) -> None:
        async with self._lock(name):
            await self._stop(name, progress or _quiet)

    async def _stop(self, name: str, progress: Progress) -> None:
        model = self.config.model(name)
        view = await self._fresh_view()
        groups, pids = self._model_pids(name, view)
        await append_marker(self.pod, self.log_path(model), "stop", name)
        if not groups and not pids and self._gone(name, view):
            progress(name, "not running")
            self.launches.pids.pop(name, None)
            return
        self.launches.stopping.add(name)
        try:
            await self._terminate(name, groups, pids, view, progress)
        finally:
            self.launches.stopping.discard(name)
        self.launches.pids.pop(name, None)
        progress(name, "stopped")

    async def _terminate(
        self, name: str, groups: set[int], pids: set[int], view: MonitorView, progress: Progress
    ) -> None:
        progress(name, "stopping (SIGTERM)")
        await self._signal_all(groups, set(), "TERM")
        usage = view.model(name)
        orphans = set(usage.orphan_pids) if usage else set()
        if orphans:
            # A leaked EngineCore has no API server left to shut it down cleanly.
            progress(name, f"killing orphans {', '.join(map(str, sorted(orphans)))}")
            await self._signal_all(set(), orphans, "KILL")
        try:
            view = await self.monitor.wait_for(lambda v: self._gone(name, v), self.stop_timeout_s)
        except TimeoutError:
            view = self.monitor.view
            groups2, pids2 = self._model_pids(name, view)
            progress(name, f"still running after {self.stop_timeout_s:g} s: SIGKILL")
            await self._signal_all(groups | groups2, pids | pids2, "KILL")
        progress(name, "waiting for VRAM release")
        try:
            await self.monitor.wait_for(lambda v: self._gone(name, v), self.release_timeout_s)
        except TimeoutError:
            view = self.monitor.view
            raise LifecycleError(
                f"{name} did not release its GPU memory within {self.release_timeout_s:g} s: "
                + _still_holding(name, view),
                "a process stuck in the driver (state D/R in ps) may need the pod restarted",
            ) from None

    async def kill_orphans(self, name: str | None = None) -> list[tuple[int, int]]:
        """SIGKILL leaked vLLM processes (of ``name``, or all); (pid, MiB) of those killed."""
        view = await self._fresh_view()
        targets = [o for o in view.orphans if name is None or o.model == name]
        if not targets:
            return []
        await self._signal_all(set(), {o.pid for o in targets}, "KILL")
        pids = {o.pid for o in targets}
        with contextlib.suppress(TimeoutError):
            await self.monitor.wait_for(
                lambda v: not pids & {o.pid for o in v.orphans}, self.release_timeout_s
            )
        return [(o.pid, o.used_mib or 0) for o in targets]

    # -- start --------------------------------------------------------------------------

    async def preflight(self, name: str, progress: Progress | None = None) -> int:
        """Warnings through ``progress``; LifecycleError when the memory is not free."""
        progress = progress or _quiet
        model = self.config.model(name)
        view = self.monitor.view
        if view.sample is None:
            view = await self._fresh_view()
        gpu = gpu_for(model, view.sample.gpus) if view.sample else None
        for who, text in plan_warnings(self.config, gpu.total_mib if gpu else None):
            if who in (name, "*"):
                progress(name, f"warning: {text}")
        return check_free_memory(model, view)

    async def launch(self, name: str, progress: Progress | None = None) -> int:
        """Start the server detached; returns its pid (it leads its own process group)."""
        progress = progress or _quiet
        model = self.config.model(name)
        log = self.log_path(model)
        # Registered before the marker goes into the log, so no poll in between takes the
        # marker without a process for a crash.
        self.launches.begin(name)
        self.monitor.begin_launch(name)
        await append_marker(self.pod, log, "launch", name)
        argv = serve_argv(self.config.pod.vllm_command, model)
        progress(name, f"launching: {shlex.join(argv)}")
        try:
            pid = await self.pod.start_detached(
                argv, log_file=log, env=serve_env(model, self.config.pod.sim_gpu), cwd=self.workdir
            )
        except (OSError, RuntimeError) as exc:
            self._end_launch(name)
            raise LifecycleError(f"could not launch {name}: {exc}") from None
        self.launches.started(name, pid)
        progress(name, f"started pid {pid}, log {log}")
        return pid

    async def wait_ready(self, name: str, progress: Progress | None = None) -> None:
        progress = progress or _quiet
        model = self.config.model(name)
        last: list[str | None] = [None]

        def on_change(status: ModelStatus) -> None:
            label = status.state if status.state != "starting" else f"starting: {status.stage}"
            if status.state == "starting" and not status.stage:
                label = "starting"
            if label != last[0]:
                last[0] = label
                progress(name, label)

        try:
            status = await self.watcher.wait_model(
                name,
                lambda s: s.state in ("ready", "crashed"),
                model.ready_timeout_s,
                on_change,
            )
            if status.state == "ready":
                await self._await_port_owner(name)
        except TimeoutError:
            current = self.watcher.status(name)
            where = f" (still {current.state}"
            where += f": {current.stage})" if current.stage else ")"
            raise LifecycleError(
                f"{name} was not ready after {model.ready_timeout_s:g} s{where}",
                f"read the log ({self.log_path(model)}) or raise ready_timeout_s",
            ) from None
        finally:
            self._end_launch(name)
        if status.state == "crashed":
            raise LifecycleError(f"{name} failed to start", status.hint)

    def _end_launch(self, name: str) -> None:
        if self.launches.end(name):
            self.monitor.end_launch(name, self.launches.pids.get(name))

    async def _await_port_owner(self, name: str) -> None:
        """Let the agent see the ready server own its port before the launch window closes,
        so its EngineCore is attributed by tree rather than briefly taken for an orphan."""
        with contextlib.suppress(TimeoutError):
            await self.monitor.wait_for(
                lambda v: (u := v.model(name)) is not None and u.server_pid is not None,
                SAMPLE_TIMEOUT_S,
            )

    async def start(self, name: str, progress: Progress | None = None) -> None:
        """Preflight, launch, wait until ready. Leftovers of a failed start are cleaned up."""
        async with self._lock(name):
            progress = progress or _quiet
            progress(name, "preflight")
            await self.preflight(name, progress)
            await self.launch(name, progress)
            try:
                await self.wait_ready(name, progress)
            except LifecycleError:
                await self._kill_leftovers(name)
                raise

    async def _kill_leftovers(self, name: str) -> None:
        """After a failed start: no process of it may keep holding memory (state stays
        crashed: the log's last marker is still the launch)."""
        view = self.monitor.view
        groups, pids = self._model_pids(name, view)
        with contextlib.suppress(Exception):
            await self._signal_all(groups, pids, "KILL")

    async def restart(self, name: str, progress: Progress | None = None) -> None:
        progress = progress or _quiet
        self.config.model(name)
        async with self._lock(name):
            await self._stop(name, progress)
        await self.start(name, progress)

    async def ensure_ready(self, name: str, progress: Progress | None = None) -> None:
        """One model's step of ``up``: ready stays; starting and not ours is waited for;
        down, crashed or unhealthy is restarted (its leftovers cleared first). The caller
        waits for an informed poll first (``ModelWatcher.wait_informed``), so a healthy
        server the first poll would find is never restarted."""
        progress = progress or _quiet
        state = self.watcher.status(name).state
        if state == "ready":
            progress(name, "already ready")
        elif state == "starting" and name not in self.launches.pids:
            progress(name, "already starting; waiting")
            await self.wait_ready(name, progress)
        else:
            await self.restart(name, progress)


def _still_holding(name: str, view: MonitorView) -> str:
    rows = view.attribution.rows if view.attribution else ()
    mine = [r for r in rows if r.owner == name and r.used_mib > 0]
    if not mine:
        return "the agent still lists its processes"
    return ", ".join(f"pid {r.pid} ({r.title or 'unknown'}) {r.used_mib} MiB" for r in mine)


def _quiet(name: str, step: str) -> None:
    return None
