"""Shared by the fake torch, pynvml and nvidia-smi: per-pid allocations in $FAKE_GPU_DIR."""

import json
import os

CONTEXT_MIB = 301
TOTAL_MIB = 81559
GPUS = 2


def _dir() -> str:
    return os.environ["FAKE_GPU_DIR"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def allocate(gpu: int, nbytes: int) -> None:
    path = os.path.join(_dir(), f"{os.getpid()}.json")
    used = {"gpu": gpu, "mib": CONTEXT_MIB + nbytes // (1 << 20)}
    with open(path + ".tmp", "w") as f:
        json.dump(used, f)
    os.replace(path + ".tmp", path)


def processes() -> list[tuple[int, int, int]]:
    """(pid, gpu, MiB) of live allocators."""
    out = []
    for name in os.listdir(_dir()):
        if name.endswith(".json"):
            pid = int(name[:-5])
            with open(os.path.join(_dir(), name)) as f:
                data = json.load(f)
            if _alive(pid):
                out.append((pid, data["gpu"], data["mib"]))
    return out
