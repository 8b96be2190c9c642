"""Screens at a fixed size, driven by recorded snapshots (pytest-textual-snapshot)."""

from __future__ import annotations

import time

import pytest
from textual.pilot import Pilot

from ocrtui.tui.widgets.log_pane import LogPane
from tests.plugins import recorded
from tests.plugins.recorded_run import recorded_view
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
        app.show_comparison()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
