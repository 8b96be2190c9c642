"""A model with ``replicas`` behind ``vllm-router`` on a simulated pod of two GPUs: ocrtui
starts one simulated vLLM per replica through the usual lifecycle and the router as the
generated ``<name>-router`` service after them, and a comparison of the model measures
through the router, which spreads the pages over both replicas."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from ocrtui.cli import _parser
from ocrtui.compare.cli import request_from_args, run_headless
from ocrtui.compare.launch import gate_for, resolve
from ocrtui.config import parse_config
from ocrtui.control import Controller
from ocrtui.sim.gpu import SimGpu
from tests.plugins.compare_inputs import MakePdf
from tests.plugins.sim import free_port
from tests.plugins.sim_pod import SIM_FLAGS, SimPod

pytestmark = pytest.mark.timeout(180)

ROUTER = str(Path(sys.executable).parent / "vllm-router")
FAST = ("--sim-prefill-s", "0.05", "--sim-per-token-s", "0.0001", "--sim-tokens-per-page", "40")


def _served(port: int) -> float:
    """Requests a replica finished, from its /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.findall(r"^vllm:request_success_total\{[^}]*\} ([\d.]+)$", text, re.M)
    return sum(float(n) for n in found)


async def test_replicas_behind_the_router_serve_a_comparison(
    sim_pod: SimPod, make_pdf: MakePdf, tmp_path: Path
) -> None:
    SimGpu.create(sim_pod.gpu.path, count=2)
    ports = [free_port(), free_port()]
    model = sim_pod.model(
        "glm",
        extra_args=[*SIM_FLAGS, "--engine", "synthetic", *FAST],
        replicas=[
            {"port": p, "env": {"CUDA_VISIBLE_DEVICES": str(i)}} for i, p in enumerate(ports)
        ],
        router_command=[ROUTER, "--policy", "round_robin"],
        router_metrics_port=free_port(),
    )
    config = parse_config(
        {
            "pod": {"kind": "local", **sim_pod.pod_fields()},
            "models": [model],
            "ui": {"refresh_s": 0.25},
            "compare": {"warm_runs": 2, "throughput_requests": 4, "concurrency": 2},
        },
        "router test config",
    )
    ctl = Controller(config)
    await ctl.start()
    try:
        await ctl.up()
        snap = await ctl.wait_until(lambda s: s.services[0].state == "ready", 30)
        assert [(m.name, m.state) for m in snap.models] == [
            ("glm-r0", "ready"),
            ("glm-r1", "ready"),
        ]
        assert [s.name for s in snap.services] == ["glm-router"]
        # Each replica holds its memory on its own GPU.
        rows = sorted((p.gpu, p.model) for p in snap.processes)
        assert rows == [(0, "glm-r0"), (1, "glm-r1")]

        pdf = make_pdf("doc.pdf", ["Page one through the router.", "Page two."])
        args = _parser().parse_args(
            ["compare", "--headless", "--out", str(tmp_path / "run"), "--models", "glm",
             "--reference", "text-layer", str(pdf)]
        )  # fmt: skip
        setup = resolve(config, request_from_args(args))
        gate = gate_for(setup, [ctl], config.ui.refresh_s)
        assert await run_headless(setup, ctl.model_url, Console(width=200), gate, ctl.served) == 0
    finally:
        await ctl.close()

    results = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").open()]
    assert {(r["model"], r["ok"]) for r in results} == {("glm", True)}
    # Round robin through the router: both replicas served pages.
    assert all(_served(p) > 0 for p in ports)
