"""The one output format of every benchmark: a JSON line per figure, with its baseline.

    {"bench": str, "ours": float, "baseline": float | null, "ratio": ours / baseline,
     "unit": str, "goal": float, "goal_on": "ratio" | "ours", "higher_is_better": bool,
     "goal_met": bool, "machine": str, ...extra}

``ratio`` is always ``ours / baseline`` (so "20x cheaper than nvidia-smi" is a goal of
``ratio <= 0.05``). ``goal_on`` says whether the goal bounds the ratio or our own figure;
``higher_is_better`` says which way. A figure that cannot be measured here is one line with
``"skipped": reason``. Standard library only, so the GPU-machine scripts can use it as is.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from typing import Any


@functools.cache
def machine() -> str:
    """CPU model, cores, and the GPUs' names where nvidia-smi answers."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = " ".join(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    out = f"{model}, {os.cpu_count()} cores"
    gpus = gpu_names()
    if gpus:
        out += ", " + ", ".join(f"{n}x {name}" for name, n in _count(gpus))
    return out


@functools.cache
def gpu_names() -> tuple[str, ...]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        res = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    if res.returncode != 0:
        return ()
    return tuple(x.strip() for x in res.stdout.splitlines() if x.strip())


def _count(names: tuple[str, ...]) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return list(seen.items())


def emit(
    bench: str,
    ours: float,
    baseline: float | None,
    goal: float,
    unit: str,
    higher_is_better: bool,
    goal_on: str = "ratio",
    **extra: Any,
) -> dict[str, Any]:
    """Print one figure as a JSON line and return it."""
    ratio = ours / baseline if baseline else None
    value = ratio if goal_on == "ratio" else ours
    met = None if value is None else (value >= goal if higher_is_better else value <= goal)
    line = {
        "bench": bench,
        "ours": round(ours, 4),
        "baseline": None if baseline is None else round(baseline, 4),
        "ratio": None if ratio is None else round(ratio, 4),
        "unit": unit,
        "goal": goal,
        "goal_on": goal_on,
        "higher_is_better": higher_is_better,
        "goal_met": met,
        "machine": machine(),
        **extra,
    }
    _print(line)
    return line


def skip(bench: str, reason: str, **extra: Any) -> dict[str, Any]:
    line = {"bench": bench, "skipped": reason, "machine": machine(), **extra}
    _print(line)
    return line


def _print(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    sys.stdout.flush()
