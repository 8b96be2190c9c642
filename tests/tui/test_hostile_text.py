"""Text from outside (here a model's output) is shown on screen, never obeyed by the terminal.

A stand-in chat server answers a page with an OSC 0 (set the window title) and an OSC 52
(write the clipboard) inside the text; the comparison screen must show both visibly and send
no ESC or BEL of them to the terminal. What the terminal would receive is the screen's full
repaint as the driver writes it (the headless driver of ``run_test`` writes nothing, so the
test renders the same update through the app's console).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PIL import Image
from textual.app import App
from textual.widgets import DataTable

from ocrtui.compare.launch import CompareRequest, resolve
from ocrtui.tui.app import OcrtuiApp
from ocrtui.tui.run_view import RunView
from ocrtui.tui.screens.compare import ComparePane, CompareScreen
from ocrtui.tui.source import ReplaySource
from ocrtui.tui.widgets.format import visible, visible_log_line
from tests.plugins import recorded
from tests.plugins.fake_chat_server import completion, fake_vllm
from tests.plugins.recorded_run import MODELS, result
from tests.plugins.tui_app import AppFactory, until

TITLE = "\x1b]0;PWNED-TITLE\x07"
CLIPBOARD = "\x1b]52;c;ZXZpbA==\x07"
HOSTILE = f"Total: 42\n{TITLE}\n{CLIPBOARD}\n[bold]not markup[/bold]"
WIDE = (200, 50)  # wide enough for the page pane (PAGE_PANE_MIN_COLUMNS)


def terminal_output(app: App[Any]) -> tuple[str, str]:
    """(the screen's text, the bytes a full repaint writes to the terminal)."""
    update = app.screen._compositor.render_full_update()
    text = "\n".join("".join(seg.text for seg in strip) for strip in update.strips)
    return text, update.render_segments(app.console)


def test_visible_shows_controls_and_keeps_newlines_and_tabs() -> None:
    assert visible(TITLE) == "␛]0;PWNED-TITLE␇"
    assert visible("a\tb\nc\r\x7f\x9b") == "a\tb\nc␍␡<0x9b>"
    # vLLM's coloured log lines: the colour dropped, anything else shown.
    assert visible_log_line("\x1b[32mINFO\x1b[0m ready\x1b]0;x\x07") == "INFO ready␛]0;x␇"


async def test_hostile_model_output_is_shown_and_never_reaches_the_terminal(
    tmp_path: Path,
) -> None:
    page = tmp_path / "page.png"
    Image.new("RGB", (400, 300), "white").save(page)
    config = recorded.config(
        screenshot_dir=str(tmp_path / "shots"), theme_dir=str(tmp_path / "themes")
    )
    few = config.compare.model_copy(update={"warm_runs": 1, "throughput_requests": 1})
    config = config.model_copy(update={"compare": few})
    request = CompareRequest(documents=(str(page),), out=str(tmp_path / "run"))
    with fake_vllm(lambda payload, n: completion(HOSTILE)) as fake:
        source = ReplaySource((recorded.READY,), urls=dict.fromkeys(MODELS, fake.url))
        app = OcrtuiApp(config, source, state_path=tmp_path / "state.toml")
        async with app.run_test(size=WIDE) as pilot:
            setup = await asyncio.to_thread(resolve, config, request)
            app.start_comparison(setup)

            def shown() -> bool:
                panes = app.screen.query(ComparePane)
                texts = ["\n".join(pane.lines) for pane in panes]
                return len(texts) == len(MODELS) and all("PWNED-TITLE" in t for t in texts)

            await until(pilot, shown, 60, "the model's text in both panes")
            await pilot.pause()
            text, written = terminal_output(app)
    assert "\x1b]0;" not in written and "\x1b]52;" not in written
    assert "\x07" not in written and not [c for c in text if c in "\x1b\x07"]
    assert "␛]0;PWNED-TITLE␇" in text and "␛]52;c;ZXZpbA==␇" in text
    assert "[bold]not markup[/bold]" in text  # plain text, not Rich markup


async def test_an_empty_page_pane_says_no_page_and_nothing_else(make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=WIDE) as pilot:
        app.run_view = RunView(MODELS, "empty")
        app.show_comparison()
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 10, "the screen")
        await pilot.pause()
        text, _ = terminal_output(app)
    assert "No page yet." in text
    assert "page-frame" not in text and "Center" not in text


async def test_an_error_body_in_the_pages_table_is_plain_text(make_app: AppFactory) -> None:
    """A failed page's error (a server's body) in a DataTable cell, which reads a str as
    markup: shown as typed, controls visible, no markup error."""
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=WIDE) as pilot:
        run = RunView(MODELS, "errors")
        run.add(result("doc[/x]", 1, "glm-ocr"))
        run.add(result("doc[/x]", 1, "lighton-ocr", ok=False, error="[/b]\x1b[2J", text=""))
        app.run_view = run
        app.show_comparison()
        await until(pilot, lambda: bool(app.screen.query("#pages")), 10, "the pages table")
        table = app.screen.query_one("#pages", DataTable)
        await until(pilot, lambda: table.row_count == 1, 10, "the row")
        await pilot.pause()
        text, written = terminal_output(app)
    assert "doc[/x] p.1" in text and "[/b]␛[2J" in text
    assert "\x1b[2J" not in written
