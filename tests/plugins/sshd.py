"""A real OpenSSH sshd on 127.0.0.1 for tests that go through SSH.

Fixtures
--------
``sshd``
    A running :class:`Sshd`: ``/usr/sbin/sshd -D`` as a child of the test process, on a free
    loopback port, with the session's throwaway host and client ed25519 keys, accepting
    the CURRENT user by key only (root in CI; an unprivileged user works too, logging in as
    itself). ``sshd.known_hosts`` already trusts its host key. ``sshd.stop()`` kills the
    listener and every sshd process it forked (the per-connection ones too, so open
    connections drop as if the pod's sshd died); ``sshd.start()`` brings it back on the same
    port with the same keys. Everything is stopped by pid when the test ends.
``ssh_pod``
    An :class:`~ocrtui.pod.ssh.SSHPod` connected to ``sshd``, closed after the test.
``sshd_keys`` (session)
    The :class:`SshdKeys` every ``sshd`` of the session uses (generated once: two
    ``ssh-keygen`` runs per test were pure set-up cost). A test that needs a key of its own
    (an unknown or changed host key) writes its own known_hosts instead.

Helpers on :class:`Sshd`
------------------------
``pod_config(**overrides) -> PodConfig``
    ``[pod]`` settings reaching this sshd (host, port, user, identity file, known_hosts,
    an empty ssh config so the user's ``~/.ssh/config`` never leaks into tests). Any
    ``PodConfig`` field can be overridden, e.g. ``sshd.pod_config(sim_gpu=str(dir))``.
``make_pod(**overrides) -> SSHPod``
    An unconnected pod for that config (``await pod.connect()``; ``await pod.close()``).
``write_ssh_config(alias) -> Path``
    An ssh config file with ``Host alias`` pointing here (HostName, Port, User,
    IdentityFile, UserKnownHostsFile), to test alias resolution.
``session_pids() -> list[int]``
    The per-connection sshd processes (SIGSTOP them to freeze a link without closing it).

Attributes: ``host`` (127.0.0.1), ``port``, ``user``, ``client_key`` (private key path),
``known_hosts`` (trusting this server), ``host_pubkey`` (``"ssh-ed25519 AAAA..."``),
``log`` (sshd's log file, shown when it fails to start), ``pid`` (the listener, or None).

Typical use from another layer's tests::

    async def test_something(sshd):
        pod = sshd.make_pod(sim_gpu=str(gpu_dir))
        await pod.connect()
        try:
            ...
        finally:
            await pod.close()
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ocrtui.config import PodConfig
from ocrtui.pod.ssh import SSHPod

SSHD = "/usr/sbin/sshd"
READY_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _banner_ready(port: int) -> bool:
    """True once something on the port speaks SSH (a bare TCP accept is not enough)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(8).startswith(b"SSH-2.0")
    except OSError:
        return False


def _descendants(root: int) -> list[int]:
    """Pids below ``root`` in the process tree, children first found first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields follow the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class SshdKeys:
    """A host key and a client key (private key paths; ``.pub`` beside each)."""

    host_key: Path
    client_key: Path

    @classmethod
    def create(cls, root: Path) -> SshdKeys:
        keys = cls(root / "ssh_host_ed25519_key", root / "id_ed25519")
        _keygen(keys.host_key, "ocrtui-test-host")
        _keygen(keys.client_key, "ocrtui-test-client")
        return keys


class Sshd:
    """One throwaway OpenSSH server; see the module docstring. ``keys``: the session's
    (the ``sshd_keys`` fixture); None makes a pair of its own in ``root``."""

    host = "127.0.0.1"

    def __init__(self, root: Path, keys: SshdKeys | None = None) -> None:
        self.root = root
        self.user = getpass.getuser()
        self.port = _free_port()
        keys = keys or SshdKeys.create(root)
        self.host_key = keys.host_key
        self.client_key = keys.client_key
        self.known_hosts = root / "known_hosts"
        self.authorized_keys = root / "authorized_keys"
        self.config_file = root / "sshd_config"
        self.log = root / "sshd.log"
        self.empty_ssh_config = root / "ssh_config"
        self._proc: subprocess.Popen[bytes] | None = None

        self.host_pubkey = " ".join(
            Path(f"{self.host_key}.pub").read_text().split()[:2]
        )  # "ssh-ed25519 AAAA..."
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {self.host_pubkey}\n")
        self.empty_ssh_config.write_text("")
        self._write_config()

    def _write_config(self) -> None:
        self.config_file.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.host}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "UsePAM no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "StrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            f"AllowUsers {self.user}\n"
            "LogLevel VERBOSE\n"
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self) -> None:
        """Start (or restart) sshd on ``self.port``; returns once it answers with a banner."""
        if self.pid is not None:
            return
        if os.geteuid() == 0:
            # sshd's privilege-separation directory; only checked when running as root.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config_file), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _banner_ready(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"sshd exited ({self._proc.returncode}); log:\n{self._log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd not ready on port {self.port}; log:\n{self._log()}")
            time.sleep(0.01)  # polling interval of the readiness probe, not synchronisation

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (to freeze them, e.g. to test keepalives)."""
        if self._proc is None:
            return []
        return [p for p in _descendants(self._proc.pid) if _comm(p) == "sshd"]

    def stop(self) -> None:
        """Kill the listener and all sshd processes it forked, like a dying pod sshd.

        Commands the sessions ran are left alone: they notice the closed pipes themselves.
        """
        if self._proc is None:
            return
        for pid in [self._proc.pid, *self.session_pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    def _log(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return "(no log)"

    def pod_config(self, **overrides: Any) -> PodConfig:
        fields: dict[str, Any] = {
            "kind": "ssh",
            "name": "test-sshd",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "ssh_config": str(self.empty_ssh_config),
        }
        fields.update(overrides)
        return PodConfig(**fields)

    def make_pod(self, **overrides: Any) -> SSHPod:
        return SSHPod(self.pod_config(**overrides))

    def write_ssh_config(self, alias: str, path: Path | None = None) -> Path:
        path = path or self.root / f"ssh_config_{alias}"
        path.write_text(
            f"Host {alias}\n"
            f"    HostName {self.host}\n"
            f"    Port {self.port}\n"
            f"    User {self.user}\n"
            f"    IdentityFile {self.client_key}\n"
            f"    UserKnownHostsFile {self.known_hosts}\n"
        )
        return path


@pytest.fixture(scope="session")
def sshd_keys(tmp_path_factory: pytest.TempPathFactory) -> SshdKeys:
    return SshdKeys.create(tmp_path_factory.mktemp("sshd-keys"))


@pytest.fixture
def sshd(tmp_path_factory: pytest.TempPathFactory, sshd_keys: SshdKeys) -> Iterator[Sshd]:
    # A short private directory: sshd refuses nothing here, but logs and paths stay readable.
    server = Sshd(tmp_path_factory.mktemp("sshd"), sshd_keys)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def ssh_pod(sshd: Sshd) -> AsyncIterator[SSHPod]:
    pod = sshd.make_pod()
    await pod.connect()
    try:
        yield pod
    finally:
        await pod.close()
