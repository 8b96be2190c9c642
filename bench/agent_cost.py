"""What the pod agent costs per sample, against a poller that spawns a process per sample.

    PYTHONPATH=. python3 bench/agent_cost.py [--samples 40] [--backend sim|nvml]

Runs the real agent (as shipped: ``python3 -u -`` with the source on stdin) for N samples at
0.25 s, against a simulated GPU with a few live holders (or NVML where a driver exists), and
reads its own per-sample figures (wall ms, CPU ms; the NVML path spawns nothing). The
baseline, measured in the same run, is what a naive poller pays per sample: one ``ps`` call
(plus one ``nvidia-smi`` call where present). Goals: one sample <= 5 ms on a real GPU;
<= 1% of one core at 1 Hz.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "ocrtui" / "agent" / "agent.py"
HOLDER = "import os, sys, signal, json; print('ready', flush=True); signal.pause()"


def _child_cpu_ms() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000


def make_sim_gpu(tmp: Path, procs: list[subprocess.Popen[str]]) -> Path:
    gpu = tmp / "gpu"
    (gpu / "holders").mkdir(parents=True)
    (gpu / "device.json").write_text(
        json.dumps(
            {"index": 0, "uuid": "GPU-sim", "name": "NVIDIA A40 (simulated)", "total_mib": 46068}
        )
    )
    for mib in (18000, 25000, 700):
        p = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        procs.append(p)
        (gpu / "holders" / f"{p.pid}.json").write_text(
            json.dumps({"pid": p.pid, "used_mib": mib, "gpu": 0})
        )
    return gpu


def run_agent(n: int, extra: list[str]) -> tuple[list[dict[str, object]], float, float]:
    """Samples, total agent CPU ms (interpreter start included), wall seconds."""
    cpu0, t0 = _child_cpu_ms(), time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-u",
            "-",
            "--interval",
            "0.25",
            "--count",
            str(n),
            "--port",
            "8000",
            "--port",
            "8001",
            *extra,
        ],
        input=AGENT.read_text(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    wall = time.perf_counter() - t0
    return [json.loads(x) for x in out.stdout.splitlines()], _child_cpu_ms() - cpu0, wall


def baseline(argv: list[str], n: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(n):
        c0, t0 = _child_cpu_ms(), time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append(_child_cpu_ms() - c0)
    return statistics.median(walls), statistics.mean(cpus)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--backend", choices=["sim", "nvml"], default="sim")
    args = ap.parse_args()
    procs: list[subprocess.Popen[str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="agent_cost_"))
    try:
        extra = ["--backend", "nvml"]
        if args.backend == "sim":
            extra = ["--sim-gpu", str(make_sim_gpu(tmp, procs))]
        samples, total_cpu, wall = run_agent(args.samples, extra)
        first = samples[0]
        steady = samples[3:] or samples  # the first samples read every process's fds
        cost = statistics.median(float(s["cost_ms"]) for s in steady)  # type: ignore[arg-type]
        cpu = statistics.mean(float(s["cpu_ms"]) for s in steady)  # type: ignore[arg-type]
        nproc = len(os.listdir("/proc"))
        print(
            f"machine: {os.cpu_count()} CPUs, {nproc} /proc entries; python "
            f"{sys.version.split()[0]}; backend {first['backend']}"
            f"{' (simulated GPU)' if first['simulated'] else ''}; error: {first['error']}"
        )
        print(
            f"agent per sample: wall {cost:.2f} ms median, CPU {cpu:.2f} ms mean "
            f"(first sample {first['cost_ms']} ms)"
        )
        print(
            f"agent at 1 Hz: {cpu / 10:.3f}% of one core (steady state); whole process incl. "
            f"interpreter start: {total_cpu:.0f} ms CPU over {wall:.1f} s"
        )
        ps_wall, ps_cpu = baseline(["ps", "-eo", "pid,ppid,pgid,comm,args"], 10)
        print(
            f"baseline one `ps` per sample: wall {ps_wall:.2f} ms, CPU {ps_cpu:.2f} ms "
            f"-> agent uses {cpu / max(ps_cpu, 1e-6):.2f}x the CPU of a ps call"
        )
        smi = shutil.which("nvidia-smi")
        if smi:
            s_wall, s_cpu = baseline(
                [smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader"], 5
            )
            print(f"baseline one nvidia-smi per sample: wall {s_wall:.1f} ms, CPU {s_cpu:.1f} ms")
        goal_cpu = cpu / 10 <= 1.0
        print(f"{'PASS' if goal_cpu else 'FAIL'}: agent CPU <= 1% of one core at 1 Hz")
        if first["backend"] == "nvml" and not first["error"]:
            print(f"{'PASS' if cost <= 5 else 'FAIL'}: one NVML sample <= 5 ms")
        return 0 if goal_cpu else 1
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
