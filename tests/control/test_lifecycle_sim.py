"""Start, stop, restart and crash handling against the simulator, through LocalPod and SSH:
what only the simulator can show (simulated GPU memory, link drops, stage timing). What
holds for real vLLM as well is in tests/behaviour/, run against both.

The simulator behaves like vLLM where it matters here: the API server binds its port early
and listens once ready; its ``VLLM::EngineCore`` child holds the (simulated) GPU memory and
outlives a SIGKILL of the API server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ocrtui.control import Controller
from ocrtui.errors import LifecycleError
from ocrtui.status import Snapshot
from ocrtui.vllm.logfile import current_run
from ocrtui.vllm.probe import ModelProbe
from tests.plugins.processes import pid_alive
from tests.plugins.sim_pod import SimPod, StateLog, progress_log

pytestmark = pytest.mark.timeout(90)

MakeController = Callable[..., Any]


def _orphans(snap: Snapshot) -> list[str]:
    return [p.model for p in snap.processes if p.model and p.model.startswith("orphan:")]


async def test_up_from_a_fresh_controller_keeps_a_ready_server(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    model = sim_pod.model("glm")
    first: Controller = await make_controller(model)
    await first.up()
    pid = first.snapshot.model("glm").pid  # type: ignore[union-attr]
    # A new dashboard (or `ocrtui demo` again) asks for `up` before its first poll is in.
    second: Controller = await make_controller(model)
    steps, progress = progress_log()
    await second.up(progress)
    assert ("glm", "already ready") in steps
    assert second.snapshot.model("glm").pid == pid  # type: ignore[union-attr]
    assert pid is not None and pid_alive(pid)


async def test_up_in_start_order_states_in_order_then_healthy_restart(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    first = sim_pod.model("first", start_order=0)
    second = sim_pod.model(
        "second", model="lightonai/LightOnOCR-2-1B", gpu_memory_utilization=0.5, start_order=1
    )
    # File order says "first" last; start_order says it goes first.
    ctl: Controller = await make_controller(second, first)
    log_first, log_second = StateLog(ctl, "first"), StateLog(ctl, "second")
    steps, progress = progress_log()

    await ctl.up(progress)

    snap = ctl.snapshot
    assert [m.state for m in snap.models] == ["ready", "ready"]
    assert log_first.seen == ["down", "starting", "ready"]
    assert log_second.seen == ["down", "starting", "ready"]
    # "second" was launched only once "first" was ready.
    first_ready = steps.index(("first", "ready"))
    second_launch = next(i for i, (n, s) in enumerate(steps) if n == "second" and "launching" in s)
    assert second_launch > first_ready
    assert any(n == "first" and s.startswith("starting: ") for n, s in steps)
    # VRAM attributed to each model's tree, nothing orphaned.
    assert {p.model for p in snap.processes} == {"first", "second"}, snap.processes
    assert snap.gpus[0].simulated

    old_pid = snap.model("first").pid  # type: ignore[union-attr]
    await ctl.restart("first", progress)
    snap = ctl.snapshot
    new = snap.model("first")
    assert new is not None and new.state == "ready" and new.pid not in (None, old_pid)
    assert old_pid is not None and not pid_alive(old_pid)
    assert not _orphans(snap)
    assert snap.model("second").state == "ready"  # type: ignore[union-attr]


@pytest.fixture
def stranger() -> Iterator[int]:
    """A process unrelated to any model (to register as a GPU memory holder)."""
    proc = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


async def test_preflight_refusal_names_the_holder(
    make_controller: MakeController, sim_pod: SimPod, stranger: int
) -> None:
    # Something unrelated holds 30 GiB of the simulated A40: GLM-OCR's 0.40 no longer fits.
    sim_pod.gpu.hold(stranger, 30 * 1024)
    ctl: Controller = await make_controller(sim_pod.model("glm"))
    await ctl.wait_until(lambda s: any(p.pid == stranger for p in s.processes), 10)
    with pytest.raises(LifecycleError) as info:
        await ctl.up()
    err = info.value
    assert f"pid {stranger}" in err.message and "30720 MiB" in err.message
    assert "needs 18427 MiB" in err.message
    assert err.hint and "gpu_memory_utilization" in err.hint
    assert ctl.snapshot.model("glm").state == "down"  # type: ignore[union-attr]


async def test_stop_then_status_is_down_and_memory_free(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    ctl: Controller = await make_controller(sim_pod.model("glm"))
    await ctl.up()
    steps, progress = progress_log()
    await ctl.stop_model("glm", progress)
    assert sim_pod.gpu.used_mib() == 0
    assert ("glm", "waiting for VRAM release") in steps
    snap = await ctl.wait_until(
        lambda s: s.model("glm").state == "down" and s.model("glm").stage is None,  # type: ignore[union-attr]
        10,
    )
    assert not snap.processes
    # A stop on purpose is remembered in the log: a later poll still says down, not crashed.
    lines = await ctl.log_tail("glm", 40)
    assert current_run(lines)[1] == "stop"
    # The 1 Hz probes' access-log lines are left out of the tail the dashboard shows.
    raw = await ctl.pod.tail(str(sim_pod.workdir / "vllm_glm.log"), 10_000)
    assert any('"GET /health HTTP' in line for line in raw)
    assert not any('"GET /health HTTP' in line or "GET /metrics" in line for line in lines)


@pytest.mark.parametrize("transport", ["ssh"])
async def test_link_drop_keeps_the_verdict_and_recovers(
    make_controller: MakeController, sim_pod: SimPod, request: pytest.FixtureRequest
) -> None:
    sshd = request.getfixturevalue("sshd")
    ctl: Controller = await make_controller(sim_pod.model("glm"))
    await ctl.up()
    log = StateLog(ctl, "glm")
    sshd.stop()
    await ctl.wait_until(lambda s: s.pod.connection != "connected", 10)
    polls = ctl.watcher.polls
    sshd.start()
    snap = await ctl.wait_until(
        lambda s: s.pod.connection == "connected" and ctl.watcher.polls >= polls + 2, 15
    )
    assert snap.model("glm").state == "ready"  # type: ignore[union-attr]
    assert log.seen == ["ready"]  # never "starting" or "crashed" while the link was down


async def test_a_check_that_keeps_failing_says_so_on_the_card(
    make_controller: MakeController, sim_pod: SimPod, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctl: Controller = await make_controller(sim_pod.model("glm"))
    await ctl.up()

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in the probe")

    monkeypatch.setattr(ModelProbe, "poll", broken)
    snap = await ctl.wait_until(lambda s: s.model("glm").hint is not None, 15)  # type: ignore[union-attr]
    glm = snap.model("glm")
    assert glm is not None and glm.state == "ready"  # the last result, not a guess
    assert glm.hint == (
        "checking it failed (RuntimeError('a bug in the probe')); showing the last result"
    )


async def _ready_then_api_server_killed(
    make_controller: MakeController, sim_pod: SimPod
) -> tuple[Controller, Snapshot]:
    """glm up, then its API server SIGKILLed; the snapshot from before the kill."""
    ctl: Controller = await make_controller(sim_pod.model("glm"))
    await ctl.up()
    before = ctl.snapshot
    api_pid = before.model("glm").pid  # type: ignore[union-attr]
    assert api_pid is not None
    os.kill(api_pid, signal.SIGKILL)
    return ctl, before


async def test_while_a_restart_stops_the_model_the_card_drops_the_old_fix(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    ctl, _ = await _ready_then_api_server_killed(make_controller, sim_pod)
    # 45 s: seen to take over 15 s with four test workers on a loaded 2-core box.
    snap = await ctl.wait_until(lambda s: s.model("glm").state == "crashed", 45)  # type: ignore[union-attr]
    assert "Fix: restart the model" in (snap.model("glm").hint or "")  # type: ignore[union-attr]
    stopping: list[str | None] = []

    def on(s: Snapshot) -> None:
        m = s.model("glm")
        if m is not None and m.stage == "stopping":
            stopping.append(m.hint)

    unsubscribe = ctl.subscribe(on)
    await ctl.restart("glm")
    unsubscribe()
    # The restart being done is what the card says, not "restart the model".
    assert stopping and not any(stopping)


async def test_kill_orphans_frees_their_memory(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    ctl, before = await _ready_then_api_server_killed(make_controller, sim_pod)
    engine = next(p for p in before.processes if p.model == "glm")
    await ctl.wait_until(lambda s: "orphan:glm" in _orphans(s), 45)
    assert await ctl.kill_orphans("other-model") == []
    killed = dict(await ctl.kill_orphans("glm"))
    # The EngineCore holds the memory; its Worker and the resource tracker are killed too.
    assert killed.pop(engine.pid) == engine.used_mib and len(killed) == 2
    assert not any(killed.values())
    assert sim_pod.gpu.used_mib() == 0
    # The server we launched is gone without a stop: crashed, now with nothing leaked.
    snap = await ctl.wait_until(
        lambda s: not s.processes and s.model("glm").state == "crashed",  # type: ignore[union-attr]
        10,
    )
    assert "orphan" not in (snap.model("glm").hint or "")  # type: ignore[union-attr]


async def test_stop_returns_only_once_every_process_of_the_tree_has_exited(
    sim_pod: SimPod, tmp_path: Path
) -> None:
    exe = tmp_path / "lingering" / "vllm"
    exe.parent.mkdir()
    shutil.copy(Path(__file__).parent / "lingering_vllm.py", exe)
    config = sim_pod.config(sim_pod.model("slow"), vllm_command=(sys.executable, str(exe)))
    ctl = Controller(config)
    await ctl.start()
    try:
        assert ctl.lifecycle is not None
        api = await ctl.lifecycle.launch("slow")
        view = await ctl.monitor.wait_for(
            lambda v: (
                v.sample is not None
                and any(p.kind == "engine" and p.pgid == api for p in v.sample.vllm)
            ),
            15,
        )
        assert view.sample is not None
        engine = next(p.pid for p in view.sample.vllm if p.kind == "engine" and p.pgid == api)
        steps, progress = progress_log()
        await ctl.stop_model("slow", progress)
        assert steps[-1] == ("slow", "stopped")
        assert not pid_alive(api) and not pid_alive(engine)
    finally:
        await ctl.close()


async def test_a_restart_shows_the_elapsed_time_against_the_last_start(sim_pod: SimPod) -> None:
    slow = [*sim_pod.model("x")["extra_args"][:-1], "2.0"]  # --sim-startup-s 2.0
    ctl = Controller(sim_pod.config(sim_pod.model("glm", extra_args=slow)))
    await ctl.start()
    seen: list[tuple[str | None, float | None, float | None]] = []

    def on(snap: Snapshot) -> None:
        m = snap.model("glm")
        if m is not None and m.state == "starting":
            seen.append((m.stage, m.started_s, m.last_start_s))

    try:
        await ctl.up()
        assert all(last is None for _, _, last in seen)  # no start before this one
        seen.clear()
        unsubscribe = ctl.subscribe(on)
        await ctl.restart("glm")
        unsubscribe()
    finally:
        await ctl.close()
    assert any(started is not None for _, started, _ in seen)
    lasts = {last for _, _, last in seen if last is not None}
    assert lasts and all(last >= 1.0 for last in lasts)  # markers have whole seconds


@pytest.mark.parametrize("transport", ["local"])
async def test_a_stopped_server_is_stopped_without_waiting_for_sigkill(
    make_controller: MakeController, sim_pod: SimPod
) -> None:
    # A server stopped with SIGSTOP (^Z, a debugger) acts on SIGTERM only once continued:
    # the stop sends SIGCONT with it, as it does for services, instead of waiting the whole
    # stop timeout for SIGKILL.
    ctl: Controller = await make_controller(sim_pod.model("glm"))
    await ctl.up()
    api_pid = ctl.snapshot.model("glm").pid  # type: ignore[union-attr]
    assert api_pid is not None
    os.killpg(api_pid, signal.SIGSTOP)
    steps, progress = progress_log()
    await ctl.stop_model("glm", progress)
    assert not any("SIGKILL" in step for _, step in steps), steps
    assert steps[-1] == ("glm", "stopped") and not pid_alive(api_pid)
