"""A simulated GPU: a directory that simulated vLLM processes register their memory in.

Layout (read by the pod agent too, which imports nothing from this package, so this file
format is a contract):

    <dir>/device.json        {"index": 0, "uuid": str, "name": str, "total_mib": int,
                              "count": int}
    <dir>/holders/<pid>.json {"pid": int, "used_mib": int, "gpu": int}

``count`` (1 when absent) devices of the same name and size, indexed 0..count-1 (the uuid's
last digits are the index); each holder holds memory on the one device its ``gpu`` names, as
a data-parallel rank does. A holder counts only while its pid is alive, so memory vanishes
with the process that held it, exactly as on a real GPU, and an EngineCore that outlives its
killed API server keeps its memory. Every name carries "(simulated)" so a simulated device
never passes for a real one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

A40_TOTAL_MIB = 46068
SIM_GPU_ENV = "OCRTUI_SIM_GPU"


@dataclass(frozen=True)
class Holder:
    pid: int
    used_mib: int
    gpu: int = 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has released its memory on a real GPU too.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class SimGpu:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str = "NVIDIA A40 (simulated)",
        total_mib: int = A40_TOTAL_MIB,
        count: int = 1,
    ) -> SimGpu:
        gpu = cls(path)
        (gpu.path / "holders").mkdir(parents=True, exist_ok=True)
        device = {
            "index": 0,
            "uuid": "GPU-00000000-sim0-0000-0000-000000000000",
            "name": name,
            "total_mib": total_mib,
            "count": count,
        }
        _write_atomic(gpu.path / "device.json", device)
        return gpu

    def device(self) -> dict[str, object]:
        return json.loads((self.path / "device.json").read_text())

    @property
    def total_mib(self) -> int:
        return int(self.device()["total_mib"])  # type: ignore[call-overload]

    @property
    def count(self) -> int:
        return int(self.device().get("count", 1))  # type: ignore[call-overload]

    def holders(self) -> list[Holder]:
        out = []
        for f in sorted((self.path / "holders").glob("*.json")):
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now, or removed
            if _alive(int(data["pid"])):
                out.append(Holder(int(data["pid"]), int(data["used_mib"]), int(data.get("gpu", 0))))
        return out

    def used_mib(self, gpu: int | None = None) -> int:
        """Held on device ``gpu``, or on all of them."""
        return sum(h.used_mib for h in self.holders() if gpu is None or h.gpu == gpu)

    def free_mib(self, gpu: int = 0) -> int:
        return self.total_mib - self.used_mib(gpu)

    def hold(self, pid: int, used_mib: int, gpu: int = 0) -> None:
        self.prune()
        _write_atomic(
            self.path / "holders" / f"{pid}.json", {"pid": pid, "used_mib": used_mib, "gpu": gpu}
        )

    def release(self, pid: int) -> None:
        (self.path / "holders" / f"{pid}.json").unlink(missing_ok=True)

    def prune(self) -> None:
        """Remove the files of holders that died without releasing (SIGKILL)."""
        for f in (self.path / "holders").glob("*.json"):
            if f.stem.isdigit() and not _alive(int(f.stem)):
                f.unlink(missing_ok=True)


def _write_atomic(path: Path, data: object) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
