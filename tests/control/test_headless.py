"""The headless commands as the operator runs them: `ocrtui status --json`, `up`, `down`,
`restart NAME`, with their exit codes; the done-when check on the demo pod end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.plugins.processes import pid_alive
from tests.plugins.reaper import kill_writing_under, pids_writing_under
from tests.plugins.sim_pod import PodUnderTest, SimPod

DEMO_PORTS = (18000, 18001)


def ocrtui(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "ocrtui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def status_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = ocrtui(*args, "status", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def model_row(status: dict[str, Any], name: str) -> dict[str, Any]:
    row: dict[str, Any] = next(m for m in status["models"] if m["name"] == name)
    return row


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_sigkill_crashed_orphan_then_restart_ready(tmp_path: Path) -> None:
    """Done-when: SIGKILL a model's API server on the demo pod; `status --json` shows it
    crashed with an orphan row; `restart` brings it back ready with no orphan left."""
    busy = [p for p in DEMO_PORTS if not _port_free(p)]
    assert not busy, f"demo ports {busy} are taken by another process on this machine"
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    demo_dir = tmp_path / "state" / "ocrtui" / "demo"
    try:
        up = ocrtui("--demo", "up", env=env, timeout=150)
        assert up.returncode == 0, up.stdout + up.stderr
        status = status_json("--demo", env=env)
        names = [m["name"] for m in status["models"]]
        assert all(m["state"] == "ready" for m in status["models"]), status["models"]
        assert status["pod"]["simulated_gpu"] and status["gpus"][0]["simulated"]
        name = names[0]
        api_pid = model_row(status, name)["pid"]

        os.kill(api_pid, signal.SIGKILL)
        status = status_json("--demo", env=env)
        row = model_row(status, name)
        assert row["state"] == "crashed" and row["pid"] is None
        orphans = [p for p in status["processes"] if p["model"] == f"orphan:{name}"]
        assert orphans and orphans[0]["title"] == "VLLM::EngineCore" and orphans[0]["used_mib"]

        restart = ocrtui("--demo", "restart", name, env=env, timeout=150)
        assert restart.returncode == 0, restart.stdout + restart.stderr
        killing = [
            ln for ln in restart.stdout.splitlines() if ln.startswith(f"{name}: killing orphans ")
        ]
        # The whole leftover tree (EngineCore, Worker, resource tracker), the EngineCore among it.
        assert len(killing) == 1 and str(orphans[0]["pid"]) in killing[0].split(" ", 3)[3].split(
            ", "
        )
        assert restart.stdout.strip().splitlines()[-1] == f"{name}: ready"
        status = status_json("--demo", env=env)
        assert model_row(status, name)["state"] == "ready"
        assert not [p for p in status["processes"] if (p["model"] or "").startswith("orphan:")]

        down = ocrtui("--demo", "down", env=env)
        assert down.returncode == 0, down.stderr
        status = status_json("--demo", env=env)
        assert [m["state"] for m in status["models"]] == ["down", "down"]
        assert status["processes"] == []
    finally:
        kill_writing_under(demo_dir)


def _write_config(
    path: Path, where: PodUnderTest, *models: dict[str, Any], gpu: bool = True
) -> Path:
    pod = {"kind": "local", **where.pod_fields()}
    pod["vllm_command"] = list(pod["vllm_command"])
    if not gpu:  # the simulator on a virtual device (or a real CPU vLLM): no NVIDIA driver
        pod.pop("sim_gpu", None)
    data = {"pod": pod, "models": list(models), "ui": {"refresh_s": 0.25}}
    path.write_text(tomli_w.dumps(data))
    return path


def test_restart_exit_codes_and_progress(sim_pod: SimPod, tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "ocrtui.toml", sim_pod, sim_pod.model("glm"))
    unknown = ocrtui("--config", str(cfg), "restart", "nope")
    assert unknown.returncode == 2
    assert "no model named 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr

    ok = ocrtui("--config", str(cfg), "restart", "glm")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == "glm: not running" and lines[-1] == "glm: ready"
    assert any(line.startswith("glm: starting: ") for line in lines)

    down = ocrtui("--config", str(cfg), "down")
    assert down.returncode == 0 and "glm: stopped" in down.stdout


def test_failed_start_exits_1_with_the_hint(sim_pod: SimPod, tmp_path: Path) -> None:
    bad = sim_pod.model("lighton", extra_args=[*sim_pod.model("x")["extra_args"], "--bogus-flag"])
    cfg = _write_config(tmp_path / "ocrtui.toml", sim_pod, bad)
    up = ocrtui("--config", str(cfg), "up")
    assert up.returncode == 1, up.stdout + up.stderr
    assert "ocrtui: lighton failed to start" in up.stderr
    assert "hint: " in up.stderr and "--bogus-flag" in up.stderr
    status = status_json("--config", str(cfg))
    row = model_row(status, "lighton")
    assert row["state"] == "crashed" and "--bogus-flag" in row["hint"]


def test_unreachable_pod_exits_3(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "ocrtui.toml"
    cfg.write_text(
        tomli_w.dumps(
            {
                "pod": {
                    "kind": "ssh",
                    "host": "127.0.0.1",
                    "port": port,
                    "connect_timeout_s": 3.0,
                    "ssh_config": str(tmp_path / "empty_ssh_config"),
                },
                "models": [
                    {"name": "m", "model": "x/y", "port": 8000, "gpu_memory_utilization": 0.4}
                ],
            }
        )
    )
    (tmp_path / "empty_ssh_config").write_text("")
    for command in (["status", "--json"], ["up"], ["down"], ["restart", "m"]):
        proc = ocrtui("--config", str(cfg), *command)
        assert proc.returncode == 3, (command, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.timeout(180)
def test_no_gpu_pod_up_orphans_without_vram_restart_and_down(
    sim_pod: SimPod, tmp_path: Path
) -> None:
    """A CPU vLLM (the simulator without its GPU): no NVIDIA driver, nothing holds VRAM. `up`
    warns and starts; after kill -9 of the API server its EngineCore is an orphan with its
    RSS; `restart` kills it and starts again; `down` leaves nothing running. Real vLLM's run
    of the same (its Worker and resource tracker orphaned too) is the behaviour suite's, once,
    through the real sshd (tests/behaviour/test_lifecycle.py)."""
    model = sim_pod.model("glm")
    cfg = _write_config(tmp_path / "ocrtui.toml", sim_pod, model, gpu=False)
    limit = float(model["ready_timeout_s"]) + 60
    up = ocrtui("--config", str(cfg), "up", timeout=limit)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "glm: warning: cannot check GPU memory: no NVIDIA driver" in up.stdout
    status = status_json("--config", str(cfg))
    assert status["gpus"] == [] and model_row(status, "glm")["state"] == "ready"
    api_pid = model_row(status, "glm")["pid"]

    os.kill(api_pid, signal.SIGKILL)
    status = status_json("--config", str(cfg))
    row = model_row(status, "glm")
    assert row["state"] == "crashed" and "live on" in row["hint"]
    orphans = {o["pid"]: o for o in status["orphans"]}
    (engine,) = [o for o in orphans.values() if o["title"] == "VLLM::EngineCore"]
    assert all(o["model"] == "glm" for o in orphans.values())
    assert all(o["used_mib"] is None and o["rss_mib"] > 0 for o in orphans.values())
    assert str(engine["pid"]) in row["hint"]

    restart = ocrtui("--config", str(cfg), "restart", "glm", timeout=limit)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "glm: last run failed: the API server is gone" in restart.stdout
    assert not any(pid_alive(pid) for pid in orphans)
    status = status_json("--config", str(cfg))
    assert status["orphans"] == [] and model_row(status, "glm")["state"] == "ready"
    tree = pids_writing_under(sim_pod.workdir)  # the new server's processes
    assert model_row(status, "glm")["pid"] in tree

    down = ocrtui("--config", str(cfg), "down")
    assert down.returncode == 0 and "glm: stopped" in down.stdout
    assert "glm: waiting for its processes to exit" in down.stdout and "VRAM" not in down.stdout
    assert not any(pid_alive(pid) for pid in tree)
    assert status_json("--config", str(cfg))["orphans"] == []


def test_force_starts_past_a_refusal_and_says_what_it_skipped(
    sim_pod: SimPod, tmp_path: Path
) -> None:
    model = sim_pod.model("glm")
    cfg = _write_config(tmp_path / "ocrtui.toml", sim_pod, model)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", model["port"]))
        squatter.listen()
        refused = ocrtui("--config", str(cfg), "restart", "glm")
        assert refused.returncode == 1
        assert f"ocrtui: port {model['port']} is taken by pid {os.getpid()}" in refused.stderr
        assert "glm: launching" not in refused.stdout
        forced = ocrtui("--config", str(cfg), "restart", "glm", "--force")
    assert f"glm: --force: not refusing: port {model['port']} is taken" in forced.stdout
    assert "glm: launching" in forced.stdout


def test_sleep_and_wake_as_commands(sim_pod: SimPod, tmp_path: Path) -> None:
    """`ocrtui sleep NAME` gives the memory back (status --json and the plain status say
    so), `ocrtui wake NAME` takes it again; a model without sleep mode exits 1 with the
    hint; an unknown name is a usage error."""
    sleepy = sim_pod.model("glm")
    sleepy["extra_args"] = [*sleepy["extra_args"], "--enable-sleep-mode"]
    plain = sim_pod.model("plain", gpu_memory_utilization=0.2)
    cfg = str(_write_config(tmp_path / "ocrtui.toml", sim_pod, sleepy, plain))
    up = ocrtui("--config", cfg, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    planned = model_row(status_json("--config", cfg), "glm")["planned_mib"]

    asleep = ocrtui("--config", cfg, "sleep", "glm")
    assert asleep.returncode == 0, asleep.stdout + asleep.stderr
    assert asleep.stdout.startswith("glm: sleeping (level 1), gave back ")
    row = model_row(status_json("--config", cfg), "glm")
    assert row["state"] == "ready" and row["sleep_level"] == 1
    assert row["given_back_mib"] == planned - row["used_mib"] > planned * 0.9
    plain_status = ocrtui("--config", cfg, "status")
    assert "  sleeping (level 1), gave back " in plain_status.stdout

    woken = ocrtui("--config", cfg, "wake", "glm")
    assert woken.returncode == 0, woken.stdout + woken.stderr
    assert woken.stdout == f"glm: awake (ready), {planned} MiB on the GPU\n"
    row = model_row(status_json("--config", cfg), "glm")
    assert row["sleep_level"] is None and row["used_mib"] == planned

    refused = ocrtui("--config", cfg, "sleep", "plain")
    assert refused.returncode == 1
    assert "VLLM_SERVER_DEV_MODE=1" in refused.stderr and "hint: add --enable-sleep-mode" in (
        refused.stderr
    )
    assert ocrtui("--config", cfg, "wake", "nope").returncode == 2
    assert ocrtui("--config", cfg, "down").returncode == 0
