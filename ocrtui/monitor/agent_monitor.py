"""The client side of the pod agent: start it, keep it running, attribute every sample.

One long-running ``python3 -u - ...`` over ``Pod.stream`` (the agent's source goes in on
stdin, so nothing is installed on the pod). When the agent dies or the link drops, it is
restarted with backoff once the pod is connected again; meanwhile the last data stays
visible, marked stale with its age. An agent that stops sending samples without exiting (a
stopped process, a read of /proc that hangs) is ended and restarted the same way: otherwise
its last sample would stand for the pod for ever. Failures are states on the view, never
exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ocrtui.monitor.agent_samples import (
    AgentSample,
    ProtocolMismatch,
    SampleError,
    parse_line,
)
from ocrtui.monitor.attribution import (
    Attribution,
    ModelProcesses,
    ModelRef,
    Orphan,
    attribute,
)
from ocrtui.monitor.launches import Launches
from ocrtui.pod.base import ConnState, Pod, PodConnectionLost

if TYPE_CHECKING:
    from ocrtui.config import ModelConfig, PodConfig

AGENT_SOURCE = Path(__file__).resolve().parent.parent / "agent" / "agent.py"
MIN_PYTHON = (3, 8)
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
# How long an agent may take to send its first sample (Python start-up and NVML
# initialisation on a loaded pod), and how many intervals it may then go silent.
FIRST_SAMPLE_S = 60.0
SILENT_INTERVALS = 10
MIN_SILENCE_S = 15.0


def silence_limit_s(interval: float) -> float:
    """Seconds without a sample after which a running agent is taken for hung."""
    return max(MIN_SILENCE_S, SILENT_INTERVALS * interval)


_PY_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


@dataclass(frozen=True)
class MonitorView:
    """The monitor's state at one moment; what the Controller turns into a Snapshot."""

    sample: AgentSample | None
    attribution: Attribution | None
    error: str | None  # agent or GPU problem in one line; None when all is well
    data_age_s: float | None  # seconds since the newest sample arrived; None before any
    stale: bool
    running: bool  # an agent is streaming right now
    restarts: int
    simulated: bool

    @property
    def orphans(self) -> tuple[Orphan, ...]:
        return self.attribution.orphans if self.attribution else ()

    def model(self, name: str) -> ModelProcesses | None:
        """The model's processes in this sample (None before any sample)."""
        return self.attribution.models.get(name) if self.attribution else None


def agent_argv(pod_config: PodConfig, ports: Sequence[int]) -> list[str]:
    argv = [pod_config.python, "-u", "-", "--interval", str(pod_config.agent_interval_s)]
    for port in ports:
        argv += ["--port", str(port)]
    if pod_config.sim_gpu:
        argv += ["--sim-gpu", pod_config.sim_gpu]
    return argv


class AgentMonitor:
    def __init__(
        self,
        pod: Pod,
        pod_config: PodConfig,
        models: Sequence[ModelConfig],
        *,
        service_ports: Sequence[int] = (),
        clock: Callable[[], float] = time.monotonic,
        backoff_s: Sequence[float] = BACKOFF_S,
        silence_s: float | None = None,
    ) -> None:
        self.pod = pod
        self.pod_config = pod_config
        self.refs = tuple(ModelRef(m.name, m.port, m.log_path(pod_config.workdir)) for m in models)
        # The services' ports too: their owners (pid, pgid) in each sample, like the models'.
        self.argv = agent_argv(pod_config, [m.port for m in models] + list(service_ports))
        self._source = AGENT_SOURCE.read_text(encoding="utf-8")
        self._clock = clock
        self._backoff = tuple(backoff_s)
        self._silence_s = silence_s or silence_limit_s(pod_config.agent_interval_s)
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[MonitorView], None]] = []
        self._changed = asyncio.Event()
        self._sample: AgentSample | None = None
        self._attribution: Attribution | None = None
        self._received_at: float | None = None
        self._error: str | None = None
        self._running = False
        self._restarts = 0
        self._count = 0
        # The one record of this session's launches and stops (the lifecycle writes it);
        # every change is attributed at once.
        self.launches = Launches(self._nvml_pids, self._reattribute, clock)
        self._known: dict[tuple[int, float], str] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="agent-monitor")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running = False

    # -- observing -------------------------------------------------------------------------

    @property
    def view(self) -> MonitorView:
        age = None if self._received_at is None else max(0.0, self._clock() - self._received_at)
        interval = self._sample.interval if self._sample else self.pod_config.agent_interval_s
        stale = age is None or age > max(3 * interval, interval + 2.0) or not self._running
        error = self._error or (self._sample.error if self._sample else None)
        return MonitorView(
            sample=self._sample,
            attribution=self._attribution,
            error=error,
            data_age_s=age,
            stale=stale,
            running=self._running,
            restarts=self._restarts,
            simulated=bool(self.pod_config.sim_gpu)
            or bool(self._sample and self._sample.simulated),
        )

    def subscribe(self, callback: Callable[[MonitorView], None]) -> Callable[[], None]:
        """Call ``callback`` with the view after every sample and state change."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def wait_for(self, pred: Callable[[MonitorView], bool], timeout: float) -> MonitorView:
        """The first view (now or later) satisfying ``pred``; raises TimeoutError."""

        async def _wait() -> MonitorView:
            while True:
                changed = self._changed
                view = self.view
                if pred(view):
                    return view
                await changed.wait()

        return await asyncio.wait_for(_wait(), timeout)

    async def next_samples(self, n: int = 1, timeout: float = 10.0) -> MonitorView:
        """Wait until ``n`` more samples have arrived (fresh data after an action)."""
        target = self._count + n
        return await self.wait_for(lambda _: self._count >= target, timeout)

    # -- internals -------------------------------------------------------------------------

    def _nvml_pids(self) -> frozenset[int]:
        return frozenset(p.pid for p in self._sample.procs) if self._sample else frozenset()

    def _publish(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        view = self.view
        for cb in list(self._listeners):
            cb(view)

    def _reattribute(self) -> None:
        if self._sample is None:
            return
        self._attribution = attribute(self._sample, self.refs, self.launches.records, self._known)
        self._known = self._attribution.known
        self._publish()

    def _apply(self, sample: AgentSample) -> None:
        self._sample = sample
        self._received_at = self._clock()
        self._count += 1
        self._error = None
        self._running = True
        self.launches.observe(sample)
        self._reattribute()

    def _set_error(self, error: str | None) -> None:
        self._error = error
        self._publish()

    async def _run(self) -> None:
        attempt = 0
        while True:
            if self.pod.state is not ConnState.CONNECTED:
                self._running = False
                self._set_error(f"waiting for the connection to {self.pod.label}")
                await self.pod.wait_for_state(ConnState.CONNECTED)
            got, reason = await self._stream_once()
            self._running = False
            if got:
                attempt = 0
            if reason is None:
                reason = await self._diagnose() if not got else "the GPU agent exited"
            self._set_error(reason)
            delay = self._backoff[min(attempt, len(self._backoff) - 1)]
            attempt += 1
            self._restarts += 1
            await asyncio.sleep(delay)

    async def _stream_once(self) -> tuple[bool, str | None]:
        """Run one agent until it ends: (got any sample, reason or None to diagnose)."""
        got = False
        try:
            loop = asyncio.get_running_loop()
            silence_s = max(FIRST_SAMPLE_S, self._silence_s)
            deadline = loop.time() + silence_s
            async with contextlib.aclosing(self.pod.stream(self.argv, input=self._source)) as lines:
                while True:
                    try:
                        # In this task, not a helper one: the stream's clean-up runs here.
                        async with asyncio.timeout_at(deadline):
                            line = await anext(lines)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        return got, (
                            f"the GPU agent sent no sample for {silence_s:g} s; restarting it"
                        )
                    try:
                        sample = parse_line(line)
                    except ProtocolMismatch as exc:
                        return got, str(exc)
                    except SampleError:
                        continue  # stray output (a warning on stdout); the next line counts
                    got = True
                    silence_s = self._silence_s
                    deadline = loop.time() + silence_s
                    self._apply(sample)
        except PodConnectionLost:  # an OSError too: keep it before the next clause
            return got, f"connection to {self.pod.label} lost; agent will restart"
        except OSError:
            return got, None  # e.g. the interpreter does not exist (LocalPod): diagnose
        except Exception as exc:  # keep monitoring whatever the transport raised
            return got, f"GPU agent stream failed: {exc}"
        return got, None

    async def _diagnose(self) -> str:
        """Why the agent printed nothing: no python3, too old, or its own error output."""
        python = self.pod_config.python
        missing = (
            f"no {python} on the pod: the GPU agent needs Python >= 3.8 "
            "(install python3 or set pod.python in the config)"
        )
        try:
            res = await self.pod.run([python, "-c", _PY_VERSION], timeout=15)
        except (PodConnectionLost, TimeoutError):  # both are OSErrors: test them first
            return f"the GPU agent could not start on {self.pod.label}"
        except OSError:
            return missing
        if res.exit_status in (126, 127) or not res.stdout.strip():
            return missing
        try:
            version = tuple(int(x) for x in res.stdout.strip().split("."))
        except ValueError:
            return missing
        if version < MIN_PYTHON:
            return f"{python} on the pod is {res.stdout.strip()}; the GPU agent needs >= 3.8"
        try:
            res = await self.pod.run([*self.argv, "--count", "1"], input=self._source, timeout=30)
        except (PodConnectionLost, TimeoutError):
            return f"the GPU agent could not start on {self.pod.label}"
        if res.ok and res.stdout.strip():
            return "the GPU agent exited; restarting"
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit status {res.exit_status}"
        return f"the GPU agent failed on the pod: {detail}"
