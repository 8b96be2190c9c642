"""ocrtui pod agent: one JSON line per sample on stdout, GPU memory per process and who owns it.

Shipped to the pod as source over stdin (``python3 -u - --port 8000 ...``), so this file is
self-contained: the standard library, plus ``pynvml`` (nvidia-ml-py) when importable. It must
run on the pod's python3 >= 3.8, so no newer syntax or library calls.

Each sample carries the protocol version ``v`` and a sequence number ``seq``. GPU data comes
from one backend: NVML (initialised once, no process spawned per sample), ``nvidia-smi`` CSV
when pynvml is missing, or a simulated GPU directory (``--sim-gpu``; everything labelled
simulated). Whatever the backend, every sample also says which pid owns each ``--port``,
which pids hold ``/dev/nvidia*`` open, and which vLLM processes exist, so leaked EngineCores
can be found even inside a container where NVML reports host pids this pod cannot see.
Errors are state: a sample with ``error`` set, never a crash.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Union

PROTOCOL_VERSION = 1

# The fds of Python-looking processes and of GPU users are re-read at least this often.
FULL_FD_SCAN_S = 5.0
# Any other process is re-read (stat and fds) at least this often, so a new /dev/nvidia*
# holder unrelated to vLLM shows up within this many seconds (sooner while it is young).
COLD_RECHECK_MAX_S = 30.0
# Up to this many new pids (threads included) since the last sample are probed one by one;
# more, and /proc is listed instead.
PROBE_NEW_PIDS = 32
# A dump of bound-not-listening sockets walks the kernel's whole bind hash (on a 128 GiB
# H200 host, IPv4 and IPv6: 7.5 of a 9.2 ms sample), and is wanted only while a model's
# port has no listener: it is taken at most this often, its result kept in between.
BOUND_DUMP_EVERY_S = 2.0
NVML_RETRY_S = 10.0
CMDLINE_MAX = 64
ARG_MAX_CHARS = 512

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_VLLM_TITLE = re.compile(r"^\S*::(EngineCor|Worker|APIServer|DPCoordinator)")
_PYTHONISH = re.compile(r"^(python[0-9.]*|pt_main_thread|vllm|ocrtui|ray::.*)$")
# CUDA keeps these open for the life of a process; /dev/dxg is the GPU under WSL2.
_GPU_DEVICES = ("/dev/nvidia", "/dev/dxg")
_TCP_LISTEN = "0A"
_TCP_CLOSE = "07"  # bound but not yet listening: vLLM binds its port before loading the model
_TCP_BOUND_INACTIVE = 13


def _read(path: str) -> str | None:
    # os.open/os.read rather than open(): no buffered file object per read, which is most
    # of the Python-side cost of the per-sample /proc reads. A short read is the end of a
    # /proc file (its text is generated whole), which saves the read that returns nothing.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            chunks.append(chunk)
            if len(chunk) < 65536:
                break
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _boot_time() -> float:
    text = _read("/proc/stat") or ""
    for line in text.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


# -- the process table ----------------------------------------------------------------------


class Proc:
    __slots__ = (
        "argv",
        "comm",
        "hot",
        "next_check",
        "pgid",
        "pid",
        "ppid",
        "role",
        "sid",
        "start",
        "state",
    )

    def __init__(
        self, pid: int, comm: str, state: str, ppid: int, pgid: int, sid: int, start: float
    ) -> None:
        self.pid = pid
        self.comm = comm
        self.state = state
        self.ppid = ppid
        self.pgid = pgid
        self.sid = sid
        self.start = start
        self.argv = None  # type: list[str] | None
        # Python-looking or vLLM-titled: re-read every sample.
        self.hot = bool(_PYTHONISH.match(comm)) or "::" in comm
        self.role = None  # type: tuple[str, dict] | None
        self.next_check = 0.0


def _parse_stat(pid: int, text: str, boot: float) -> Proc | None:
    # comm sits in parentheses and may itself contain spaces or parentheses.
    lpar, rpar = text.find("("), text.rfind(")")
    if lpar < 0 or rpar < 0:
        return None
    rest = text[rpar + 2 :].split()
    if len(rest) < 20 or not rest[19].isdigit():
        return None
    start = boot + int(rest[19]) / float(_CLK_TCK)
    return Proc(
        pid,
        text[lpar + 1 : rpar],
        rest[0],
        int(rest[1]),
        int(rest[2]),
        int(rest[3]),
        round(start, 2),
    )


def _read_argv(pid: int) -> list[str]:
    raw = _read(f"/proc/{pid}/cmdline")
    if not raw:
        return []
    # setproctitle writes the title over argv and pads with NULs: drop the empty tail.
    parts = [p for p in raw.split("\0") if p]
    return [p[:ARG_MAX_CHARS] for p in parts[:CMDLINE_MAX]]


def _is_process(pid: int) -> bool:
    """Whether /proc/PID is a process (a thread's /proc/TID exists too, but is not listed)."""
    text = _read(f"/proc/{pid}/status") or ""
    at = text.find("\nTgid:")
    return at >= 0 and text[at + 6 : text.find("\n", at + 1)].strip() == str(pid)


def _recheck_delay(pid: int, age: float, hot: bool) -> float:
    """Seconds until a process's stat (cold ones) and fds (all) are read again.

    A young process may still exec (``sh -c 'exec vllm ...'`` keeps the pid) or open
    /dev/nvidia, so it is looked at again soon; an old one rarely changes, so the delay grows
    with its age up to COLD_RECHECK_MAX_S. A per-pid spread keeps processes started
    together (or seen together when the agent starts) from being re-read in the same sample.
    """
    base = FULL_FD_SCAN_S if hot else min(COLD_RECHECK_MAX_S, max(1.0, age))
    return base * (0.75 + ((pid * 2654435761) % 1024) / 2048.0)


class ProcTable:
    """Every process of this pid namespace, from /proc/<pid>/stat.

    Python-looking and vLLM-titled processes (and any the caller names) are re-read every
    sample, so a reparented EngineCore shows at once (zombies aside: they never change).
    Every other process is read when it appears and then on a schedule that backs off with
    its age (``_recheck_delay``), so the per-sample cost hardly grows with the number of
    unrelated processes on the host. A pid whose start time or comm changed is a new
    process (pid reuse, exec): its cached argv, role and fds are dropped.
    """

    def __init__(self) -> None:
        self.boot = _boot_time()
        self.procs = {}  # type: dict[int, Proc]
        self.hot = set()  # type: set[int]
        # Filled by refresh() for the FdScanner: pids gone or replaced, pids whose fds are due.
        self.gone = []  # type: list[int]
        self.fd_due = set()  # type: set[int]
        self._listing = []  # type: list[str]
        self._last_pid = -1
        self._listed_at = 0.0
        self._due = []  # type: list[tuple[float, int]]

    def refresh(self, always: set, now: float) -> None:
        self.gone = []
        self.fd_due = set()
        wall = time.time()
        todo = set(always) | self.hot
        # /proc/loadavg ends with the last pid handed out in this pid namespace. While it
        # stays, no process (or thread) appeared; when it moved by a few, only those pids
        # are looked at. Either way the costly, O(processes) listing of /proc is skipped.
        # An exit is seen when that process is read again (every sample for hot ones, the
        # caller's and /dev/nvidia* holders), or at the next listing, taken at least every
        # FULL_FD_SCAN_S and whenever the last pid jumped (or wrapped).
        text = (_read("/proc/loadavg") or "").rpartition(" ")[2]
        last = int(text) if text.strip().isdigit() else -1
        prev, self._last_pid = self._last_pid, last
        names = self._listing
        if (
            last < 0
            or not 0 <= last - prev <= PROBE_NEW_PIDS
            or now - self._listed_at >= FULL_FD_SCAN_S
        ):
            self._listed_at = now
            names = os.listdir("/proc")
        else:
            todo.update(pid for pid in range(prev + 1, last + 1) if _is_process(pid))
        if names != self._listing:  # the pid set changed (listing is in pid order)
            self._listing = names
            live = set(map(int, filter(str.isdigit, names)))
            known = set(self.procs)
            for pid in known - live:
                self._drop(pid)
            todo |= live - known
        due = self._due
        while due and due[0][0] <= now:
            at, pid = heapq.heappop(due)
            p = self.procs.get(pid)
            if p is not None and p.next_check == at:
                todo.add(pid)
                self.fd_due.add(pid)
        for pid in todo:
            self._read_proc(pid, now, wall)

    def _drop(self, pid: int) -> None:
        del self.procs[pid]
        self.hot.discard(pid)
        self.gone.append(pid)

    def _read_proc(self, pid: int, now: float, wall: float) -> None:
        text = _read(f"/proc/{pid}/stat")
        p = None if text is None else _parse_stat(pid, text, self.boot)
        prev = self.procs.get(pid)
        if p is None:
            if prev is not None:
                self._drop(pid)
            return
        if prev is not None and prev.start == p.start and prev.comm == p.comm:
            # argv is re-read only when a process is new or its comm changed (setproctitle
            # renames comm too).
            p.argv, p.role, p.next_check = prev.argv, prev.role, prev.next_check
            if p.hot and not p.argv:  # read between fork and exec (or a zombie): again
                p.argv = _read_argv(pid)
                p.role = vllm_role(p.comm, p.argv)
            if pid in self.fd_due:
                self._schedule(p, now, wall)
            self.procs[pid] = p
            if p.state == "Z":
                # Where PID 1 reaps nothing, zombies pile up for the pod's lifetime: a zombie
                # never changes, so it is read on the cold schedule (its reaping shows in
                # the next listing) and is no longer listed with the live vLLM processes.
                self.hot.discard(pid)
            return
        if prev is not None:
            self._drop(pid)
        if p.hot and p.state != "Z":
            p.argv = _read_argv(pid)
            p.role = vllm_role(p.comm, p.argv)
            self.hot.add(pid)
        if p.ppid != 2:  # kernel threads never change
            self._schedule(p, now, wall)
        self.fd_due.add(pid)
        self.procs[pid] = p

    def _schedule(self, p: Proc, now: float, wall: float) -> None:
        p.next_check = now + _recheck_delay(p.pid, wall - p.start, p.hot)
        heapq.heappush(self._due, (p.next_check, p.pid))

    def argv(self, pid: int) -> list[str]:
        p = self.procs.get(pid)
        if p is None:
            return []
        if p.argv is None:
            p.argv = _read_argv(pid)
        return p.argv

    def ancestors(self, pid: int) -> list[int]:
        out = []
        seen = {pid}
        p = self.procs.get(pid)
        while p is not None and p.ppid > 0 and p.ppid not in seen:
            out.append(p.ppid)
            seen.add(p.ppid)
            p = self.procs.get(p.ppid)
        return out

    def title(self, pid: int) -> str:
        argv = self.argv(pid)
        if argv:
            return " ".join(argv)[:ARG_MAX_CHARS]
        p = self.procs.get(pid)
        return f"[{p.comm}]" if p else ""

    def describe(self, pid: int) -> dict:
        p = self.procs.get(pid)
        if p is None:
            return {"visible": False}
        return {
            "visible": True,
            "title": self.title(pid),
            "comm": p.comm,
            "cmdline": self.argv(pid),
            "ppid": p.ppid,
            "pgid": p.pgid,
            "sid": p.sid,
            "start": p.start,
            "state": p.state,
            "ancestors": self.ancestors(pid),
        }


# -- open files: sockets and /dev/nvidia* ------------------------------------------------------


class FdScanner:
    """Which process owns which socket inode, and who holds /dev/nvidia* open.

    A process's fds are read when ProcTable says they are due (new process, its recheck
    time) and, for the pids the caller names (GPU users, vLLM processes), whenever their
    number of open fds changed (the size /proc/PID/fd reports since Linux 6.2; every sample
    where it reports 0) or FULL_FD_SCAN_S passed.
    """

    def __init__(self) -> None:
        # pid -> (scanned_at, fd count, socket inodes, holds /dev/nvidia*, stdout target)
        self._fds = {}  # type: dict[int, tuple[float, int, frozenset, bool, str]]
        self._owners = {}  # type: dict[str, set[int]]
        self._holders = set()  # type: set[int]
        self._unreadable = set()  # type: set[int]
        self._missing = frozenset()  # type: frozenset[str]
        self._missing_at = 0.0

    @property
    def unreadable(self) -> int:
        return len(self._unreadable)

    def _forget(self, pid: int) -> None:
        old = self._fds.pop(pid, None)
        if old is not None:
            for inode in old[2]:
                owners = self._owners.get(inode)
                if owners is not None:
                    owners.discard(pid)
                    if not owners:
                        del self._owners[inode]
        self._holders.discard(pid)
        self._unreadable.discard(pid)

    def _scan(self, pid: int, now: float, count: int) -> None:
        base = f"/proc/{pid}/fd"
        try:
            names = os.listdir(base)
        except PermissionError:
            self._forget(pid)
            self._unreadable.add(pid)
            return
        except OSError:
            self._forget(pid)
            return
        inodes = set()
        nvidia = False
        stdout = ""
        for fd in names:
            try:
                target = os.readlink(base + "/" + fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
            elif target.startswith(_GPU_DEVICES):
                nvidia = True
            if fd == "1":
                stdout = target
        self._forget(pid)
        self._fds[pid] = (now, count, frozenset(inodes), nvidia, stdout)
        for inode in inodes:
            self._owners.setdefault(inode, set()).add(pid)
        if nvidia:
            self._holders.add(pid)

    @staticmethod
    def _count(pid: int) -> int:
        try:
            return os.stat(f"/proc/{pid}/fd").st_size
        except OSError:
            return 0

    def refresh(self, table: ProcTable, always: set, wanted_inodes: set, now: float) -> None:
        for pid in table.gone:
            self._forget(pid)
        procs = table.procs
        scanned = set()
        for pid in table.fd_due | always:
            if pid not in procs:
                continue
            count = self._count(pid)
            entry = self._fds.get(pid)
            if (
                pid in table.fd_due
                or entry is None
                or count == 0
                or count != entry[1]
                or now - entry[0] >= FULL_FD_SCAN_S
            ):
                self._scan(pid, now, count)
                scanned.add(pid)
        # A port's socket changed owner (a restart): rescan everyone rather than report stale,
        # but not every sample for a socket nobody readable owns (another user's server).
        missing = frozenset(i for i in wanted_inodes if i not in self._owners)
        if missing and (missing != self._missing or now - self._missing_at >= FULL_FD_SCAN_S):
            self._missing, self._missing_at = missing, now
            for pid in procs:
                if pid not in scanned:
                    self._scan(pid, now, self._count(pid))

    def owner_of(self, inode: str) -> int | None:
        owners = self._owners.get(inode)
        return min(owners) if owners else None

    def nvidia_holders(self) -> list[int]:
        return sorted(self._holders)

    def stdout_of(self, pid: int) -> str:
        entry = self._fds.get(pid)
        return entry[4] if entry is not None else ""


class PortSockets:
    """port -> [(state, inode)] for LISTEN and bound-not-listening sockets on the ports.

    Listening sockets are dumped every sample. Bound ones only while some port has no
    listener (a server starting, or down), at most every BOUND_DUMP_EVERY_S; in between,
    the last bound dump stands for the ports that still have no listener.
    """

    def __init__(self, ports: list[int]) -> None:
        self.wanted = set(ports)
        self._bound = []  # type: list[tuple[str, int, str]]
        self._bound_at = None  # type: float | None

    def read(self, now: float) -> dict[int, list[tuple[str, str]]]:
        try:
            rows = _diag_sockets(socket.AF_INET, _TCP_LISTEN) + _diag_sockets(
                socket.AF_INET6, _TCP_LISTEN
            )
            unlistened = self.wanted - {port for _, port, inode in rows if inode != "0"}
            if not unlistened:
                self._bound_at = None
            else:
                if self._bound_at is None or now - self._bound_at >= BOUND_DUMP_EVERY_S:
                    self._bound = _diag_sockets(socket.AF_INET, _TCP_CLOSE) + _diag_sockets(
                        socket.AF_INET6, _TCP_CLOSE
                    )
                    self._bound_at = now
                rows += [row for row in self._bound if row[1] in unlistened]
        except OSError:
            rows = _proc_net_sockets()
        out = {}  # type: dict[int, list[tuple[str, str]]]
        for state, port, inode in rows:
            if port in self.wanted and inode != "0":
                out.setdefault(port, []).append((state, inode))
        return out


_NETLINK_SOCK_DIAG = 4
NETLINK_TIMEOUT_S = 2.0
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x301
_NLMSG_ERROR, _NLMSG_DONE = 2, 3


def _diag_sockets(family: int, state_code: str) -> list[tuple[str, int, str]]:
    """TCP sockets in one state (_TCP_LISTEN or _TCP_CLOSE) through netlink sock_diag.

    Several times cheaper than reading /proc/net/tcp, whose cost grows with every
    connection on the host.
    """
    want = {int(state_code, 16)}
    if state_code == _TCP_CLOSE:
        # Linux >= 6.5 reports a bound, never-listened socket (vLLM while it loads) only as
        # TCP_BOUND_INACTIVE; older kernels ignore the bit.
        want.add(_TCP_BOUND_INACTIVE)
    states = sum(1 << st for st in want)
    req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, states) + b"\0" * 48
    hdr = struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
    out = []  # type: list[tuple[str, int, str]]
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
    # A dump the kernel never finishes must not hang the agent: /proc/net/tcp then answers.
    s.settimeout(NETLINK_TIMEOUT_S)
    try:
        s.sendto(hdr + req, (0, 0))
        while True:
            data = s.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag refused")
                # inet_diag_msg: family, state, timer, retrans, sockid (48 bytes),
                # expires, rqueue, wqueue, uid, inode
                state = data[off + 17]
                (port,) = struct.unpack_from("!H", data, off + 20)
                (inode,) = struct.unpack_from("=I", data, off + 16 + 68)
                if state in want:
                    out.append((state_code, port, str(inode)))
                off += (length + 3) & ~3
            if not data:
                return out
    finally:
        s.close()


def _proc_net_sockets() -> list[tuple[str, int, str]]:
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in (_read(path) or "").splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10 or parts[3] not in (_TCP_LISTEN, _TCP_CLOSE):
                continue
            try:
                port = int(parts[1].rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue
            out.append((parts[3], port, parts[9]))
    return out


# -- vLLM processes ---------------------------------------------------------------------------


def _flag(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1 :]
    return None


def _serve_args(argv: list[str]) -> list[str] | None:
    """The arguments after ``serve`` for a vLLM (or simulated vLLM) API server, else None."""
    for i, a in enumerate(argv):
        base = os.path.basename(a)
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if base == "vllm" and nxt == "serve":
            return argv[i + 2 :]
        if base == "sim-vllm" or a == "sim-vllm":
            return argv[i + 2 :] if nxt == "serve" else None
        if a == "vllm.entrypoints.openai.api_server":
            return ["", *argv[i + 1 :]]
    return None


def vllm_role(comm: str, argv: list[str]) -> tuple[str, dict] | None:
    """("api"|"engine"|"worker"|"coordinator", details) for a vLLM-looking process, else None.
    Data parallel's titles (``EngineCore_DP<i>``, ``Worker_DP<i>``, ``APIServer_<i>``,
    ``DPCoordinator``) are vLLM 0.32's; a titled ``APIServer_<i>`` has no details."""
    title = argv[0] if argv else comm
    m = _VLLM_TITLE.match(title) or _VLLM_TITLE.match(comm)
    if m:
        kind = {
            "EngineCor": "engine",
            "Worker": "worker",
            "APIServer": "api",
            "DPCoordinator": "coordinator",
        }[m.group(1)]
        return kind, {}
    rest = _serve_args(argv)
    if rest is None:
        return None
    model = rest[0] if rest and rest[0] and not rest[0].startswith("-") else _flag(rest, "--model")
    served = _flag(rest, "--served-model-name") or model
    port_text = _flag(rest, "--port")
    try:
        port = int(port_text) if port_text else 8000
    except ValueError:
        port = None
    return "api", {"model": model, "served": served, "port": port, "simulated": "sim-vllm" in argv}


# Python's multiprocessing children, by the code they are started with: the resource
# tracker, and a spawned child before vLLM retitles it (an EngineCore importing).
_MP_CHILDREN = (
    ("from multiprocessing.resource_tracker import main", "tracker"),
    ("from multiprocessing.spawn import spawn_main", "spawned"),
)


def vllm_helpers(table: ProcTable, vllm: list) -> list:
    """(pid, (kind, {})) for multiprocessing children in vLLM process groups: a vLLM API
    server starts a resource tracker, and it outlives a SIGKILLed server with the EngineCore."""
    groups = {table.procs[pid].pgid for pid, _ in vllm if table.procs[pid].pgid > 1}
    pids = {pid for pid, _ in vllm}
    out = []  # type: list[tuple[int, tuple[str, dict]]]
    for p in table.procs.values():
        if p.pid in pids or not p.argv or p.pgid not in groups or p.state == "Z":
            continue
        for code, kind in _MP_CHILDREN:
            if any(a.startswith(code) for a in p.argv):
                out.append((p.pid, (kind, {})))
                break
    return out


def dead_group_leaders(table: ProcTable, vllm: list) -> list:
    """(pid, role) for zombie vLLM processes that lead the group of a listed live one: a
    SIGKILLed API server not yet reaped still names the model of the EngineCore it left.
    Other zombies hold nothing and are not listed."""
    pids = {pid for pid, _ in vllm}
    out = []  # type: list[tuple[int, tuple[str, dict]]]
    for pgid in sorted({table.procs[pid].pgid for pid in pids} - pids):
        p = table.procs.get(pgid)
        if p is not None and p.state == "Z" and p.role is not None:
            out.append((pgid, p.role))
    return out


def rss_mib(pid: int) -> int | None:
    """Resident memory of a process (what a leaked CPU vLLM holds instead of VRAM)."""
    text = _read(f"/proc/{pid}/statm")
    parts = text.split() if text else []
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return round(int(parts[1]) * _PAGE_SIZE / 1048576.0)


def mem_available_mib() -> int | None:
    """MemAvailable from /proc/meminfo: what a CPU vLLM can still get."""
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return round(int(parts[1]) / 1024.0)
    return None


# -- GPU backends -----------------------------------------------------------------------------


def _mib(nbytes: float | None) -> int | None:
    return None if nbytes is None else round(nbytes / 1048576.0)


class NoGpu:
    name = "none"
    simulated = False

    def __init__(self, error: str) -> None:
        self.error = error

    def sample(self) -> tuple[list[dict], list[dict], str | None]:
        return [], [], self.error


class SimGpu:
    """The simulated GPU directory: device.json (``count`` devices alike) plus
    holders/<pid>.json (alive pids only, each on the device its ``gpu`` names)."""

    name = "sim"
    simulated = True

    def __init__(self, path: str) -> None:
        self.path = os.path.expanduser(path)

    def sample(self) -> tuple[list[dict], list[dict], str | None]:
        try:
            with open(os.path.join(self.path, "device.json")) as f:
                dev = json.load(f)
        except (OSError, ValueError) as exc:
            return [], [], f"simulated GPU directory {self.path} unreadable: {exc}"
        procs = []  # type: list[dict]
        hdir = os.path.join(self.path, "holders")
        try:
            names = sorted(os.listdir(hdir))
        except OSError:
            names = []
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(hdir, name)) as f:
                    h = json.load(f)
                pid, used = int(h["pid"]), int(h["used_mib"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being replaced right now, or removed
            if _alive(pid):
                procs.append(
                    {
                        "gpu": int(h.get("gpu", 0)),
                        "pid": pid,
                        "used_mib": used,
                        "type": "C",
                        "simulated": True,
                    }
                )
        total = int(dev["total_mib"])
        first = int(dev.get("index", 0))
        uuid = str(dev.get("uuid", ""))
        gpus = []
        for index in range(first, first + int(dev.get("count", 1))):
            used = sum(p["used_mib"] for p in procs if p["gpu"] == index)
            gpus.append(
                {
                    "index": index,
                    "uuid": uuid[: -len(str(index))] + str(index) if index else uuid,
                    "name": str(dev.get("name", "simulated GPU")),
                    "total_mib": total,
                    "used_mib": used,
                    "free_mib": total - used,
                    "reserved_mib": None,
                    "util_pct": None,
                    "temp_c": None,
                    "power_w": None,
                    "simulated": True,
                }
            )
        return gpus, procs, None


def _alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return False
    # A zombie has released its memory on a real GPU too.
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


class NvmlGpu:
    """NVML through pynvml: initialised once, queried in-process every sample."""

    name = "nvml"
    simulated = False

    def __init__(self, pynvml: Any) -> None:
        self.nv = pynvml
        self.handles = []  # type: list
        self.init_error = None  # type: str | None
        self._last_init = 0.0
        self._proc_fns: dict[str, Any] = {}
        self._mem_v2 = True
        self._static = {}  # type: dict[int, tuple[str, str]]
        self._init()

    def _init(self) -> None:
        nv = self.nv
        self._last_init = time.monotonic()
        try:
            nv.nvmlInit()
            self.handles = [
                nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())
            ]
            self._static = {}
            self.init_error = None
        except nv.NVMLError as exc:
            self.handles = []
            self.init_error = _nvml_error_text(nv, exc)

    def sample(self) -> tuple[list[dict], list[dict], str | None]:
        nv = self.nv
        if self.init_error is not None:
            if time.monotonic() - self._last_init < NVML_RETRY_S:
                return [], [], self.init_error
            self._init()
            if self.init_error is not None:
                return [], [], self.init_error
        gpus, procs, errors = [], [], []
        for index, h in enumerate(self.handles):
            try:
                gpus.append(self._device(index, h))
                procs.extend(self._processes(index, h))
            except nv.NVMLError as exc:
                errors.append(f"GPU {index}: {_nvml_error_text(nv, exc)}")
        return gpus, procs, "; ".join(errors) or None

    def _opt(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nv.NVMLError:
            return None

    def _device(self, index: int, h: Any) -> dict:
        nv = self.nv
        reserved = None
        mem = None
        if self._mem_v2 and hasattr(nv, "nvmlMemory_v2"):
            try:
                mem = nv.nvmlDeviceGetMemoryInfo(h, version=nv.nvmlMemory_v2)
                reserved = mem.reserved
            except (nv.NVMLError, TypeError, AttributeError):
                self._mem_v2 = False
        if mem is None:
            mem = nv.nvmlDeviceGetMemoryInfo(h)
        static = self._static.get(index)
        if static is None:  # name and UUID never change while NVML stays initialised
            name, uuid = nv.nvmlDeviceGetName(h), nv.nvmlDeviceGetUUID(h)
            static = self._static[index] = (
                uuid.decode() if isinstance(uuid, bytes) else uuid,
                name.decode() if isinstance(name, bytes) else name,
            )
        util = self._opt(nv.nvmlDeviceGetUtilizationRates, h)
        temp = self._opt(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        power = self._opt(nv.nvmlDeviceGetPowerUsage, h)
        return {
            "index": index,
            "uuid": static[0],
            "name": static[1],
            "total_mib": _mib(mem.total),
            "used_mib": _mib(mem.used),
            "free_mib": _mib(mem.free),
            "reserved_mib": _mib(reserved),
            "util_pct": None if util is None else float(util.gpu),
            "temp_c": None if temp is None else float(temp),
            "power_w": None if power is None else power / 1000.0,
            "simulated": False,
        }

    def _running(self, kind: str, h: Any) -> list:
        """nvitop's ladder: the _v3 call, else _v2, else v1; the first that works is kept."""
        nv = self.nv
        base = f"nvmlDeviceGet{kind}RunningProcesses"
        fn = self._proc_fns.get(kind)
        if fn is not None:
            return fn(h)
        last = None
        for suffix in ("_v3", "_v2", ""):
            cand = getattr(nv, base + suffix, None)
            if cand is None:
                continue
            try:
                out = cand(h)
            except nv.NVMLError as exc:
                if not _is_version_error(nv, exc):
                    raise
                last = exc
                continue
            self._proc_fns[kind] = cand
            return out
        v1 = self._v1(base)
        if v1 is not None:
            self._proc_fns[kind] = v1
            return v1(h)
        raise last if last is not None else nv.NVMLError(nv.NVML_ERROR_FUNCTION_NOT_FOUND)

    def _v1(self, symbol: str) -> Any:
        """The original call with its two-field struct, for drivers older than every _vN."""
        import ctypes

        nv = self.nv
        get = getattr(nv, "_nvmlGetFunctionPointer", None)
        if get is None:
            return None

        class Info(ctypes.Structure):
            _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]

        def call(h: Any) -> list:
            fn = get(symbol)
            count = ctypes.c_uint(0)
            ret = fn(h, ctypes.byref(count), None)
            if ret == nv.NVML_SUCCESS:
                return []
            if ret != nv.NVML_ERROR_INSUFFICIENT_SIZE:
                raise nv.NVMLError(ret)
            count.value = count.value * 2 + 5
            arr = (Info * count.value)()
            ret = fn(h, ctypes.byref(count), arr)
            if ret != nv.NVML_SUCCESS:
                raise nv.NVMLError(ret)
            return [arr[i] for i in range(count.value)]

        return call

    def _processes(self, index: int, h: Any) -> list[dict]:
        merged = {}  # type: dict[int, dict]
        for kind, tag in (("Compute", "C"), ("Graphics", "G")):
            try:
                rows = self._running(kind, h)
            except self.nv.NVMLError:
                if kind == "Compute":
                    raise
                continue  # graphics lists are unsupported on many datacenter boards
            for r in rows:
                used = r.usedGpuMemory
                if used is not None and used >= (1 << 64) - 1:
                    used = None  # NVML_VALUE_NOT_AVAILABLE (MIG, WDDM)
                row = merged.get(r.pid)
                if row is None:
                    merged[r.pid] = {
                        "gpu": index,
                        "pid": int(r.pid),
                        "used_mib": _mib(used),
                        "type": tag,
                        "simulated": False,
                    }
                elif tag not in row["type"]:
                    row["type"] += "+" + tag
                    if row["used_mib"] is None:
                        row["used_mib"] = _mib(used)
        return list(merged.values())


def _is_version_error(nv: Any, exc: BaseException) -> bool:
    value = getattr(exc, "value", None)
    codes = {
        getattr(nv, "NVML_ERROR_FUNCTION_NOT_FOUND", 13),
        getattr(nv, "NVML_ERROR_ARGUMENT_VERSION_MISMATCH", 25),
    }
    return value in codes


def _nvml_error_text(nv: Any, exc: BaseException) -> str:
    if getattr(exc, "value", None) in (
        getattr(nv, "NVML_ERROR_LIBRARY_NOT_FOUND", 12),
        getattr(nv, "NVML_ERROR_DRIVER_NOT_LOADED", 9),
    ):
        return f"no NVIDIA driver ({exc})"
    return f"NVML: {exc}"


class SmiGpu:
    """``nvidia-smi`` CSV queries: the fallback when pynvml is not importable (2 spawns/sample)."""

    name = "nvidia-smi"
    simulated = False
    GPU_FIELDS = (
        "index,uuid,name,memory.total,memory.used,memory.free,"
        "utilization.gpu,temperature.gpu,power.draw"
    )
    APP_FIELDS = "gpu_uuid,pid,used_memory,process_name"

    def __init__(self, exe: str) -> None:
        self.exe = exe

    def _query(self, what: str, fields: str) -> str:
        out = subprocess.run(
            [self.exe, f"--query-{what}={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            timeout=10,
        )
        if out.returncode != 0:
            msg = (out.stderr or out.stdout).decode("utf-8", "replace").strip()
            raise RuntimeError("nvidia-smi: " + (msg or f"exit {out.returncode}"))
        return out.stdout.decode("utf-8", "replace")

    def sample(self) -> tuple[list[dict], list[dict], str | None]:
        try:
            gpus = parse_smi_gpus(self._query("gpu", self.GPU_FIELDS))
            procs = parse_smi_apps(self._query("compute-apps", self.APP_FIELDS), gpus)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            text = str(exc)
            if "NVIDIA-SMI has failed" in text or "couldn't communicate" in text:
                text = f"no NVIDIA driver ({text})"
            return [], [], text
        return gpus, procs, None


def _smi_num(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]", "[Insufficient Permissions]"


def parse_smi_gpus(text: str) -> list[dict]:
    gpus = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) < 9:
            continue
        idx, total, used, free = (_smi_num(row[i]) for i in (0, 3, 4, 5))
        if idx is None or total is None:
            continue
        gpus.append(
            {
                "index": int(idx),
                "uuid": row[1].strip(),
                "name": row[2].strip(),
                "total_mib": int(total),
                "used_mib": None if used is None else int(used),
                "free_mib": None if free is None else int(free),
                "reserved_mib": None,
                "util_pct": _smi_num(row[6]),
                "temp_c": _smi_num(row[7]),
                "power_w": _smi_num(row[8]),
                "simulated": False,
            }
        )
    return gpus


def parse_smi_apps(text: str, gpus: list[dict]) -> list[dict]:
    by_uuid = {g["uuid"]: g["index"] for g in gpus}
    procs = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",", 3)]
        if len(parts) < 3:
            continue
        pid, used = _smi_num(parts[1]), _smi_num(parts[2])
        if pid is None:
            continue
        procs.append(
            {
                "gpu": by_uuid.get(parts[0], 0),
                "pid": int(pid),
                "used_mib": None if used is None else int(used),
                "type": "C",
                "simulated": False,
            }
        )
    return procs


# The GPU backends: each has name, simulated and sample(). Union, not |: this runs on 3.8.
Backend = Union[NoGpu, SimGpu, NvmlGpu, SmiGpu]  # noqa: UP007


def choose_backend(sim_gpu: str | None, force: str | None) -> Backend:
    if sim_gpu:
        return SimGpu(sim_gpu)
    if force != "nvidia-smi":
        try:
            import pynvml
        except ImportError:
            pynvml = None
        if pynvml is not None:
            return NvmlGpu(pynvml)
        if force == "nvml":
            return NoGpu("no NVIDIA driver: pynvml (nvidia-ml-py) is not importable")
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return NoGpu("no NVIDIA driver: pynvml is not importable and nvidia-smi is not on PATH")
    return SmiGpu(exe)


# -- one sample -------------------------------------------------------------------------------


class Sampler:
    def __init__(self, backend: Backend, ports: list[int], interval: float) -> None:
        self.backend = backend
        self.ports = ports
        self.interval = interval
        self.table = ProcTable()
        self.fds = FdScanner()
        self.port_sockets = PortSockets(ports)
        self.seq = 0
        self.host = socket.gethostname()

    def _local(self, pid: int) -> dict:
        p = self.table.procs.get(pid)
        if p is None:
            return {"pid": pid}
        return {
            "pid": pid,
            "title": self.table.title(pid),
            "ppid": p.ppid,
            "pgid": p.pgid,
            "start": p.start,
            "ancestors": self.table.ancestors(pid),
        }

    def sample(self) -> dict:
        t0 = time.perf_counter()
        c0 = _cpu_s()
        try:
            gpus, gproc, error = self.backend.sample()
        except Exception as exc:  # an odd driver or pynvml: report it, keep streaming
            gpus, gproc, error = [], [], f"{self.backend.name} backend failed: {exc!r}"
        table = self.table
        now = time.monotonic()
        table.refresh({r["pid"] for r in gproc} | set(self.fds.nvidia_holders()), now)
        vllm = []
        for pid in sorted(table.hot):
            role = table.procs[pid].role
            if role is not None:
                vllm.append((pid, role))
        vllm += vllm_helpers(table, vllm)
        vllm += dead_group_leaders(table, vllm)
        sockets = self.port_sockets.read(now)
        wanted = {inode for socks in sockets.values() for _, inode in socks}
        always = {r["pid"] for r in gproc} | {pid for pid, _ in vllm}
        self.fds.refresh(table, always, wanted, now)
        holders = self.fds.nvidia_holders()
        holder_set = set(holders)

        for row in gproc:
            info = table.describe(row["pid"])
            # NVML reports host pids; inside a container the same number may belong to an
            # unrelated local process, which then does not hold the device open.
            # Only where device files are seen at all (WSL, fakes: none) and every fd was
            # readable, so a missing holder really means another process.
            if (
                info["visible"]
                and holder_set
                and not self.backend.simulated
                and self.fds.unreadable == 0
                and row["pid"] not in holder_set
            ):
                info = {"visible": False, "pid_collision": True}
            row.update(info)

        ports = {}
        for port in self.ports:
            entry = {"pid": None, "state": None}  # type: dict
            for state, inode in sorted(sockets.get(port, []), key=lambda s: s[0] != _TCP_LISTEN):
                owner = self.fds.owner_of(inode)
                if owner is not None:
                    owner_proc = table.procs.get(owner)
                    entry = {
                        "pid": owner,
                        "state": "listen" if state == _TCP_LISTEN else "bound",
                        "pgid": owner_proc.pgid if owner_proc else None,
                    }
                    break
            ports[str(port)] = entry

        vrows = []
        for pid, (kind, details) in vllm:
            p = table.procs[pid]
            row = {
                "pid": pid,
                "kind": kind,
                "title": table.title(pid),
                "ppid": p.ppid,
                "pgid": p.pgid,
                "sid": p.sid,
                "start": p.start,
                "state": p.state,
                "ancestors": table.ancestors(pid),
                "stdout": self.fds.stdout_of(pid),
                "nvidia": pid in holder_set,
                "rss_mib": rss_mib(pid),
            }
            if kind == "api":  # what `ocrtui adopt` parses back into a [[models]] block
                row["argv"] = p.argv or []
            row.update(details)
            vrows.append(row)

        self.seq += 1
        return {
            "v": PROTOCOL_VERSION,
            "seq": self.seq,
            "t": round(time.time(), 3),
            "interval": self.interval,
            "host": self.host,
            "home": os.path.expanduser("~"),
            "agent_pid": os.getpid(),
            "python": ".".join(str(x) for x in sys.version_info[:3]),
            "backend": self.backend.name,
            "simulated": bool(self.backend.simulated),
            "error": error,
            "gpus": gpus,
            "procs": gproc,
            "ports": ports,
            "nvidia_holders": [self._local(pid) for pid in holders],
            "fd_unreadable": self.fds.unreadable,
            "vllm": vrows,
            "mem_available_mib": mem_available_mib(),
            "cost_ms": round((time.perf_counter() - t0) * 1000.0, 3),
            "cpu_ms": round((_cpu_s() - c0) * 1000.0, 3),
        }


def _cpu_s() -> float:
    t = os.times()
    # Children count too, so the nvidia-smi fallback's spawns show in the agent's cost
    # (os.times ticks are coarse; process_time is precise for our own CPU).
    return time.process_time() + t[2] + t[3]


# -- main loop ------------------------------------------------------------------------------


def _args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="ocrtui-agent")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--port", type=int, action="append", default=[])
    ap.add_argument("--sim-gpu", metavar="DIR")
    ap.add_argument("--backend", choices=["nvml", "nvidia-smi"])
    ap.add_argument("--count", type=int, default=0, help="exit after this many samples")
    args = ap.parse_args(argv)
    if not 0.25 <= args.interval <= 10:
        ap.error("--interval must be between 0.25 and 10 seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(sys.argv[1:] if argv is None else argv)
    # Default SIGPIPE handling would kill us silently mid-write; EPIPE is handled below.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parent = os.getppid()
    sampler = Sampler(choose_backend(args.sim_gpu, args.backend), args.port, args.interval)
    out = sys.stdout
    deadline = time.monotonic()
    while True:
        line = json.dumps(sampler.sample(), separators=(",", ":"))
        try:
            out.write(line + "\n")
            out.flush()
        except (BrokenPipeError, OSError):
            # The reader went away (dashboard closed, link dropped). Point stdout at
            # /dev/null so the interpreter's final flush does not complain on stderr.
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
            return 0
        if args.count and sampler.seq >= args.count:
            return 0
        # Our session ended without closing stdout (e.g. sshd died): do not linger.
        if os.getppid() != parent:
            return 0
        deadline += args.interval
        delay = deadline - time.monotonic()
        if delay < 0:
            deadline = time.monotonic()  # fell behind (suspended?): no burst to catch up
        else:
            time.sleep(delay)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
