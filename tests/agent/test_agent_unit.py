"""Agent pieces without a live stream: syntax floor, argv parsing, backends, clean exit."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from ocrtui.agent import agent
from ocrtui.monitor.agent_monitor import AGENT_SOURCE
from ocrtui.sim.gpu import SimGpu


def test_agent_source_parses_as_python_3_8_and_imports_nothing_from_ocrtui() -> None:
    tree = ast.parse(AGENT_SOURCE.read_text(), feature_version=(3, 8))
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert not any(str(m).startswith("ocrtui") for m in imported)
    # 3.9+ library calls that ast's feature_version does not catch
    text = AGENT_SOURCE.read_text()
    for newer in (".removeprefix(", ".removesuffix(", "functools.cache(", "zoneinfo", "tomllib"):
        assert newer not in text


@pytest.mark.parametrize(
    ("comm", "argv", "expected"),
    [
        ("VLLM::EngineCor", ["VLLM::EngineCore"], ("engine", {})),
        ("VLLM::Worker_TP", ["VLLM::Worker_TP1"], ("worker", {})),
        ("VLLM::EngineCor", [], ("engine", {})),
        (
            "vllm",
            [
                "/usr/bin/python3",
                "/usr/local/bin/vllm",
                "serve",
                "zai-org/GLM-OCR",
                "--port",
                "8000",
                "--served-model-name",
                "glm-ocr",
                "--limit-mm-per-prompt",
                '{"image": 1}',
            ],
            (
                "api",
                {"model": "zai-org/GLM-OCR", "served": "glm-ocr", "port": 8000, "simulated": False},
            ),
        ),
        (
            "python3",
            [
                "python3",
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                "lightonai/LightOnOCR-2-1B",
                "--port=8001",
            ],
            (
                "api",
                {
                    "model": "lightonai/LightOnOCR-2-1B",
                    "served": "lightonai/LightOnOCR-2-1B",
                    "port": 8001,
                    "simulated": False,
                },
            ),
        ),
        (
            "python",
            [
                "/venv/bin/python",
                "-m",
                "ocrtui",
                "sim-vllm",
                "serve",
                "rapidocr",
                "--served-model-name=rapidocr-sim",
            ],
            (
                "api",
                {"model": "rapidocr", "served": "rapidocr-sim", "port": 8000, "simulated": True},
            ),
        ),
        ("python3", ["python3", "train.py", "--port", "8000"], None),
        ("vllm", ["/usr/local/bin/vllm", "bench", "serve"], None),
    ],
)
def test_vllm_role_from_title_and_argv(comm: str, argv: list[str], expected: Any) -> None:
    assert agent.vllm_role(comm, argv) == expected


def test_stat_with_spaces_and_parentheses_in_comm() -> None:
    text = (
        "4188 (VLLM::Engine (x) y) S 1 4100 4100 0 -1 4194560 " + " ".join(["0"] * 12) + " 5000 0"
    )
    p = agent._parse_stat(4188, text, boot=1000.0)
    assert p is not None
    assert (p.comm, p.state, p.ppid, p.pgid, p.sid) == ("VLLM::Engine (x) y", "S", 1, 4100, 4100)
    assert p.start == 1000.0 + 5000 / agent._CLK_TCK


def test_nvidia_smi_csv_parsing_with_unsupported_fields() -> None:
    gpus = agent.parse_smi_gpus(
        "0, GPU-8a7e3c1d-0001, NVIDIA H100 80GB HBM3, 81559, 20515, 60542, 37, 41, 121.37\n"
        "1, GPU-8a7e3c1d-0002, NVIDIA H100 80GB HBM3, 81559, 4, 81054, 0, 30, [N/A]\n"
    )
    assert [(g["index"], g["used_mib"], g["util_pct"], g["power_w"]) for g in gpus] == [
        (0, 20515, 37.0, 121.37),
        (1, 4, 0.0, None),
    ]
    apps = agent.parse_smi_apps(
        "GPU-8a7e3c1d-0001, 2281934, 18386, VLLM::EngineCore\n"
        "GPU-8a7e3c1d-0001, 1913, [N/A], python3, with, commas\n",
        gpus,
    )
    assert [(a["gpu"], a["pid"], a["used_mib"]) for a in apps] == [
        (0, 2281934, 18386),
        (0, 1913, None),
    ]


class _NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"nvml error {value}")
        self.value = value


def fake_pynvml(*, init_error: int | None = None) -> types.SimpleNamespace:
    """pynvml as a driver without the _v3 calls or memory v2 presents it."""
    calls: list[str] = []

    def proc(pid: int, used: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(pid=pid, usedGpuMemory=used)

    def unsupported(_h: object) -> list[object]:
        raise _NVMLError(13)  # NVML_ERROR_FUNCTION_NOT_FOUND

    def compute_v2(_h: object) -> list[object]:
        calls.append("compute_v2")
        return [proc(4188, 18386 << 20)]

    def graphics_v2(_h: object) -> list[object]:
        calls.append("graphics_v2")
        return [proc(4188, 0), proc(77, 64 << 20)]

    def memory(_h: object, version: int | None = None) -> types.SimpleNamespace:
        if version:
            raise _NVMLError(13)
        return types.SimpleNamespace(total=46068 << 20, used=19000 << 20, free=27068 << 20)

    def init() -> None:
        if init_error is not None:
            raise _NVMLError(init_error)

    return types.SimpleNamespace(
        calls=calls,
        NVMLError=_NVMLError,
        NVML_ERROR_FUNCTION_NOT_FOUND=13,
        NVML_ERROR_LIBRARY_NOT_FOUND=12,
        NVML_ERROR_DRIVER_NOT_LOADED=9,
        NVML_TEMPERATURE_GPU=0,
        nvmlMemory_v2=0x02000028,
        nvmlInit=init,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetName=lambda h: b"NVIDIA A40",
        nvmlDeviceGetUUID=lambda h: "GPU-1",
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=37),
        nvmlDeviceGetTemperature=lambda h, s: 54,
        nvmlDeviceGetPowerUsage=unsupported,
        nvmlDeviceGetComputeRunningProcesses_v3=unsupported,
        nvmlDeviceGetComputeRunningProcesses_v2=compute_v2,
        nvmlDeviceGetGraphicsRunningProcesses_v3=unsupported,
        nvmlDeviceGetGraphicsRunningProcesses_v2=graphics_v2,
    )


def test_nvml_ladder_falls_back_to_v2_and_merges_compute_and_graphics() -> None:
    nv = fake_pynvml()
    backend = agent.NvmlGpu(nv)
    for _ in range(2):
        gpus, procs, error = backend.sample()
    assert error is None
    (gpu,) = gpus
    assert (gpu["name"], gpu["used_mib"], gpu["reserved_mib"], gpu["power_w"]) == (
        "NVIDIA A40",
        19000,
        None,
        None,
    )
    assert {p["pid"]: (p["type"], p["used_mib"]) for p in procs} == {
        4188: ("C+G", 18386),
        77: ("G", 64),
    }
    # the working call is remembered: the _v3 probe happens once, not every sample
    assert nv.calls == ["compute_v2", "graphics_v2"] * 2


def test_nvml_library_missing_is_an_error_state() -> None:
    backend = agent.NvmlGpu(fake_pynvml(init_error=12))
    assert backend.sample() == ([], [], "no NVIDIA driver (nvml error 12)")


def test_sim_backend_counts_live_holders_only(tmp_path: Path) -> None:
    gpu = SimGpu.create(tmp_path / "gpu")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gpu.hold(int(gone.stdout), 5000)  # a holder whose process has exited
    import os

    gpu.hold(os.getpid(), 1234)
    gpus, procs, error = agent.SimGpu(str(gpu.path)).sample()
    assert error is None
    assert [(p["pid"], p["used_mib"], p["simulated"]) for p in procs] == [(os.getpid(), 1234, True)]
    assert (gpus[0]["used_mib"], gpus[0]["free_mib"], gpus[0]["simulated"]) == (
        1234,
        46068 - 1234,
        True,
    )


def test_agent_exits_cleanly_when_its_reader_goes_away(tmp_path: Path) -> None:
    gpu = SimGpu.create(tmp_path / "gpu")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-", "--interval", "0.25", "--sim-gpu", str(gpu.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(AGENT_SOURCE.read_bytes())
        proc.stdin.close()
        first = json.loads(proc.stdout.readline())
        assert (first["v"], first["seq"], first["backend"]) == (1, 1, "sim")
        proc.stdout.close()
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_interval_outside_range_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, str(AGENT_SOURCE), "--interval", "0.1"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "between 0.25 and 10" in out.stderr


def test_a_process_that_execs_into_vllm_is_seen_although_its_pid_is_cached(
    tmp_path: Path,
) -> None:
    # start_detached runs `sh -c 'echo $$; exec "$@"'`: the pid first looks like an unrelated
    # shell, then becomes the API server; the agent caches unrelated processes, so it must
    # still look again at a young one.
    gpu = SimGpu.create(tmp_path / "gpu")
    sampler = agent.Sampler(agent.SimGpu(str(gpu.path)), [], 1.0)
    code = "import sys, time; sys.stdin.readline(); time.sleep(60)"
    child = subprocess.Popen(
        ["sh", "-c", 'read line; exec "$@"', "sh", sys.executable, "-c", code,
         "vllm", "serve", "org/m", "--port", "8123"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while sampler.table.procs.get(child.pid) is None and time.monotonic() < deadline:
            sampler.sample()
        assert sampler.table.procs[child.pid].comm == "sh"
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        rows: list[dict[str, Any]] = []
        while not rows and time.monotonic() < deadline:
            rows = [r for r in sampler.sample()["vllm"] if r["pid"] == child.pid]
            time.sleep(0.05)  # pacing the polls, not synchronisation: the loop waits on rows
        assert rows and (rows[0]["kind"], rows[0]["port"]) == ("api", 8123)
    finally:
        child.kill()
        child.wait()


_TRACKED_SERVER = """
import sys, time
from multiprocessing import resource_tracker
resource_tracker.ensure_running()
print("ready", resource_tracker._resource_tracker._pid, flush=True)
time.sleep(60)
"""


def test_resource_tracker_of_a_vllm_group_is_listed_with_rss_and_ram(tmp_path: Path) -> None:
    """Real vLLM's API server starts multiprocessing's resource tracker in its process group;
    it outlives a SIGKILLed server, so the agent lists it (kind "tracker") with RSS."""
    exe = tmp_path / "vllm"
    # Run through its shebang, so its comm is "vllm" like the real one's and the tracker's
    # exec shows as a new comm (the agent re-reads argv on a new comm only).
    exe.write_text(f"#!{sys.executable}\n{_TRACKED_SERVER}")
    exe.chmod(0o755)
    proc = subprocess.Popen(
        [str(exe), "serve", "m", "--port", "1", "--served-model-name", "m"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        tracker = int(proc.stdout.readline().split()[1])
        sampler = agent.Sampler(agent.NoGpu("none"), [1], 1.0)
        deadline = time.monotonic() + 10
        while True:  # the tracker may still be between fork and exec at first
            sample = sampler.sample()
            rows = {v["pid"]: v for v in sample["vllm"]}
            if rows.get(tracker, {}).get("kind") == "tracker" or time.monotonic() > deadline:
                break
        assert rows[proc.pid]["kind"] == "api" and rows[proc.pid]["rss_mib"] > 0
        assert rows[tracker]["kind"] == "tracker" and rows[tracker]["pgid"] == proc.pid
        assert sample["mem_available_mib"] > 0
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_resource_tracker_outside_any_vllm_group_is_not_listed() -> None:
    table = agent.ProcTable()
    table.refresh(set(), 0.0)
    assert agent.vllm_helpers(table, []) == []


def test_a_bound_never_listening_port_is_reported_bound() -> None:
    """vLLM binds its port early and listens last; Linux >= 6.5 reports such a socket to
    sock_diag only in TCP_BOUND_INACTIVE."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        ports = agent.Sampler(agent.NoGpu("none"), [port], 1.0).sample()["ports"]
    assert ports[str(port)]["state"] == "bound" and ports[str(port)]["pid"] == os.getpid()


def test_bound_sockets_are_dumped_only_while_a_port_has_no_listener_and_at_most_every_2_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound-socket dump walks the kernel's whole bind hash (7.5 of 9.2 ms a sample on
    an H200 while a model was down)."""
    import socket

    real = agent._diag_sockets
    dumps: list[str] = []

    def counted(family: int, state_code: str) -> list[tuple[str, int, str]]:
        dumps.append(state_code)
        return real(family, state_code)

    monkeypatch.setattr(agent, "_diag_sockets", counted)
    with socket.socket() as bound, socket.socket() as listening:
        bound.bind(("127.0.0.1", 0))
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        ports = agent.PortSockets([listening.getsockname()[1]])
        for t in (0.0, 1.0, 5.0):
            assert [st for st, _ in ports.read(t)[listening.getsockname()[1]]] == ["0A"]
        assert agent._TCP_CLOSE not in dumps  # every port listened

        port = bound.getsockname()[1]
        ports = agent.PortSockets([port])
        seen = [(t, ports.read(t).get(port)) for t in (0.0, 1.0, 1.9, 2.0, 3.0)]
    assert dumps.count(agent._TCP_CLOSE) == 2 * 2  # at 0.0 and 2.0, IPv4 and IPv6 each
    # Between dumps the bound socket is still reported, from the last dump.
    assert all(socks and socks[0][0] == agent._TCP_CLOSE for _, socks in seen), seen


def test_an_argv_read_mid_exec_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child read between fork and exec shows an empty cmdline; its comm may not change
    after exec (python forking python), so an empty argv must not stick."""
    real = agent._read_argv
    # A child Python, not this process: under pytest-xdist a worker's title (and comm) is
    # "[pytest-xdist ...]", which the agent rightly does not take for Python.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    mid_exec = [True]

    def read_argv(pid: int) -> list[str]:
        if pid == child.pid and mid_exec:
            mid_exec.clear()
            return []
        return real(pid)

    monkeypatch.setattr(agent, "_read_argv", read_argv)
    try:
        table = agent.ProcTable()
        table.refresh({child.pid}, 0.0)
        assert table.procs[child.pid].argv == []
        table.refresh({child.pid}, 1.0)
        assert table.procs[child.pid].argv == real(child.pid)
    finally:
        child.kill()
        child.wait()
