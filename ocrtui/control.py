"""The service facade shared by the dashboard and the headless commands.

One :class:`Controller` per pod: it owns the connection, the agent monitor, the per-model
health pollers and the lifecycle operations, and publishes immutable :class:`Snapshot`s.
The TUI subscribes to snapshots and calls the operations; the CLI does the same headless.

(Interface fixed first so the layers above can be built in parallel; bodies to be filled.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ModelState = Literal["down", "starting", "ready", "unhealthy", "crashed"]


@dataclass(frozen=True)
class PodStatus:
    label: str
    connection: str  # ConnState value: connecting / connected / lost / reconnecting / closed
    connection_age_s: float
    data_age_s: float | None  # age of the newest agent sample; None before the first
    simulated_gpu: bool
    demo: bool
    agent_error: str | None = None


@dataclass(frozen=True)
class GpuStatus:
    index: int
    uuid: str
    name: str
    total_mib: int
    used_mib: int
    free_mib: int
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    simulated: bool


@dataclass(frozen=True)
class ProcessStatus:
    pid: int
    gpu: int
    used_mib: int
    model: str | None  # served name, "orphan:<name>", or None (other / unattributed)
    title: str  # process title, e.g. "VLLM::EngineCore"; "" when the pid is not visible
    visible: bool  # False when NVML reports a host pid this pod cannot see (container)


@dataclass(frozen=True)
class ModelStatus:
    name: str
    port: int
    state: ModelState
    pid: int | None  # the API server (listening on the port, or the one we launched)
    stage: str | None = None  # startup stage read from the log while "starting"
    hint: str | None = None  # known-failure hint: cause and fix in one line
    health_latency_ms: float | None = None
    running: int | None = None
    waiting: int | None = None
    kv_cache_usage: float | None = None  # 0..1
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    success_by_reason: dict[str, float] = field(default_factory=dict)
    planned_mib: int | None = None  # gpu_memory_utilization x total
    used_mib: int = 0  # VRAM attributed to this model now


@dataclass(frozen=True)
class Snapshot:
    pod: PodStatus
    gpus: tuple[GpuStatus, ...]
    processes: tuple[ProcessStatus, ...]
    models: tuple[ModelStatus, ...]

    def to_json(self) -> dict[str, Any]:
        """The `ocrtui status --json` contract."""
        return {
            "pod": asdict(self.pod),
            "gpus": [asdict(g) for g in self.gpus],
            "processes": [asdict(p) for p in self.processes],
            "models": [asdict(m) for m in self.models],
        }


# Progress of a lifecycle operation: (model name, human-readable step), e.g.
# ("glm-ocr", "stopping"), ("glm-ocr", "waiting for VRAM"), ("glm-ocr", "starting: KV cache").
Progress = Callable[[str, str], None]
