"""bench/agent_vs_tools.py here: skipped without a GPU, and its whole run against the fake GPU
(tests/agent/fake_gpu), so its first run on a lent GPU machine is not its first run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bench
ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "agent_vs_tools.py"
FAKE = Path(__file__).parent / "fake_gpu"
BENCHES = ["agent_vs_nvidia_smi", "agent_vs_nvitop", "agent_cpu_1hz_nvml"]


def run(env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--samples", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_without_a_gpu_every_figure_is_skipped() -> None:
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != str(FAKE))
    lines = run({**os.environ, "PATH": path, "PYTHONPATH": ""})
    assert [(d["bench"], d["skipped"]) for d in lines] == [(b, "no GPU") for b in BENCHES]


def test_against_the_fake_gpu_each_figure_has_its_baseline(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FAKE_GPU_DIR": str(tmp_path),
        "PYTHONPATH": f"{FAKE}{os.pathsep}{ROOT}",
        "PATH": f"{FAKE}{os.pathsep}{os.environ['PATH']}",
    }
    lines = {d["bench"]: d for d in run(env)}
    assert sorted(lines) == sorted(BENCHES)
    smi = lines["agent_vs_nvidia_smi"]
    assert smi["gpu_procs"] == 1  # the bench's own VRAM holder, seen through NVML
    assert isinstance(smi["baseline"], float) and smi["baseline"] > 0
    ours, base, ratio = (float(smi[k]) for k in ("ours", "baseline", "ratio"))
    assert abs(ratio - ours / base) <= 1e-3 * max(1.0, ratio)  # printed rounded
    nvitop = lines["agent_vs_nvitop"]
    assert "skipped" in nvitop or nvitop["baseline"]
    assert lines["agent_cpu_1hz_nvml"]["goal_on"] == "ours"
