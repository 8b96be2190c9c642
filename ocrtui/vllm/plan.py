"""The pure half of starting a model server: what is run, with which environment, on which
GPU, asking for how much memory, and which plans are known to fail.

No I/O: the lifecycle's preflight calls these with the agent monitor's view, and the
Controller calls :func:`gpu_for` / :func:`planned_mib` for the planned MiB the dashboard
shows, so both agree on a pod whose models are pinned (``CUDA_VISIBLE_DEVICES``) to GPUs of
different sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocrtui.config import Config, ModelConfig
from ocrtui.errors import LifecycleError
from ocrtui.monitor.agent_monitor import MonitorView
from ocrtui.monitor.agent_samples import GpuSample
from ocrtui.monitor.attribution import Row
from ocrtui.sim.gpu import SIM_GPU_ENV

UTILIZATION_SUM_WARN = 0.95


@dataclass(frozen=True)
class KnownModel:
    min_memory_gib: float | None  # below this the server does not start
    default_max_model_len: int | None  # what vLLM uses when --max-model-len is not given


# Facts from research/vllm_and_models.md §4/§5 and the seed: GLM-OCR at 0.40 of a 46068 MiB
# A40 (18.0 GiB) is "the minimum that works", so warn only clearly below that.
KNOWN_MODELS: dict[str, KnownModel] = {
    "zai-org/GLM-OCR": KnownModel(min_memory_gib=17.5, default_max_model_len=131072),
    "lightonai/LightOnOCR-2-1B": KnownModel(min_memory_gib=None, default_max_model_len=16384),
}
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
        "--gpu-memory-utilization",
        str(model.gpu_memory_utilization),
        "--max-num-seqs",
        str(model.max_num_seqs),
    ]
    if model.max_model_len is not None:
        argv += ["--max-model-len", str(model.max_model_len)]
    return [*argv, *model.extra_args]


def serve_env(model: ModelConfig, sim_gpu: str | None) -> dict[str, str]:
    env = dict(model.env)
    if sim_gpu:
        env[SIM_GPU_ENV] = sim_gpu
    key = model.api_key()
    if key:
        env["VLLM_API_KEY"] = key
    return env


# -- preflight -----------------------------------------------------------------------------


def plan_warnings(config: Config, total_mib: int | None) -> list[tuple[str, str]]:
    """(model name, warning) for plans known to fail or waste memory; nothing is refused."""
    out: list[tuple[str, str]] = []
    total = round(sum(m.gpu_memory_utilization for m in config.models), 6)
    if len(config.models) > 1 and total > UTILIZATION_SUM_WARN:
        names = " + ".join(f"{m.name} {m.gpu_memory_utilization:g}" for m in config.models)
        out.append(
            (
                "*",
                f"planned gpu_memory_utilization sums to {total:.2f} ({names}), above "
                f"{UTILIZATION_SUM_WARN}: the last server to start will fail its free-memory check",
            )
        )
    for m in config.models:
        known = KNOWN_MODELS.get(m.model)
        minimum = m.min_memory_gib
        if minimum is None and known and _at_default_context(m, known):
            # The known minimum was measured at the default context; a shorter
            # --max-model-len needs less KV cache, by an amount we cannot know here.
            minimum = known.min_memory_gib
        if minimum is not None and total_mib:
            planned_gib = m.gpu_memory_utilization * total_mib / 1024
            if planned_gib < minimum:
                out.append(
                    (
                        m.name,
                        f"gpu_memory_utilization {m.gpu_memory_utilization:g} gives "
                        f"{planned_gib:.1f} GiB, below the {minimum:g} GiB {m.model} needs: "
                        "KV-cache allocation will fail at startup",
                    )
                )
        default_len = known.default_max_model_len if known else None
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


def _at_default_context(m: ModelConfig, known: KnownModel) -> bool:
    default = known.default_max_model_len
    return m.max_model_len is None or default is None or m.max_model_len >= default


def gpu_for(model: ModelConfig, gpus: Sequence[GpuSample]) -> GpuSample | None:
    """The device the model will use: CUDA_VISIBLE_DEVICES in its env, else the first."""
    visible = model.env.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible.isdigit():
        for g in gpus:
            if g.index == int(visible):
                return g
    return gpus[0] if gpus else None


def planned_mib(model: ModelConfig, gpu: GpuSample) -> int:
    """What vLLM asks for on the GPU the model uses: gpu_memory_utilization x its total.
    The preflight, the model card and the GPU panel all show this figure."""
    return int(model.gpu_memory_utilization * gpu.total_mib)


def describe_holders(rows: Sequence[Row], gpu: int) -> str:
    held = sorted((r for r in rows if r.gpu == gpu and r.used_mib > 0), key=lambda r: -r.used_mib)
    if not held:
        return "no process is listed as holding it (driver or a process outside this pod)"
    parts = []
    for r in held:
        who = r.model or "other"
        title = f" {r.title}" if r.title else ""
        parts.append(f"pid {r.pid} ({who}{title}) {r.used_mib} MiB")
    return ", ".join(parts)


def check_free_memory(model: ModelConfig, view: MonitorView) -> int:
    """Raise LifecycleError when the model's GPU lacks the memory it will ask for; return
    the planned MiB."""
    sample = view.sample
    if sample is None or not sample.gpus:
        reason = view.error or "no GPU in the agent's sample"
        raise LifecycleError(
            f"cannot check GPU memory before starting {model.name}: {reason}",
            "make sure the pod agent runs (see the pod panel) and the GPU is visible",
        )
    gpu = gpu_for(model, sample.gpus)
    assert gpu is not None
    need = planned_mib(model, gpu)
    if gpu.free_mib >= need:
        return need
    rows = view.attribution.rows if view.attribution else ()
    orphans = [r for r in rows if r.kind == "orphan" and r.gpu == gpu.index]
    hint = (
        f"`ocrtui restart {model.name}` kills this model's orphans first; "
        if any(r.owner == model.name for r in orphans)
        else ""
    )
    hint += "stop the holders, or lower gpu_memory_utilization"
    raise LifecycleError(
        f"not enough free GPU memory for {model.name}: needs {need} MiB "
        f"({model.gpu_memory_utilization:g} x {gpu.total_mib} MiB), {gpu.free_mib} MiB free "
        f"on GPU {gpu.index}; held by {describe_holders(rows, gpu.index)}",
        hint,
    )
