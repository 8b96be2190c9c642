"""Every key path of the dashboard over recorded snapshots (fast, deterministic)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from ocrtui.config import WatchdogConfig
from ocrtui.tui.app import OcrtuiApp
from ocrtui.tui.screens.dialogs import ConfirmDialog, HelpScreen, LauncherDialog, TextDialog
from ocrtui.tui.source import ReplaySource
from ocrtui.tui.themes import read_state
from ocrtui.tui.widgets.gpu_panel import GpuPanel
from ocrtui.tui.widgets.model_card import ModelCard
from ocrtui.vllm.adopt import Stranger
from ocrtui.vllm.lifecycle import Progress
from tests.plugins import recorded
from tests.plugins.tui_app import SIZE, AppFactory, until


def record_notes(app: OcrtuiApp, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    notes: list[tuple[str, str]] = []
    real = app.notify

    def notify(message: str, *, severity: str = "information", **kw: Any) -> None:
        notes.append((severity, message))
        real(message, severity=severity, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(app, "notify", notify)
    return notes


async def started(app: OcrtuiApp, pilot: Pilot[Any]) -> None:
    await pilot.pause()
    app.dashboard.debounce_s = 0.0
    await app.dashboard.tick()
    await pilot.pause()


async def test_readonly_hides_every_pod_action(make_app: AppFactory) -> None:
    app, source = make_app(recorded.CRASHED, readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        shown = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
        assert not {"restart", "stop", "sleep_wake", "kill_orphans", "toggle_watchdog"} & shown
        assert {"compare", "toggle_log", "help"} <= shown
        for key in ("r", "s", "z", "k", "w"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app.dashboard
        assert source.calls == []


async def test_restart_of_crashed_model_starts_at_once(make_app: AppFactory) -> None:
    app, source = make_app(recorded.CRASHED)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("r")
        await until(pilot, lambda: ("restart", "glm-ocr") in source.calls)
        assert not isinstance(app.screen, ConfirmDialog)


async def test_restart_of_ready_model_defaults_to_cancel(make_app: AppFactory) -> None:
    app, source = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("enter")  # the default button
        await pilot.pause()
        assert app.screen is app.dashboard and source.calls == []

        await pilot.press("r")
        await pilot.pause()
        await pilot.click("#confirm")
        await until(pilot, lambda: ("restart", "glm-ocr") in source.calls)


async def test_destructive_key_is_debounced(make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        app.dashboard.debounce_s = 60.0
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("s")  # inside the window: ignored
        await pilot.pause()
        assert app.screen is app.dashboard


async def test_stop_asks_then_stops(make_app: AppFactory) -> None:
    app, source = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("2", "s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.click("#confirm")
        await until(pilot, lambda: ("stop", "lighton-ocr") in source.calls)


async def test_z_sleeps_a_ready_model_after_asking_and_wakes_a_sleeping_one(
    make_app: AppFactory,
) -> None:
    app, source = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("z")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.click("#confirm")
        await until(pilot, lambda: ("sleep", "glm-ocr: level 1") in source.calls)

        # The next snapshot has it asleep: the card and the GPU panel say so, `z` wakes it.
        source.publish(recorded.SLEEPING)
        await app.dashboard.tick()
        await pilot.pause()
        card = app.dashboard.query_one("#card-0", ModelCard)
        assert "sleeping (level 1), gave back 17.4 GiB" in str(card.render())
        bars = app.dashboard.query_one(GpuPanel).query_one(".bars", Static)
        assert "glm-ocr 0.6/18.0 sleeping, 17.4 back" in str(bars.render())
        await pilot.press("z")
        await until(pilot, lambda: ("wake", "glm-ocr") in source.calls)
        assert app.screen is app.dashboard  # no confirmation to wake


async def test_the_watchdog_key_restarts_a_crashed_model_until_the_guard_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The recorded model stays crashed (a replay's restart changes nothing), so the guard
    # trips after max_restarts.
    source = ReplaySource([recorded.CRASHED])
    events = tmp_path / "events.jsonl"
    config = recorded.config(theme_dir=str(tmp_path / "themes")).model_copy(
        update={"watchdog": WatchdogConfig(max_restarts=2, events=str(events))}
    )
    app = OcrtuiApp(config, source, state_path=tmp_path / "state.toml")
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app, monkeypatch)
        await started(app, pilot)
        await pilot.press("w")

        def restarted() -> int:
            return sum("restarted" in m for _, m in notes)

        for n in (1, 2):
            await until(pilot, lambda: restarted() == n)  # noqa: B023 (awaited at once)
            source.publish()  # the next poll: still crashed
        await until(pilot, lambda: any("gave up: 2 restarts" in m for _, m in notes))
        assert ("set_watchdog", "glm-ocr: gave up") in source.calls
        panel = str(app.dashboard.query_one("#watchdog-events", Static).render())
        assert panel.count("glm-ocr crashed: restarted") == 2 and "gave up: 2 restarts" in panel
        assert source.calls.count(("restart", "glm-ocr")) == 2
        await pilot.press("w")
        await until(pilot, lambda: not app.watchdog.running)
    assert len(events.read_text().splitlines()) == 3


async def test_adopt_shows_each_stranger_s_block_without_its_key(make_app: AppFactory) -> None:
    app, source = make_app(recorded.READY)
    argv = ("vllm", "serve", "org/m", "--port", "9010", "--api-key", "k-secret", "--x=\x1b[2J")
    source.stranger_list = [Stranger(4242, 9010, "org/m", argv, 2048)]
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, TextDialog))
        text = str(app.screen.query_one("#text", Static).render())
        assert "[[models]]" in text and 'name = "org/m"' in text and "port = 9010" in text
        assert "k-secret" not in text and "\x1b" not in text and "␛[2J" in text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard)


async def test_kill_orphans_lists_pids_and_memory(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, source = make_app(recorded.READY, recorded.CRASHED)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app, monkeypatch)
        await started(app, pilot)
        assert not app.dashboard.check_action("kill_orphans", ())  # no orphans yet
        source.publish()
        await app.dashboard.tick()
        assert app.dashboard.check_action("kill_orphans", ())
        await pilot.press("k")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        text = str(dialog.query_one("#body").render())
        assert "4188" in text and "17.0 GiB" in text
        await pilot.click("#confirm")
        await until(pilot, lambda: ("kill_orphans", None) in source.calls)
        await until(pilot, lambda: any("4188" in m for _, m in notes))


async def test_refresh_pauses_while_a_dialog_is_open(make_app: AppFactory) -> None:
    app, source = make_app(recorded.READY, recorded.LOST)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        source.publish()
        await app.dashboard.tick()
        assert app.dashboard._applied is recorded.READY
        await pilot.press("escape")
        await pilot.pause()
        await app.dashboard.tick()
        assert app.dashboard._applied is recorded.LOST


class SlowRestart:
    """A restart that reports the lifecycle's steps and then fails with a hint."""

    def __init__(self) -> None:
        self.step = asyncio.Event()
        self.finish = asyncio.Event()

    async def restart(self, name: str, progress: Progress | None = None) -> None:
        assert progress is not None
        progress(name, "waiting for VRAM")
        self.step.set()
        await self.finish.wait()
        raise _LifecycleError("glm-ocr did not become ready", "free VRAM: press k, then r")


class _LifecycleError(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


async def test_restart_progress_then_failure_shows_hint(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, source = make_app(recorded.CRASHED)
    slow = SlowRestart()
    monkeypatch.setattr(source, "restart", slow.restart)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app, monkeypatch)
        await started(app, pilot)
        await pilot.press("r")
        await until(pilot, slow.step.is_set)
        card = app.dashboard.query_one("#card-0", ModelCard)
        await until(pilot, lambda: "waiting for VRAM" in str(card.render()))
        assert not app.dashboard.check_action("restart", ())  # one operation at a time
        slow.finish.set()
        await until(pilot, lambda: any(s == "error" and "press k" in m for s, m in notes))
        await until(pilot, lambda: "waiting for VRAM" not in str(card.render()))


async def test_screenshot_key_saves_svg_into_configured_dir(
    make_app: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app, monkeypatch)
        await started(app, pilot)
        await pilot.press("f8")

        # Written by a thread, which then notifies.
        await until(pilot, lambda: any(m.endswith(".svg") for _, m in notes), 10, "the screenshot")
        shots = list((tmp_path / "shots").glob("ocrtui-*.svg"))
        assert len(shots) == 1 and "<svg" in shots[0].read_text()
        assert any(str(shots[0]) in m for _, m in notes)
        # The palette offers the same (and not Textual's own, which saves to ~/Downloads).
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert "Screenshot" not in commands
        commands["Save screenshot (SVG)"].callback()
        await until(pilot, lambda: len(list((tmp_path / "shots").glob("ocrtui-*.svg"))) == 2)


async def test_keymap_remaps_binding_ids(tmp_path: Path) -> None:
    from ocrtui.tui.source import ReplaySource

    config = recorded.config(
        screenshot_dir=str(tmp_path), theme_dir=str(tmp_path), keymap={"dashboard.restart": "x"}
    )
    source = ReplaySource([recorded.CRASHED])
    app = OcrtuiApp(config, source, state_path=tmp_path / "s.toml")
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        assert source.calls == []
        await pilot.press("x")
        await until(pilot, lambda: ("restart", "glm-ocr") in source.calls)


async def test_help_lists_keys(make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#keys").render())
        assert "Restart" in text and "Kill orphans" not in text  # nothing to kill: hidden
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.dashboard


async def test_themes_load_warn_and_are_remembered(
    make_app: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    themes = tmp_path / "user-themes"
    themes.mkdir()
    (themes / "mine.toml").write_text('name = "mine"\n[colors]\nprimary = "#ff00ff"\n')
    (themes / "broken.toml").write_text('name = "broken"\n[colors]\nprimary = "not-a-colour"\n')
    app, _ = make_app(recorded.READY, theme_dir=themes)
    async with app.run_test(size=SIZE) as pilot:
        notes = record_notes(app, monkeypatch)
        await started(app, pilot)
        assert app.theme == "ocrtui-dark"
        assert {"ocrtui-dark", "ocrtui-light", "mine"} <= set(app.available_themes)
        assert "broken" not in app.available_themes
        app.theme = "ocrtui-light"
        remembered = {"theme": "ocrtui-light", "config_theme": "ocrtui-dark"}
        # Written by a thread, off the loop.
        await until(pilot, lambda: read_state(tmp_path / "state.toml") == remembered)
    # The warning was raised at mount, before the recorder; a fresh app shows it again.
    app2, _ = make_app(recorded.READY, theme_dir=themes)
    warnings: list[str] = []
    monkeypatch.setattr(app2, "notify", lambda m, severity="information", **kw: warnings.append(m))
    async with app2.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app2.theme == "ocrtui-light"  # remembered while [ui] theme is unchanged
    assert any("broken.toml" in w and "colors.primary" in w for w in warnings)
    assert notes == [] or all("broken" not in m for _, m in notes)


async def test_a_changed_ui_theme_wins_over_the_remembered_choice(tmp_path: Path) -> None:
    from ocrtui.tui.source import ReplaySource

    state = tmp_path / "state.toml"

    def app_with(theme: str) -> OcrtuiApp:
        config = recorded.config(str(tmp_path), theme_dir=str(tmp_path), theme=theme)
        return OcrtuiApp(config, ReplaySource([recorded.READY]), state_path=state)

    app = app_with("ocrtui-dark")
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        app.theme = "ocrtui-light"  # the palette's choice
        await until(pilot, lambda: read_state(state).get("theme") == "ocrtui-light")
    app = app_with("ocrtui-dark")
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert app.theme == "ocrtui-light"
    # The config now names another theme: it wins from this start on.
    app = app_with("textual-dark")
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        assert app.theme == "textual-dark"


async def test_launcher_rejects_a_bad_page_spec_and_starts_nothing(make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, LauncherDialog)
        app.screen.query_one("#pages", Input).value = "3-1"
        await pilot.click("#start")
        await pilot.pause()
        assert isinstance(app.screen, LauncherDialog)
        assert "3-1" in str(app.screen.query_one("#error").render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.dashboard and app.run_view is None


async def test_launcher_limits_are_the_config_schemas(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrtui.config import CompareConfig

    meta = CompareConfig.model_fields["concurrency"].metadata
    low = next(m.ge for m in meta if hasattr(m, "ge"))
    high = next(m.le for m in meta if hasattr(m, "le"))
    app, _ = make_app(recorded.READY)
    asked: list[Any] = []
    monkeypatch.setattr(app, "launch_comparison", asked.append)
    async with app.run_test(size=SIZE) as pilot:
        await started(app, pilot)
        await pilot.press("c")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, LauncherDialog)
        assert any(f"({low}–{high})" in str(label.render()) for label in dialog.query("Label"))
        field = dialog.query_one("#concurrency", Input)
        field.focus()
        # Each wrong value is submitted with Enter, not by clicking Start: a Button ignores a
        # click that comes within its active effect (0.2 s) of the one before, and Pilot's
        # clicks come faster than that, on a loaded box too (the timer that ends the effect
        # waits for the loop), so a second click was lost and the last one with it.
        for wrong in (low - 1, high + 1):
            field.value = str(wrong)
            await pilot.press("enter")
            error = dialog.query_one("#error")
            await until(pilot, lambda: f"got {wrong}" in str(error.render()))  # noqa: B023 (awaited at once)
            assert app.screen is dialog
        field.value = str(high)
        await pilot.click("#start")  # the button's first click
        await until(pilot, lambda: app.screen is app.dashboard)  # a loaded box: not one pause
    [request] = asked
    assert request.concurrency == high
