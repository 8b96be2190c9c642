"""Fixtures for the lifecycle and Controller tests: simulated vLLM servers on a simulated GPU,
reached through LocalPod or through the real sshd (tests/plugins/sshd.py).

``make_controller`` builds its configs from the ``pod_under_test`` fixture: ``sim_pod`` unless
a test module overrides it (the behaviour suite gives it ``RealPod`` too: any
:class:`PodUnderTest`).

Every server a test starts logs into the test's own workdir, so teardown finds every one of
them by its stdout, orphaned EngineCores included, and kills it by pid.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from ocrtui.config import Config, PodConfig, parse_config
from ocrtui.control import Controller
from ocrtui.pod.base import Pod
from ocrtui.sim.gpu import SimGpu
from ocrtui.status import Snapshot
from tests.plugins.reaper import kill_writing_under
from tests.plugins.sim import free_port, write_vllm_shim

STARTUP_S = "0.5"
SIM_FLAGS = ("--host", "127.0.0.1", "--engine", "synthetic", "--sim-startup-s", STARTUP_S)


class PodUnderTest(Protocol):
    """Where a test's servers run: a workdir, the ``vllm`` to launch, and configs for it."""

    backend: str  # "sim" | "real"
    workdir: Path

    def pod_fields(self) -> dict[str, Any]: ...
    def model(self, name: str, **overrides: Any) -> dict[str, Any]: ...
    def config(
        self, *models: dict[str, Any], pod: PodConfig | None = None, **pod_overrides: Any
    ) -> Config: ...


def config_for(
    where: PodUnderTest,
    models: tuple[dict[str, Any], ...],
    pod: PodConfig | None,
    pod_overrides: dict[str, Any],
    *,
    refresh_s: float,
) -> Config:
    """The config of ``models`` on ``where``: a local pod unless ``pod`` (e.g. the sshd's)."""
    pod_data = pod.model_dump(exclude_none=True) if pod is not None else {"kind": "local"}
    pod_data.update(where.pod_fields())
    pod_data.update(pod_overrides)
    data = {"pod": pod_data, "models": list(models), "ui": {"refresh_s": refresh_s}}
    return parse_config(data, f"{where.backend} test config")


class SimPod:
    """A tmp workdir with a simulated GPU and a ``vllm`` shim, and configs pointing at it."""

    backend = "sim"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gpu = SimGpu.create(root / "gpu")
        self.shim = write_vllm_shim(root / "bin")
        self.workdir = root / "work"
        self.workdir.mkdir()

    def pod_fields(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "vllm_command": (str(self.shim),),
            "sim_gpu": str(self.gpu.path),
            "agent_interval_s": 0.25,
        }

    def model(self, name: str, **overrides: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "name": name,
            "model": "zai-org/GLM-OCR",
            "port": free_port(),
            "gpu_memory_utilization": 0.40,
            "max_model_len": 8192,
            "extra_args": list(SIM_FLAGS),
            "ready_timeout_s": 60.0,
        }
        fields.update(overrides)
        return fields

    def config(
        self, *models: dict[str, Any], pod: PodConfig | None = None, **pod_overrides: Any
    ) -> Config:
        return config_for(self, models, pod, pod_overrides, refresh_s=0.25)


@pytest.fixture
def sim_pod(tmp_path: Path) -> Iterator[SimPod]:
    sp = SimPod(tmp_path)
    try:
        yield sp
    finally:
        kill_writing_under(sp.workdir)


@pytest.fixture
def pod_under_test(sim_pod: SimPod) -> PodUnderTest:
    return sim_pod


async def start_controller(
    where: PodUnderTest,
    models: tuple[dict[str, Any], ...],
    transport: str,
    request: pytest.FixtureRequest,
) -> Controller:
    """A started Controller for ``models`` on ``where``, through LocalPod or the real sshd."""
    pod: Pod | None = None
    if transport == "ssh":
        sshd = request.getfixturevalue("sshd")
        config = where.config(*models, pod=sshd.pod_config())
        pod = sshd.make_pod(**where.pod_fields())
    else:
        config = where.config(*models)
    ctl = Controller(config, pod=pod)
    try:
        await ctl.start()
    except BaseException:
        await ctl.close()
        raise
    return ctl


@pytest.fixture
async def make_controller(
    transport: str, request: pytest.FixtureRequest, pod_under_test: PodUnderTest
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_controller(*models)``: a started Controller over the chosen transport."""
    if transport == "ssh":
        # Set up before the Controllers, so torn down after them: a Controller closes with
        # its pod's sshd still there, as an operator's does (asked for lazily, the sshd
        # died first and every close ran into a reconnect loop).
        request.getfixturevalue("sshd")
    started: list[Controller] = []

    async def make(*models: dict[str, Any]) -> Controller:
        ctl = await start_controller(pod_under_test, models, transport, request)
        started.append(ctl)
        return ctl

    yield make
    for ctl in started:
        await ctl.close()


class StateLog:
    """Every distinct (state, stage) of one model, in the order the snapshots showed them."""

    def __init__(self, ctl: Controller, name: str) -> None:
        self.name = name
        self.seen: list[str] = []
        self._on(ctl.snapshot)
        self.unsubscribe = ctl.subscribe(self._on)

    def _on(self, snap: Snapshot) -> None:
        m = snap.model(self.name)
        if m is not None and (not self.seen or self.seen[-1] != m.state):
            self.seen.append(m.state)


def progress_log() -> tuple[list[tuple[str, str]], Callable[[str, str], None]]:
    lines: list[tuple[str, str]] = []
    return lines, lambda name, step: lines.append((name, step))
