"""Fixtures for the services tests: the same tests run on LocalPod and through real sshd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ocrtui.config import Config, parse_config
from ocrtui.pod import Pod
from ocrtui.pod.local import LocalPod
from tests.plugins.sim import free_port

SERVICE_APP = str(Path(__file__).with_name("service_app.py"))


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


@pytest.fixture(params=["local", "ssh"])
async def pod(request: pytest.FixtureRequest) -> AsyncIterator[Pod]:
    p: Pod = LocalPod() if request.param == "local" else request.getfixturevalue("sshd").make_pod()
    await p.connect()
    try:
        yield p
    finally:
        await p.close()
