"""Recorded pod states for deterministic screens: the shapes the Controller publishes."""

from __future__ import annotations

from dataclasses import replace

from ocrtui.config import Config, parse_config
from ocrtui.status import (
    GpuStatus,
    ModelShare,
    ModelStatus,
    OrphanStatus,
    PodStatus,
    ProcessStatus,
    Snapshot,
)
from ocrtui.tui.widgets.run_header import ArmFacts, RunFacts

TOTAL = 46068


def config(screenshot_dir: str = "screenshots", **ui: object) -> Config:
    return parse_config(
        {
            "pod": {"kind": "local", "name": "demo-pod", "agent_interval_s": 1.0},
            "models": [
                {
                    "name": "glm-ocr",
                    "model": "zai-org/GLM-OCR",
                    "port": 8000,
                    "gpu_memory_utilization": 0.40,
                },
                {
                    "name": "lighton-ocr",
                    "model": "lightonai/LightOnOCR-2-1B",
                    "port": 8001,
                    "gpu_memory_utilization": 0.55,
                },
            ],
            "ui": {"screenshot_dir": screenshot_dir, **ui},
        },
        "test",
    )


POD = PodStatus(
    label="demo-pod",
    connection="connected",
    connection_age_s=754.0,
    data_age_s=0.4,
    simulated_gpu=True,
    demo=True,
)
GPU = GpuStatus(
    index=0,
    uuid="GPU-sim-0",
    name="NVIDIA A40 (simulated)",
    total_mib=TOTAL,
    used_mib=42610,
    free_mib=TOTAL - 42610,
    utilization_pct=37.0,
    temperature_c=54.0,
    power_w=141.0,
    simulated=True,
    models=(ModelShare("glm-ocr", 18050, 18427), ModelShare("lighton-ocr", 24460, 25337)),
    other_mib=100,  # the driver's share: used less the rows
    planned_mib=18427 + 25337,
)
GLM = ModelStatus(
    name="glm-ocr",
    port=8000,
    state="ready",
    pid=4101,
    health_latency_ms=2.4,
    running=1,
    waiting=0,
    kv_cache_usage=0.12,
    prompt_tokens_per_s=1830.0,
    generation_tokens_per_s=412.0,
    planned_mib=18427,
    used_mib=18050,
)
LIGHTON = ModelStatus(
    name="lighton-ocr",
    port=8001,
    state="ready",
    pid=4230,
    health_latency_ms=3.1,
    running=0,
    waiting=0,
    kv_cache_usage=0.03,
    prompt_tokens_per_s=0.0,
    generation_tokens_per_s=0.0,
    planned_mib=25337,
    used_mib=24460,
)


def _row(pid: int, used_mib: int, model: str, title: str) -> ProcessStatus:
    return ProcessStatus(pid, 0, used_mib, model, title, True, kind="model", owner=model)


PROCS = (
    _row(4101, 600, "glm-ocr", "vllm serve glm"),
    _row(4188, 17450, "glm-ocr", "VLLM::EngineCore"),
    _row(4230, 700, "lighton-ocr", "vllm serve lighton"),
    _row(4290, 23760, "lighton-ocr", "VLLM::EngineCore"),
)

READY = Snapshot(pod=POD, gpus=(GPU,), processes=PROCS, models=(GLM, LIGHTON))

# GLM-OCR asleep (vLLM's sleep mode, level 1): 600 MiB kept of its 18427 planned.
SLEEPING = replace(
    READY,
    gpus=(
        replace(
            GPU,
            used_mib=GPU.used_mib - 18050 + 600,
            free_mib=GPU.free_mib + 18050 - 600,
            models=(ModelShare("glm-ocr", 600, 18427, sleeping=True), GPU.models[1]),
        ),
    ),
    processes=(replace(PROCS[0], used_mib=100), replace(PROCS[1], used_mib=500), *PROCS[2:]),
    models=(replace(GLM, used_mib=600, sleep_level=1, given_back_mib=18427 - 600), LIGHTON),
)

HINT = (
    "free VRAM 3.1 GiB < 18.0 GiB wanted: a leftover VLLM::EngineCore holds memory; "
    "press k to kill orphans, then r"
)
CRASHED = Snapshot(
    pod=POD,
    gpus=(
        replace(
            GPU,
            used_mib=42010,
            free_mib=TOTAL - 42010,
            utilization_pct=12.0,
            models=(ModelShare("glm-ocr", 0, 18427), GPU.models[1]),
            orphan_mib=17450,
        ),
    ),
    processes=(
        replace(PROCS[1], model="orphan:glm-ocr", kind="orphan"),
        PROCS[2],
        PROCS[3],
    ),
    models=(
        replace(
            GLM,
            state="crashed",
            pid=None,
            health_latency_ms=None,
            running=None,
            waiting=None,
            kv_cache_usage=None,
            prompt_tokens_per_s=None,
            generation_tokens_per_s=None,
            used_mib=0,
            hint=HINT,
        ),
        LIGHTON,
    ),
    orphans=(OrphanStatus(4188, "glm-ocr", 17450, 2100, "VLLM::EngineCore"),),
)
LOST = replace(
    READY,
    pod=replace(POD, connection="reconnecting", connection_age_s=42.0, data_age_s=43.2),
)

GLM_LOG = [
    "INFO 11-26 15:01:02 [api_server.py:1] vLLM API server version 0.11.0 (simulated: rapidocr)",
    "INFO 11-26 15:01:09 [gpu_model_runner.py:2] Model loading took 1.71 GiB and 4.2 seconds",
    "INFO 11-26 15:01:12 [kv_cache_utils.py:3] GPU KV cache size: 401,232 tokens",
    "INFO:     Application startup complete.",
    'INFO:     127.0.0.1:53312 - "GET /health HTTP/1.1" 200 OK',
]


def run_facts() -> RunFacts:
    """The comparison header's facts for a run of the two models above."""
    arms = tuple(ArmFacts.of(m) for m in config().models)
    return RunFacts("sample suite", arms, 5, "sequential", "sidecar files", {"glm-ocr": "0.11.0"})
