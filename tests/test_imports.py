"""What the headless paths load, read in a fresh interpreter's ``sys.modules``: the headless
commands and the comparison runner import no Textual (the layer contract in pyproject.toml
checks direct imports; this checks what is really loaded, indirect imports included), and
the report's libraries (matplotlib, Jinja) load only when a report is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from tests.plugins.sim import free_port

UI = ("textual",)
REPORT = ("matplotlib", "jinja2")
REPO = Path(__file__).resolve().parents[1]


def loaded_after(code: str, timeout: float = 60) -> set[str]:
    """The top-level packages in ``sys.modules`` once ``code`` has run in a new interpreter."""
    dump = "\nimport json as _j, sys as _s; print(_j.dumps(sorted(_s.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code + dump],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    return {name.split(".")[0] for name in json.loads(proc.stdout.splitlines()[-1])}


def test_headless_status_and_down_load_no_textual_and_no_report_libraries(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ocrtui.toml"
    model = {"name": "m", "model": "x/y", "port": free_port(), "gpu_memory_utilization": 0.4}
    config.write_text(
        tomli_w.dumps({"pod": {"kind": "local", "workdir": str(tmp_path)}, "models": [model]})
    )
    code = (
        "import contextlib, io\n"
        "from ocrtui.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['--config', {str(config)!r}, 'status', '--json']) == 0\n"
        f"    assert main(['--config', {str(config)!r}, 'down']) == 0\n"
    )
    loaded = loaded_after(code)
    assert "ocrtui" in loaded
    assert not loaded & {*UI, *REPORT}, loaded & {*UI, *REPORT}


@pytest.fixture(scope="module")
def runner_loads() -> set[str]:
    """One interpreter for both runner tests (each start costs seconds on a loaded box):
    the runner and the headless comparison command."""
    return loaded_after("import ocrtui.compare.runner, ocrtui.compare.cli")


def test_the_comparison_runner_loads_no_textual(runner_loads: set[str]) -> None:
    assert "ocrtui" in runner_loads and not runner_loads & set(UI)


def test_the_comparison_runner_loads_no_report_libraries(runner_loads: set[str]) -> None:
    assert not runner_loads & set(REPORT), runner_loads & set(REPORT)


def test_writing_report_html_loads_the_report_libraries() -> None:
    # compare/report_files.py imports them only once report.html is written.
    code = (
        "import asyncio, pathlib, ocrtui.compare.report_files as rf\n"
        "try:\n"
        "    asyncio.run(rf.write_html(pathlib.Path('/nonexistent-run')))\n"
        "except Exception:\n"
        "    pass"
    )
    assert set(REPORT) <= loaded_after(code)
