"""The ``vllm`` shim of tests/plugins/sim.py runs the simulator of the checkout under test,
whatever the environment it is started in (a command through the sshd inherits nothing)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.plugins.sim import write_vllm_shim


def test_the_shim_runs_this_checkouts_ocrtui_before_any_other(tmp_path: Path) -> None:
    # Another tree's ocrtui first on the path: what `python -m ocrtui` finds over SSH when
    # the venv's editable install points at another clone.
    other = tmp_path / "other-clone" / "ocrtui"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    (other / "__main__.py").write_text("print('another tree')\n")
    shim = write_vllm_shim(tmp_path / "bin")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(other.parent)}
    out = subprocess.run(
        [str(shim), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "another tree" not in out.stdout
    assert "usage: vllm" in out.stdout
