"""GPU truth check: the agent and attribution against real NVML, nvidia-smi and a real leak.

Run on a GPU machine from the repo root::

    PYTHONPATH=. python3 bench/gpu_truth.py [--gib 4] [--interval 0.5]

Needs torch (CUDA) and pynvml (nvidia-ml-py); imports nothing else outside the standard
library but ``ocrtui.agent`` / ``ocrtui.monitor``. It starts an "API server" that binds a
port and spawns an "EngineCore" child holding real VRAM (title ``VLLM::EngineCore``), plus an
unrelated holder; streams the agent with real NVML; checks per-process memory against
``nvidia-smi --query-compute-apps`` (within 1%); SIGKILLs the server and expects the child
flagged ``orphan:<model>`` within 2 samples; kills the child and expects its memory released;
prints the agent's cost per sample next to one nvidia-smi call. PASS/FAIL lines; exit 1 on
any failure, 2 when there is no GPU to test. Bounded: gives up after 170 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# The imitation processes run from a copy of this file named `vllm`: they find the repo here.
ROOT = Path(os.environ.get("GPU_TRUTH_ROOT") or Path(__file__).resolve().parent.parent)
os.environ["GPU_TRUTH_ROOT"] = str(ROOT)
sys.path.insert(0, str(ROOT))

from ocrtui.monitor.agent_samples import AgentSample, parse_line  # noqa: E402
from ocrtui.monitor.attribution import (  # noqa: E402
    Attribution,
    LaunchRecord,
    ModelRef,
    attribute,
)

AGENT = ROOT / "ocrtui" / "agent" / "agent.py"
MODEL = "truth-model"
DEADLINE_S = 170.0
_failures: list[str] = []


def result(ok: bool, what: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}: {what}", flush=True)
    if not ok:
        _failures.append(what)
    return ok


# -- the imitation processes (this file re-executed under a role) ------------------------------


def _set_title(title: str) -> None:
    try:
        from setproctitle import setproctitle

        setproctitle(title)
    except ImportError:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, title.encode()[:15], 0, 0, 0)  # PR_SET_NAME: what comm and ps show


def _hold_vram(gib: float, device: int) -> object:
    import torch

    t = torch.empty(int(gib * (1 << 30)), dtype=torch.uint8, device=f"cuda:{device}")
    t.fill_(1)
    torch.cuda.synchronize()
    return t


def role_engine(gib: float) -> None:
    _set_title("VLLM::EngineCore")
    keep = _hold_vram(gib, 0)
    print("ready", flush=True)
    signal.pause()
    del keep


def role_server(argv: list[str]) -> None:
    opts = dict(zip(argv[1::2], argv[2::2], strict=False))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "engine", "--gib", opts["--gib"]],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        sys.exit("engine failed to start")
    print("ready", sock.getsockname()[1], child.pid, flush=True)
    signal.pause()


def role_other(gib: float, device: int) -> None:
    keep = _hold_vram(gib, device)
    print("ready", flush=True)
    signal.pause()
    del keep


# -- helpers ----------------------------------------------------------------------------------


class AgentStream:
    def __init__(self, interval: float, port: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                str(AGENT),
                "--interval",
                str(interval),
                "--port",
                str(port),
                "--backend",
                "nvml",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.samples: queue.Queue[AgentSample] = queue.Queue()
        self.all: list[AgentSample] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.samples.put(parse_line(line))

    def next(self, timeout: float) -> AgentSample:
        s = self.samples.get(timeout=timeout)
        self.all.append(s)
        return s

    def newest(self, timeout: float) -> AgentSample:
        """The latest sample, skipping those queued while the caller was busy (a count of
        samples "since" an action must start at the agent's present, not at its backlog)."""
        s = self.next(timeout)
        while True:
            try:
                s = self.next(0)
            except queue.Empty:
                return s

    def until(self, pred: Callable[[AgentSample], bool], timeout: float) -> AgentSample | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                s = self.next(max(0.1, end - time.monotonic()))
            except queue.Empty:
                return None
            if pred(s):
                return s
        return None


def smi_apps(exe: str) -> dict[tuple[str, int], int]:
    """nvidia-smi's rows keyed by (GPU uuid, pid): one process may hold memory on each GPU."""
    out = subprocess.run(
        [exe, "--query-compute-apps=gpu_uuid,pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    apps: dict[tuple[str, int], int] = {}
    for line in out.splitlines():
        uuid, pid, used = (x.strip() for x in line.split(",")[:3])
        if pid.isdigit() and used.isdigit():
            apps[(uuid, int(pid))] = int(used)
    return apps


def smi_cost(exe: str, n: int = 5) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        smi_apps(exe)
        walls.append((time.perf_counter() - t0) * 1000)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def start(argv: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split()


def labels(
    sample: AgentSample,
    refs: Sequence[ModelRef],
    launches: Sequence[LaunchRecord],
    known: Mapping[tuple[int, float], str],
) -> tuple[Attribution, dict[int, str | None]]:
    att = attribute(sample, refs, launches, known)
    return att, {r.pid: r.model for r in att.rows}


# -- the check --------------------------------------------------------------------------------


def check(gib: float, interval: float) -> None:
    t_start = time.monotonic()
    try:
        import pynvml
    except ImportError:
        print("FAIL: no NVIDIA driver: pynvml (nvidia-ml-py) is not importable")
        sys.exit(2)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        print(f"FAIL: no NVIDIA driver ({exc})")
        sys.exit(2)
    count = pynvml.nvmlDeviceGetCount()
    driver = pynvml.nvmlSystemGetDriverVersion()
    print(f"driver {driver}; {count} GPU(s); pynvml {getattr(pynvml, '__version__', '?')}")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        print("FAIL: nvidia-smi not on PATH (needed as the reference)")
        sys.exit(2)

    tmp = Path(tempfile.mkdtemp(prefix="gpu_truth_"))
    fake = tmp / "vllm"
    shutil.copy(__file__, fake)
    procs: list[subprocess.Popen[str]] = []
    engine_pid = None
    agent = None
    try:
        other, _ = start(
            [sys.executable, __file__, "--role", "other", "--gib", "1", "--device", str(count - 1)]
        )
        procs.append(other)
        # The port is only known once the server bound it; the agent is told it afterwards,
        # so a first agent (port 1) gives the "before" pid set of the launch bracket.
        probe = AgentStream(interval, 1)
        before = probe.until(lambda s: any(p.used_mib for p in s.procs), 60)
        probe.proc.kill()
        probe.proc.wait()
        if not result(before is not None, "agent sees the unrelated holder"):
            return
        assert before is not None
        server, line = start(
            [
                sys.executable,
                str(fake),
                "serve",
                "truth/model",
                "--port",
                "0",
                "--served-model-name",
                MODEL,
                "--gib",
                str(gib),
            ]
        )
        procs.append(server)
        if not result(line[:1] == ["ready"], f"server+engine started ({gib} GiB)"):
            return
        port, engine_pid = int(line[1]), int(line[2])
        refs = (ModelRef(MODEL, port),)
        agent = AgentStream(interval, port)
        first = agent.next(30)
        result(
            first.backend == "nvml" and first.error is None,
            f"agent on real NVML (backend {first.backend}, error {first.error})",
        )
        s = agent.until(lambda s: any(p.used_mib and p.used_mib > gib * 900 for p in s.procs), 60)
        if not result(s is not None, "engine memory visible to NVML"):
            return
        assert s is not None
        container = s.containerised
        print(f"pid namespace: {'container (NVML pids not visible here)' if container else 'host'}")
        launch = LaunchRecord(
            MODEL,
            frozenset(p.pid for p in before.procs),
            frozenset(p.pid for p in s.procs),
            server.pid,
        )
        launches = [launch]

        for g in s.gpus:
            print(
                f"GPU {g.index}: {g.name} {g.uuid} total {g.total_mib} MiB used {g.used_mib} MiB"
                f" free {g.free_mib} reserved {g.reserved_mib} util {g.utilization_pct}%"
                f" {g.temperature_c} C {g.power_w} W"
            )
        result(len(s.gpus) == count, f"agent reports all {count} GPU(s)")

        # per-process memory against nvidia-smi, read right after the same sample
        ref = smi_apps(smi)
        uuid_of = {g.index: g.uuid for g in s.gpus}
        rows = {(uuid_of.get(p.gpu, ""), p.pid): p.used_mib or 0 for p in s.procs}
        result(len(ref) >= 2, f"nvidia-smi lists the test processes ({len(ref)} rows)")
        for key in sorted(ref):
            got = rows.get(key)
            ok = got is not None and abs(got - ref[key]) <= max(1, 0.01 * ref[key])
            result(
                ok,
                f"pid {key[1]} on {key[0][:12]}: agent {got} MiB vs nvidia-smi {ref[key]} MiB"
                " (within 1%)",
            )
        result(set(ref) <= set(rows), "every nvidia-smi (GPU, process) row is an agent row")

        att, lab = labels(s, refs, launches, {})
        known = att.known
        mine = [pid for pid, m in lab.items() if m == MODEL]
        result(len(mine) >= 1, f"engine row labelled {MODEL!r}: {lab}")
        result(
            all(lab[p.pid] is None for p in s.procs if p.pid not in mine),
            "unrelated holder not labelled with the model",
        )

        # the seed's kill -9: the parent dies, the EngineCore keeps its memory
        last = agent.newest(10)
        _, lab = labels(last, refs, launches, known)
        known = attribute(last, refs, launches, known).known
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        killed_seq = last.seq
        flagged = None
        for _ in range(4):
            s = agent.next(10)
            att, lab = labels(s, refs, launches, known)
            known = att.known
            if any(o.model == MODEL for o in att.orphans):
                flagged = s
                break
        ok = flagged is not None and flagged.seq - killed_seq <= 2
        result(
            ok,
            f"EngineCore flagged orphan:{MODEL} within 2 samples of SIGKILL "
            f"(after {None if flagged is None else flagged.seq - killed_seq})",
        )
        if flagged is not None:
            att = attribute(flagged, refs, launches, known)
            print(f"orphans: {att.orphans}; labels {lab}")
            held = att.models[MODEL].orphan_mib
            result(held > gib * 900, f"orphan still holds {held} MiB after its parent died")

        used_before = (flagged or s).gpus[0].used_mib
        os.kill(engine_pid, signal.SIGKILL)
        engine_pid = None
        gone = agent.until(
            lambda s: (
                not any(o.model == MODEL for o in attribute(s, refs, launches).orphans)
                and s.gpus[0].used_mib < used_before - gib * 900
            ),
            30,
        )
        result(
            gone is not None,
            "memory released after killing the orphan"
            + (f" ({used_before} -> {gone.gpus[0].used_mib} MiB)" if gone else ""),
        )

        # cost: the agent's own figures over the run, against one nvidia-smi call
        costs = [x.cost_ms for x in agent.all[2:]] or [first.cost_ms]
        cpus = [x.cpu_ms for x in agent.all[2:]] or [first.cpu_ms]
        smi_wall, smi_cpu = smi_cost(smi)
        med, cpu = statistics.median(costs), statistics.median(cpus)
        print(
            f"agent per sample: wall {med:.2f} ms (max {max(costs):.2f}), CPU {cpu:.2f} ms; "
            f"at 1 Hz {cpu / 10:.2f}% of one core"
        )
        print(
            f"nvidia-smi --query-compute-apps: wall {smi_wall:.1f} ms, CPU {smi_cpu:.1f} ms "
            f"({smi_wall / max(med, 0.001):.0f}x the agent's wall time)"
        )
        result(med <= 5.0, f"agent sample <= 5 ms (median {med:.2f} ms)")
        result(cpu / 10 <= 1.0, f"agent CPU <= 1% of a core at 1 Hz ({cpu / 10:.2f}%)")
        result(time.monotonic() - t_start < DEADLINE_S, "finished within the time bound")
    finally:
        if agent is not None:
            agent.proc.kill()
            agent.proc.wait()
        if engine_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(engine_pid, signal.SIGKILL)
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["engine", "other"])
    ap.add_argument("--gib", type=float, default=4.0)
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.5)
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        role_server(sys.argv[2:])
        return 0
    args = ap.parse_args()
    if args.role == "engine":
        role_engine(args.gib)
        return 0
    if args.role == "other":
        role_other(args.gib, args.device)
        return 0
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("FAIL: time bound exceeded"))
    signal.alarm(int(DEADLINE_S) + 5)
    check(args.gib, args.interval)
    print(json.dumps({"failures": _failures}))
    print("RESULT:", "FAIL" if _failures else "PASS")
    return 1 if _failures else 0


if __name__ == "__main__":
    sys.exit(main())
