"""A demo-style pod for the live dashboard tests: a simulated GPU, a `vllm` shim that runs
the simulator (synthetic engine), and a config; plus the cleanup that kills every server
(and orphaned EngineCore) started against it, found by the environment the lifecycle gives
each server (``OCRTUI_SIM_GPU=<this pod's GPU dir>``) or by their working directory (this
pod's workdir): an EngineCore's title (setproctitle) overwrites its /proc environ."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

from ocrtui.config import Config, parse_config
from ocrtui.sim.gpu import SIM_GPU_ENV, SimGpu
from tests.plugins.sim import free_port, write_vllm_shim

SIM_FLAGS = ("--host", "127.0.0.1", "--engine", "synthetic", "--sim-startup-s", "0.5")


class LivePod:
    def __init__(self, root: Path) -> None:
        self.gpu = SimGpu.create(root / "gpu")
        self.shim = write_vllm_shim(root / "bin")
        self.workdir = root / "work"
        self.workdir.mkdir()
        self.root = root

    def config(self) -> Config:
        # Served names unique to this pod: the local agent sees every process on the
        # machine, and other tests may serve a "glm-ocr" of their own at the same time.
        tag = secrets.token_hex(3)
        common = {"max_model_len": 8192, "extra_args": list(SIM_FLAGS), "ready_timeout_s": 60.0}
        models = [
            {"name": f"glm-{tag}", "model": "zai-org/GLM-OCR", "port": free_port(),
             "gpu_memory_utilization": 0.40, "profile": "glm-ocr", "start_order": 1, **common},
            {"name": f"lighton-{tag}", "model": "lightonai/LightOnOCR-2-1B", "port": free_port(),
             "gpu_memory_utilization": 0.55, "profile": "lighton-ocr", "start_order": 2,
             **common},
        ]  # fmt: skip
        return parse_config(
            {
                "pod": {"kind": "local", "name": "demo-test", "workdir": str(self.workdir),
                        "vllm_command": [str(self.shim)], "sim_gpu": str(self.gpu.path),
                        "agent_interval_s": 0.25},
                "models": models,
                "compare": {"warm_runs": 1, "throughput_requests": 2, "concurrency": 2},
                "ui": {"refresh_s": 0.25, "screenshot_dir": str(self.root / "shots"),
                       "theme_dir": str(self.root / "themes")},
            },
            "live test config",
        )  # fmt: skip

    def server_pids(self) -> list[int]:
        needle = f"{SIM_GPU_ENV}={self.gpu.path}".encode()
        workdir = str(self.workdir)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
                cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and (needle in env or cwd == workdir):
                found.append(int(entry.name))
        return found

    def kill_all(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while pids := self.server_pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RuntimeError(f"servers survived SIGKILL: {pids}")
            time.sleep(0.05)
