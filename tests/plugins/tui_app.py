"""The dashboard tests' helpers: ``make_app`` (apps over recorded snapshots, isolated from the
user's theme folder and remembered state), the terminal ``SIZE`` and ``until``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from ocrtui.status import Snapshot
from ocrtui.tui.app import OcrtuiApp
from ocrtui.tui.source import ReplaySource
from tests.plugins import recorded

SIZE = (130, 40)

AppFactory = Callable[..., tuple[OcrtuiApp, ReplaySource]]


async def until(
    pilot: Pilot[Any],
    cond: Callable[[], bool],
    timeout: float = 30.0,  # a bound, not a wait: at load 10 on 2 cores 5 s was too short
    what: Callable[[], str] | str = "condition",
) -> None:
    """Let the app run until ``cond()`` holds; fail after ``timeout`` seconds, or at once when
    the app has exited (an unhandled error ends it: run_test re-raises that error)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if pilot.app.return_code is not None:
            raise AssertionError(
                f"the app exited (code {pilot.app.return_code}) while waiting for "
                f"{what() if callable(what) else what}"
            )
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await pilot.pause(0.02)


@pytest.fixture
def make_app(tmp_path: Path) -> AppFactory:
    def make(
        *snapshots: Snapshot, readonly: bool = False, theme_dir: Path | None = None, **ui: object
    ) -> tuple[OcrtuiApp, ReplaySource]:
        """``ui``: more [ui] settings, e.g. page_graphics="halfblock"."""
        source = ReplaySource(snapshots or (recorded.READY,), logs={"glm-ocr": recorded.GLM_LOG})
        config = recorded.config(
            screenshot_dir=str(tmp_path / "shots"),
            theme_dir=str(theme_dir or tmp_path / "themes"),
            **ui,
        )
        app = OcrtuiApp(config, source, readonly=readonly, state_path=tmp_path / "state.toml")
        return app, source

    return make
