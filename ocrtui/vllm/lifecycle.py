"""Start, stop and restart vLLM servers on the pod, so that a restart works the first time.

* Launch: the exact ``vllm serve`` command from config, detached in its own session and
  process group (``Pod.start_detached``), output appended to the model's log file, in the
  pod's workdir. The API key travels as ``VLLM_API_KEY`` in the environment, never as a flag.
* Stop: ``Pod.terminate`` (SIGTERM, then SIGCONT for a stopped server) to the server's
  process group, SIGKILL to its orphans, wait, then SIGKILL the group and every vLLM
  process of that model the agent knows (orphaned EngineCores, Workers and resource
  trackers included). Stopped means every pid of the tree has exited
  (checked on the pod; a zombie counts as exited) and the model's GPU memory is released.
* Preflight before any start checks what it can and warns about what it cannot: free VRAM
  as vLLM will measure it, less what the models asleep on that GPU take back when they wake
  up (else the holders, and the sleepers, are named), host RAM for a CPU build (no GPU
  seen), the port, and the vLLM/transformers the launch will import against the recipe's
  known-bad combinations (``vllm/advisories.py``); warnings for plans known to fail.
  ``force`` turns the refusals into progress lines.
* Restart = stop + preflight + launch + wait ready, under the model's lock throughout (the
  stop policy of services too, ``services.py``). ``ensure_ready`` is one model's step of
  ``up`` (the waves of models and services are the Controller's).

Which processes are the model's (server, process groups and pids to signal, orphans,
memory) is the agent monitor's ``ModelProcesses`` (``monitor/attribution.py``); the model
state comes from the :class:`ModelWatcher` below it. What is launched and how much memory it
needs is decided in ``plan.py``; this session's launches and stops are recorded in the
monitor's ``Launches`` (``monitor/launches.py``), the one record attribution and the watcher
read.
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
from ocrtui.vllm.plan import (
    WakeNeed,
    gpu_for,
    plan_warnings,
    preflight_checks,
    serve_argv,
    serve_env,
)
from ocrtui.vllm.watch import FIRST_POLL_WAIT_S, ModelWatcher

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
        self.launches = monitor.launches
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

    @staticmethod
    def _targets(name: str, view: MonitorView) -> tuple[set[int], set[int]]:
        """(process groups to signal, every live pid to see exit) of the model, as the
        monitor's ``ModelProcesses`` has them."""
        procs = view.model(name)
        return (set(procs.groups), set(procs.pids)) if procs is not None else (set(), set())

    def _gone(self, name: str, view: MonitorView, captured: frozenset[int] = frozenset()) -> bool:
        """No process of the model (nor any of ``captured``) alive, and its memory released."""
        procs = view.model(name)
        listed = {v.pid for v in view.sample.vllm if v.state != "Z"} if view.sample else set()
        return (procs is None or (not procs.pids and procs.held_mib == 0)) and not captured & listed

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
        groups, pids = self._targets(name, view)
        await append_marker(self.pod, self.log_path(model), "stop", name)
        if not groups and not pids and self._gone(name, view):
            progress(name, "not running")
            self.launches.stopped(name)
            return
        with self.launches.stopping(name):
            await self._terminate(name, groups, pids, view, progress)
        self.launches.stopped(name)
        progress(name, "stopped")

    async def _terminate(
        self, name: str, groups: set[int], pids: set[int], view: MonitorView, progress: Progress
    ) -> None:
        progress(name, "stopping (SIGTERM)")
        await asyncio.gather(*(self.pod.terminate(g) for g in sorted(groups)))
        procs = view.model(name)
        orphans = set(procs.orphan_pids) if procs else set()
        if orphans:
            # A leaked EngineCore has no API server left to shut it down cleanly.
            progress(name, f"killing orphans {', '.join(map(str, sorted(orphans)))}")
            await self._signal_all(set(), orphans, "KILL")
        if not await self._wait_gone(name, pids, self.stop_timeout_s):
            view = self.monitor.view
            groups2, pids2 = self._targets(name, view)
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
        self,
        name: str,
        progress: Progress | None = None,
        *,
        force: bool = False,
        serve: ModelConfig | None = None,
    ) -> int | None:
        """Check what can be checked; warnings through ``progress``. A refusal (a known-bad
        vLLM/transformers combination, memory not free, port taken) raises LifecycleError
        unless ``force``, which only tells it.
        Returns the planned MiB (None without a GPU). The advisories on the pod's versions
        and the planned serve argv are warnings too. ``serve``: the settings the start will
        use, when not the configured ones (see ``restart``)."""
        progress = progress or _quiet
        model = serve or self.config.model(name)
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
        # The versions the launch will import: the vllm_command's interpreter with the
        # model's own PYTHONPATH. A known-bad combination is refused here, before a start
        # that would fail minutes later.
        probe = await probe_pod(self.pod, self.config.pod, model)
        argv = serve_argv(self.config.pod.vllm_command, model)
        image_format = self.config.compare.image_format
        refusals: list[tuple[str, str | None]] = []
        for a in advisories(model, probe.versions, argv, image_format=image_format):
            if a.refuses:
                refusals.append((a.text, a.fix))
            else:
                progress(name, f"{a.severity}: {a.shown}")
        planned, checks = preflight_checks(model, view, self._wake_needs(view))
        refusals += [(c.message, c.hint) for c in checks if c.level == "refuse"]
        for check in checks:
            if check.level == "warn":
                progress(name, f"warning: {check.message}")
        for message, hint in refusals:
            if not force:
                raise LifecycleError(message, hint)
            progress(name, f"--force: not refusing: {message}")
        return planned

    def _wake_needs(self, view: MonitorView) -> list[WakeNeed]:
        """The models asleep now, each with the GPU memory its wake-up takes back."""
        gpus = view.sample.gpus if view.sample else ()
        needs = []
        for m in self.config.models:
            status = self.watcher.status(m.name)
            gpu = gpu_for(m, gpus)
            if status.sleeping and status.given_back_mib and gpu is not None:
                needs.append(WakeNeed(m.name, gpu.index, status.given_back_mib))
        return needs

    async def launch(
        self, name: str, progress: Progress | None = None, *, serve: ModelConfig | None = None
    ) -> int:
        """Start the server detached (``serve``: with these settings instead of the
        configured ones); returns its pid (it leads its own process group)."""
        progress = progress or _quiet
        model = serve or self.config.model(name)
        log = self.log_path(model)
        # Registered before the marker goes into the log, so no poll in between takes the
        # marker without a process for a crash.
        self.launches.begin(name)
        await append_marker(self.pod, log, "launch", name)
        argv = serve_argv(self.config.pod.vllm_command, model)
        progress(name, f"launching: {shlex.join(argv)}")
        try:
            pid = await self.pod.start_detached(
                argv, log_file=log, env=serve_env(model, self.config.pod.sim_gpu), cwd=self.workdir
            )
        except (OSError, RuntimeError) as exc:
            self.launches.end(name)
            raise LifecycleError(f"could not launch {name}: {exc}") from None
        self.launches.started(name, pid)
        progress(name, f"started pid {pid}, log {log}")
        return pid

    async def wait_ready(
        self, name: str, progress: Progress | None = None, *, serve: ModelConfig | None = None
    ) -> None:
        progress = progress or _quiet
        model = serve or self.config.model(name)
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
            self.launches.end(name)
        if status.state == "crashed":
            raise LifecycleError(f"{name} failed to start", status.hint)

    async def _await_port_owner(self, name: str) -> None:
        """Let the agent see the ready server own its port before the launch window closes,
        so its EngineCore is attributed by tree rather than briefly taken for an orphan."""
        with contextlib.suppress(TimeoutError):
            await self.monitor.wait_for(
                lambda v: (p := v.model(name)) is not None and p.port_owner is not None,
                SAMPLE_TIMEOUT_S,
            )

    async def start(
        self, name: str, progress: Progress | None = None, *, force: bool = False
    ) -> None:
        """Preflight, launch, wait until ready. Leftovers of a failed start are cleaned up."""
        async with self._lock(name):
            await self._start(name, progress or _quiet, force=force)

    async def _start(
        self, name: str, progress: Progress, *, force: bool, serve: ModelConfig | None = None
    ) -> None:
        progress(name, "preflight")
        await self.preflight(name, progress, force=force, serve=serve)
        await self.launch(name, progress, serve=serve)
        try:
            await self.wait_ready(name, progress, serve=serve)
        except LifecycleError:
            await self._kill_leftovers(name)
            raise

    async def _kill_leftovers(self, name: str) -> None:
        """After a failed start: no process of it may keep holding memory (state stays
        crashed: the log's last marker is still the launch)."""
        groups, pids = self._targets(name, self.monitor.view)
        with contextlib.suppress(Exception):
            await self._signal_all(groups, pids, "KILL")

    async def restart(
        self,
        name: str,
        progress: Progress | None = None,
        *,
        force: bool = False,
        serve: ModelConfig | None = None,
    ) -> None:
        """Stop, clear orphans, wait for the memory, preflight, launch, wait ready.
        ``serve``: start with these settings (a serve sweep's flag set: same name and port,
        other flags) instead of the configured ones; the next restart without it goes back
        to the configured ones."""
        progress = progress or _quiet
        self.config.model(name)
        with contextlib.suppress(TimeoutError):  # a fresh `ocrtui restart` has not polled yet
            await self.watcher.wait_informed(FIRST_POLL_WAIT_S)
        before = self.watcher.status(name)
        if before.state == "crashed" and before.hint:
            progress(name, f"last run failed: {before.hint}")
        # As for services: one lock from the stop until ready, so no other operation on the
        # model runs between them.
        async with self._lock(name):
            await self._stop(name, progress)
            await self._start(name, progress, force=force, serve=serve)

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
        elif state == "starting" and self.launches.pid(name) is None:
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
