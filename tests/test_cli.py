"""The console script's contract: commands listed, config errors exit 2 in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ocrtui.cli import main


def test_help_lists_the_design_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("dashboard", "demo", "status", "up", "down", "restart", "compare", "sim-vllm"):
        assert command in out
    assert "--demo" in out and "--config" in out


def test_broken_config_is_one_line_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[pod]\nkind = "local"\n[[models]]\nname = "a"\nmodel = "m"\nport = 0\n'
        "gpu_memory_utilization = 0.4\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ocrtui", "--config", str(cfg), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"ocrtui: {cfg}: models[0].port: Input should be greater than or equal to 1"]


def test_no_config_anywhere_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OCRTUI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["status"]) == 2
    assert "no config found" in capsys.readouterr().err


def test_usage_error_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["restart"])
    assert info.value.code == 2


def test_missing_workdir_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    cfg = tmp_path / "ocrtui.toml"
    cfg.write_text(
        f'[pod]\nkind = "local"\nworkdir = "{missing}"\n[[models]]\nname = "a"\nmodel = "m"\n'
        "port = 8000\ngpu_memory_utilization = 0.4\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ocrtui", "--config", str(cfg), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"ocrtui: pod.workdir: directory '{missing}' does not exist on local: "
        "create it or fix the config"
    ]
