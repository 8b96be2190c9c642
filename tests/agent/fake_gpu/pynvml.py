"""Fake pynvml over the fake GPU registry: the calls the agent and gpu_truth make."""

import types

import _registry

NVML_TEMPERATURE_GPU = 0
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_LIBRARY_NOT_FOUND = 12
nvmlMemory_v2 = 0x02000028


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"fake NVML error {value}")
        self.value = value


def nvmlInit() -> None:
    pass


def nvmlSystemGetDriverVersion() -> str:
    return "550.54.15 (fake)"


def nvmlDeviceGetCount() -> int:
    return _registry.GPUS


def nvmlDeviceGetHandleByIndex(i: int) -> int:
    return i


def nvmlDeviceGetMemoryInfo(h: int, version: int | None = None) -> types.SimpleNamespace:
    used = sum(mib for _, gpu, mib in _registry.processes() if gpu == h) + 450
    mib = 1 << 20
    return types.SimpleNamespace(
        total=_registry.TOTAL_MIB * mib,
        used=used * mib,
        free=(_registry.TOTAL_MIB - used) * mib,
        reserved=(512 * mib if version else None),
    )


def nvmlDeviceGetName(h: int) -> str:
    return "NVIDIA H100 80GB HBM3 (fake)"


def nvmlDeviceGetUUID(h: int) -> str:
    return f"GPU-fake-{h}"


def nvmlDeviceGetUtilizationRates(h: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(gpu=0, memory=0)


def nvmlDeviceGetTemperature(h: int, sensor: int) -> int:
    return 31


def nvmlDeviceGetPowerUsage(h: int) -> int:
    return 70123


def nvmlDeviceGetComputeRunningProcesses_v3(h: int) -> list[types.SimpleNamespace]:
    return [
        types.SimpleNamespace(pid=pid, usedGpuMemory=mib << 20)
        for pid, gpu, mib in _registry.processes()
        if gpu == h
    ]


def nvmlDeviceGetGraphicsRunningProcesses_v3(h: int) -> list[types.SimpleNamespace]:
    return []
