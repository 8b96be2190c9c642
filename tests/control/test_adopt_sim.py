"""``ocrtui adopt`` against a simulator started by hand, outside the config: it is listed with
its port, served name and GPU memory, and its ``[[models]]`` block round-trips through config
loading and ``plan.serve_argv`` back to the argv it ran with (order aside, the API key moved
to the environment); pasted, ocrtui restarts it."""

from __future__ import annotations

import tomllib
from collections import Counter

import pytest

from ocrtui.control import Controller
from ocrtui.sim.gpu import SIM_GPU_ENV
from ocrtui.status import Snapshot
from ocrtui.vllm.adopt import Stranger, serve_args, strangers
from ocrtui.vllm.plan import serve_argv
from tests.plugins.sim import SimServers
from tests.plugins.sim_pod import SimPod, start_controller

pytestmark = pytest.mark.timeout(90)

SECRET = "sekrit-adopt-key"
WAIT_S = 40.0


async def test_a_server_started_by_hand_is_listed_and_its_block_round_trips(
    sim_pod: SimPod,
    sim_servers: SimServers,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stray = sim_servers.start(
        "zai-org/GLM-OCR",
        "--served-model-name", "stray", "--gpu-memory-utilization", "0.3",
        "--max-num-seqs", "4", "--max-model-len", "4096", "--api-key", SECRET,
        "--limit-mm-per-prompt", '{"image": 1}',
        command=(str(sim_pod.shim),),
        env={SIM_GPU_ENV: str(sim_pod.gpu.path)},
    )  # fmt: skip
    ctl: Controller = await start_controller(sim_pod, (sim_pod.model("glm"),), "local", request)
    found: list[Stranger] = []

    def listed(_snap: Snapshot) -> bool:
        sample = ctl.monitor.view.sample
        # Only ours: this box may run other tests' servers too.
        running = strangers(sample, ctl.config) if sample is not None else []
        found[:] = [s for s in running if s.pid == stray.pid]
        return bool(found) and found[0].gpu_mib > 0

    try:
        try:
            await ctl.wait_until(listed, WAIT_S)
        except TimeoutError:
            raise AssertionError(f"not listed with GPU memory: {found}") from None
    finally:
        await ctl.close()

    [s] = found
    assert (s.pid, s.port, s.served) == (stray.pid, stray.port, "stray")
    block = s.block()
    assert SECRET not in block and "api_key_env" in block
    fields = tomllib.loads(block)["models"][0]
    model = sim_pod.config(fields).model("stray")
    prefix, _ = serve_args(stray.argv)  # type: ignore[misc]
    without_key = [a for a in stray.argv if a not in ("--api-key", SECRET)]
    assert Counter(serve_argv(prefix, model)) == Counter(without_key)
    assert model.api_key_env == "VLLM_API_KEY"

    # Adopted: ocrtui stops the server it did not start and starts it again, on its argv.
    monkeypatch.setenv("VLLM_API_KEY", SECRET)
    adopted: Controller = await start_controller(sim_pod, (fields,), "local", request)
    try:
        await adopted.restart("stray")
        snap = adopted.snapshot.model("stray")
        assert snap is not None and snap.state == "ready" and snap.pid != stray.pid
    finally:
        await adopted.close()
    assert stray.proc.poll() is not None
