"""Configs for the services tests: a local pod with one (never started) model and [[services]];
``SERVICE_APP`` is the small HTTP service they run (tests/services/service_app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrtui.config import Config, parse_config
from tests.plugins.sim import free_port

SERVICE_APP = str(Path(__file__).parents[1] / "services" / "service_app.py")


def services_config(services: list[dict[str, Any]], **extra: Any) -> Config:
    """A local-pod config with one (never started) model and these [[services]]."""
    data: dict[str, Any] = {
        "pod": {"kind": "local"},
        "models": [
            {"name": "m", "model": "x/m", "port": free_port(), "gpu_memory_utilization": 0.4}
        ],
        "services": services,
        **extra,
    }
    return parse_config(data, "test.toml")
