"""One planned-MiB figure per model, whichever GPU it is pinned to: the model card, the GPU
panel and the preflight all compute it through ocrtui/vllm/plan.py, from the snapshot the
Controller builds out of a recorded agent sample."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from ocrtui.config import parse_config
from ocrtui.control import Controller
from ocrtui.pod.base import CommandResult, ConnState, Pod
from ocrtui.status import ModelShare
from ocrtui.tui.widgets.format import gib
from ocrtui.tui.widgets.gpu_panel import memory_content, model_styles
from tests.plugins.sim import free_port

DATA = Path(__file__).resolve().parent.parent / "monitor" / "data"
A100_MIB = 81920  # GPU 1: not the A40's 46068
A100_RESERVED_MIB = 512  # what the driver keeps: vLLM plans on CUDA's total, NVML's less this
LIGHTON_ENGINE = 5290  # the EngineCore of lighton-ocr in nvml_normal.json


def two_gpu_sample() -> str:
    """nvml_normal.json (an A40 running both models) with lighton-ocr moved to a second,
    larger GPU."""
    data: dict[str, Any] = json.loads((DATA / "nvml_normal.json").read_text())
    a40 = data["gpus"][0]
    moved = next(p for p in data["procs"] if p["pid"] == LIGHTON_ENGINE)
    moved["gpu"] = 1
    a40["used_mib"] -= moved["used_mib"]
    a40["free_mib"] = a40["total_mib"] - a40["used_mib"]
    used = moved["used_mib"] + 420
    data["gpus"].append(
        {**a40, "index": 1, "uuid": "GPU-a100-1", "name": "NVIDIA A100 80GB PCIe",
         "total_mib": A100_MIB, "used_mib": used, "free_mib": A100_MIB - used,
         "reserved_mib": A100_RESERVED_MIB}
    )  # fmt: skip
    return json.dumps(data)


class RecordedPod(Pod):
    """A connected pod whose agent prints one recorded sample and then nothing; every
    command succeeds silently and no server answers on the forwards."""

    def __init__(self, sample_line: str) -> None:
        super().__init__("recorded")
        self.sample_line = sample_line

    async def connect(self) -> None:
        self._set_state(ConnState.CONNECTED)

    async def close(self) -> None:
        self._set_state(ConnState.CLOSED)

    async def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        return CommandResult(tuple(argv), 0, "", "")

    async def stream(
        self, argv: Sequence[str], *, input: str | None = None
    ) -> AsyncGenerator[str, None]:
        yield self.sample_line
        await asyncio.Event().wait()  # the agent keeps running until the monitor stops it

    async def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> str:
        return f"http://127.0.0.1:{free_port()}"


async def test_model_pinned_to_gpu_1_has_one_planned_mib_in_card_panel_and_preflight() -> None:
    config = parse_config(
        {
            "pod": {"kind": "local", "agent_interval_s": 1.0},
            "models": [
                {"name": "glm-ocr", "model": "zai-org/GLM-OCR", "port": 8000,
                 "gpu_memory_utilization": 0.40, "max_model_len": 16384},
                {"name": "lighton-ocr", "model": "lightonai/LightOnOCR-2-1B", "port": 8001,
                 "gpu_memory_utilization": 0.55, "env": {"CUDA_VISIBLE_DEVICES": "1"}},
            ],
        },
        "test",
    )  # fmt: skip
    ctl = Controller(config, pod=RecordedPod(two_gpu_sample()))
    await ctl.start()
    try:
        snap = await ctl.wait_until(
            lambda s: len(s.gpus) == 2 and all(m.planned_mib is not None for m in s.models), 15
        )
        assert ctl.lifecycle is not None
        preflight_mib = await ctl.lifecycle.preflight("lighton-ocr")
    finally:
        await ctl.close()

    planned = int(0.55 * (A100_MIB - A100_RESERVED_MIB))
    assert preflight_mib == planned
    card = snap.model("lighton-ocr")
    assert card is not None and card.planned_mib == planned
    a40, a100 = snap.gpus
    assert a100.models == (ModelShare("lighton-ocr", 25310, planned),)
    assert a100.planned_mib == planned
    assert [m.name for m in a40.models] == ["glm-ocr"]
    styles = model_styles([m.name for m in config.models])
    drawn = memory_content(a100, styles).plain
    assert f"lighton-ocr {gib(25310)}/{gib(planned)}" in drawn
    assert f"{gib(planned)} GiB planned" in drawn
    assert "lighton-ocr" not in memory_content(a40, styles).plain
    # status --json carries the same breakdown (keys added, none changed).
    gpu1 = json.loads(json.dumps(snap.to_json()))["gpus"][1]
    assert gpu1["models"] == [
        {"name": "lighton-ocr", "used_mib": 25310, "planned_mib": planned, "sleeping": False}
    ]
    assert gpu1["total_mib"] == A100_MIB and gpu1["other_mib"] == 420
