"""Sleep and wake (ocrtui/vllm/sleep.py) through the Controller, against the simulator on
its simulated GPU: the memory given back and taken again, what the snapshot shows, the
preflight counting a sleeper's wake-up need, and the servers that cannot sleep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ocrtui.control import Controller
from ocrtui.errors import LifecycleError
from ocrtui.status import Snapshot
from tests.plugins.sim_pod import SimPod, progress_log

pytestmark = [pytest.mark.timeout(90), pytest.mark.parametrize("transport", ["local"])]

MakeController = Callable[..., Any]
SLEEPY = "--enable-sleep-mode"


def held_mib(sim_pod: SimPod, ctl: Controller, name: str) -> int:
    """What the model's processes hold on the simulated GPU now (the holders' files)."""
    pids = {p.pid for p in ctl.snapshot.processes if p.owner == name}
    return sum(h.used_mib for h in sim_pod.gpu.holders() if h.pid in pids)


async def test_sleep_gives_memory_back_and_wake_takes_it_again(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    glm = sim_pod.model("glm")
    glm["extra_args"] = [*glm["extra_args"], SLEEPY]
    ctl: Controller = await make_controller(glm)
    await ctl.up()
    awake = ctl.snapshot.model("glm")
    assert awake is not None and awake.state == "ready" and not awake.sleeping
    planned = awake.planned_mib
    assert planned is not None and awake.used_mib == planned

    steps, progress = progress_log()
    await ctl.sleep("glm", 1, progress)
    assert steps == []  # started with the flag: no warning

    def asleep(s: Snapshot) -> bool:
        m = s.model("glm")
        return m is not None and m.given_back_mib is not None and m.used_mib < planned / 10

    snap = await ctl.wait_until(asleep, 15)
    m = snap.model("glm")
    assert m is not None and m.state == "ready" and m.sleep_level == 1
    assert m.given_back_mib == planned - m.used_mib
    assert m.sleep_text == f"sleeping (level 1), gave back {m.given_back_mib / 1024:.1f} GiB"
    assert [s.sleeping for s in snap.gpus[0].models] == [True]
    assert snap.to_json()["models"][0]["sleep_level"] == 1
    assert snap.gpus[0].free_mib >= sim_pod.gpu.total_mib - held_mib(sim_pod, ctl, "glm") - 1

    with pytest.raises(LifecycleError, match="asleep already"):
        await ctl.sleep("glm", 2)

    await ctl.wake("glm")
    snap = await ctl.wait_until(lambda s: s.model("glm").used_mib == planned, 15)  # type: ignore[union-attr]
    m = snap.model("glm")
    assert m is not None and m.sleep_level is None and m.given_back_mib is None
    with pytest.raises(LifecycleError, match="not asleep"):
        await ctl.wake("glm")


async def test_level_2_wakes_with_its_weights_reloaded(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    glm = sim_pod.model("glm")
    glm["extra_args"] = [*glm["extra_args"], SLEEPY]
    ctl: Controller = await make_controller(glm)
    await ctl.up()
    await ctl.sleep("glm", 2)
    assert ctl.watcher.status("glm").sleep_level == 2
    await ctl.wake("glm")
    assert ctl.watcher.status("glm").sleep_level is None
    log = (sim_pod.workdir / "vllm_glm.log").read_text()
    assert "Loading weights took" in log.split("It took")[-1]  # the reload, after the wake-up


async def test_the_preflight_keeps_a_sleepers_memory_for_its_wake_up(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    """GLM asleep gives 0.6 of the GPU back; a second model wanting 0.5 would fit, but then
    GLM could not wake: refused, naming GLM; once GLM is awake again the refusal is the
    plain free-memory one."""
    glm = sim_pod.model("glm", gpu_memory_utilization=0.6)
    glm["extra_args"] = [*glm["extra_args"], SLEEPY]
    other = sim_pod.model("other", gpu_memory_utilization=0.5, start_order=2)
    ctl: Controller = await make_controller(glm, other)
    await ctl.restart("glm")
    await ctl.sleep("glm")
    await ctl.wait_until(lambda s: bool(s.model("glm").given_back_mib), 15)  # type: ignore[union-attr]
    with pytest.raises(LifecycleError) as refused:
        await ctl.restart("other")
    assert "belong to the models asleep there" in refused.value.message
    assert "glm (" in refused.value.message and "ocrtui wake" in (refused.value.hint or "")
    assert ctl.snapshot.model("other").state == "down"  # type: ignore[union-attr]
    await ctl.wake("glm")
    assert ctl.watcher.status("glm").sleep_level is None


async def test_a_server_without_dev_mode_has_no_sleep_endpoint(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    glm = sim_pod.model("glm")  # no --enable-sleep-mode: no VLLM_SERVER_DEV_MODE either
    ctl: Controller = await make_controller(glm)
    await ctl.up()
    with pytest.raises(LifecycleError) as refused:
        await ctl.sleep("glm")
    assert "VLLM_SERVER_DEV_MODE=1" in refused.value.message
    assert "--enable-sleep-mode" in (refused.value.hint or "")
    assert not ctl.watcher.status("glm").sleeping


async def test_dev_mode_without_the_flag_pauses_but_gives_nothing_back(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    glm = sim_pod.model("glm", env={"VLLM_SERVER_DEV_MODE": "1"})
    ctl: Controller = await make_controller(glm)
    await ctl.up()
    steps, progress = progress_log()
    await ctl.sleep("glm", 1, progress)
    assert steps == [("glm", "warning: glm was not started with --enable-sleep-mode: it pauses "
                      "but gives no memory back")]  # fmt: skip
    m = ctl.watcher.status("glm")
    assert m.sleep_level == 1 and m.given_back_mib == 0
    await ctl.wake("glm")
