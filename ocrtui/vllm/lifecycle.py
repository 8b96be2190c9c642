"""Start, stop and restart vLLM servers on the pod, so that a restart works the first time.

* Launch: the exact ``vllm serve`` command from config, detached in its own session and
  process group (``Pod.start_detached``), output appended to the model's log file, in the
  pod's workdir. The API key travels as ``VLLM_API_KEY`` in the environment, never as a flag.
* Stop: SIGTERM to the server's process group, wait, then SIGKILL the group and every vLLM
  process of that model the agent knows (orphaned EngineCores included), then wait until
  the agent shows the model's GPU memory released.
* Preflight before any start: enough free VRAM (else the holders are named), plus warnings
  for plans that are known to fail (research/vllm_and_models.md §2, §4).
* Restart = stop + preflight + launch + wait ready. ``up`` starts models in start order,
  each only once the one before is ready.

Process knowledge comes from the agent monitor (port owners, trees, orphans, memory per
row); the model state from the Controller's health polls, through :class:`ModelWatch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ocrtui.config import Config, ModelConfig
from ocrtui.errors import OcrtuiError
from ocrtui.monitor.agent_monitor import AgentMonitor, MonitorView
from ocrtui.monitor.attribution import Row
from ocrtui.monitor.samples import GpuSample, VllmProc
from ocrtui.pod.base import Pod
from ocrtui.sim.gpu import SIM_GPU_ENV
from ocrtui.vllm.logfile import append_marker
from ocrtui.vllm.state import ModelState

Progress = Callable[[str, str], None]

STOP_TIMEOUT_S = 30.0
RELEASE_TIMEOUT_S = 30.0
SAMPLE_TIMEOUT_S = 15.0
UNLISTED_TRUST_S = 20.0
UTILIZATION_SUM_WARN = 0.95


class LifecycleError(OcrtuiError):
    """A lifecycle operation failed: ``message`` says what, ``hint`` what to do."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


@dataclass(frozen=True)
class KnownModel:
    min_memory_gib: float | None  # below this the server does not start
    default_max_model_len: int | None  # what vLLM uses when --max-model-len is not given


# Facts from research/vllm_and_models.md §4/§5 and the seed: GLM-OCR at 0.40 of a 46068 MiB
# A40 (18.0 GiB) is "the minimum that works", so warn only clearly below that.
KNOWN_MODELS: dict[str, KnownModel] = {
    "zai-org/GLM-OCR": KnownModel(min_memory_gib=17.5, default_max_model_len=131072),
    "lightonai/LightOnOCR-2-1B": KnownModel(min_memory_gib=None, default_max_model_len=16384),
}
HUGE_CONTEXT = 65536


class ModelStatusLike(Protocol):
    @property
    def state(self) -> ModelState: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def hint(self) -> str | None: ...


class ModelWatch(Protocol):
    """What the lifecycle needs from whoever polls the models (the Controller)."""

    def model_status(self, name: str) -> ModelStatusLike | None: ...

    async def wait_model(
        self,
        name: str,
        done: Callable[[ModelStatusLike], bool],
        timeout: float,
        on_change: Callable[[ModelStatusLike], None] | None = None,
    ) -> ModelStatusLike: ...


# -- the command ---------------------------------------------------------------------------


def serve_argv(vllm_command: Sequence[str], model: ModelConfig) -> list[str]:
    argv = [
        *vllm_command,
        "serve",
        model.model,
        "--port",
        str(model.port),
        "--served-model-name",
        model.name,
        "--gpu-memory-utilization",
        str(model.gpu_memory_utilization),
        "--max-num-seqs",
        str(model.max_num_seqs),
    ]
    if model.max_model_len is not None:
        argv += ["--max-model-len", str(model.max_model_len)]
    return [*argv, *model.extra_args]


def serve_env(model: ModelConfig, sim_gpu: str | None) -> dict[str, str]:
    env = dict(model.env)
    if sim_gpu:
        env[SIM_GPU_ENV] = sim_gpu
    key = model.api_key()
    if key:
        env["VLLM_API_KEY"] = key
    return env


# -- preflight -----------------------------------------------------------------------------


def plan_warnings(config: Config, total_mib: int | None) -> list[tuple[str, str]]:
    """(model name, warning) for plans known to fail or waste memory; nothing is refused."""
    out: list[tuple[str, str]] = []
    total = round(sum(m.gpu_memory_utilization for m in config.models), 6)
    if len(config.models) > 1 and total > UTILIZATION_SUM_WARN:
        names = " + ".join(f"{m.name} {m.gpu_memory_utilization:g}" for m in config.models)
        out.append(
            (
                "*",
                f"planned gpu_memory_utilization sums to {total:.2f} ({names}), above "
                f"{UTILIZATION_SUM_WARN}: the last server to start will fail its free-memory check",
            )
        )
    for m in config.models:
        known = KNOWN_MODELS.get(m.model)
        minimum = m.min_memory_gib
        if minimum is None and known and _at_default_context(m, known):
            # The known minimum was measured at the default context; a shorter
            # --max-model-len needs less KV cache, by an amount we cannot know here.
            minimum = known.min_memory_gib
        if minimum is not None and total_mib:
            planned_gib = m.gpu_memory_utilization * total_mib / 1024
            if planned_gib < minimum:
                out.append(
                    (
                        m.name,
                        f"gpu_memory_utilization {m.gpu_memory_utilization:g} gives "
                        f"{planned_gib:.1f} GiB, below the {minimum:g} GiB {m.model} needs: "
                        "KV-cache allocation will fail at startup",
                    )
                )
        default_len = known.default_max_model_len if known else None
        if m.max_model_len is None and default_len and default_len >= HUGE_CONTEXT:
            out.append(
                (
                    m.name,
                    f"max_model_len is unset, so vLLM uses {m.model}'s default of {default_len} "
                    "tokens, which needs far more KV cache than OCR pages do: set max_model_len "
                    "(e.g. 16384)",
                )
            )
    return out


def _at_default_context(m: ModelConfig, known: KnownModel) -> bool:
    default = known.default_max_model_len
    return m.max_model_len is None or default is None or m.max_model_len >= default


def is_server_of(v: VllmProc, model: ModelConfig) -> bool:
    """A live API server of this model: its served name and its port both match, so a
    same-named server elsewhere (another pod user, another config) is never taken for ours.
    A zombie (killed, not yet reaped: common in containers whose PID 1 reaps nothing) is no
    server."""
    return v.kind == "api" and v.served == model.name and v.port == model.port and v.state != "Z"


def gpu_for(model: ModelConfig, gpus: Sequence[GpuSample]) -> GpuSample | None:
    """The device the model will use: CUDA_VISIBLE_DEVICES in its env, else the first."""
    visible = model.env.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible.isdigit():
        for g in gpus:
            if g.index == int(visible):
                return g
    return gpus[0] if gpus else None


def describe_holders(rows: Sequence[Row], gpu: int) -> str:
    held = sorted((r for r in rows if r.gpu == gpu and r.used_mib > 0), key=lambda r: -r.used_mib)
    if not held:
        return "no process is listed as holding it (driver or a process outside this pod)"
    parts = []
    for r in held:
        who = r.model or "other"
        title = f" {r.title}" if r.title else ""
        parts.append(f"pid {r.pid} ({who}{title}) {r.used_mib} MiB")
    return ", ".join(parts)


def check_free_memory(model: ModelConfig, view: MonitorView) -> int:
    """Raise LifecycleError when the model's GPU lacks the memory it will ask for; return
    the planned MiB."""
    sample = view.sample
    if sample is None or not sample.gpus:
        reason = view.error or "no GPU in the agent's sample"
        raise LifecycleError(
            f"cannot check GPU memory before starting {model.name}: {reason}",
            "make sure the pod agent runs (see the pod panel) and the GPU is visible",
        )
    gpu = gpu_for(model, sample.gpus)
    assert gpu is not None
    need = int(model.gpu_memory_utilization * gpu.total_mib)
    if gpu.free_mib >= need:
        return need
    rows = view.attribution.rows if view.attribution else ()
    orphans = [r for r in rows if r.kind == "orphan" and r.gpu == gpu.index]
    hint = (
        f"`ocrtui restart {model.name}` kills this model's orphans first; "
        if any(r.model == f"orphan:{model.name}" for r in orphans)
        else ""
    )
    hint += "stop the holders, or lower gpu_memory_utilization"
    raise LifecycleError(
        f"not enough free GPU memory for {model.name}: needs {need} MiB "
        f"({model.gpu_memory_utilization:g} x {gpu.total_mib} MiB), {gpu.free_mib} MiB free "
        f"on GPU {gpu.index}; held by {describe_holders(rows, gpu.index)}",
        hint,
    )


# -- operations ----------------------------------------------------------------------------


class Lifecycle:
    def __init__(
        self,
        config: Config,
        pod: Pod,
        monitor: AgentMonitor,
        watch: ModelWatch,
        *,
        workdir: str,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        release_timeout_s: float = RELEASE_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.pod = pod
        self.monitor = monitor
        self.watch = watch
        self.workdir = workdir
        self.stop_timeout_s = stop_timeout_s
        self.release_timeout_s = release_timeout_s
        self.launched: dict[str, int] = {}  # model -> pid of the server this session started
        self._locks: dict[str, asyncio.Lock] = {}
        # model -> monotonic time its launch began, then again when the pid came back
        self._launching: dict[str, float] = {}
        self.stopping: set[str] = set()  # models being stopped right now

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
        launched = self.launched.get(name)
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

    def launching(self, name: str) -> bool:
        """A start of ``name`` is in progress (from launch until ready or failed)."""
        return name in self._launching

    def unlisted_launch(self, name: str, view: MonitorView) -> tuple[bool, int | None]:
        """(True, pid) while ``name`` is being launched and the agent does not list its server
        (yet): pid None before start_detached returned, else the pid to check on the pod.

        Under load the agent's newest sample may predate the launch however many samples
        later, so "not listed" alone is no proof of death; the caller asks the pod instead,
        for at most UNLISTED_TRUST_S after the pid came back.
        """
        since = self._launching.get(name)
        if since is None:
            return False, None
        pid = self.launched.get(name)
        if pid is None:
            return True, None
        sample = view.sample
        if sample is not None and any(v.pid == pid for v in sample.vllm):
            return False, None
        if time.monotonic() - since > UNLISTED_TRUST_S:
            return False, None
        return True, pid

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
            self.launched.pop(name, None)
            return
        self.stopping.add(name)
        try:
            await self._terminate(name, groups, pids, view, progress)
        finally:
            self.stopping.discard(name)
        self.launched.pop(name, None)
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
        self.launched.pop(name, None)
        self.monitor.begin_launch(name)
        # Registered before the marker goes into the log, so no poll in between takes the
        # marker without a process for a crash.
        self._launching[name] = time.monotonic()
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
        self.launched[name] = pid
        self._launching[name] = time.monotonic()
        progress(name, f"started pid {pid}, log {log}")
        return pid

    async def wait_ready(self, name: str, progress: Progress | None = None) -> None:
        progress = progress or _quiet
        model = self.config.model(name)
        last: list[str | None] = [None]

        def on_change(status: ModelStatusLike) -> None:
            label = status.state if status.state != "starting" else f"starting: {status.stage}"
            if status.state == "starting" and not status.stage:
                label = "starting"
            if label != last[0]:
                last[0] = label
                progress(name, label)

        try:
            status = await self.watch.wait_model(
                name,
                lambda s: s.state in ("ready", "crashed"),
                model.ready_timeout_s,
                on_change,
            )
            if status.state == "ready":
                await self._await_port_owner(name)
        except TimeoutError:
            current = self.watch.model_status(name)
            where = ""
            if current is not None:
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
        if self._launching.pop(name, None) is not None:
            self.monitor.end_launch(name, self.launched.get(name))

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

    async def up(self, progress: Progress | None = None) -> None:
        """Every model ready, in start order, each started only once the previous is ready."""
        progress = progress or _quiet
        for model in self.config.ordered_models():
            status = self.watch.model_status(model.name)
            state = status.state if status else "down"
            if state == "ready":
                progress(model.name, "already ready")
                continue
            if state == "starting" and model.name not in self.launched:
                progress(model.name, "already starting; waiting")
                await self.wait_ready(model.name, progress)
                continue
            # Down, crashed or unhealthy: clear whatever is left of it, then start afresh.
            await self.restart(model.name, progress)

    async def down(self, progress: Progress | None = None) -> None:
        for model in reversed(self.config.ordered_models()):
            await self.stop(model.name, progress)


def _still_holding(name: str, view: MonitorView) -> str:
    rows = view.attribution.rows if view.attribution else ()
    mine = [r for r in rows if r.model in (name, f"orphan:{name}") and r.used_mib > 0]
    if not mine:
        return "the agent still lists its processes"
    return ", ".join(f"pid {r.pid} ({r.title or 'unknown'}) {r.used_mib} MiB" for r in mine)


def _quiet(name: str, step: str) -> None:
    return None
