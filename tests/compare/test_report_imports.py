"""The runner writes its reports through report_files.py, which imports report_html (Jinja2)
and report_plots (matplotlib) only when report.html is written: starting a comparison loads
neither."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

RENDERERS = ("jinja2", "matplotlib")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(__import__('json').dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=50
    )
    mods: list[str] = json.loads(out.stdout.splitlines()[-1])
    return [m for m in mods if m.split(".")[0] in RENDERERS]


def test_the_runner_and_the_headless_compare_load_no_renderer() -> None:
    assert _loaded_after("import ocrtui.compare.runner, ocrtui.compare.cli") == []


def test_writing_report_html_loads_them() -> None:
    code = (
        "import asyncio, pathlib, ocrtui.compare.report_files as rf\n"
        "try:\n"
        "    asyncio.run(rf.write_html(pathlib.Path('/nonexistent-run')))\n"
        "except Exception:\n"
        "    pass"
    )
    loaded = {m.split(".")[0] for m in _loaded_after(code)}
    assert loaded == set(RENDERERS)
