"""The pod interface over one asyncssh connection that reconnects by itself.

One connection carries every command, stream and port forward. Host keys are checked
against known_hosts; an unknown key is recorded only when ``accept_new_host_key`` asks for
it, a changed key never. After a drop a supervisor task reconnects with backoff; forwards
keep their local listener (and port) throughout and reach the pod again once reconnected
(see ``forward.py``).

Remote commands start as ``sh -c 'echo $$; exec "$@"' sh ARGV...``: the first stdout line
is the command's pid, which is also its process group (sshd starts every session in a new
session). Closing a stream, cancelling a command or hitting its timeout kills that group
through ``kill`` on the pod, because sshd ignores SSH signal requests from root sessions and
a closed channel without a pty sends no SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal as _signal
import socket
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from ocrtui.config import PodConfig
from ocrtui.errors import ConfigError, HostKeyError, OcrtuiError, PodUnreachable
from ocrtui.pod.base import CommandResult, ConnState, Pod, PodConnectionLost
from ocrtui.pod.forward import LocalForward
from ocrtui.userfiles import UserFileError, read_bytes

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_SSH_CONFIG = "~/.ssh/config"
# Backoff between reconnect attempts. The cap keeps the link back within ~2 s of the pod's
# sshd returning, however long it was away; a refused connection costs the pod nothing.
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 2.0
# Failures a quick retry cannot fix (key refused, host key, settings) are retried slowly, so
# that a pod's intrusion protection (fail2ban, MaxStartups) never sees a burst of them.
SLOW_RETRY_S = 30.0
# Killing a closed stream's remote command waits at most this long for the `kill`.
_KILL_WAIT_S = 5.0

_PID_FIRST_SH = 'echo $$; exec "$@"'
_KILL_GROUPS_SH = (
    'for p; do kill -s KILL -- "-$p" 2>/dev/null || kill -s KILL -- "$p" 2>/dev/null; done; true'
)

# What a dead link looks like from asyncssh: its own errors, socket errors, EOF mid-read.
_LINK_ERRORS = (asyncssh.Error, ConnectionError, BrokenPipeError, EOFError)


def _expand(path: str) -> str:
    return os.path.expanduser(os.path.expandvars(path))


def _host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _known_keys(known: asyncssh.SSHKnownHosts, host: str, addr: str, port: int) -> Any:
    """known_hosts entries for exactly this host and port, as OpenSSH reads them: a bare
    ``host`` entry is port 22 only, ``[host]:port`` any other. (asyncssh falls back to the
    bare entry for every port, so a key on record for a provider's IP would make each other
    pod on that IP look CHANGED.)"""
    if port == 22:
        return known.match(host, addr, None)
    # A bracketed name is no IP address, so each is looked up as a host name on its own.
    found = [known.match(_host_pattern(name, port), "", None) for name in {host, addr} if name]
    return tuple([k for result in found for k in result[i]] for i in range(7))


def _describe_key(key: asyncssh.SSHKey) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


class _AuthRefused(PodUnreachable):
    """The pod's sshd refused our key."""


@dataclass
class _HostKeyCheck:
    """One connection attempt's host-key decision; asyncssh calls ``validate`` on a miss."""

    known: asyncssh.SSHKnownHosts
    accept_new: bool
    presented: asyncssh.SSHKey | None = None
    changed: bool = False
    to_record: tuple[str, int, asyncssh.SSHKey] | None = None

    def trusted(self, host: str, addr: str, port: int) -> bool:
        return bool(_known_keys(self.known, host, addr, port)[0])

    def lookup(self, host: str, addr: str, port: int) -> Any:
        """What asyncssh trusts (its ``known_hosts`` callable form)."""
        return _known_keys(self.known, host, addr, port)

    def validate(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented = key
        # Any key on record for this host that is not the one presented means it changed.
        self.changed = self.trusted(host, addr, port)
        if self.changed or not self.accept_new:
            return False
        self.to_record = (host, port, key)
        return True


class _Client(asyncssh.SSHClient):
    def __init__(self, check: _HostKeyCheck) -> None:
        self._check = check

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return self._check.validate(host, addr, port, key)


@dataclass
class _Target:
    """Where the pod is, after ~/.ssh/config: used in every message and for known_hosts."""

    host: str
    port: int
    user: str
    known_hosts: list[str]
    key_host: str  # the name known_hosts is searched for (HostKeyAlias or host)

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def _read_known_hosts(paths: list[str]) -> asyncssh.SSHKnownHosts:
    text = []
    for path in paths:
        if not os.path.lexists(path):
            continue
        try:  # through the gate: a FIFO or a huge file here must not hang the connect
            text.append(read_bytes(Path(path)).decode("utf-8", errors="replace"))
        except UserFileError as exc:
            raise HostKeyError(f"cannot read known_hosts file: {exc}") from None
    try:
        return asyncssh.import_known_hosts("\n".join(text))
    except ValueError as exc:
        raise HostKeyError(f"cannot parse known_hosts ({', '.join(paths)}): {exc}") from None


def _record_host_key(path: str, host: str, port: int, key: asyncssh.SSHKey) -> None:
    # "ALGORITHM BASE64" without the key's comment, as ssh itself records it.
    public = " ".join(key.export_public_key("openssh").decode().split()[:2])
    line = f"{_host_pattern(host, port)} {public}"
    p = Path(path)
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    prefix = ""
    if p.exists() and p.stat().st_size:
        with p.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            prefix = "" if f.read(1) == b"\n" else "\n"
    with p.open("a", encoding="utf-8") as f:
        f.write(f"{prefix}{line}\n")


def _exit_status(proc: asyncssh.SSHClientProcess[str]) -> int | None:
    """The exit status like subprocess gives it: negative signal number when killed."""
    if proc.exit_signal:
        try:
            return -int(_signal.Signals[f"SIG{proc.exit_signal[0]}"])
        except KeyError:
            return -1
    return proc.exit_status


class SSHPod(Pod):
    def __init__(self, config: PodConfig) -> None:
        if config.kind != "ssh":
            raise ConfigError(f"pod.kind is {config.kind!r}; SSHPod needs 'ssh'")
        super().__init__(config.label)
        self.config = config
        self._conn: asyncssh.SSHClientConnection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._forwards: dict[tuple[str, int], LocalForward] = {}
        self._kills: set[asyncio.Task[None]] = set()
        # Process groups of commands and streams in flight, ended by close().
        self._running: set[int] = set()
        self._closing = False

    # -- connecting -----------------------------------------------------------------------

    def move_to(self, host: str | None, port: int | None) -> None:
        update: dict[str, Any] = {}
        if host is not None:
            update["host"] = host
        if port is not None:
            update["port"] = port
        self.config = self.config.model_copy(update=update)

    def _connect_options(self) -> dict[str, Any]:
        cfg = self.config
        opts: dict[str, Any] = {
            "host": cfg.host,
            "keepalive_interval": cfg.keepalive_interval_s,
            "keepalive_count_max": cfg.keepalive_count_max,
            "connect_timeout": cfg.connect_timeout_s,
        }
        if cfg.ssh_config:
            path = _expand(cfg.ssh_config)
            if not Path(path).is_file():
                raise ConfigError(f"pod.ssh_config: {path} does not exist")
            opts["config"] = [path]
        else:
            default = _expand(DEFAULT_SSH_CONFIG)
            opts["config"] = [default] if Path(default).is_file() else None
        if cfg.port is not None:
            opts["port"] = cfg.port
        if cfg.user:
            opts["username"] = cfg.user
        if cfg.identity_file:
            path = _expand(cfg.identity_file)
            if not Path(path).is_file():
                raise ConfigError(f"pod.identity_file: {path} does not exist")
            opts["client_keys"] = [path]
        return opts

    async def _resolve(self, opts: dict[str, Any]) -> _Target:
        """Apply ~/.ssh/config (HostName, Port, User, UserKnownHostsFile) to the settings."""
        try:
            resolved = await asyncssh.SSHClientConnectionOptions.construct(**opts)
        except asyncssh.KeyImportError as exc:
            raise ConfigError(
                f"pod.identity_file: cannot use {self.config.identity_file}: {exc}. "
                "A passphrase-protected key must be loaded into ssh-agent (ssh-add) and "
                "identity_file left unset"
            ) from None
        except (ValueError, OSError) as exc:
            raise ConfigError(f"pod: cannot use the SSH settings for {self.label}: {exc}") from None
        if self.config.known_hosts:
            paths = [_expand(self.config.known_hosts)]
        elif isinstance(resolved.known_hosts, list) and resolved.known_hosts:
            paths = [_expand(str(p)) for p in resolved.known_hosts]
        else:
            # Also for `UserKnownHostsFile none`: checking is never switched off.
            paths = [_expand(DEFAULT_KNOWN_HOSTS)]
        key_host = resolved.host_key_alias or resolved.host
        return _Target(resolved.host, resolved.port, resolved.username, paths, key_host)

    async def _open(self) -> asyncssh.SSHClientConnection:
        """One connection attempt; every failure becomes PodUnreachable (or a subclass)."""
        opts = self._connect_options()
        target = await self._resolve(opts)
        known = await asyncio.to_thread(_read_known_hosts, target.known_hosts)
        check = _HostKeyCheck(known, self.config.accept_new_host_key)
        where = f"pod {self.label} ({target})"
        try:
            conn = await asyncssh.connect(
                **opts, known_hosts=check.lookup, client_factory=lambda: _Client(check)
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise self._host_key_error(check, target, str(exc)) from None
        except (asyncssh.KeyExchangeFailed, asyncssh.ConnectionLost, ConnectionResetError) as exc:
            # Offered only the key types on record (as OpenSSH does), a pod whose key type
            # changed drops the key exchange (reset, lost or failed, as timing has it); look
            # at what it offers now to say so.
            if check.presented is None and check.trusted(target.key_host, "", target.port):
                changed = await self._probe_changed_key(opts, check, target)
                if changed is not None:
                    raise changed from None
            reason = exc.reason if isinstance(exc, asyncssh.Error) else "connection reset"
            raise PodUnreachable(f"cannot connect to {where}: {reason}") from None
        except asyncssh.PermissionDenied:
            raise _AuthRefused(
                f"cannot connect to {where}: the pod refused the key for user {target.user!r} "
                "(check identity_file, the user name and the pod's authorized_keys)"
            ) from None
        except asyncssh.DisconnectError as exc:
            raise PodUnreachable(f"cannot connect to {where}: {exc.reason}") from None
        except TimeoutError:
            raise PodUnreachable(
                f"cannot connect to {where}: no answer within {self.config.connect_timeout_s:g} s"
            ) from None
        except ConnectionRefusedError:
            raise PodUnreachable(
                f"cannot connect to {where}: connection refused (is sshd running on that port?)"
            ) from None
        except socket.gaierror as exc:
            raise PodUnreachable(
                f"cannot connect to {where}: cannot resolve {target.host!r} ({exc.strerror})"
            ) from None
        except OSError as exc:
            raise PodUnreachable(f"cannot connect to {where}: {exc.strerror or exc}") from None
        if check.to_record is not None:
            host, port, key = check.to_record
            try:
                await asyncio.to_thread(_record_host_key, target.known_hosts[0], host, port, key)
            except OSError as exc:
                conn.close()
                raise HostKeyError(
                    f"cannot record the host key of {host}:{port} in "
                    f"{target.known_hosts[0]}: {exc.strerror}"
                ) from None
        return conn

    async def _probe_changed_key(
        self, opts: dict[str, Any], check: _HostKeyCheck, target: _Target
    ) -> HostKeyError | None:
        probe = {k: v for k, v in opts.items() if k in ("host", "port", "config")}
        try:
            key = await asyncssh.get_server_host_key(**probe, server_host_key_algs="default")
        except (asyncssh.Error, OSError):
            return None
        known = _known_keys(check.known, target.key_host, "", target.port)[0]
        if key is None or key in known:
            return None
        check.presented, check.changed = key, True
        return self._host_key_error(check, target, "")

    def _host_key_error(self, check: _HostKeyCheck, target: _Target, reason: str) -> HostKeyError:
        where = f"{target.host}:{target.port}"
        if self.config.host != target.host:
            where += f" (ssh config alias {self.config.host!r})"
        known_file = target.known_hosts[0]
        if check.presented is None:
            return HostKeyError(f"host key for {where} refused: {reason}")
        key = _describe_key(check.presented)
        if check.changed:
            return HostKeyError(
                f"host key for {where} has CHANGED: the pod now presents {key}, which does not "
                f"match the key recorded in {known_file}. This can mean the connection is "
                "being intercepted, or that the pod was re-created. Refusing to connect; "
                "see docs/pod.md, 'Host key changed'."
            )
        return HostKeyError(
            f"host key for {where} is unknown: {key} (not in {known_file}). Compare this "
            "fingerprint with the one your pod provider shows, then set "
            "`accept_new_host_key = true` in [pod] once to record it."
        )

    async def connect(self) -> None:
        if self._state is not ConnState.CLOSED:
            return
        self._closing = False
        self._set_state(ConnState.CONNECTING)
        try:
            self._conn = await self._open()
        except BaseException as exc:
            self.last_error = str(exc) if isinstance(exc, OcrtuiError) else None
            self._set_state(ConnState.CLOSED)
            raise
        self.last_error = None
        self._set_state(ConnState.CONNECTED)
        self._supervisor = asyncio.create_task(self._supervise(), name=f"ssh-supervisor {self}")

    async def _supervise(self) -> None:
        """Notice a dropped connection and reconnect with backoff until it is back."""
        while True:
            assert self._conn is not None
            await self._conn.wait_closed()
            if self._closing:
                return
            self._conn = None
            self._set_state(ConnState.LOST)
            self._set_state(ConnState.RECONNECTING)
            delay = BACKOFF_START_S
            while True:
                # close() cancels this task, but a cancel can be lost: Python 3.11's
                # asyncio.wait_for (in asyncssh.connect) returns the attempt's outcome when
                # the attempt ends as the cancel arrives. The flag ends the loop regardless.
                if self._closing:
                    return
                try:
                    conn = await self._open()
                    if self._closing:
                        conn.close()
                        return
                    self._conn = conn
                    break
                except (_AuthRefused, HostKeyError, ConfigError) as exc:
                    self.last_error = str(exc)
                    await asyncio.sleep(SLOW_RETRY_S)
                    continue
                except OcrtuiError as exc:
                    self.last_error = str(exc)
                except Exception as exc:  # the supervisor must outlive any one failure
                    self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
            self.last_error = None
            self._set_state(ConnState.CONNECTED)

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.wait({self._supervisor})
            self._supervisor = None
        for fwd in self._forwards.values():
            fwd.close()
        self._forwards.clear()
        conn = self._current_conn()
        if self._running and conn is not None:
            # Silent commands would outlive the channel (no pty, no SIGHUP): end them first.
            await self._kill_groups(conn, sorted(self._running))
        if self._kills:
            await asyncio.wait(set(self._kills), timeout=_KILL_WAIT_S)
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._conn.wait_closed(), 2.0)
            self._conn = None
        self._set_state(ConnState.CLOSED)

    def _require_conn(self) -> asyncssh.SSHClientConnection:
        if self._state is not ConnState.CONNECTED or self._conn is None:
            raise PodConnectionLost(f"pod {self.label} is not connected ({self._state.value})")
        return self._conn

    # -- commands ---------------------------------------------------------------------

    async def _start(
        self,
        conn: asyncssh.SSHClientConnection,
        argv: Sequence[str],
        input: str | None,
        stderr: Any,
    ) -> asyncssh.SSHClientProcess[str]:
        if not argv:
            raise ValueError("empty command")
        if any("\0" in a for a in argv):
            raise ValueError("embedded null byte in command argument")
        command = shlex.join(["sh", "-c", _PID_FIRST_SH, "sh", *argv])
        try:
            proc = await conn.create_process(
                command,
                stdin=asyncssh.PIPE if input is not None else asyncssh.DEVNULL,
                stderr=stderr,
                encoding="utf-8",
                errors="replace",
            )
            if input is not None:
                # Written here rather than through `input=`: asyncssh sends no EOF for "".
                proc.stdin.write(input)
                proc.stdin.write_eof()
            return proc
        except _LINK_ERRORS as exc:
            raise PodConnectionLost(f"link to pod {self.label} lost: {exc}") from exc

    async def _read_pid(self, proc: asyncssh.SSHClientProcess[str]) -> int | None:
        first = await proc.stdout.readline()
        try:
            pid = int(first)
        except ValueError:
            return None
        self._running.add(pid)
        return pid

    def _check_outcome(self, proc: asyncssh.SSHClientProcess[str], argv: Sequence[str]) -> int:
        status = _exit_status(proc)
        if self._closing:
            raise PodConnectionLost(f"pod {self.label} was closed during {argv[0]!r}")
        if status is None:
            raise PodConnectionLost(f"link to pod {self.label} lost during {argv[0]!r}")
        return status

    def _end_remote(
        self,
        conn: asyncssh.SSHClientConnection,
        proc: asyncssh.SSHClientProcess[str],
        pid: int | None,
    ) -> asyncio.Task[None] | None:
        """Stop an abandoned command: kill its process group, then drop the channel."""
        proc.close()
        if pid is None or conn is not self._conn or self._state is not ConnState.CONNECTED:
            # The link is gone: the pod's sshd closes the pipes and the command gets EPIPE.
            return None
        task = asyncio.create_task(self._kill_groups(conn, [pid]))
        self._kills.add(task)
        task.add_done_callback(self._kills.discard)
        return task

    @staticmethod
    async def _kill_groups(conn: asyncssh.SSHClientConnection, pids: Sequence[int]) -> None:
        argv = ["sh", "-c", _KILL_GROUPS_SH, "sh", *map(str, pids)]
        with contextlib.suppress(*_LINK_ERRORS, OSError):
            await asyncio.wait_for(conn.run(shlex.join(argv)), _KILL_WAIT_S)

    async def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        conn = self._require_conn()
        pid: int | None = None
        done = False
        async with asyncio.timeout(timeout):
            proc = await self._start(conn, argv, input, asyncssh.PIPE)
            try:
                pid = await self._read_pid(proc)
                out, err = await proc.communicate()
                done = True
            except _LINK_ERRORS as exc:
                raise PodConnectionLost(f"link to pod {self.label} lost: {exc}") from exc
            finally:
                self._running.discard(pid or 0)
                if not done:
                    self._end_remote(conn, proc, pid)
        status = self._check_outcome(proc, argv)
        return CommandResult(tuple(argv), status, str(out or ""), str(err or ""))

    async def stream(
        self, argv: Sequence[str], *, input: str | None = None
    ) -> AsyncGenerator[str, None]:
        conn = self._require_conn()
        proc = await self._start(conn, argv, input, asyncssh.DEVNULL)
        pid: int | None = None
        finished = False
        try:
            try:
                pid = await self._read_pid(proc)
                # Not `async for`: asyncssh's iterator can yield a spurious "" at EOF.
                while line := await proc.stdout.readline():
                    yield line.rstrip("\n")
                await proc.wait_closed()
            except _LINK_ERRORS as exc:
                raise PodConnectionLost(f"link to pod {self.label} lost: {exc}") from exc
            self._check_outcome(proc, argv)
            finished = True
        finally:
            self._running.discard(pid or 0)
            if not finished:
                kill = self._end_remote(conn, proc, pid)
                if kill is not None:
                    await asyncio.wait({kill}, timeout=_KILL_WAIT_S)

    # -- port forwards ------------------------------------------------------------------

    async def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> str:
        key = (remote_host, remote_port)
        fwd = self._forwards.get(key)
        if fwd is None:
            fwd = LocalForward(self._current_conn, remote_host, remote_port)
            await fwd.start()
            self._forwards[key] = fwd
        return fwd.url

    def _current_conn(self) -> asyncssh.SSHClientConnection | None:
        return self._conn if self._state is ConnState.CONNECTED else None
