"""A comparison started right after the Controller (``ocrtui compare --headless`` against
servers already up) records what each arm runs: the probe waits for the watcher's first
verdict instead of reading "not probed" while no round is decided yet, and the arm's vLLM
version is the running server's own /version when the pod's ``python`` has none."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ocrtui.compare.arms import arm_record
from ocrtui.control import Controller
from ocrtui.pod.local import LocalPod
from ocrtui.status import ModelStatus
from ocrtui.vllm.served import ServedWatch
from tests.plugins.sim_pod import SIM_FLAGS, SimPod

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("transport", ["local"])
async def test_a_fresh_controller_records_the_ready_servers_version_and_flags(
    make_controller: Callable[..., Any], sim_pod: SimPod
) -> None:
    model = sim_pod.model(
        "lighton",
        model="lightonai/LightOnOCR-2-1B",
        profile="lighton-ocr",
        extra_args=[*SIM_FLAGS, "--sim-vllm-version", "0.27.1"],
    )
    first: Controller = await make_controller(model)
    await first.up()
    # A second Controller, as `ocrtui compare --headless` starts one: asked at once.
    ctl: Controller = await make_controller(model)
    served = await ctl.served("lighton")
    assert served is not None, "the ready server was not probed"
    assert served.versions.vllm is None  # the pod's python imports no vLLM here
    assert served.versions.get("vllm") == "0.27.1"  # the server's own /version
    record = arm_record(ctl.config.model("lighton"), ctl.config.compare, served)
    assert "serve flags unknown" not in record.label
    assert record.label.endswith("vLLM 0.27.1")
    assert record.versions.server_vllm == "0.27.1"
    assert any(a.key == "lighton-vllm-0.27.1-loops" for a in record.advisories)


class SilentWatcher:
    """A watcher whose agent never reports: every model down, no informed round."""

    informed_polls = 0

    def __init__(self) -> None:
        self.waits = 0

    def status(self, name: str) -> ModelStatus:
        return ModelStatus(name, 1, "down", None)

    async def wait_informed(self, timeout: float) -> None:
        self.waits += 1
        raise TimeoutError


async def test_a_pod_whose_agent_says_nothing_costs_one_wait_for_all_models(
    sim_pod: SimPod,
) -> None:
    config = sim_pod.config(sim_pod.model("a"), sim_pod.model("b"))
    watcher = SilentWatcher()
    served = ServedWatch(config, LocalPod(), watcher, lambda: None)  # type: ignore[arg-type]
    try:
        assert await asyncio.gather(served.inspect("a"), served.inspect("b")) == [None, None]
        assert await served.inspect("a") is None
        assert watcher.waits == 1
    finally:
        await served.close()
