"""GPU memory for the EngineCore: simulated, real (CUDA via torch), or a virtual device.

The startup checks use vLLM's arithmetic and exact error texts:
requested = utilization x total; free < requested fails at once; the KV cache gets what is
left of requested after weights, activation peak and CUDA graphs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from ocrtui.sim.gpu import SIM_GPU_ENV, SimGpu
from ocrtui.sim.model_numbers import GIB, MIB, ModelNumbers

BLOCK_SIZE = 16
A40_TOTAL_BYTES = 46068 * MIB
_DOCS = " See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."


class GpuBackend(Protocol):
    label: str

    def total_bytes(self) -> int: ...
    def free_bytes(self) -> int: ...
    def hold(self, nbytes: int) -> None:
        """Make this process hold ``nbytes`` in all (grows only)."""
        ...

    def hold_exactly(self, nbytes: int) -> None:
        """Make this process hold ``nbytes`` in all, less than now too (sleep mode)."""
        ...

    def release(self) -> None: ...


class SimGpuBackend:
    def __init__(self, gpu: SimGpu, pid: int, device: int = 0) -> None:
        self.gpu = gpu
        self.pid = pid
        self.device = device
        self.label = f"simulated GPU {device} of {gpu.path} ({gpu.device()['name']})"

    def total_bytes(self) -> int:
        return self.gpu.total_mib * MIB

    def free_bytes(self) -> int:
        return self.gpu.free_mib(self.device) * MIB

    def hold(self, nbytes: int) -> None:
        self.gpu.hold(self.pid, nbytes // MIB, self.device)

    def hold_exactly(self, nbytes: int) -> None:
        self.gpu.hold(self.pid, nbytes // MIB)  # the holder file says the whole amount

    def release(self) -> None:
        self.gpu.release(self.pid)


class CudaBackend:
    """Real memory: the EngineCore allocates its share with torch so NVML sees it."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.blocks: list[Any] = []
        self.held = 0
        self.label = f"CUDA device 0 ({torch.cuda.get_device_name(0)})"

    def total_bytes(self) -> int:
        return int(self.torch.cuda.mem_get_info(0)[1])

    def free_bytes(self) -> int:
        return int(self.torch.cuda.mem_get_info(0)[0])

    def hold(self, nbytes: int) -> None:
        if nbytes > self.held:
            extra = nbytes - self.held
            self.blocks.append(self.torch.empty(extra, dtype=self.torch.uint8, device="cuda:0"))
            self.held = nbytes

    def hold_exactly(self, nbytes: int) -> None:
        if nbytes < self.held:
            self.release()
        self.hold(nbytes)

    def release(self) -> None:
        self.blocks.clear()
        self.torch.cuda.empty_cache()
        self.held = 0


class VirtualBackend:
    """No GPU and no simulated one: an unshared A40-sized device, for the arithmetic only."""

    label = "no GPU: virtual 46068 MiB device, memory not shared with anything"

    def __init__(self) -> None:
        self.held = 0

    def total_bytes(self) -> int:
        return A40_TOTAL_BYTES

    def free_bytes(self) -> int:
        return A40_TOTAL_BYTES - self.held

    def hold(self, nbytes: int) -> None:
        self.held = max(self.held, nbytes)

    def hold_exactly(self, nbytes: int) -> None:
        self.held = nbytes

    def release(self) -> None:
        self.held = 0


def select_backend(sim_gpu: str | None, pid: int, device: int = 0) -> GpuBackend:
    """``--sim-gpu`` / $OCRTUI_SIM_GPU first, then CUDA through torch, else a virtual device.

    ``device`` is the simulated device this process takes (a data-parallel rank's); one the
    simulated GPU does not have fails as CUDA does."""
    path = sim_gpu or os.environ.get(SIM_GPU_ENV)
    if path:
        gpu = SimGpu(path)
        if not (gpu.path / "device.json").is_file():
            gpu = SimGpu.create(path)
        if not 0 <= device < gpu.count:
            raise RuntimeError("CUDA error: invalid device ordinal")
        return SimGpuBackend(gpu, pid, device)
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return VirtualBackend()
    if torch.cuda.is_available():
        return CudaBackend(torch)
    return VirtualBackend()


def _gib(nbytes: float) -> float:
    return round(nbytes / GIB, 2)


def check_free_memory(free: int, total: int, utilization: float) -> int:
    """The bytes requested; raises vLLM's ValueError when free memory is short."""
    requested = int(utilization * total)
    if free < requested:
        raise ValueError(
            f"Free memory on device cuda:0 ({_gib(free)}/{_gib(total)} GiB) on startup is less "
            f"than desired GPU memory utilization ({utilization}, {_gib(requested)} GiB). "
            "Decrease GPU memory utilization or reduce GPU memory used by other processes."
        )
    return requested


@dataclass(frozen=True)
class KvPlan:
    available_bytes: int
    num_gpu_blocks: int
    max_model_len: int

    @property
    def num_tokens(self) -> int:
        return self.num_gpu_blocks * BLOCK_SIZE

    @property
    def max_concurrency(self) -> float:
        return self.num_tokens / self.max_model_len


def non_kv_bytes(profile: ModelNumbers) -> int:
    return int((profile.weights_gib + profile.activation_gib + profile.cuda_graph_gib) * GIB)


def plan_kv_cache(profile: ModelNumbers, requested: int, max_model_len: int) -> KvPlan:
    """Size the KV cache; raises vLLM's ValueErrors when it cannot hold one full request."""
    available = requested - non_kv_bytes(profile)
    if available <= 0:
        raise ValueError(
            "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` "
            "when initializing the engine." + _DOCS
        )
    per_block = profile.kv_bytes_per_token * BLOCK_SIZE
    blocks = available // per_block
    needed = max_model_len * profile.kv_bytes_per_token
    if needed > available:
        estimated = blocks * BLOCK_SIZE
        raise ValueError(
            f"To serve at least one request with the models's max seq len ({max_model_len}), "
            f"({_gib(needed)} GiB KV cache is needed, which is larger than the available KV "
            f"cache memory ({_gib(available)} GiB). Based on the available memory, the "
            f"estimated maximum model length is {estimated}. Try increasing "
            "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
            "engine." + _DOCS
        )
    return KvPlan(available, blocks, max_model_len)
