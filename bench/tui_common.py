"""Shared pieces of the dashboard benchmarks: a config, live-looking snapshots, an app."""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ocrtui.compare.store import PageResult
from ocrtui.config import Config, parse_config
from ocrtui.status import GpuStatus, ModelShare, ModelStatus, PodStatus, ProcessStatus, Snapshot
from ocrtui.tui.app import OcrtuiApp
from ocrtui.tui.source import ReplaySource

SIZE = (150, 46)
MODELS = ("glm-ocr", "lighton-ocr")
PAGE_TEXT = "\n".join(
    f"第{i}条 租金：每月人民币肆仟伍佰元整（¥4,500.00），按季度支付。ID 11010519900307{i:04d}"
    for i in range(40)
)


def config(tmp: Path) -> Config:
    models = [
        {"name": n, "model": f"org/{n}", "port": 8000 + i, "gpu_memory_utilization": u}
        for i, (n, u) in enumerate(zip(MODELS, (0.40, 0.55), strict=True))
    ]
    return parse_config(
        {
            "pod": {"kind": "local", "name": "bench"},
            "models": models,
            "ui": {"screenshot_dir": str(tmp), "theme_dir": str(tmp)},
        },
        "bench",
    )


def snapshot(tick: int) -> Snapshot:
    """A pod whose numbers move every tick, as a live 1 Hz agent's do."""
    wobble = tick % 7
    procs = tuple(
        ProcessStatus(pid=4000 + i, gpu=0, used_mib=9000 + 500 * i + wobble * 10,
                      model=MODELS[i % 2], title="VLLM::EngineCore", visible=True,
                      kind="model", owner=MODELS[i % 2])
        for i in range(4)
    )  # fmt: skip
    used = sum(p.used_mib for p in procs)
    shares = tuple(
        ModelShare(n, sum(p.used_mib for p in procs if p.owner == n), 18000 + 7000 * i)
        for i, n in enumerate(MODELS)
    )
    return Snapshot(
        pod=PodStatus("bench", "connected", float(tick), 0.3, True, False),
        gpus=(
            GpuStatus(
                0,
                "GPU-0",
                "NVIDIA A40 (simulated)",
                46068,
                used,
                46068 - used,
                30.0 + wobble,
                50.0,
                120.0 + wobble,
                True,
                models=shares,
                planned_mib=sum(m.planned_mib or 0 for m in shares),
            ),
        ),
        processes=procs,
        models=tuple(
            ModelStatus(
                n,
                8000 + i,
                "ready",
                4000 + i,
                health_latency_ms=2.0 + wobble / 10,
                running=wobble % 3,
                waiting=0,
                kv_cache_usage=0.1,
                prompt_tokens_per_s=1000.0 + wobble,
                generation_tokens_per_s=300.0,
                planned_mib=18000 + 7000 * i,
                used_mib=18000 + 7000 * i - 400,
            )
            for i, n in enumerate(MODELS)
        ),
    )


def page(i: int, model: str, text: str = PAGE_TEXT) -> PageResult:
    return PageResult("doc", i, model, True, None, 1.0 + (i % 10) / 10, 900, 400, "stop",
                      text, 0.02, "zh_contract")  # fmt: skip


def make_app(tmp: Path) -> tuple[OcrtuiApp, ReplaySource]:
    source = ReplaySource([snapshot(0)], logs={MODELS[0]: ["INFO started"] * 50})
    return OcrtuiApp(config(tmp), source, state_path=tmp / "state.toml"), source


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ocrtui-bench-"))


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def publish_next(source: ReplaySource, tick: int) -> None:
    source.publish(replace(snapshot(tick)))


def now() -> float:
    return time.perf_counter()
