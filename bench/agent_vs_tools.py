"""One agent sample on real NVML against the tools a user would run instead, same process set.

    python3 bench/agent_vs_tools.py [--samples 200]     # from the repo root, on a GPU machine

Self-contained (standard library, pynvml, and nvitop/torch when importable), so it runs on a
lent GPU machine without the project installed. Where torch is importable it first starts
one process holding 1 GiB of VRAM, so every tool has a process to attribute. Figures:

- agent_vs_nvidia_smi: wall ms of one agent sample (``Sampler.sample()`` in-process, NVML
  backend, no ports) vs one ``nvidia-smi --query-compute-apps=pid,used_memory`` call
  [ratio <= 0.05, i.e. >= 20x cheaper];
- agent_vs_nvitop: the same vs one nvitop snapshot through its Python API (every device's
  snapshot plus ``GpuProcess.take_snapshots`` of its processes) [ratio <= 1]; skipped when
  nvitop is not importable;
- agent_cpu_1hz_nvml: CPU of one sample as % of a core at 1 Hz [<= 0.5 %], baseline one
  nvidia-smi call's CPU.

Without pynvml or a driver it prints ``"skipped": "no GPU"`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jsonl

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "ocrtui" / "agent" / "agent.py"
HOLD = (
    "import torch, sys; x = torch.empty(1 << 30, dtype=torch.uint8, device='cuda:0'); "
    "torch.cuda.synchronize(); print('ready', flush=True); sys.stdin.read()"
)
BENCHES = ("agent_vs_nvidia_smi", "agent_vs_nvitop", "agent_cpu_1hz_nvml")


def load_agent() -> Any:
    spec = importlib.util.spec_from_file_location("ocrtui_agent", AGENT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(fn: Any, n: int) -> tuple[float, float]:
    """Median wall ms and mean CPU ms (own and children's) of fn()."""
    walls, cpus = [], []
    for _ in range(n):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t0) * 1000)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        child = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        cpus.append((time.process_time() - c0 + child) * 1000)
    return statistics.median(walls), statistics.mean(cpus)


def nvitop_snapshot() -> Any:
    from nvitop import Device, GpuProcess

    def snap() -> None:
        for dev in Device.all():
            dev.as_snapshot()
            GpuProcess.take_snapshots(dev.processes().values(), failsafe=True)

    return snap


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    smi = shutil.which("nvidia-smi")
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # ImportError, or NVMLError without a driver
        pynvml = None
    if smi is None or pynvml is None:
        for b in BENCHES:
            jsonl.skip(b, "no GPU")
        return 0
    holder = None
    if importlib.util.find_spec("torch") is not None:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None
        holder.stdout.readline()
    try:
        agent = load_agent()
        sampler = agent.Sampler(agent.NvmlGpu(pynvml), [], 1.0)
        for _ in range(5):  # the first samples read every process
            first = sampler.sample()
        procs = len(first["procs"])
        ours, ours_cpu = timed(sampler.sample, args.samples)
        argv = [smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader"]
        smi_wall, smi_cpu = timed(lambda: subprocess.run(argv, capture_output=True), 10)
        extra = {"gpu_procs": procs, "error": first["error"]}
        jsonl.emit("agent_vs_nvidia_smi", ours, smi_wall, 0.05, "ms/sample", False, **extra)
        try:
            snap = nvitop_snapshot()
            snap()
        except ImportError:
            jsonl.skip("agent_vs_nvitop", "nvitop not importable (pip install nvitop)")
        else:
            nv_wall, _ = timed(snap, 20)
            jsonl.emit("agent_vs_nvitop", ours, nv_wall, 1.0, "ms/sample", False, **extra)
        jsonl.emit("agent_cpu_1hz_nvml", ours_cpu / 10, smi_cpu / 10, 0.5, "% of a core",
                   False, goal_on="ours", **extra)  # fmt: skip
        return 0
    finally:
        if holder is not None:
            with contextlib.suppress(OSError):
                assert holder.stdin is not None
                holder.stdin.close()
            holder.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
