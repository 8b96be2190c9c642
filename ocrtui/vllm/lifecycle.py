"""Start, stop and restart vLLM servers on the pod, so that a restart works the first time.

* Launch: the exact ``vllm serve`` command from config, detached in its own session and
  process group (``Pod.start_detached``), output appended to the model's log file, in the
  pod's workdir. The API key travels as ``VLLM_API_KEY`` in the environment, never as a flag.
* Stop: SIGTERM to the server's process group, SIGKILL to its orphans, wait, then SIGKILL
  the group and every vLLM process of that model the agent knows (orphaned EngineCores,
  Workers and resource trackers included). Stopped means every pid of the tree has exited
  (checked on the pod; a zombie counts as exited) and the model's GPU memory is released.
* Preflight before any start checks what it can and warns about what it cannot: free VRAM
  as vLLM will measure it (else the holders are named), host RAM for a CPU build (no GPU
  seen), the port; warnings for plans known to fail (vllm/plan.py's KNOWN_MODELS, sources there).
  ``force`` turns the refusals into progress lines.
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
from ocrtui.vllm.advisories import advisories, probe_pod
from ocrtui.vllm.logfile import READY, append_marker
from ocrtui.vllm.plan import gpu_for, plan_warnings, preflight_checks, serve_argv, serve_env
from ocrtui.vllm.watch import FIRST_POLL_WAIT_S, ModelWatcher, is_server_of

# Progress of a lifecycle operation: (model name, human-readable step), e.g.
# ("glm-ocr", "stopping"), ("glm-ocr", "waiting for VRAM"), ("glm-ocr", "starting: KV cache").
Progress = Callable[[str, str], None]

STOP_TIMEOUT_S = 30.0
RELEASE_TIMEOUT_S = 30.0
SAMPLE_TIMEOUT_S = 15.0
# Prints the pids given that still run: /proc/PID/stat exists and its state is not Z.
_ALIVE_SH = (
    'for p; do s=$(sed "s/.*) //" "/proc/$p/stat" 2>/dev/null) && '
    '[ "${s%% *}" != Z ] && echo "$p"; done; true'
)


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
        """(process groups to signal, every known live pid) of the model, orphans included.

        The port owner's tree counts only when the owner is this model's API server (or the
        pid we launched): a stranger on the port is named by preflight, never killed here.
        The vLLM processes in the API servers' groups or below them (EngineCore, Workers,
        the resource tracker) count too.
        """
        model = self.config.model(name)
        usage = view.model(name)
        sample = view.sample
        launched = self.launches.pids.get(name)
        vllm = sample.vllm if sample else ()
        apis = {v.pid: v for v in vllm if is_server_of(v, model)}
        pids: set[int] = set(apis)
        groups = {v.pgid for v in apis.values() if v.pgid > 1}
        zombies = {v.pid for v in vllm if v.state == "Z"}
        if launched is not None:
            groups.add(launched)  # start_detached: the server leads its own process group
        pids |= {v.pid for v in vllm if v.pgid in groups or any(a in apis for a in v.ancestors)}
        if usage is not None:
            if usage.server_pid is not None and (
                usage.server_pid in apis or usage.server_pid == launched
            ):
                pids |= set(usage.tree_pids)
            pids |= set(usage.orphan_pids)
        return groups, pids - zombies

    def _gone(self, name: str, view: MonitorView, captured: frozenset[int] = frozenset()) -> bool:
        """No process of the model (nor any of ``captured``) alive, and its memory released."""
        _, pids = self._model_pids(name, view)
        usage = view.model(name)
        listed = {v.pid for v in view.sample.vllm if v.state != "Z"} if view.sample else set()
        return not pids and not captured & listed and (usage is None or usage.held_mib == 0)

    async def _alive_on_pod(self, pids: set[int]) -> set[int]:
        """Which of ``pids`` still run on the pod (a zombie does not: it holds nothing and
        waits only for a parent that may never reap it)."""
        if not pids:
            return set()
        argv = ["sh", "-c", _ALIVE_SH, "sh", *(str(p) for p in sorted(pids))]
        result = await self.pod.run(argv, timeout=SAMPLE_TIMEOUT_S)
        return {int(x) for x in result.stdout.split() if x.isdigit()} & pids

    async def _wait_gone(self, name: str, captured: set[int], timeout: float) -> bool:
        """Until the agent shows the model gone and the pod confirms that every captured pid
        has exited; False at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        frozen = frozenset(captured)
        while (remaining := deadline - loop.time()) > 0:
            try:
                await self.monitor.wait_for(lambda v: self._gone(name, v, frozen), remaining)
            except TimeoutError:
                return False
            if not await self._alive_on_pod(set(frozen)):
                return True
            # The agent's sample predates the exit check: wait for a newer one.
            with contextlib.suppress(TimeoutError):
                await self.monitor.next_samples(1, timeout=max(0.05, deadline - loop.time()))
        return False

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
        if not await self._wait_gone(name, pids, self.stop_timeout_s):
            view = self.monitor.view
            groups2, pids2 = self._model_pids(name, view)
            progress(name, f"still running after {self.stop_timeout_s:g} s: SIGKILL")
            await self._signal_all(groups | groups2, pids | pids2, "KILL")
        # Without a GPU (a CPU build) there is no VRAM to wait for, only the processes.
        gpu = bool(view.sample and view.sample.gpus)
        progress(name, "waiting for VRAM release" if gpu else "waiting for its processes to exit")
        if not await self._wait_gone(name, pids, self.release_timeout_s):
            view = self.monitor.view
            what = "release its GPU memory" if gpu else "exit"
            raise LifecycleError(
                f"{name} did not {what} within {self.release_timeout_s:g} s: "
                + _still_holding(name, view),
                "a process stuck in the driver (state D/R in ps) may need the pod restarted"
                if gpu
                else "a process stuck in the kernel (state D in ps) may need the pod restarted",
            )

    async def kill_orphans(self, name: str | None = None) -> list[tuple[int, int]]:
        """SIGKILL leaked vLLM processes (of ``name``, or all); (pid, MiB) of those killed."""
        view = await self._fresh_view()
        targets = [o for o in view.orphans if name is None or o.model == name]
        if not targets:
            return []
        pids = {o.pid for o in targets}
        await self._signal_all(set(), pids, "KILL")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.release_timeout_s
        with contextlib.suppress(TimeoutError):
            await self.monitor.wait_for(
                lambda v: not pids & {o.pid for o in v.orphans}, self.release_timeout_s
            )
            while await self._alive_on_pod(pids) and loop.time() < deadline:
                await self.monitor.next_samples(1, timeout=max(0.05, deadline - loop.time()))
        return [(o.pid, o.used_mib or 0) for o in targets]

    # -- start --------------------------------------------------------------------------

    async def preflight(
        self, name: str, progress: Progress | None = None, *, force: bool = False
    ) -> int | None:
        """Check what can be checked; warnings through ``progress``. A refusal (memory not
        free, port taken) raises LifecycleError unless ``force``, which only tells it.
        Returns the planned MiB (None without a GPU). The advisories on the pod's versions
        and the planned serve argv are warnings too."""
        progress = progress or _quiet
        model = self.config.model(name)
        view = self.monitor.view
        if view.sample is None:
            try:
                view = await self._fresh_view()
            except LifecycleError as exc:
                progress(name, f"warning: cannot check memory or port: {exc.message}")
                return None
        gpu = gpu_for(model, view.sample.gpus) if view.sample else None
        for who, text in plan_warnings(self.config, gpu.total_mib if gpu else None):
            if who in (name, "*"):
                progress(name, f"warning: {text}")
        probe = await probe_pod(self.pod, self.config.pod)
        argv = serve_argv(self.config.pod.vllm_command, model)
        image_format = self.config.compare.image_format
        for a in advisories(model, probe.versions, argv, image_format=image_format):
            progress(name, f"{a.severity}: {a.text}")
        planned, checks = preflight_checks(model, view)
        for check in sorted(checks, key=lambda c: c.level == "refuse"):
            if check.level == "warn":
                progress(name, f"warning: {check.message}")
            elif force:
                progress(name, f"--force: not refusing: {check.message}")
            else:
                raise LifecycleError(check.message, check.hint)
        return planned

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
                await append_marker(self.pod, self.log_path(model), READY, name)
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

    async def start(
        self, name: str, progress: Progress | None = None, *, force: bool = False
    ) -> None:
        """Preflight, launch, wait until ready. Leftovers of a failed start are cleaned up."""
        async with self._lock(name):
            progress = progress or _quiet
            progress(name, "preflight")
            await self.preflight(name, progress, force=force)
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

    async def restart(
        self, name: str, progress: Progress | None = None, *, force: bool = False
    ) -> None:
        progress = progress or _quiet
        self.config.model(name)
        with contextlib.suppress(TimeoutError):  # a fresh `ocrtui restart` has not polled yet
            await self.watcher.wait_informed(FIRST_POLL_WAIT_S)
        before = self.watcher.status(name)
        if before.state == "crashed" and before.hint:
            progress(name, f"last run failed: {before.hint}")
        async with self._lock(name):
            await self._stop(name, progress)
        await self.start(name, progress, force=force)

    async def ensure_ready(
        self, name: str, progress: Progress | None = None, *, force: bool = False
    ) -> None:
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
            await self.restart(name, progress, force=force)


def _still_holding(name: str, view: MonitorView) -> str:
    rows = view.attribution.rows if view.attribution else ()
    mine = [r for r in rows if r.owner == name and r.used_mib > 0]
    if not mine:
        return "the agent still lists its processes"
    return ", ".join(f"pid {r.pid} ({r.title or 'unknown'}) {r.used_mib} MiB" for r in mine)


def _quiet(name: str, step: str) -> None:
    return None
