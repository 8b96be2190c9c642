"""Screens at a fixed size, driven by recorded snapshots (pytest-textual-snapshot)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.pilot import Pilot

from ocrtui.compare import page_files
from ocrtui.compare.render import RenderTarget
from ocrtui.tui.widgets.log_pane import LogPane
from ocrtui.tui.widgets.page_pane import PagePane
from ocrtui.tui.widgets.run_plots import RunPlot
from tests.plugins import recorded
from tests.plugins.recorded_run import recorded_view
from tests.plugins.run_dirs import page_image
from tests.plugins.tui_app import SIZE, AppFactory


async def _settle(pilot: Pilot[int]) -> None:
    """The recorded snapshot applied and the log tail shown: nothing left in flight."""
    app = pilot.app
    await app.dashboard.tick()  # type: ignore[attr-defined]
    log = app.dashboard.query_one(LogPane)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while not log.lines:
        assert time.monotonic() < deadline, "log tail not shown"
        await pilot.pause(0.02)
    await pilot.pause()


async def _plots_drawn(pilot: Pilot[int]) -> None:
    """The comparison's plots are built in threads: wait for both."""
    await pilot.pause()
    deadline = time.monotonic() + 5
    while any(p.pending for p in pilot.app.screen.query(RunPlot)):
        assert time.monotonic() < deadline, "plots not drawn"
        await pilot.pause(0.02)
    await pilot.pause()


def test_dashboard(snap_compare, make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


@pytest.mark.parametrize("columns", [100, 160])
def test_model_cards_at_width(snap_compare, make_app: AppFactory, columns: int) -> None:
    """Labels and values as aligned pairs in the cards, narrow and wide."""
    app, _ = make_app(recorded.READY)
    assert snap_compare(app, terminal_size=(columns, SIZE[1]), run_before=_settle)


def test_crashed_model_with_hint(snap_compare, make_app: AppFactory) -> None:
    app, _ = make_app(recorded.CRASHED)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


def test_lost_connection(snap_compare, make_app: AppFactory) -> None:
    app, _ = make_app(recorded.LOST)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


def test_restart_confirmation(snap_compare, make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)

    async def before(pilot: Pilot[int]) -> None:
        await _settle(pilot)
        await pilot.press("r")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_comparison_screen(snap_compare, make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)

    async def before(pilot: Pilot[int]) -> None:
        await _settle(pilot)
        app.run_view = recorded_view()
        app.run_view.facts = recorded.run_facts()
        app.show_comparison()
        await _plots_drawn(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_comparison_screen_with_page(
    snap_compare, make_app: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """160 columns: the page pane is on; half-blocks forced (the same on every terminal)."""
    monkeypatch.chdir(tmp_path)  # the run directory is relative, as the summary shows it
    app, _ = make_app(recorded.READY, page_graphics="halfblock")
    run = recorded_view()
    run.facts = recorded.run_facts()
    assert run.out_dir is not None
    for key, row in run.rows.items():
        image = page_image(label=key)
        page_files.save_page_image(
            Path(run.out_dir), row.doc, row.page, RenderTarget(dpi=200), image
        )

    async def before(pilot: Pilot[int]) -> None:
        await _settle(pilot)
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        pane = app.screen.query_one(PagePane)
        deadline = time.monotonic() + 5
        while not pane.query("#page-image"):
            assert time.monotonic() < deadline, "page image not shown"
            await pilot.pause(0.02)
        await _plots_drawn(pilot)

    assert snap_compare(app, terminal_size=(160, 48), run_before=before)
