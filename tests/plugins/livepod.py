"""A demo-style pod for the live dashboard tests: a simulated GPU, a `vllm` shim that runs
the simulator (synthetic engine), and a config; plus the cleanup that kills every server
(and orphaned EngineCore) started against it: they all write their logs in its workdir."""

from __future__ import annotations

import secrets
from pathlib import Path

from ocrtui.config import Config, parse_config
from ocrtui.sim.gpu import SimGpu
from tests.plugins.reaper import kill_writing_under
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

    def kill_all(self) -> None:
        kill_writing_under(self.workdir)
