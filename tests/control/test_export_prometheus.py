"""The metrics endpoint (ocrtui/export.py) scraped by a real Prometheus server.

The test starts Debian's ``prometheus`` on a loopback port with a generated config scraping
the exporter every second, and reads the series back through its HTTP API, while the
simulator pod's model runs, crashes (its EngineCore left as an orphan), has its orphans
killed and is restarted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocrtui.compare.progress import ArmProgress
from ocrtui.config import ListenAddress
from ocrtui.control import Controller
from ocrtui.export import MIB, MetricsExporter
from tests.plugins.sim import free_port
from tests.plugins.sim_pod import SimPod

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.parametrize("transport", ["local"]),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus"),
]

MakeController = Callable[..., Any]


class Prometheus:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    async def value(self, query: str) -> float | None:
        """The query's single sample now; None while it has none."""
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                r = await client.get(f"{self.url}/api/v1/query", params={"query": query})
        except httpx.ConnectError:
            return None  # not listening yet
        body = r.json()
        assert body["status"] == "success", body
        result = body["data"]["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    async def wait_for(self, query: str, expected: float, timeout: float = 30) -> None:
        """Until the query answers ``expected`` (a scrape or two later)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: float | None = None
        while loop.time() < deadline:
            last = await self.value(query)
            if last == expected:
                return
            await asyncio.sleep(0.1)  # the next poll of the query, not a guess at timing
        raise AssertionError(f"{query} = {last}, expected {expected}\n{self.log.read_text()}")


@pytest.fixture
async def exporter(
    make_controller: MakeController, sim_pod: SimPod
) -> AsyncIterator[tuple[Controller, MetricsExporter, ListenAddress]]:
    ctl: Controller = await make_controller(sim_pod.model("glm"))
    exp = MetricsExporter([ctl])
    bound = exp.serve(ListenAddress("127.0.0.1", 0))
    try:
        yield ctl, exp, bound
    finally:
        await exp.close()


@pytest.fixture
async def prometheus(
    exporter: tuple[Controller, MetricsExporter, ListenAddress], tmp_path: Path
) -> AsyncIterator[Prometheus]:
    bound = exporter[2]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: ocrtui\n"
        f"    static_configs:\n      - targets: ['{bound.host}:{bound.port}']\n"
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_prometheus_reads_memory_states_orphans_restarts_and_arms(
    exporter: tuple[Controller, MetricsExporter, ListenAddress], prometheus: Prometheus
) -> None:
    ctl, exp, _ = exporter
    await ctl.up()
    glm = ctl.snapshot.model("glm")
    assert glm is not None and glm.pid is not None and glm.used_mib > 0
    exp.arm_progress(ArmProgress("glm", pages_done=3, pages_failed=1, cer=0.125, images_per_s=2.5))

    await prometheus.wait_for('ocrtui_model_state{model="glm",ocrtui_model_state="ready"}', 1)
    await prometheus.wait_for('ocrtui_model_state{model="glm",ocrtui_model_state="down"}', 0)
    await prometheus.wait_for(
        'sum(ocrtui_process_memory_bytes{model="glm",kind="model"})', glm.used_mib * MIB
    )
    await prometheus.wait_for('ocrtui_gpu_owner_memory_bytes{model="glm"}', glm.used_mib * MIB)
    await prometheus.wait_for('ocrtui_compare_pages_done_total{arm="glm"}', 3)
    await prometheus.wait_for('ocrtui_compare_pages_failed_total{arm="glm"}', 1)
    await prometheus.wait_for('ocrtui_compare_cer{arm="glm"}', 0.125)
    await prometheus.wait_for('ocrtui_compare_images_per_second{arm="glm"}', 2.5)

    # The API server killed: its EngineCore holds the memory as an orphan.
    os.kill(glm.pid, signal.SIGKILL)
    await ctl.wait_until(lambda s: bool(s.orphans), 15)
    await prometheus.wait_for('ocrtui_model_state{model="glm",ocrtui_model_state="crashed"}', 1)
    await prometheus.wait_for('ocrtui_orphans{model="glm"}', len(ctl.snapshot.orphans))
    await prometheus.wait_for(
        'sum(ocrtui_process_memory_bytes{model="orphan"})', glm.used_mib * MIB
    )
    await prometheus.wait_for('ocrtui_gpu_owner_memory_bytes{model="orphan"}', glm.used_mib * MIB)

    killed = await ctl.kill_orphans("glm")
    assert killed
    await prometheus.wait_for("ocrtui_orphans_killed_total", len(killed))
    await prometheus.wait_for('absent(ocrtui_orphans{model="glm"})', 1)

    await ctl.restart("glm")
    await prometheus.wait_for('ocrtui_model_restarts_total{model="glm"}', 1)
    await prometheus.wait_for('ocrtui_model_state{model="glm",ocrtui_model_state="ready"}', 1)
