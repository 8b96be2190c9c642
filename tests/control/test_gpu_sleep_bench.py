"""bench/gpu_sleep.py end to end here, against the simulator (``--sim``): its whole run
(sleep, the waiting request, wake, level 2 with the reload, the preflight's refusal, the
forced start and the failed wake-up) passes, so the run with real vLLM on a GPU is not its
first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]


def test_the_sleep_bench_passes_on_the_simulator(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_sleep.py"), "--out", str(tmp_path), "--sim"],
        capture_output=True,
        text=True,
        timeout=220,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["failures"] == [] and summary["sim"] is True
    m = summary["measured"]
    assert m["S asleep (1) MiB"] < m["S awake MiB"] / 4 <= m["S woken MiB"]
    assert (tmp_path / "gpu_sleep.txt").read_text().count("PASS: ") == 14
