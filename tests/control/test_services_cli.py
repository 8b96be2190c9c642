"""Models and [[services]] through the headless commands: `up` starts both simulated models,
then both services, in the waves of start_order; a killed service is `crashed` with its
log tail in `status --json`; `restart NAME` brings it back; `down` stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.plugins.sim import free_port
from tests.plugins.sim_pod import SimPod

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SERVICE_APP = str(Path(__file__).parents[1] / "services" / "service_app.py")


def ocrtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrtui", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def status_json(cfg: Path) -> dict[str, Any]:
    proc = ocrtui("--config", str(cfg), "status", "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def service(root: Path, name: str, after: list[str], *requires: str) -> dict[str, Any]:
    port = free_port()
    argv = [sys.executable, SERVICE_APP, str(port), str(root / f"{name}.argv"), *requires]
    return {
        "name": name,
        "command": argv,
        "port": port,
        "ready_path": "/ready",
        "after": after,
        "ready_timeout_s": 30.0,
    }


def test_up_models_then_services_crash_restart_down(sim_pod: SimPod, tmp_path: Path) -> None:
    glm, lighton = sim_pod.model("glm"), sim_pod.model("lighton")
    # Each service fails at start unless what it sits behind is already ready: the OCR API
    # asks lighton's /v1/models (the last model of the chain), the PDF API needs the OCR API.
    ocr = service(
        tmp_path, "ocr-api", ["glm", "lighton"], "--require-model", str(lighton["port"]), "lighton"
    )
    pdf = service(tmp_path, "pdf-api", ["ocr-api"], "--require-port", str(ocr["port"]))
    pod = {"kind": "local", **sim_pod.pod_fields()}
    pod["vllm_command"] = list(pod["vllm_command"])
    cfg = tmp_path / "ocrtui.toml"
    data = {"pod": pod, "models": [glm, lighton], "services": [ocr, pdf], "ui": {"refresh_s": 0.25}}
    cfg.write_text(tomli_w.dumps(data))

    up = ocrtui("--config", str(cfg), "up")
    assert up.returncode == 0, up.stdout + up.stderr
    ready = [line.split(":")[0] for line in up.stdout.splitlines() if line.endswith(": ready")]
    assert ready == ["glm", "lighton", "ocr-api", "pdf-api"]

    status = status_json(cfg)
    rows = {s["name"]: s for s in status["services"]}
    assert [rows[n]["state"] for n in ("ocr-api", "pdf-api")] == ["ready", "ready"]
    assert rows["ocr-api"]["port"] == ocr["port"] and rows["ocr-api"]["managed"] is True
    text = ocrtui("--config", str(cfg), "status")
    assert f"service ocr-api :{ocr['port']} ready pid={rows['ocr-api']['pid']}" in text.stdout

    os.killpg(rows["ocr-api"]["pid"], signal.SIGKILL)
    crashed = next(s for s in status_json(cfg)["services"] if s["name"] == "ocr-api")
    assert crashed["state"] == "crashed" and crashed["pid"] is None
    log = (sim_pod.workdir / "ocr-api.log").read_text().splitlines()
    assert crashed["last_lines"] and crashed["last_lines"] == log[-len(crashed["last_lines"]) :]
    assert crashed["hint"]

    restart = ocrtui("--config", str(cfg), "restart", "ocr-api")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert restart.stdout.splitlines()[-1] == "ocr-api: ready"
    again = next(s for s in status_json(cfg)["services"] if s["name"] == "ocr-api")
    assert again["state"] == "ready" and again["pid"] not in (None, rows["ocr-api"]["pid"])

    down = ocrtui("--config", str(cfg), "down")
    assert down.returncode == 0, down.stdout + down.stderr
    stopped = [
        line.split(":")[0] for line in down.stdout.splitlines() if line.endswith(": stopped")
    ]
    assert stopped == ["pdf-api", "ocr-api", "lighton", "glm"]
    final = status_json(cfg)
    assert {s["state"] for s in final["services"]} == {"down"}
    assert {m["state"] for m in final["models"]} == {"down"}
