"""What the GPU-machine benches share: ocrtui's headless CLI, ``nvidia-smi``, the vLLM entry.

Standard library only (the GPU machine has no dev tools), for ``gpu_real_vllm.py``,
``gpu_restart.py`` and ``gpu_seed_models.py``:

- ``ocrtui(config, *args)`` runs ``python -m ocrtui --config CONFIG ARGS`` and reports the
  command, its exit code, time and last lines through ``say``;
- ``status(config)`` is ``status --json`` parsed ({} when it fails), ``model`` and ``rows``
  read a model's entry and the process rows from it, ``poll`` repeats it until a predicate
  holds or a deadline passes;
- ``smi_apps()`` is ``nvidia-smi --query-compute-apps`` as {pid: MiB}, ``have_gpu()`` whether
  it lists a GPU at all;
- ``vllm_entry(folder)`` writes the ``vllm`` script a config's ``vllm_command`` names: it runs
  vLLM's CLI from whatever ``PYTHONPATH`` the model's ``env`` gives it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Snapshot = dict[str, Any]


def have_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return probe.returncode == 0 and "GPU" in probe.stdout


def ocrtui(
    config: Path,
    *args: str,
    timeout: float = 600,
    say: Callable[[str], None] = print,
    tail: int = 10,
) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ocrtui", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    took = time.monotonic() - started
    say(f"$ ocrtui {' '.join(args)}  -> exit {proc.returncode} in {took:.1f} s")
    for line in (proc.stdout + proc.stderr).strip().splitlines()[-tail:] if tail else []:
        say(f"    {line}")
    return proc


def status(config: Path) -> Snapshot:
    proc = subprocess.run(
        [sys.executable, "-m", "ocrtui", "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        snap = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except json.JSONDecodeError:
        return {}
    return snap if isinstance(snap, dict) else {}


def model(snap: Snapshot, name: str) -> dict[str, Any]:
    return next((m for m in snap.get("models", []) if m["name"] == name), {})


def rows(snap: Snapshot) -> list[dict[str, Any]]:
    return list(snap.get("processes", []))


def poll(config: Path, pred: Callable[[Snapshot], bool], timeout: float) -> Snapshot:
    deadline = time.monotonic() + timeout
    snap: Snapshot = {}
    while time.monotonic() < deadline:
        snap = status(config)
        if pred(snap):
            return snap
    return snap


def smi_apps() -> dict[int, int]:
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
    ).stdout
    apps: dict[int, int] = {}
    for line in out.strip().splitlines():
        pid, mib = (x.strip() for x in line.split(","))
        apps[int(pid)] = apps.get(int(pid), 0) + int(mib)
    return apps


def vllm_entry(folder: Path) -> Path:
    """The ``vllm`` script for ``vllm_command``, run by this interpreter."""
    vllm = folder / "vllm"
    # vLLM spawns its EngineCore with multiprocessing "spawn", which re-imports __main__:
    # the guard keeps that import from starting a second CLI.
    vllm.write_text(
        f"#!{sys.executable}\nfrom vllm.entrypoints.cli.main import main\n"
        'if __name__ == "__main__":\n    main()\n'
    )
    vllm.chmod(0o755)
    return vllm
