"""The comparison screen over a recorded run: replay on mount, streaming, rejoining, diff."""

from __future__ import annotations

import asyncio

from textual.widgets import DataTable, Static

from ocrtui.compare.results import PassCount, PassRates
from ocrtui.tui.run_view import TEXT_PAGES, RunView
from ocrtui.tui.screens.compare import ComparePane, CompareScreen, diff_content, page_header
from tests.plugins import recorded
from tests.plugins.recorded_run import MODELS, result
from tests.plugins.tui_app import SIZE, AppFactory, until


def test_run_keeps_texts_bounded_but_every_row() -> None:
    run = RunView(MODELS, "bounded")
    for page in range(1, TEXT_PAGES + 51):
        run.add(result("big", page, "glm-ocr", text="x" * 1000))
    assert len(run.rows) == TEXT_PAGES + 50
    assert run.text("big#1", "glm-ocr") is None  # evicted: lives in results.jsonl
    held = run.text(f"big#{TEXT_PAGES + 50}", "glm-ocr")
    assert held is not None and held.text == "x" * 1000
    assert all(r.outcomes["glm-ocr"].text is None for r in run.rows.values())


def test_page_header_shows_what_cer_cannot_see() -> None:
    r = result("t", 1, "glm-ocr", teds=0.625, teds_s=0.5, tests=PassRates(PassCount(2, 3)))
    assert "CER 0.0% · TEDS 62.5% (structure 50.0%) · tests 2/3" in page_header(r)
    assert "TEDS" not in page_header(result("t", 1, "glm-ocr"))


def test_diff_marks_both_sides() -> None:
    content = diff_content("2了号", "27号")
    spans = {(content.plain[s.start : s.end], str(s.style)) for s in content.spans}
    assert ("7", "$error strike") in spans
    assert ("了", "$success underline") in spans


async def test_streams_into_both_panes_and_rejoins(make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        run = RunView(MODELS, "live")
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        for m in MODELS:
            run.add(result("contract", 1, m))
        await until(pilot, lambda: all(_pane_text(screen, i) for i in range(2)))
        assert "住址" in _pane_text(screen, 0) and "2了号" in _pane_text(screen, 1)

        await pilot.press("escape")  # leave: the run goes on without the screen
        await pilot.pause()
        assert app.screen is app.dashboard
        run.add(result("contract", 2, "glm-ocr", text="second page while away"))
        await pilot.press("v")
        await pilot.pause()
        rejoined = app.screen
        assert isinstance(rejoined, CompareScreen) and rejoined is not screen
        assert "second page while away" in _pane_text(rejoined, 0)
        assert rejoined.query_one("#pages", DataTable).row_count == 2


def _pane_text(screen: CompareScreen, i: int) -> str:
    return "\n".join(screen.query_one(f"#pane-{i}", ComparePane).lines)


async def test_diff_says_why_a_text_is_missing(make_app: AppFactory) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        run = RunView(MODELS, "live")
        run.add(result("contract", 1, "glm-ocr"))  # the other model has not answered yet
        run.add(result("contract", 2, "glm-ocr"))
        run.add(result("contract", 2, "lighton-ocr").without_text())  # replayed, text on disk
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)

        def diff() -> str:
            return str(screen.query_one("#diff").render())

        await until(pilot, lambda: "Waiting for both models' text for this page." in diff())
        screen.query_one("#pages", DataTable).move_cursor(row=1)
        await until(pilot, lambda: "no longer in memory; it is in results.jsonl" in diff())


def test_the_status_line_says_paused_until_resumed() -> None:
    from ocrtui.compare.events import RunPaused, RunResumed
    from ocrtui.tui.comparing import apply_event
    from ocrtui.tui.screens.compare import summary_content

    run = RunView(["glm-ocr", "lighton-ocr"], "doc.pdf")
    changes: list[object] = []
    run.subscribe(changes.append)
    apply_event(None, run, RunPaused(None, "link down"))  # type: ignore[arg-type]
    assert "paused: link down" in summary_content(run).plain
    apply_event(None, run, RunPaused("glm-ocr", "crashed"))  # type: ignore[arg-type]
    assert "paused: link down, glm-ocr crashed" in summary_content(run).plain
    apply_event(None, run, RunResumed(None, 3.0))  # type: ignore[arg-type]
    apply_event(None, run, RunResumed("glm-ocr", 3.0))  # type: ignore[arg-type]
    assert "paused" not in summary_content(run).plain
    assert len(changes) == 4  # every change repaints


async def test_panes_are_subtitled_with_each_models_arm(make_app: AppFactory) -> None:
    from typing import cast

    from ocrtui.compare.events import RunStarted
    from ocrtui.compare.runner import CompareRun
    from ocrtui.tui.comparing import apply_event

    arms = ("GLM-OCR · model only, full page, no layout · MTP 3", "LightOnOCR-2 · full page")
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        run = RunView(MODELS, "live")
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        # RunStarted reads nothing of the run itself.
        apply_event(cast(CompareRun, None), run, RunStarted("runs/x", tuple(MODELS), (), arms))

        def subtitles() -> list[str]:
            return [str(screen.query_one(f"#pane-{i}").border_subtitle) for i in range(2)]

        await until(pilot, lambda: subtitles() == list(arms), what=lambda: str(subtitles()))


async def test_pages_in_flight_stream_into_both_panes_before_they_are_done(
    make_app: AppFactory,
) -> None:
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        run = RunView(MODELS, "live")
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)

        def streamed(i: int) -> str:
            box = screen.query_one(f"#stream-{i}", Static)
            return str(box.render()) if box.display else ""

        for word in ("Born ", "digital\n", "page one"):  # a token at a time, both models
            for m in MODELS:
                run.add_delta(m, "paper", 1, f"{m}: {word}" if word == "Born " else word)
        await until(pilot, lambda: all("page one" in streamed(i) for i in range(2)))
        assert "glm-ocr: Born digital" in streamed(0) and "paper p.1" in streamed(0)
        assert "lighton-ocr: Born digital" in streamed(1)
        assert not _pane_text(screen, 0)  # nothing finished yet

        run.add(result("paper", 1, "glm-ocr", text="the finished answer"))
        await until(pilot, lambda: "the finished answer" in _pane_text(screen, 0))
        assert not streamed(0) and "page one" in streamed(1)  # the other is still in flight
        run.finish("cancelled")  # a page cut off by the end of the run streams no more
        await until(pilot, lambda: not streamed(1))


async def test_a_rejoined_screen_shows_the_pages_in_flight_at_once(make_app: AppFactory) -> None:
    """Pages streaming when the screen is opened (a rejoin) show without waiting for the
    run's next update."""
    app, _ = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        run = RunView(MODELS, "live")
        app.run_view = run
        run.add_delta("glm-ocr", "paper", 1, "half a page")
        app.show_comparison()
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen

        def shown(i: int) -> str:  # the screen's widgets may still be mounting
            box = next(screen.query(f"#stream-{i}").results(Static), None)
            return str(box.render()) if box is not None and box.display else ""

        await until(pilot, lambda: "half a page" in shown(0), what=lambda: shown(0))
        assert not shown(1)


async def test_a_run_update_while_the_screen_is_removed_keeps_the_app(
    make_app: AppFactory,
) -> None:
    """Leaving the screen removes its widgets first and unmounts the screen last; the run goes
    on meanwhile. A run update in between scheduled a repaint that came due before the
    screen's unmount and ran after it, its widgets gone: NoMatches ended the app, and the run
    with it. Here a widget that takes two repaint intervals to go stands in for a loaded box."""
    from ocrtui.tui.screens.compare import FLUSH_S

    class SlowToGo(Static):
        async def on_unmount(self) -> None:
            run.add_delta("glm-ocr", "contract", 2, "the run goes on")
            await asyncio.sleep(2 * FLUSH_S)  # the repaint comes due meanwhile

    app, _ = make_app(recorded.READY)
    run = RunView(MODELS, "live")
    async with app.run_test(size=SIZE) as pilot:
        app.run_view = run
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        run.add(result("contract", 1, "glm-ocr"))
        await until(pilot, lambda: bool(_pane_text(screen, 0)) and not screen.repaint_pending)
        await screen.mount(SlowToGo())
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard and not screen.is_running)
        await pilot.press("v")  # rejoin: the app, and its view of the run, are still there
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen is not screen
