"""A data-parallel model (``--data-parallel-size 2``) on a simulated pod of two GPUs: each
rank's ``VLLM::EngineCore_DP<i>`` is the model's on its own GPU, a restart replaces the whole
server, and ``kill -9`` of its API server leaves every rank (and the ``VLLM::APIServer_<i>``
processes holding the port) an orphan that is found and killed."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ocrtui.control import Controller
from ocrtui.sim.gpu import A40_TOTAL_MIB, SimGpu
from ocrtui.status import Snapshot
from tests.plugins.processes import pid_alive
from tests.plugins.sim_pod import SIM_FLAGS, SimPod

pytestmark = pytest.mark.timeout(120)

PER_RANK_MIB = int(0.4 * A40_TOTAL_MIB)


def _ranks(snap: Snapshot, label: str = "dp") -> list[tuple[int, str]]:
    return sorted((p.gpu, p.title) for p in snap.processes if p.model == label)


RANKS = [(0, "VLLM::EngineCore_DP0"), (1, "VLLM::EngineCore_DP1")]


@pytest.fixture
async def dp_controller(sim_pod: SimPod) -> AsyncIterator[tuple[Controller, dict[str, Any]]]:
    SimGpu.create(sim_pod.gpu.path, count=2)
    model = sim_pod.model("dp", extra_args=[*SIM_FLAGS, "--data-parallel-size", "2"])
    ctl = Controller(sim_pod.config(model))
    await ctl.start()
    try:
        await ctl.up()
        yield ctl, model
    finally:
        await ctl.close()


async def test_both_ranks_are_attributed_and_a_restart_replaces_the_whole_server(
    dp_controller: tuple[Controller, dict[str, Any]],
) -> None:
    ctl, _ = dp_controller
    snap = await ctl.wait_until(lambda s: _ranks(s) == RANKS, 15)
    assert [(g.index, g.planned_mib) for g in snap.gpus] == [(0, PER_RANK_MIB), (1, PER_RANK_MIB)]
    dp = snap.model("dp")
    assert dp is not None and dp.state == "ready"
    assert (dp.planned_mib, dp.used_mib) == (2 * PER_RANK_MIB, 2 * PER_RANK_MIB)
    old = {p.pid for p in snap.processes} | {dp.pid}

    await ctl.restart("dp")

    snap = await ctl.wait_until(
        lambda s: _ranks(s) == RANKS and not old & {p.pid for p in s.processes}, 15
    )
    assert snap.model("dp").state == "ready"  # type: ignore[union-attr]
    assert not [pid for pid in old if pid is not None and pid_alive(pid)]
    assert snap.orphans == ()


async def test_kill_9_of_the_server_leaves_each_rank_an_orphan_that_is_killed(
    dp_controller: tuple[Controller, dict[str, Any]], sim_pod: SimPod
) -> None:
    ctl, model = dp_controller
    snap = await ctl.wait_until(lambda s: _ranks(s) == RANKS, 15)
    server = snap.model("dp").pid  # type: ignore[union-attr]
    assert server is not None
    os.kill(server, signal.SIGKILL)

    snap = await ctl.wait_until(lambda s: _ranks(s, "orphan:dp") == RANKS, 15)
    leaked = {o.title for o in snap.orphans if o.model == "dp"}
    assert {
        "VLLM::EngineCore_DP0",
        "VLLM::EngineCore_DP1",
        "VLLM::Worker_DP0",
        "VLLM::Worker_DP1",
        "VLLM::APIServer_0",
        "VLLM::APIServer_1",
        "VLLM::DPCoordinator",
    } <= leaked
    killed = dict(await ctl.kill_orphans("dp"))
    assert sorted(mib for mib in killed.values() if mib) == [PER_RANK_MIB, PER_RANK_MIB]
    assert (sim_pod.gpu.used_mib(0), sim_pod.gpu.used_mib(1)) == (0, 0)
    assert not [pid for pid in killed if pid_alive(pid)]
    # The API server processes held the port; it is free again (for a server that binds as
    # vLLM does, past connections in TIME_WAIT).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", model["port"]))


async def test_a_restart_after_kill_9_clears_every_rank_s_leftovers_and_starts_whole(
    dp_controller: tuple[Controller, dict[str, Any]],
) -> None:
    ctl, _ = dp_controller
    snap = await ctl.wait_until(lambda s: _ranks(s) == RANKS, 15)
    os.kill(snap.model("dp").pid, signal.SIGKILL)  # type: ignore[arg-type,union-attr]
    snap = await ctl.wait_until(lambda s: _ranks(s, "orphan:dp") == RANKS, 15)
    leaked = {o.pid for o in snap.orphans}

    await ctl.restart("dp")  # the leaked APIServer_<i> held the port: they go first

    snap = await ctl.wait_until(lambda s: _ranks(s) == RANKS and not s.orphans, 15)
    assert snap.model("dp").state == "ready"  # type: ignore[union-attr]
    assert not [pid for pid in leaked if pid_alive(pid)]
