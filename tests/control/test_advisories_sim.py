"""Advisories wired from the Controller: the probe of a server that became ready, into the
snapshot (`status --json`, the text status) and the preflight's progress lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ocrtui.control import Controller
from ocrtui.headless import format_status
from ocrtui.vllm import served as served_module
from ocrtui.vllm.advisories import probe_pod
from tests.plugins.sim_pod import SIM_FLAGS, SimPod, progress_log

pytestmark = pytest.mark.timeout(90)

LOOP = "lighton-vllm-0.27.1-loops"


@pytest.mark.parametrize("transport", ["local"])
async def test_a_server_on_vllm_0_27_1_shows_the_lighton_loop_advisory(
    make_controller: Callable[..., Any], sim_pod: SimPod, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: list[int | None] = []

    async def counting_probe(
        pod: Any, pod_config: Any, model: Any, server_pid: int | None = None
    ) -> Any:
        probed.append(server_pid)
        return await probe_pod(pod, pod_config, model, server_pid)

    monkeypatch.setattr(served_module, "probe_pod", counting_probe)
    model = sim_pod.model(
        "lighton",
        model="lightonai/LightOnOCR-2-1B",
        profile="lighton-ocr",
        extra_args=[*SIM_FLAGS, "--sim-vllm-version", "0.27.1"],
    )
    ctl: Controller = await make_controller(model)
    steps, progress = progress_log()
    await ctl.up(progress)
    # The preflight checks the planned argv against the card's serve flags.
    assert ("lighton", "warning: lighton is served without --mm-processor-cache-gb 0: no "
            "multi-modal processor cache: pages never repeat, and the default keeps 4 GiB of "
            "host RAM per API server") in steps  # fmt: skip
    assert not any(LOOP in step for _, step in steps)  # the pod's environment has no vLLM

    def advised(snap: Any) -> bool:
        m = snap.model("lighton")
        return m is not None and any(a.key == LOOP for a in m.advisories)

    snap = await ctl.wait_until(advised, 30)
    (status,) = snap.to_json()["models"]
    loop = next(a for a in status["advisories"] if a["key"] == LOOP)
    assert loop["severity"] == "warning" and "github.com/lightonai/LightOnOCR" in loop["source"]
    assert loop["text"].startswith("lighton (vllm 0.27.1): vLLM 0.27.1 makes every LightOnOCR")
    assert f"  warning: {loop['text']}" in format_status(snap).splitlines()
    # Once per server, not on every poll.
    for _ in range(3):
        await ctl.watcher.wait_model("lighton", lambda _s: True, 10)
    assert probed == [snap.model("lighton").pid]  # type: ignore[union-attr]
    served = await ctl.served("lighton")
    assert served is not None and served.server_argv is not None
    assert "--sim-vllm-version" in served.server_argv  # the running server's own argv

    await ctl.stop_model("lighton")
    gone = await ctl.wait_until(lambda s: not s.model("lighton").advisories, 30)  # type: ignore[union-attr]
    assert gone.model("lighton").state == "down"  # type: ignore[union-attr]
