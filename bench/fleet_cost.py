"""What several pods, or several GPUs on one pod, cost on the operator's machine (issue #25).

    .venv/bin/python bench/fleet_cost.py [--seconds 15] [--part pods|gpus|all]

Pods (``--part pods``): 1, 2 and 4 pods.

Controllers: N pods of a ``[[pods]]`` config, each a LocalPod with its own simulated GPU
(three holders), its agent at 1 Hz and its model watcher (one model, down), all started by
one FleetController; CPU of this process plus the agents (reaped children) over the run,
start and close included. Dashboard: the app over N replayed pods, each publishing a new
snapshot a second (tui_common's moving numbers), with the fleet screen shown, then with one
pod's dashboard shown. Figures (baseline: one pod, measured in the same run):

- fleet_controllers_cpu_{2,4}_pods: % of a core, baseline 1 pod [ratio <= 1.2 x N: each pod
  costs what one costs, nothing grows with the others];
- fleet_screen_cpu_{2,4}_pods: % of a core with the fleet screen shown, baseline the
  one-pod dashboard [ratio <= 1.2 x N];
- fleet_dashboard_cpu_{2,4}_pods: % of a core with one pod's dashboard shown among N,
  baseline the one-pod dashboard [ratio <= 1.2: hidden pods' screens do not refresh].

GPUs (``--part gpus``): one pod whose simulated GPU directory holds 1, 2 and 8 devices (the
agent reports a row per device), each device with the three holders and one model pinned to
it (``CUDA_VISIBLE_DEVICES``); the dashboard over a replayed pod with as many GPU rows, each
with the moving numbers' processes. Figures (baseline: 1 GPU, measured in the same run):

- gpus_controller_cpu_{2,8}_gpus: % of a core of the controller and its agent [ratio <= 1.2 x
  N: a device costs what the first one costs];
- gpus_dashboard_cpu_{2,8}_gpus: % of a core of the dashboard [ratio <= 1.2 x N].
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonl
from tui_common import SIZE, config, cpu_s, publish_next, snapshot

from ocrtui.config import Config, parse_config, parse_fleet
from ocrtui.control import FleetController
from ocrtui.sim.gpu import SimGpu
from ocrtui.status import Snapshot
from ocrtui.tui.app import OcrtuiApp
from ocrtui.tui.screens.dashboard import DashboardScreen
from ocrtui.tui.screens.fleet import FleetScreen
from ocrtui.tui.source import PodSlot, ReplaySource

PODS = (1, 2, 4)
GPUS = (1, 2, 8)
HOLDER = "import signal; print('ready', flush=True); signal.pause()"


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _holders(gpu: SimGpu, procs: list[subprocess.Popen[str]], device: int = 0) -> None:
    for mib in (18000, 25000, 700):
        p = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        procs.append(p)
        gpu.hold(p.pid, mib, gpu=device)


def pods_config(tmp: Path, n: int, procs: list[subprocess.Popen[str]]) -> dict[str, Any]:
    pods = []
    for k in range(n):
        gpu = SimGpu.create(tmp / f"gpu-{k}")
        _holders(gpu, procs)
        work = tmp / f"work-{k}"
        work.mkdir()
        pods.append(
            {
                "name": f"pod-{k}",
                "kind": "local",
                "workdir": str(work),
                "sim_gpu": str(gpu.path),
                "models": [
                    {
                        "name": f"model-{k}",
                        "model": "org/model",
                        "port": 39000 + k,
                        "gpu_memory_utilization": 0.4,
                    }
                ],
            }
        )
    return {"pods": pods}


def gpus_config(tmp: Path, n: int, procs: list[subprocess.Popen[str]]) -> dict[str, Any]:
    """One pod whose simulated GPU holds ``n`` devices, three holders and a model on each."""
    gpu = SimGpu.create(tmp / "gpu", count=n)
    for k in range(n):
        _holders(gpu, procs, k)
    work = tmp / "work"
    work.mkdir()
    models = [
        {"name": f"model-{k}", "model": "org/model", "port": 39000 + k,
         "gpu_memory_utilization": 0.4, "env": {"CUDA_VISIBLE_DEVICES": str(k)}}
        for k in range(n)
    ]  # fmt: skip
    pod = {"name": "pod-0", "kind": "local", "workdir": str(work), "sim_gpu": str(gpu.path)}
    return {"pods": [{**pod, "models": models}]}


async def controllers_cpu(
    n: int,
    seconds: float,
    config: Callable[[Path, int, list[subprocess.Popen[str]]], dict[str, Any]] = pods_config,
    gpus_per_pod: int = 1,
) -> float:
    """% of a core: this process and the agents, the ``config`` of N pods (or GPUs) for
    ``seconds``; each pod's agent must have reported ``gpus_per_pod`` devices."""
    tmp = Path(tempfile.mkdtemp(prefix="ocrtui-fleet-bench-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        fleet = parse_fleet(config(tmp, n, procs), "bench")
        start_self, start_children, t0 = cpu_s(), _children_cpu_s(), time.monotonic()
        ctl = FleetController(fleet)
        try:
            failed = await ctl.start()
            assert not failed, failed
            await asyncio.sleep(seconds)
            seen = [len(c.snapshot.gpus) for c in ctl.controllers.values()]
            assert seen == [gpus_per_pod] * len(seen), seen
        finally:
            await ctl.close()
        used = cpu_s() - start_self + _children_cpu_s() - start_children
        return used / (time.monotonic() - t0) * 100
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def pod_config(tmp: Path, k: int) -> Config:
    models = [
        {"name": f"{n}-{k}", "model": f"org/{n}", "port": 8000 + i, "gpu_memory_utilization": u}
        for i, (n, u) in enumerate((("glm-ocr", 0.40), ("lighton-ocr", 0.55)))
    ]
    ui = {"screenshot_dir": str(tmp), "theme_dir": str(tmp)}
    return parse_config({"pod": {"kind": "local", "name": f"pod-{k}"}, "models": models, "ui": ui},
                        "bench")  # fmt: skip


async def dashboard_cpu(n: int, seconds: float, *, fleet_shown: bool) -> float:
    """% of a core of the app over N replayed pods, each publishing once a second."""
    tmp = Path(tempfile.mkdtemp(prefix="ocrtui-fleet-bench-"))
    sources = [ReplaySource([snapshot(0)], logs={"glm-ocr-0": ["INFO started"] * 50})
               for _ in range(n)]  # fmt: skip
    more = [PodSlot(pod_config(tmp, k), sources[k]) for k in range(1, n)]
    app = OcrtuiApp(pod_config(tmp, 0), sources[0], state_path=tmp / "s.toml", more_pods=more)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            if n > 1 and not fleet_shown:
                app.show_pod("pod-0")
            want = FleetScreen if n > 1 and fleet_shown else DashboardScreen
            while not isinstance(app.screen, want):
                await pilot.pause(0.05)
            await asyncio.sleep(1.0)  # start-up work done before measuring
            start = cpu_s()
            for tick in range(int(seconds)):
                for source in sources:
                    publish_next(source, tick + 1)
                await asyncio.sleep(1.0)
            used = cpu_s() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return used / int(seconds) * 100


def gpus_snapshot(tick: int, n: int) -> Snapshot:
    """tui_common's moving pod with ``n`` GPU rows, each with its own processes."""
    one = snapshot(tick)
    (gpu,) = one.gpus
    gpus = tuple(replace(gpu, index=k, uuid=f"GPU-{k}") for k in range(n))
    procs = tuple(replace(p, gpu=k, pid=p.pid + 100 * k) for k in range(n) for p in one.processes)
    return replace(one, gpus=gpus, processes=procs)


async def gpus_dashboard_cpu(n: int, seconds: float) -> float:
    """% of a core of the dashboard over one replayed pod with N GPUs, publishing once a
    second."""
    tmp = Path(tempfile.mkdtemp(prefix="ocrtui-fleet-bench-"))
    source = ReplaySource([gpus_snapshot(0, n)], logs={"glm-ocr": ["INFO started"] * 50})
    app = OcrtuiApp(config(tmp), source, state_path=tmp / "s.toml")
    try:
        async with app.run_test(size=SIZE) as pilot:
            while not isinstance(app.screen, DashboardScreen):
                await pilot.pause(0.05)
            await asyncio.sleep(1.0)  # start-up work done before measuring
            start = cpu_s()
            for tick in range(int(seconds)):
                source.publish(gpus_snapshot(tick + 1, n))
                await asyncio.sleep(1.0)
            used = cpu_s() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return used / int(seconds) * 100


def pods_part(seconds: float) -> None:
    ctl = {n: asyncio.run(controllers_cpu(n, seconds)) for n in PODS}
    single = asyncio.run(dashboard_cpu(1, seconds, fleet_shown=False))
    for n in PODS[1:]:
        jsonl.emit(f"fleet_controllers_cpu_{n}_pods", ctl[n], ctl[1], 1.2 * n, "% of a core",
                   False, pods=n, seconds=seconds, baseline_is="1 pod")  # fmt: skip
        fleet = asyncio.run(dashboard_cpu(n, seconds, fleet_shown=True))
        jsonl.emit(f"fleet_screen_cpu_{n}_pods", fleet, single, 1.2 * n, "% of a core", False,
                   pods=n, seconds=seconds, baseline_is="the one-pod dashboard")  # fmt: skip
        one = asyncio.run(dashboard_cpu(n, seconds, fleet_shown=False))
        jsonl.emit(f"fleet_dashboard_cpu_{n}_pods", one, single, 1.2, "% of a core", False,
                   pods=n, seconds=seconds, baseline_is="the one-pod dashboard")  # fmt: skip


def gpus_part(seconds: float) -> None:
    ctl = {n: asyncio.run(controllers_cpu(n, seconds, gpus_config, n)) for n in GPUS}
    dash = {n: asyncio.run(gpus_dashboard_cpu(n, seconds)) for n in GPUS}
    for n in GPUS[1:]:
        jsonl.emit(f"gpus_controller_cpu_{n}_gpus", ctl[n], ctl[1], 1.2 * n, "% of a core",
                   False, gpus=n, seconds=seconds, baseline_is="1 GPU")  # fmt: skip
        jsonl.emit(f"gpus_dashboard_cpu_{n}_gpus", dash[n], dash[1], 1.2 * n, "% of a core",
                   False, gpus=n, seconds=seconds, baseline_is="1 GPU")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--part", choices=("pods", "gpus", "all"), default="all")
    args = ap.parse_args()
    if args.part in ("pods", "all"):
        pods_part(args.seconds)
    if args.part in ("gpus", "all"):
        gpus_part(args.seconds)


if __name__ == "__main__":
    main()
