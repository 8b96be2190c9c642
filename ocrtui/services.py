"""Non-vLLM processes on the pod (``[[services]]``): start, readiness, stop, restart, status.

A service runs exactly like a model server: ``Pod.start_detached`` (own session and
process group, environment on stdin, output appended to its log), with the same
``[ocrtui] launch|stop NAME`` markers in its log (``ocrtui/vllm/logfile.py``), so a fresh
``ocrtui status`` tells a service stopped on purpose (``down``) from one that vanished
(``crashed``). Beside the log, ``<log>.pid`` holds ``PID START_EPOCH`` of the latest launch
(the pod's clock), so any later session finds the process again.

Facts come from the pod in one command per status: the pod's time, the pid file, the live
(non-zombie) processes of the service's session, and whether its port is listening
(``/proc/net/tcp``; a TCP connect to a forwarded port would not do: the local end of an
SSH forward always accepts). Readiness: ``GET ready_path`` through ``pod.forward`` answering
2xx; without ``ready_path``, the port listening on the pod.

States (``ServiceState``): ``down`` (nothing running; last marker a stop, or none),
``starting`` (its processes live but it is not ready yet; or a launch in progress),
``ready``, ``unhealthy`` (was ready in this session, still running, no longer answering),
``crashed`` (last marker a launch and no process left: with the log's last lines and a
hint). A port that answers with no process of ours, and no launch of ours that died, is
``ready`` with ``managed = False`` (started by hand, as the handoff note's servers were):
it is never signalled.

Stop: stop marker, ``Pod.terminate`` (SIGTERM then SIGCONT) to the process group, wait until
no process of the session is left (``stop_timeout_s``), then SIGKILL the group and every
pid of the session, and wait again; a process that survives that is a
:class:`LifecycleError`. The stop policy is the model servers' (``vllm/lifecycle.py``): the
same polite signal, and a restart holds the name's lock from the stop until ready.

`ServiceRunner(config, pod, workdir=)`: `status(name) -> ServiceStatus`, `statuses()`,
`launch`, `wait_ready`, `start` (left alone when ready), `stop` (`Pod.terminate` of the group,
deadline, SIGKILL group and session, until none left), `restart`, `log_tail`, `url`,
`aclose()`. Launches through `Pod.start_detached` with the `vllm/logfile.py` markers;
`<log>.pid` holds `PID START_EPOCH` for later sessions. Facts per status: one pod command
(pid file, live processes of the session, port listening and whether the session holds the
socket) plus `last_marker`; `GET ready_path` through `pod.forward`. `ServiceStatus`
(`name, port, state, pid, managed, uptime_s, gpu, hint, last_lines, pids`; `state` one of
down/starting/ready/unhealthy/crashed) is meant to sit beside `ModelStatus` in the
snapshot; `to_json()` is its entry under `"services"`. Failures raise `LifecycleError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace

import httpx

from ocrtui.config import Config, ServiceConfig
from ocrtui.errors import LifecycleError
from ocrtui.pod.base import Pod
from ocrtui.status import ServiceState, ServiceStatus
from ocrtui.vllm.crashlog import ending_exception
from ocrtui.vllm.hints import find_hint
from ocrtui.vllm.logfile import append_marker, current_run, last_marker
from ocrtui.vllm.stages import strip_ansi

Progress = Callable[[str, str], None]

STOP_TIMEOUT_S = 15.0
KILL_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 3.0
POLL_S = 0.2
LAST_LINES = 12
TAIL_LINES = 200

_WRITE_PID_SH = 'printf "%s %s\\n" "$1" "$(date +%s)" >"$2"'
# One round trip for the facts. Fields of /proc/PID/stat after the last ") ": state, ppid,
# pgrp, session. A listening socket on the port (local address ending in the port as hex,
# state 0A) is "owned" when a process of the session holds its inode: a stranger on the
# port never makes our starting service look ready.
_FACTS_SH = r"""
pidfile=$1; hex=$2
echo "now $(date +%s)"
pid=; started=; alive=
read -r pid started <"$pidfile" 2>/dev/null && echo "pid $pid $started"
if [ -n "$pid" ]; then
  for f in /proc/[0-9]*/stat; do
    read -r l <"$f" 2>/dev/null || continue
    set -- ${l##*) }
    if [ "$1" != Z ] && [ "$4" = "$pid" ]; then p=${f#/proc/}; alive="$alive ${p%/stat}"; fi
  done
  echo "alive$alive"
fi
inodes=$(awk -v h=":$hex" 'substr($2, length($2) - 4) == h && $4 == "0A" { print $10 }' \
  /proc/net/tcp /proc/net/tcp6 2>/dev/null)
[ -n "$inodes" ] && echo listen
for ino in $inodes; do
  for p in $alive; do
    ls -l "/proc/$p/fd" 2>/dev/null | grep -qF "socket:[$ino]" && { echo owned; exit 0; }
  done
done
exit 0
"""


@dataclass(frozen=True)
class _Facts:
    now: int | None
    pid: int | None
    started: int | None
    alive: tuple[int, ...]
    listening: bool  # something listens on the port
    owned: bool  # ... and a process of the service holds that socket


def _parse_facts(text: str) -> _Facts:
    now = pid = started = None
    alive: tuple[int, ...] = ()
    listening = owned = False
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        parts = rest.split()
        if key == "now" and parts and parts[0].isdigit():
            now = int(parts[0])
        elif key == "pid" and parts and parts[0].isdigit():
            pid = int(parts[0])
            started = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        elif key == "alive":
            alive = tuple(int(p) for p in parts if p.isdigit())
        elif key == "listen":
            listening = True
        elif key == "owned":
            owned = True
    return _Facts(now, pid, started, alive, listening, owned)


def service_hint(lines: Sequence[str], port: int) -> str | None:
    """Why a service died, from its log since the last launch: the port in use, a known
    vLLM-side failure (CUDA OOM, ...), else the exception of a traceback that ends the log,
    else the last line."""
    clean = [strip_ansi(line).rstrip() for line in lines]
    clean = [line for line in clean if line.strip()]
    if not clean:
        return None
    hint = find_hint(clean)
    if hint is not None and hint.key == "address_in_use":
        return (
            f"port {port} is already in use by another process: stop it, or change the "
            "service's port"
        )
    if hint is not None:
        return str(hint)
    # Only a traceback that ends the log explains the exit: one the service logged and
    # survived (a client that hung up mid-answer) is followed by more of its lines.
    return ending_exception(clean) or clean[-1]


class ServiceRunner:
    """The services of one config on one pod. ``workdir`` is the pod's, already expanded."""

    def __init__(
        self,
        config: Config,
        pod: Pod,
        *,
        workdir: str,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        kill_timeout_s: float = KILL_TIMEOUT_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.pod = pod
        self.workdir = workdir
        self.stop_timeout_s = stop_timeout_s
        self.kill_timeout_s = kill_timeout_s
        self._urls: dict[str, str] = {}
        self._launching: set[str] = set()
        self._seen_ready: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._http = httpx.AsyncClient(timeout=probe_timeout_s, trust_env=False)

    async def aclose(self) -> None:
        """Close the HTTP client; the services keep running on the pod."""
        await self._http.aclose()

    def log_path(self, service: ServiceConfig) -> str:
        return service.log_path(self.workdir)

    def _pid_path(self, service: ServiceConfig) -> str:
        return self.log_path(service) + ".pid"

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def url(self, name: str) -> str:
        """The service's base URL through the pod's forward (the same across reconnects)."""
        if name not in self._urls:
            self._urls[name] = await self.pod.forward(self.config.service(name).port)
        return self._urls[name]

    # -- observing ------------------------------------------------------------------------

    async def _facts(self, service: ServiceConfig) -> _Facts:
        result = await self.pod.run(
            ["sh", "-c", _FACTS_SH, "sh", self._pid_path(service), f"{service.port:04X}"]
        )
        return _parse_facts(result.stdout)

    async def _answers(self, service: ServiceConfig, facts: _Facts) -> bool:
        """Ready: its port listens (held by a process of it, when any of it runs) and, with
        a ``ready_path``, answers 2xx there."""
        if not (facts.owned if facts.alive else facts.listening):
            return False
        if service.ready_path is None:
            return True
        try:
            resp = await self._http.get(await self.url(service.name) + service.ready_path)
        except httpx.HTTPError:
            return False
        return resp.is_success

    async def status(self, name: str) -> ServiceStatus:
        service = self.config.service(name)
        facts, mark = await asyncio.gather(
            self._facts(service), last_marker(self.pod, self.log_path(service))
        )
        answers = await self._answers(service, facts)
        uptime = (
            float(facts.now - facts.started)
            if facts.alive and facts.now is not None and facts.started is not None
            else None
        )
        down = ServiceStatus(name, service.port, "down", None, gpu=service.gpu)
        if facts.alive:
            pid = facts.pid
            if answers:
                self._seen_ready.add(name)
                state: ServiceState = "ready"
            else:
                state = "unhealthy" if name in self._seen_ready else "starting"
            return replace(down, state=state, pid=pid, uptime_s=uptime, pids=facts.alive)
        self._seen_ready.discard(name)
        if name in self._launching:
            return replace(down, state="starting", pid=facts.pid)
        if mark == "launch":
            lines, _ = current_run(await self.pod.tail(self.log_path(service), TAIL_LINES))
            return replace(
                down,
                state="crashed",
                hint=service_hint(lines, service.port),
                last_lines=tuple(lines[-LAST_LINES:]),
            )
        if answers:
            return replace(down, state="ready", managed=False)
        return down

    async def statuses(self) -> list[ServiceStatus]:
        return list(await asyncio.gather(*(self.status(s.name) for s in self.config.services)))

    async def log_tail(self, name: str, lines: int = 200) -> list[str]:
        return await self.pod.tail(self.log_path(self.config.service(name)), lines)

    # -- operations -----------------------------------------------------------------------

    async def launch(self, name: str, progress: Progress | None = None) -> int:
        """Start the service detached (no readiness wait); returns its pid."""
        progress = progress or _quiet
        service = self.config.service(name)
        log = self.log_path(service)
        self._launching.add(name)
        try:
            await append_marker(self.pod, log, "launch", name)
            progress(name, f"launching: {shlex.join(service.command)}")
            try:
                pid = await self.pod.start_detached(
                    service.command,
                    log_file=log,
                    env=service.env,
                    cwd=service.workdir or self.workdir,
                )
            except (OSError, RuntimeError, ValueError) as exc:
                raise LifecycleError(f"could not launch {name}: {exc}") from None
            await self.pod.run(["sh", "-c", _WRITE_PID_SH, "sh", str(pid), self._pid_path(service)])
        finally:
            self._launching.discard(name)
        progress(name, f"started pid {pid}, log {log}")
        return pid

    async def wait_ready(self, name: str, progress: Progress | None = None) -> ServiceStatus:
        """Poll until ready; LifecycleError when it crashes or is not ready in time."""
        progress = progress or _quiet
        service = self.config.service(name)
        deadline = time.monotonic() + service.ready_timeout_s
        status = await self.status(name)
        while status.state != "ready":
            if status.state in ("crashed", "down"):
                raise LifecycleError(
                    f"{name} exited while starting",
                    status.hint or f"read its log ({self.log_path(service)})",
                )
            if time.monotonic() > deadline:
                raise LifecycleError(
                    f"{name} was not ready after {service.ready_timeout_s:g} s (still "
                    f"{status.state})",
                    f"read its log ({self.log_path(service)}) or raise ready_timeout_s",
                )
            await asyncio.sleep(POLL_S)  # polling interval of the readiness probe
            status = await self.status(name)
        progress(name, "ready")
        return status

    async def start(self, name: str, progress: Progress | None = None) -> ServiceStatus:
        """Ready in the end: left alone when already ready, else (re)started and waited for."""
        async with self._lock(name):
            status = await self.status(name)
            if status.state == "ready":
                (progress or _quiet)(name, "already ready")
                return status
            if status.state == "starting":
                (progress or _quiet)(name, "already starting; waiting")
                return await self.wait_ready(name, progress)
            if status.state == "unhealthy":
                await self._stop(name, progress or _quiet)
            await self.launch(name, progress)
            return await self.wait_ready(name, progress)

    async def stop(self, name: str, progress: Progress | None = None) -> None:
        async with self._lock(name):
            await self._stop(name, progress or _quiet)

    async def restart(self, name: str, progress: Progress | None = None) -> ServiceStatus:
        async with self._lock(name):
            await self._stop(name, progress or _quiet)
            await self.launch(name, progress)
            return await self.wait_ready(name, progress)

    async def _stop(self, name: str, progress: Progress) -> None:
        service = self.config.service(name)
        facts = await self._facts(service)
        await append_marker(self.pod, self.log_path(service), "stop", name)
        self._seen_ready.discard(name)
        if not facts.alive or facts.pid is None:
            progress(name, "not running")
            return
        progress(name, "stopping (SIGTERM)")
        await self.pod.terminate(facts.pid)
        if await self._wait_gone(service, self.stop_timeout_s):
            progress(name, "stopped")
            return
        left = (await self._facts(service)).alive
        progress(name, f"still running after {self.stop_timeout_s:g} s: SIGKILL")
        await asyncio.gather(
            self.pod.signal(facts.pid, "KILL", group=True),
            *(self.pod.signal(p, "KILL") for p in left),
        )
        if not await self._wait_gone(service, self.kill_timeout_s):
            left = (await self._facts(service)).alive
            raise LifecycleError(
                f"{name}: processes {', '.join(map(str, left))} survived SIGKILL",
                "a process stuck in the kernel (state D in ps) may need the pod restarted",
            )
        progress(name, "stopped")

    async def _wait_gone(self, service: ServiceConfig, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (await self._facts(service)).alive:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)  # polling interval of the exit check on the pod
        return True


@dataclass(frozen=True)
class WaveOutcome:
    """What :func:`in_waves` could not do: the names that failed (in order) and those it
    skipped because something they need failed or was skipped."""

    failed: tuple[tuple[str, LifecycleError], ...] = ()
    skipped: tuple[str, ...] = ()

    def raise_failures(self) -> None:
        """One LifecycleError for all of it (a single failure's own, when nothing was
        skipped); nothing when all went well."""
        if not self.failed:
            return
        if len(self.failed) == 1 and not self.skipped:
            raise self.failed[0][1]
        names = ", ".join(name for name, _ in self.failed)
        message = "; ".join(exc.message for _, exc in self.failed)
        if self.skipped:
            message += f"; not run, as they wait for {names}: {', '.join(self.skipped)}"
        hints = [f"{name}: {exc.hint}" for name, exc in self.failed if exc.hint]
        raise LifecycleError(message, " | ".join(hints) or None)


async def in_waves(
    waves: Sequence[Sequence[str]],
    action: Callable[[str], Awaitable[object]],
    needs: Callable[[str], Collection[str]] | None = None,
) -> WaveOutcome:
    """``action`` on every name of a wave at once, wave after wave (``start_order(config)``
    for up, reversed for down). A LifecycleError is recorded and the waves go on, skipping
    each name whose ``needs`` failed or were skipped (``needs`` None: every name of the
    earlier waves, so one failure skips all later waves). Any other error (the pod gone) is
    raised once its wave has finished."""
    done: list[str] = []
    failed: list[tuple[str, LifecycleError]] = []
    skipped: list[str] = []
    for wave in waves:
        lost = {name for name, _ in failed} | set(skipped)
        runs = []
        for name in wave:
            wanted = needs(name) if needs is not None else done
            if lost & set(wanted):
                skipped.append(name)
            else:
                runs.append(name)
        results = await asyncio.gather(*(action(n) for n in runs), return_exceptions=True)
        for name, result in zip(runs, results, strict=True):
            if isinstance(result, LifecycleError):
                failed.append((name, result))
            elif isinstance(result, BaseException):
                raise result
        done += wave
    return WaveOutcome(tuple(failed), tuple(skipped))


def _quiet(name: str, step: str) -> None:
    return None


class ServiceWatch:
    """The services' statuses, read once per ``period_s`` (the models' poll period) while
    running; each round is passed to ``on_change``. A failed round (link down, a pod command
    failed) keeps the last statuses."""

    def __init__(self, on_change: Callable[[], None], period_s: float) -> None:
        self.statuses: tuple[ServiceStatus, ...] = ()
        self._on_change = on_change
        self._period_s = period_s
        self._polled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, runner: ServiceRunner | None) -> None:
        """Poll ``runner``; None (no ``[[services]]``): nothing to read, already read."""
        if runner is None:
            self._polled.set()
            return
        self._task = asyncio.create_task(self._poll(runner), name="ocrtui-services")

    async def _poll(self, runner: ServiceRunner) -> None:
        while True:
            try:
                self.statuses = tuple(await runner.statuses())
            except Exception:  # keep the last statuses, try again next round
                pass
            else:
                self._polled.set()
                self._on_change()
            await asyncio.sleep(self._period_s)  # the poll period

    async def wait(self, timeout: float) -> None:
        """Until the statuses were read once (TimeoutError after ``timeout``)."""
        await asyncio.wait_for(self._polled.wait(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
