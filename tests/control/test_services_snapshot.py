"""What the Controller does with [[services]] before any pod: the agent watches their ports,
and a `gpu = true` service's GPU rows are shown as the service's."""

from __future__ import annotations

from ocrtui.config import Config, parse_config
from ocrtui.control import Controller, _with_services
from ocrtui.status import ProcessStatus, ServiceStatus, Snapshot


def _config() -> Config:
    return parse_config(
        {
            "pod": {"kind": "local"},
            "models": [{"name": "m", "model": "x/m", "port": 8000, "gpu_memory_utilization": 0.4}],
            "services": [
                {"name": "ocr-api", "command": ["ocr"], "port": 8007, "gpu": True},
                {"name": "pdf-api", "command": ["pdf"], "port": 8006},
            ],
        },
        "test",
    )


def test_agent_is_asked_for_the_services_ports() -> None:
    ctl = Controller(_config())
    ports = [ctl.monitor.argv[i + 1] for i, a in enumerate(ctl.monitor.argv) if a == "--port"]
    assert ports == ["8000", "8007", "8006"]


def test_rows_of_a_gpu_service_are_the_services() -> None:
    rows = (
        ProcessStatus(10, 0, 900, None, "python3", True, "other"),
        ProcessStatus(11, 0, 500, None, "python3", True, "other"),
        ProcessStatus(12, 0, 700, "m", "vllm", True, "model", "m"),
    )
    services = (
        ServiceStatus("ocr-api", 8007, "ready", 10, gpu=True, pids=(10, 12)),
        ServiceStatus("pdf-api", 8006, "ready", 11, gpu=False, pids=(11,)),
    )
    out = _with_services(rows, services)
    assert [(p.kind, p.owner) for p in out] == [
        ("service", "ocr-api"),
        ("other", None),  # not a gpu service: left as it was
        ("model", "m"),  # a model's row stays the model's
    ]


def test_status_json_lists_services() -> None:
    snap = Controller(_config()).snapshot
    assert isinstance(snap, Snapshot) and snap.to_json()["services"] == []
    svc = ServiceStatus("ocr-api", 8007, "crashed", None, hint="boom", last_lines=("a", "b"))
    entry = Snapshot(snap.pod, (), (), (), services=(svc,)).to_json()["services"][0]
    assert entry["state"] == "crashed" and entry["last_lines"] == ["a", "b"]
    assert set(entry) >= {"name", "port", "state", "pid", "managed", "uptime_s", "hint"}
