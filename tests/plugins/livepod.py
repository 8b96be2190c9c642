"""The demo's shape on a SimPod, for the live dashboard tests: GLM-OCR and LightOnOCR with
their profiles, started in that order, and a small comparison."""

from __future__ import annotations

import secrets

from ocrtui.config import Config, parse_config
from tests.plugins.sim_pod import SimPod


def two_model_config(sp: SimPod) -> Config:
    # Served names unique to this pod: the local agent sees every process on the machine,
    # and other tests may serve a "glm-ocr" of their own at the same time.
    tag = secrets.token_hex(3)
    models = [
        sp.model(f"glm-{tag}", profile="glm-ocr", start_order=1),
        sp.model(
            f"lighton-{tag}",
            model="lightonai/LightOnOCR-2-1B",
            gpu_memory_utilization=0.55,
            profile="lighton-ocr",
            start_order=2,
        ),
    ]
    return parse_config(
        {
            "pod": {"kind": "local", "name": "demo-test", **sp.pod_fields()},
            "models": models,
            "compare": {"warm_runs": 1, "throughput_requests": 2, "concurrency": 2},
            "ui": {
                "refresh_s": 0.25,
                "screenshot_dir": str(sp.root / "shots"),
                "theme_dir": str(sp.root / "themes"),
            },
        },
        "live test config",
    )
