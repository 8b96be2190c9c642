"""`ocrtui compare` on a terminal: the exit status after the dashboard closes, when the
comparison never ran (the live path, streaming and exit 0, is in test_live.py); and the
one start function every way of running a comparison goes through."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from ocrtui.errors import InputError, PodUnreachable
from ocrtui.tui.app import comparison_exit_code
from tests.plugins.sim import free_port
from tests.plugins.tui_app import SIZE, AppFactory, until


@pytest.mark.parametrize(
    ("source_error", "compare_error", "code"),
    [
        (PodUnreachable("ssh: no route"), None, 3),
        (None, PodUnreachable("model glm-ocr is not answering"), 3),
        (None, InputError("nothing to compare"), 2),
        (None, RuntimeError("boom"), 1),
        (None, None, 1),  # quit before the run had started: interrupted
    ],
)
async def test_exit_status_without_a_run(
    make_app: AppFactory,
    source_error: BaseException | None,
    compare_error: BaseException | None,
    code: int,
) -> None:
    app, _ = make_app()
    app.source_error, app.compare_error = source_error, compare_error
    assert await comparison_exit_code(app) == code


async def test_headless_and_dashboard_start_runs_through_one_function(
    make_app: AppFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ocrtui.cli import main
    from ocrtui.compare import launch

    reached: list[launch.RunSetup] = []

    async def start_comparison(
        setup: launch.RunSetup,
        model_url: launch.ModelUrl,
        gate: Any = None,
        *,
        served: launch.ServedOf | None = None,
        note: launch.Note | None = None,
        restart: launch.Restart | None = None,
        placement: launch.PlacementOf | None = None,
    ) -> Any:
        reached.append(setup)
        if gate is not None:
            await gate.close()
        raise InputError("start_comparison reached")

    monkeypatch.setattr(launch, "start_comparison", start_comparison)
    pdf = tmp_path / "a.pdf"  # never opened: the run does not start
    pdf.write_bytes(b"%PDF-1.4\n")
    cfg = tmp_path / "ocrtui.toml"
    cfg.write_text(
        f'[pod]\nkind = "local"\nworkdir = "{tmp_path}"\n[[models]]\nname = "glm-ocr"\n'
        f'model = "zai-org/GLM-OCR"\nport = {free_port()}\ngpu_memory_utilization = 0.4\n',
        encoding="utf-8",
    )
    out = tmp_path / "headless"
    # In a thread: main() runs its own event loop.
    code = await asyncio.to_thread(
        main, ["--config", str(cfg), "compare", "--headless", "--out", str(out), str(pdf)]
    )
    assert code == 2 and "start_comparison reached" in capsys.readouterr().err
    assert [s.run_dir for s in reached] == [out]

    app, _ = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        app.screen.query_one("#docs", Input).value = str(pdf)
        await pilot.click("#start")
        await until(pilot, lambda: app.compare_error is not None, 10, "the run to start")
    assert isinstance(app.compare_error, InputError)
    assert len(reached) == 2 and [d.path for d in reached[1].documents] == [pdf]
