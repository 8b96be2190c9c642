"""Screens at a fixed size, driven by recorded snapshots (pytest-textual-snapshot)."""

from __future__ import annotations

from textual.pilot import Pilot

from tests.tui import recorded
from tests.tui.conftest import SIZE, AppFactory
from tests.tui.test_compare_screen import recorded_view


async def _settle(pilot: Pilot[int]) -> None:
    await pilot.app.dashboard.tick()  # type: ignore[attr-defined]
    await pilot.pause()


def test_dashboard(snap_compare, make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


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
