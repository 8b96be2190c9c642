"""The status types: what the Controller publishes and ``ocrtui status --json`` prints.

Frozen dataclasses, standard library only, so every layer that fills or reads them (the
model watcher in ``vllm/``, the Controller, the widgets, the headless commands) imports
this module and nothing above it. ``Snapshot.to_json()`` is the JSON contract: keys are
only ever added.

Status types (`ocrtui/status.py`: `Snapshot`, `PodStatus`, `GpuStatus`, `ModelShare`,
`ProcessStatus`, `OrphanStatus`, `ModelStatus`, `ModelState`) are frozen dataclasses;
`Snapshot.to_json()` is
the `ocrtui status --json` contract (keys are only added); `fleet_json` is that of a
`[[pods]]` config, a list of them. `ModelStatus` beyond the contract
fields: `stage` (startup stage while `starting`; `"stopping"` while `down` with a stop in
progress), `hint`, metrics, `planned_mib`, `used_mib`, `last_lines` (log tail when
`crashed`), `max_model_len`, `started_s` / `last_start_s` (while starting: since the launch;
launch → ready of the previous start), `restarts` (those this process asked for),
`sleep_level` / `given_back_mib` (vLLM's sleep mode: the level it sleeps at, the GPU memory
its wake-up takes back).
`Snapshot.orphans` lists every leaked vLLM process (`OrphanStatus(pid, model, used_mib |
None, rss_mib, title)`), those holding no VRAM included (a CPU build); the dashboard's `k`
offers these; `Snapshot.orphans_killed` counts those this process killed. Each `GpuStatus`
carries its owners as attributed: `models`
(`ModelShare(name, used_mib, planned_mib, sleeping)` for every model planned on it or
holding memory on it), `orphan_mib`, `other_mib` (processes of no model + memory no row holds),
`unattributed_mib`, `planned_mib`; each `ProcessStatus` its `kind` (model, orphan, other,
unattributed) and `owner` (the model of a model or orphan row). The GPU panel draws these
numbers and adds nothing up. Planned MiB = `gpu_memory_utilization` x the CUDA total of the
GPU the model uses (NVML's less `reserved_mib`; `vllm/plan.py`: `gpus_for`, `cuda_total_mib`,
`planned_mib`), the same figure in the card, the panel and the preflight; a data-parallel
model plans that on each of its ranks' GPUs, and its card shows the sum.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# What each state means and how it is decided: ocrtui/vllm/state.py.
ModelState = Literal["down", "starting", "ready", "unhealthy", "crashed"]
# Who a GPU process row belongs to (ocrtui/monitor/attribution.py has the rules).
# "service": a process of a ``gpu = true`` service (control.py relabels its "other" rows).
ProcessKind = Literal["model", "orphan", "other", "unattributed", "service"]
ServiceState = Literal["down", "starting", "ready", "unhealthy", "crashed"]


@dataclass(frozen=True)
class PodStatus:
    label: str
    connection: str  # ConnState value: connecting / connected / lost / reconnecting / closed
    connection_age_s: float
    data_age_s: float | None  # age of the newest agent sample; None before the first
    simulated_gpu: bool
    demo: bool
    agent_error: str | None = None
    # The provider's word on the pod's power ([pod.provider]; None without one, or before
    # the first answer): "running" | "stopped" | "unknown", and the line it was read from.
    power: str | None = None
    power_detail: str | None = None
    price_per_hr: float | None = None  # the provider's price (price_json), when it gives one
    idle_s: float | None = None  # since a model last had a request running or waiting
    # [pod.provider] idle_notice_min passed: "idle 42 min at $0.79/h: ..." (else None)
    idle_notice: str | None = None


@dataclass(frozen=True)
class ModelShare:
    """One model's part of one GPU: what its processes hold there, what it plans there."""

    name: str
    used_mib: int
    planned_mib: int | None  # None: the model holds memory here but plans on another GPU
    sleeping: bool = False  # vLLM's sleep mode: planned less used is what it gave back


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
    # Who holds used_mib, as attributed: the parts add up to it (to the rows' sum when NVML
    # lists more than the device reports).
    models: tuple[ModelShare, ...] = ()  # models planned on this GPU or holding memory on it
    orphan_mib: int = 0  # leaked vLLM processes
    other_mib: int = 0  # processes of no model, and memory no listed process holds (driver)
    unattributed_mib: int = 0  # rows whose owner cannot be told (host pids in a container)
    planned_mib: int = 0  # the models' plans on this GPU together


@dataclass(frozen=True)
class ProcessStatus:
    pid: int
    gpu: int
    used_mib: int
    model: str | None  # served name, "orphan:<name>", or None (other / unattributed)
    title: str  # process title, e.g. "VLLM::EngineCore"; "" when the pid is not visible
    visible: bool  # False when NVML reports a host pid this pod cannot see (container)
    kind: ProcessKind = "other"
    owner: str | None = None  # the model of a model or orphan row ("?": orphan of no known one)


@dataclass(frozen=True)
class OrphanStatus:
    """A leaked vLLM process of a model whose API server is gone (EngineCore, Worker, its
    resource tracker), whatever it holds: VRAM on a GPU, RAM on a CPU build."""

    pid: int
    model: str  # the model it belongs to; "?" when nothing says
    used_mib: int | None  # VRAM of its NVML row; None when NVML lists none visible from here
    rss_mib: int | None  # resident memory
    title: str


@dataclass(frozen=True)
class AdvisoryStatus:
    """A version or drift advisory on a model (``vllm/advisories.py`` decides them)."""

    key: str  # stable id, e.g. "lighton-vllm-0.27.1-loops", "flag:--mm-processor-cache-gb"
    severity: str  # "warning" | "info"
    text: str
    source: str | None = None  # where the fact comes from: "what, URL"


@dataclass(frozen=True)
class ModelStatus:
    name: str
    port: int
    state: ModelState
    pid: int | None  # the API server (listening on the port, or the one we launched)
    stage: str | None = None  # startup stage from the log while "starting"; "stopping"
    hint: str | None = None  # known-failure hint: cause and fix in one line
    health_latency_ms: float | None = None
    running: int | None = None
    waiting: int | None = None
    kv_cache_usage: float | None = None  # 0..1
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    spec_decode_acceptance: float | None = None  # 0..1 over the last poll; None: no drafts
    success_by_reason: dict[str, float] = field(default_factory=dict)
    planned_mib: int | None = None  # gpu_memory_utilization x the total of the GPU it uses
    used_mib: int = 0  # VRAM attributed to this model now
    rss_mib: int | None = None  # host memory of its live process tree (all a CPU build holds)
    last_lines: tuple[str, ...] = ()  # the log's last lines when "crashed"
    max_model_len: int | None = None  # as /v1/models reports it
    started_s: float | None = None  # while starting: seconds since its launch
    last_start_s: float | None = None  # while starting: launch to ready of the previous start
    # On the running server's versions and argv, probed once when it became ready.
    advisories: tuple[AdvisoryStatus, ...] = ()
    restarts: int = 0  # restarts this ocrtui process asked for (Controller.restart)
    watchdog: WatchdogStatus | None = None  # None: no watchdog runs in this process
    # vLLM's sleep mode (vllm:engine_sleep_state): None awake, else the level it sleeps at
    # (0 paused, 1 weights offloaded to host memory, 2 discarded); while asleep,
    # ``given_back_mib`` is the GPU memory it gave back: what its wake-up takes again
    # (planned less used now).
    sleep_level: int | None = None
    given_back_mib: int | None = None

    @property
    def sleeping(self) -> bool:
        return self.sleep_level is not None

    @property
    def sleep_text(self) -> str | None:
        """``sleeping (level 1), gave back 17.6 GiB`` (the card, status, the CLI); None awake."""
        if self.sleep_level is None:
            return None
        back = f", gave back {self.given_back_mib / 1024:.1f} GiB" if self.given_back_mib else ""
        return f"sleeping (level {self.sleep_level}){back}"


WatchdogState = Literal["watching", "restarting", "gave up"]


@dataclass(frozen=True)
class WatchdogStatus:
    """The watchdog's view of one model or service (``ocrtui/watchdog.py``): ``gave up``
    once the crash-loop guard tripped, with the hint of the last crash."""

    state: WatchdogState
    restarts: int  # the watchdog's restarts within the guard's window
    last_hint: str | None = None


@dataclass(frozen=True)
class ServiceStatus:
    """One ``[[services]]`` process (ocrtui/services.py decides its state), beside
    ``ModelStatus``; ``to_json()`` is its entry under ``"services"`` in ``status --json``."""

    name: str
    port: int
    state: ServiceState
    pid: int | None  # the session leader we launched (None: not ours, or not running)
    managed: bool = True  # False: the port answers but no process of ours runs
    uptime_s: float | None = None
    gpu: bool = False
    hint: str | None = None  # when crashed: from its log (a traceback's last line, ...)
    last_lines: tuple[str, ...] = ()  # the log's last lines when crashed
    pids: tuple[int, ...] = ()  # every live process of its session
    watchdog: WatchdogStatus | None = None  # None: no watchdog runs in this process

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["last_lines"] = list(self.last_lines)
        out["pids"] = list(self.pids)
        return out


@dataclass(frozen=True)
class Snapshot:
    pod: PodStatus
    gpus: tuple[GpuStatus, ...]
    processes: tuple[ProcessStatus, ...]
    models: tuple[ModelStatus, ...]
    orphans: tuple[OrphanStatus, ...] = ()
    services: tuple[ServiceStatus, ...] = ()
    orphans_killed: int = 0  # orphans this ocrtui process killed (Controller.kill_orphans)

    def to_json(self) -> dict[str, Any]:
        """The `ocrtui status --json` contract."""
        return {
            "pod": asdict(self.pod),
            "gpus": [asdict(g) for g in self.gpus],
            "processes": [asdict(p) for p in self.processes],
            "models": [asdict(m) for m in self.models],
            "orphans": [asdict(o) for o in self.orphans],
            "services": [s.to_json() for s in self.services],
            "orphans_killed": self.orphans_killed,
        }

    def model(self, name: str) -> ModelStatus | None:
        for m in self.models:
            if m.name == name:
                return m
        return None

    def service(self, name: str) -> ServiceStatus | None:
        for s in self.services:
            if s.name == name:
                return s
        return None


def fleet_json(snaps: list[tuple[str, Snapshot]], errors: dict[str, str]) -> dict[str, Any]:
    """``status --json`` of a ``[[pods]]`` config: ``{"pods": [...]}``, every pod in config
    order, each its snapshot's ``to_json()`` with its ``name`` and ``error`` (why it could
    not be reached; None when it answered)."""
    return {
        "pods": [
            {"name": name, "error": errors.get(name), **snap.to_json()} for name, snap in snaps
        ]
    }
