"""Typed agent samples: one JSON line from ``ocrtui/agent/agent.py`` becomes an AgentSample.

Standard library only, so benchmarks on a bare GPU machine can import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1


class SampleError(ValueError):
    """A line the agent should never print: not JSON, or missing required fields."""


class ProtocolMismatch(SampleError):
    """The agent speaks another protocol version than this monitor."""

    def __init__(self, got: object) -> None:
        super().__init__(
            f"agent protocol version {got!r}, monitor expects {PROTOCOL_VERSION}: "
            "the agent shipped to the pod does not match this ocrtui"
        )
        self.got = got


@dataclass(frozen=True)
class GpuSample:
    index: int
    uuid: str
    name: str
    total_mib: int
    used_mib: int
    free_mib: int
    reserved_mib: int | None
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    simulated: bool

    def status_fields(self) -> dict[str, object]:
        """status.GpuStatus's device fields (its owner breakdown comes from attribution)."""
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "total_mib": self.total_mib,
            "used_mib": self.used_mib,
            "free_mib": self.free_mib,
            "utilization_pct": self.utilization_pct,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "simulated": self.simulated,
        }


@dataclass(frozen=True)
class GpuProc:
    """One row of NVML's process lists (or the simulated GPU's holders)."""

    gpu: int
    pid: int  # as NVML reports it: a host pid inside a container
    used_mib: int | None
    type: str  # "C", "G" or "C+G"
    visible: bool  # the pid is a process of this pod's pid namespace holding the GPU
    title: str = ""
    comm: str = ""
    cmdline: tuple[str, ...] = ()
    ppid: int | None = None
    pgid: int | None = None
    start: float | None = None
    ancestors: tuple[int, ...] = ()
    simulated: bool = False


@dataclass(frozen=True)
class LocalProc:
    """A process of the pod's pid namespace (here: one holding /dev/nvidia* open)."""

    pid: int
    title: str = ""
    ppid: int | None = None
    pgid: int | None = None
    start: float | None = None
    ancestors: tuple[int, ...] = ()


@dataclass(frozen=True)
class VllmProc:
    """A vLLM-looking process on the pod, whether or not NVML lists it."""

    pid: int
    # "api", "engine", "worker", "coordinator" (data parallel's DPCoordinator); "tracker"
    # (multiprocessing's resource tracker) and "spawned" (a spawned child not retitled yet)
    # in a vLLM process group
    kind: str
    title: str
    ppid: int
    pgid: int
    start: float
    ancestors: tuple[int, ...]
    nvidia: bool  # holds /dev/nvidia* open
    stdout: str = ""  # where fd 1 points: the log file of a detached server
    served: str | None = None  # API servers: --served-model-name (or the model id)
    port: int | None = None  # API servers: --port (vLLM's default 8000)
    model: str | None = None
    state: str = ""
    rss_mib: int | None = None  # resident memory (what a CPU vLLM holds)
    argv: tuple[str, ...] = ()  # API servers: the command line (vllm/adopt.py)


@dataclass(frozen=True)
class PortOwner:
    pid: int | None
    state: str | None  # "listen", "bound" (vLLM binds before loading the model) or None
    pgid: int | None = None


@dataclass(frozen=True)
class AgentSample:
    seq: int
    t: float
    interval: float
    backend: str  # "nvml", "nvidia-smi", "sim" or "none"
    simulated: bool
    error: str | None
    gpus: tuple[GpuSample, ...]
    procs: tuple[GpuProc, ...]
    ports: dict[int, PortOwner]
    nvidia_holders: tuple[LocalProc, ...]
    vllm: tuple[VllmProc, ...]
    cost_ms: float = 0.0
    cpu_ms: float = 0.0
    host: str = ""
    home: str = ""  # the pod user's home directory: where "~/..." log paths are
    agent_pid: int | None = None
    fd_unreadable: int = 0
    mem_available_mib: int | None = None  # the pod's MemAvailable (host RAM for a CPU vLLM)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def containerised(self) -> bool:
        """NVML lists pids this pod cannot see: attribution falls back to launches and fds."""
        return any(not p.visible for p in self.procs)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def parse_sample(data: dict[str, Any]) -> AgentSample:
    """A decoded agent line as an AgentSample; raises ProtocolMismatch / SampleError."""
    if not isinstance(data, dict):
        raise SampleError("agent line is not a JSON object")
    if data.get("v") != PROTOCOL_VERSION:
        raise ProtocolMismatch(data.get("v"))
    try:
        gpus = tuple(
            GpuSample(
                index=int(g["index"]),
                uuid=str(g.get("uuid", "")),
                name=str(g.get("name", "")),
                total_mib=int(g["total_mib"]),
                used_mib=int(g.get("used_mib") or 0),
                free_mib=int(g.get("free_mib") or 0),
                reserved_mib=_opt_int(g.get("reserved_mib")),
                utilization_pct=_opt_float(g.get("util_pct")),
                temperature_c=_opt_float(g.get("temp_c")),
                power_w=_opt_float(g.get("power_w")),
                simulated=bool(g.get("simulated", False)),
            )
            for g in data.get("gpus", [])
        )
        procs = tuple(
            GpuProc(
                gpu=int(p.get("gpu", 0)),
                pid=int(p["pid"]),
                used_mib=_opt_int(p.get("used_mib")),
                type=str(p.get("type", "C")),
                visible=bool(p.get("visible", False)),
                title=str(p.get("title", "")),
                comm=str(p.get("comm", "")),
                cmdline=tuple(str(a) for a in p.get("cmdline", [])),
                ppid=_opt_int(p.get("ppid")),
                pgid=_opt_int(p.get("pgid")),
                start=_opt_float(p.get("start")),
                ancestors=tuple(int(a) for a in p.get("ancestors", [])),
                simulated=bool(p.get("simulated", False)),
            )
            for p in data.get("procs", [])
        )
        vllm = tuple(
            VllmProc(
                pid=int(v["pid"]),
                kind=str(v["kind"]),
                title=str(v.get("title", "")),
                ppid=int(v.get("ppid", 0)),
                pgid=int(v.get("pgid", 0)),
                start=float(v.get("start", 0.0)),
                ancestors=tuple(int(a) for a in v.get("ancestors", [])),
                nvidia=bool(v.get("nvidia", False)),
                stdout=str(v.get("stdout", "")),
                served=v.get("served"),
                port=_opt_int(v.get("port")),
                model=v.get("model"),
                state=str(v.get("state", "")),
                rss_mib=_opt_int(v.get("rss_mib")),
                argv=tuple(str(a) for a in v.get("argv", [])),
            )
            for v in data.get("vllm", [])
        )
        ports = {
            int(k): PortOwner(_opt_int(v.get("pid")), v.get("state"), _opt_int(v.get("pgid")))
            for k, v in data.get("ports", {}).items()
        }
        return AgentSample(
            seq=int(data["seq"]),
            t=float(data["t"]),
            interval=float(data.get("interval", 1.0)),
            backend=str(data.get("backend", "")),
            simulated=bool(data.get("simulated", False)),
            error=data.get("error"),
            gpus=gpus,
            procs=procs,
            ports=ports,
            nvidia_holders=tuple(
                LocalProc(
                    pid=int(h["pid"]),
                    title=str(h.get("title", "")),
                    ppid=_opt_int(h.get("ppid")),
                    pgid=_opt_int(h.get("pgid")),
                    start=_opt_float(h.get("start")),
                    ancestors=tuple(int(a) for a in h.get("ancestors", [])),
                )
                for h in data.get("nvidia_holders", [])
            ),
            vllm=vllm,
            cost_ms=float(data.get("cost_ms", 0.0)),
            cpu_ms=float(data.get("cpu_ms", 0.0)),
            host=str(data.get("host", "")),
            home=str(data.get("home", "")),
            agent_pid=_opt_int(data.get("agent_pid")),
            fd_unreadable=int(data.get("fd_unreadable", 0)),
            mem_available_mib=_opt_int(data.get("mem_available_mib")),
            raw=data,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SampleError(f"malformed agent sample: {exc!r}") from None


def parse_line(line: str) -> AgentSample:
    try:
        data = json.loads(line)
    except ValueError:
        raise SampleError(f"agent printed a non-JSON line: {line[:120]!r}") from None
    return parse_sample(data)
