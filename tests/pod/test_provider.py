"""[pod.provider]: status/start commands run locally, their output read into a power state."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ocrtui.cli import main
from ocrtui.config import ProviderConfig
from ocrtui.pod.provider import (
    ProviderCommandError,
    ProviderState,
    parse_state,
    provider_start,
    provider_state,
    run_provider_command,
)
from tests.plugins.processes import eventually, pid_alive

pytestmark = pytest.mark.timeout(30)


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def provider(status: list[str], **keys: Any) -> ProviderConfig:
    return ProviderConfig(status_command=tuple(status), **keys)


RUNPOD_TABLE = "ID              NAME         STATUS\na1b2c3example  glm-ocr-a40  RUNNING\n"


async def test_running_from_the_default_regex(tmp_path: Path) -> None:
    cfg = provider(script(tmp_path, "s", f"print({RUNPOD_TABLE!r}, end='')"))
    assert await provider_state(cfg) == ProviderState(
        "running", "a1b2c3example glm-ocr-a40 RUNNING"
    )


async def test_stopped_from_stderr(tmp_path: Path) -> None:
    cfg = provider(script(tmp_path, "s", "import sys; print('pod is EXITED', file=sys.stderr)"))
    assert await provider_state(cfg) == ProviderState("stopped", "pod is EXITED")


async def test_json_field(tmp_path: Path) -> None:
    doc = {"pods": [{"id": "x", "desiredStatus": "EXITED"}]}
    cfg = provider(
        script(tmp_path, "s", f"print({json.dumps(doc)!r})"), state_json="pods[0].desiredStatus"
    )
    assert await provider_state(cfg) == ProviderState("stopped", "pods[0].desiredStatus = EXITED")


def test_custom_regex_and_values() -> None:
    cfg = provider(
        ["x"],
        state_regex=r"power: (?P<state>\w+)",
        running_values=("on",),
        stopped_values=("off",),
    )
    assert parse_state(cfg, "name: a\npower: ON\n").state == "running"
    assert parse_state(cfg, "power: off").state == "stopped"
    unknown = parse_state(cfg, "power: hibernating")
    assert (
        unknown.state == "unknown"
        and "'hibernating' is neither running nor stopped" in unknown.detail
    )
    assert (
        parse_state(cfg, "nothing").detail == r"no match for 'power: (?P<state>\\w+)' in: nothing"
    )


def test_json_errors_are_unknown() -> None:
    cfg = provider(["x"], state_json="desiredStatus")
    assert parse_state(cfg, "RUNNING").detail.startswith("output is not JSON (")
    assert parse_state(cfg, '{"status": 1}').detail == (
        "state_json desiredStatus: no key 'desiredStatus' at the top"
    )


async def test_failing_command(tmp_path: Path) -> None:
    cfg = provider(
        script(tmp_path, "s", "import sys; print('401 Unauthorized', file=sys.stderr); sys.exit(3)")
    )
    state = await provider_state(cfg)
    assert state.failed and state.state == "unknown"
    assert state.detail.endswith("exited with status 3: 401 Unauthorized")


async def test_missing_program() -> None:
    state = await provider_state(provider([str(Path("/nonexistent/runpodctl"))]))
    assert state.failed and "cannot run '/nonexistent/runpodctl'" in state.detail


async def test_hanging_command_is_killed_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # sh starts in milliseconds, so the pids are written long before the timeout.
    hang = ["sh", "-c", 'sleep 60 & echo "$$ $!" >"$1"; wait', "sh", str(pids)]
    t0 = time.monotonic()
    with pytest.raises(ProviderCommandError, match="'sh' timed out after 3 s"):
        await run_provider_command(hang, 3.0)
    assert time.monotonic() - t0 < 15
    shell, child = map(int, pids.read_text().split())
    # SIGKILL of the group is sent before the error; the kernel ends the orphaned `sleep`
    # when it next runs, which a loaded machine can put off for a while.
    await eventually(lambda: not pid_alive(shell) and not pid_alive(child), 10, "group killed")


async def test_start_runs_start_then_status(tmp_path: Path) -> None:
    flag = tmp_path / "started"
    status = script(
        tmp_path,
        "status",
        f"import os; print('RUNNING' if os.path.exists({str(flag)!r}) else 'EXITED')",
    )
    start = script(tmp_path, "start", f"open({str(flag)!r}, 'w')")
    cfg = provider(status, start_command=tuple(start))
    assert (await provider_state(cfg)).state == "stopped"
    assert (await provider_start(cfg)).state == "running"


def write_config(tmp_path: Path, provider_toml: str) -> Path:
    path = tmp_path / "ocrtui.toml"
    path.write_text(
        '[pod]\nkind = "local"\nname = "glm-ocr-a40"\n'
        + provider_toml
        + '\n[[models]]\nname = "m"\nmodel = "o/m"\nport = 8000\ngpu_memory_utilization = 0.4\n'
    )
    return path


@pytest.mark.parametrize(
    ("body", "code", "out", "err"),
    [
        ("print('RUNNING')", 0, "pod glm-ocr-a40: running (RUNNING)\n", ""),
        ("print('EXITED')", 0, "pod glm-ocr-a40: stopped (EXITED)\n", ""),
        ("import sys; sys.exit(1)", 1, "", "pod glm-ocr-a40: unknown ("),
        ("print('pending')", 1, "", "no match for"),
    ],
)
def test_pod_status_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, code: int, out: str, err: str
) -> None:
    argv = script(tmp_path, "s", body)
    path = write_config(tmp_path, f"[pod.provider]\nstatus_command = {json.dumps(argv)}\n")
    assert main(["--config", str(path), "pod", "status"]) == code
    captured = capsys.readouterr()
    assert captured.out == out
    assert err in captured.err


def test_pod_start_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = script(tmp_path, "status", "print('RUNNING')")
    failing = script(
        tmp_path, "start", "import sys; print('no such pod', file=sys.stderr); sys.exit(2)"
    )
    path = write_config(
        tmp_path,
        f"[pod.provider]\nstatus_command = {json.dumps(status)}\n"
        f"start_command = {json.dumps(failing)}\n",
    )
    assert main(["--config", str(path), "pod", "start"]) == 1
    assert "start failed: " in capsys.readouterr().err
    path = write_config(tmp_path, f"[pod.provider]\nstatus_command = {json.dumps(status)}\n")
    assert main(["--config", str(path), "pod", "start"]) == 2
    assert capsys.readouterr().err == "ocrtui: [pod.provider] has no start_command\n"


def test_pod_command_without_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(write_config(tmp_path, "")), "pod", "status"]) == 2
    assert "no [pod.provider] in the config" in capsys.readouterr().err


def test_pod_start_runs_the_start_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = tmp_path / "started"
    status = script(
        tmp_path,
        "status",
        f"import os; print('pod RUNNING' if os.path.exists({str(flag)!r}) else 'pod EXITED')",
    )
    start = script(tmp_path, "start", f"open({str(flag)!r}, 'w')")
    path = write_config(
        tmp_path,
        f"[pod.provider]\nstatus_command = {json.dumps(status)}\n"
        f"start_command = {json.dumps(start)}\n",
    )
    assert main(["--config", str(path), "pod", "status"]) == 0
    assert capsys.readouterr().out == "pod glm-ocr-a40: stopped (pod EXITED)\n"
    assert main(["--config", str(path), "pod", "start"]) == 0
    assert flag.exists()
    assert capsys.readouterr().out == "pod glm-ocr-a40: running (pod RUNNING)\n"
