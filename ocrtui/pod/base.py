"""The one interface through which everything reaches the pod.

Implementations supply four primitives: ``connect``/``close``, ``run`` (one command, argv
list), ``stream`` (a long-running command's stdout, line by line) and ``forward`` (a pod port
as a local URL). Everything else (detached start, signals, log tails) is built here on top of
``run`` with constant shell snippets whose values travel as positional arguments, so no
remote command string is ever assembled from config.
"""

from __future__ import annotations

import asyncio
import enum
import re
import signal as _signal
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class PodConnectionLost(ConnectionError):
    """The link to the pod died while a command or stream was using it."""


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


StateListener = Callable[[ConnState], None]

# `setsid` execs in place (a backgrounded child is not a group leader), and the inner shell
# prints its pid only after that, then execs the command: the printed pid is the server's
# own, already leading a new session and process group, so the whole tree can be signalled
# as a group at once and it survives the SSH channel, the connection and the dashboard.
# The environment arrives on stdin as NAME=VALUE lines, never on argv, where `ps` (and the
# SSH exec request) would show a secret such as VLLM_API_KEY.
_DETACH_SH = (
    'while IFS= read -r kv; do export "$kv" || exit 96; done; '
    'cd "$1" || exit 97; log=$2; shift 2; '
    'setsid sh -c \'echo $$; exec "$@" </dev/null >>"$0" 2>&1\' "$log" "$@" &'
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIGNAL_SH = 'kill -s "$1" -- "$2" 2>/dev/null'
# TERM first, so a stopped process finds it pending when CONT wakes it.
_TERMINATE_SH = 'kill -s TERM -- "-$1" 2>/dev/null && kill -s CONT -- "-$1" 2>/dev/null'
_TAIL_SH = 'tail -n "$1" -- "$2" 2>/dev/null'
_EXPAND_SH = 'cd "$1" 2>/dev/null && pwd'


def _signal_name(sig: int | str) -> str:
    if isinstance(sig, int):
        return _signal.Signals(sig).name.removeprefix("SIG")
    name = sig.upper().removeprefix("SIG")
    _signal.Signals[f"SIG{name}"]  # KeyError for an unknown name, before anything is sent
    return name


class Pod(ABC):
    """A GPU pod reachable by commands. Subclasses implement the four primitives."""

    label: str

    def __init__(self, label: str) -> None:
        self.label = label
        # Why the latest (re)connect attempt failed, for the status line; None when it did not.
        self.last_error: str | None = None
        self._state = ConnState.CLOSED
        self._state_since = time.monotonic()
        self._listeners: list[StateListener] = []
        self._state_changed = asyncio.Event()

    # -- observable connection state -------------------------------------------------

    @property
    def state(self) -> ConnState:
        return self._state

    @property
    def state_age_s(self) -> float:
        return time.monotonic() - self._state_since

    def add_state_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def remove_state_listener(self, listener: StateListener) -> None:
        self._listeners.remove(listener)

    def _set_state(self, state: ConnState) -> None:
        if state is self._state:
            return
        self._state = state
        self._state_since = time.monotonic()
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        for listener in list(self._listeners):
            listener(state)

    async def wait_for_state(self, *states: ConnState, timeout: float | None = None) -> ConnState:
        """Wait until the connection is in one of ``states``; raises TimeoutError."""

        async def _wait() -> ConnState:
            while self._state not in states:
                await self._state_changed.wait()
            return self._state

        return await asyncio.wait_for(_wait(), timeout)

    # -- primitives ---------------------------------------------------------------------

    @abstractmethod
    async def connect(self) -> None:
        """Connect (raises PodUnreachable / HostKeyError); later drops reconnect by themselves."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection; detached processes on the pod keep running."""

    def move_to(self, host: str | None, port: int | None) -> None:
        """Where the next connect goes, as the provider says after a start (a restarted
        rented pod may come back on another port); None keeps the current value. A local
        pod has no address."""
        return None

    @abstractmethod
    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run one command to completion. Raises PodConnectionLost if the link dies."""

    @abstractmethod
    def stream(self, argv: Sequence[str], *, input: str | None = None) -> AsyncGenerator[str, None]:
        """Yield a long-running command's stdout lines (without newline) as they come.

        The command ends when the iterator is closed. Raises PodConnectionLost when the
        link dies; the caller restarts the stream once the pod is connected again.
        """

    @abstractmethod
    async def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> str:
        """A local ``http://127.0.0.1:PORT`` URL reaching ``remote_host:remote_port`` on the pod.

        The local port stays the same across reconnects.
        """

    async def follow(
        self, argv: Sequence[str], *, input: str | None = None
    ) -> AsyncGenerator[str, None]:
        """``stream()`` that survives reconnects: after a drop it waits for the link and
        starts the command again (a fresh run: lines from the gap are not replayed).

        Ends when the command exits by itself; raises PodConnectionLost once the pod is
        closed. Meant for long-lived readers such as the agent monitor.
        """
        while True:
            try:
                async for line in self.stream(argv, input=input):
                    yield line
                return
            except PodConnectionLost:
                if self._state is ConnState.CLOSED:
                    raise
            await self.wait_for_state(ConnState.CONNECTED, ConnState.CLOSED)

    # -- built on run() -------------------------------------------------------------------

    async def start_detached(
        self,
        argv: Sequence[str],
        *,
        log_file: str,
        env: Mapping[str, str] | None = None,
        cwd: str = ".",
    ) -> int:
        """Start ``argv`` in a new session, output appended to ``log_file``; return its pid."""
        lines = []
        for key, value in (env or {}).items():
            if not _ENV_NAME.fullmatch(key) or "\n" in value or "\0" in value:
                raise ValueError(f"environment variable {key!r}: invalid name or value")
            lines.append(f"{key}={value}\n")
        result = await self.run(
            ["sh", "-c", _DETACH_SH, "sh", cwd, log_file, *argv], input="".join(lines)
        )
        if result.exit_status == 97:
            raise FileNotFoundError(f"working directory {cwd!r} does not exist on {self.label}")
        try:
            return int(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(
                f"could not start {argv[0]!r} on {self.label}: {result.stderr.strip()}"
            ) from None

    async def signal(self, pid: int, sig: int | str = "TERM", *, group: bool = False) -> bool:
        """Send ``sig`` to ``pid`` (or its process group); False when nothing was there.

        Signals go through ``kill`` on the pod because sshd ignores SSH signal requests
        from root sessions.
        """
        name = "0" if sig in (0, "0") else _signal_name(sig)
        target = f"-{pid}" if group else str(pid)
        result = await self.run(["sh", "-c", _SIGNAL_SH, "sh", name, target])
        return result.ok

    async def terminate(self, pgid: int) -> bool:
        """Ask process group ``pgid`` to exit: SIGTERM, then SIGCONT (False when no such group).

        The one polite stop of model servers and services. As systemd does: a stopped
        process (SIGSTOP, ^Z, a debugger) acts on a handled SIGTERM only once continued, so
        without the SIGCONT it would wait for the caller's SIGKILL.
        """
        result = await self.run(["sh", "-c", _TERMINATE_SH, "sh", str(pgid)])
        return result.ok

    async def tail(self, path: str, lines: int = 50) -> list[str]:
        """The last ``lines`` lines of a file on the pod ([] when it does not exist)."""
        result = await self.run(["sh", "-c", _TAIL_SH, "sh", str(lines), path])
        return result.stdout.splitlines()

    async def expand_dir(self, path: str) -> str:
        """An absolute form of a pod directory (``~`` expanded by the pod's shell)."""
        if path == "~" or path.startswith("~/"):
            home = (await self.run(["sh", "-c", 'printf %s "$HOME"'])).stdout
            path = home + path[1:]
        result = await self.run(["sh", "-c", _EXPAND_SH, "sh", path])
        if not result.ok:
            raise FileNotFoundError(f"directory {path!r} does not exist on {self.label}")
        return result.stdout.strip()
