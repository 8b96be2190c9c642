"""Widget helpers: bars, sparklines, log tails, following panes, theme files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from ocrtui.compare.scoring import FLAG_REPETITION, FLAG_TRUNCATED
from ocrtui.status import WatchdogStatus
from ocrtui.tui.themes import load_themes, parse_theme
from ocrtui.tui.widgets.format import segments, sparkline
from ocrtui.tui.widgets.gpu_panel import GpuPanel
from ocrtui.tui.widgets.log_pane import FollowingLog, new_lines
from ocrtui.tui.widgets.model_card import card_content
from tests.plugins import recorded
from tests.plugins.recorded_run import recorded_view
from tests.plugins.tui_app import SIZE, AppFactory


def test_segments_fill_the_width_and_keep_small_parts_visible() -> None:
    parts = [(18000, "a"), (24000, "b"), (50, "orphan")]
    out = segments(parts, 46068, 60)
    assert sum(n for n, _ in out) == 60
    styles = [s for _, s in out]
    assert styles[:3] == ["a", "b", "orphan"] and styles[-1] == ""  # free cells last
    assert dict((s, n) for n, s in out)["orphan"] == 1


def test_segments_never_overflow_when_over_committed() -> None:
    out = segments([(40000, "a"), (40000, "b")], 46068, 30)
    assert sum(n for n, _ in out) == 30 and "" not in [s for _, s in out]


def test_sparkline_is_scaled_and_bounded() -> None:
    assert sparkline([0, 46068], 46068) == "▁█"
    assert sparkline([10**9], 100) == "█"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ([], ["a", "b"], (["a", "b"], True)),
        (["a", "b", "c"], ["b", "c", "d"], (["d"], True)),
        (["a", "b"], ["a", "b"], ([], True)),
        (["x", "y"], ["p", "q"], (["p", "q"], False)),  # replaced (restart) or skipped
        (["a", "a"], ["a", "a", "a"], (["a"], True)),  # repeated lines: longest overlap
    ],
)
def test_new_lines(old: list[str], new: list[str], expected: tuple[list[str], bool]) -> None:
    assert new_lines(old, new) == expected


class _Pane(App[None]):
    def compose(self) -> ComposeResult:
        yield FollowingLog(max_lines=500)


async def test_following_log_stops_when_scrolled_up_and_resumes_at_end() -> None:
    app = _Pane()
    async with app.run_test(size=(40, 10)) as pilot:
        log = app.query_one(FollowingLog)
        log.append([f"line {i} " + "x" * 80 for i in range(50)])  # wide: a horizontal bar
        await pilot.pause()
        log.append([f"more {i}" for i in range(5)])
        await pilot.pause()
        assert log.following and log.scroll_y == log.max_scroll_y
        log.scroll_to(y=0, animate=False)
        await pilot.pause()
        assert not log.following
        log.append(["while reading"])
        await pilot.pause()
        assert log.scroll_y == 0
        await pilot.press("end")
        await pilot.pause()
        assert log.following
        log.append(["tail again"])
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y


async def test_following_log_stays_at_the_bottom_when_the_pane_shrinks() -> None:
    # The dashboard's log pane shrinks after its first tail, as the cards above it fill in.
    app = _Pane()
    async with app.run_test(size=(40, 20)) as pilot:
        log = app.query_one(FollowingLog)
        log.append([f"line {i} " + "x" * 80 for i in range(200)])
        await pilot.pause()
        assert log.scroll_y == log.max_scroll_y
        await pilot.resize_terminal(40, 8)
        await pilot.pause()
        assert log.following and log.scroll_y == log.max_scroll_y


async def test_sparklines_sample_new_snapshots_only_not_repaints(make_app: AppFactory) -> None:
    # A theme change repaints the same snapshot; it is no new VRAM sample.
    app, source = make_app(recorded.READY)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.dashboard.tick()
        table = app.dashboard.query_one(GpuPanel).query_one(DataTable)

        def history() -> str:
            return str(table.get_cell("4101", "hist"))

        assert len(history()) == 1
        app.dashboard.restyle()
        await app.dashboard.tick()
        assert len(history()) == 1
        source.publish(replace(recorded.READY))
        await app.dashboard.tick()
        assert len(history()) == 2


def test_builtin_themes_are_valid() -> None:
    from ocrtui.tui.themes import BUILTIN_THEME_DIR

    loaded = load_themes(BUILTIN_THEME_DIR)
    assert loaded.warnings == []
    assert {t.name for t in loaded.themes} >= {"ocrtui-dark", "ocrtui-light"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('name = "x"\n', "colors: Field required"),
        ('name = "x"\ncolour = 1\n[colors]\nprimary = "#fff"\n', "colour: unknown key"),
        ('name = "bad name"\n[colors]\nprimary = "#fff"\n', "name:"),
        ("name = \n", "invalid TOML"),
    ],
)
def test_invalid_theme_files_name_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        parse_theme(path)


def test_model_card_pairs_line_up_in_columns() -> None:
    glm = recorded.READY.models[0]
    busy = replace(glm, health_latency_ms=123.4, running=12, prompt_tokens_per_s=12345.0)
    for m in (glm, busy, replace(glm, state="starting", stage="loading weights")):
        lines = card_content(m, None, "red").plain.splitlines()
        health = next(line for line in lines if line.startswith("health"))
        kv = next(line for line in lines if line.startswith("KV"))
        assert health.index("run") == kv.index("tok/s in")
        assert health.index("wait") == kv.index("out")
        for label in ("health", "run", "wait", "KV", "tok/s in", "out"):
            line = health if label in health else kv
            assert line[line.index(label) + len(label)] == " ", (label, line)
        # Values are right-aligned: the first column's values end in the same place.
        assert health.index("ms") + 2 == kv.index("%") + 1, lines


def test_model_card_shows_spec_decode_acceptance_beside_tokens_per_s() -> None:
    glm = recorded.READY.models[0]
    kv = next(x for x in card_content(glm, None, "red").plain.splitlines() if x.startswith("KV"))
    assert "acc" not in kv  # no speculative decoding: nothing to show
    drafting = replace(glm, spec_decode_acceptance=0.724)
    lines = card_content(drafting, None, "red").plain.splitlines()
    kv = next(x for x in lines if x.startswith("KV"))
    assert kv.index("out") < kv.index("acc") and kv.rstrip().endswith("acc  72%")


async def test_pages_table_shows_every_column_at_130_columns(make_app: AppFactory) -> None:
    """A failed page's error and the flags get short forms; the table gets the room."""
    app, _ = make_app(recorded.READY)
    view = recorded_view()
    outcomes = view.rows["contract#2"].outcomes
    # A repetition loop that ran into max_tokens: the usual pair of flags.
    flags = (FLAG_REPETITION, FLAG_TRUNCATED)
    outcomes["lighton-ocr"] = replace(outcomes["lighton-ocr"], flags=flags)
    async with app.run_test(size=(130, 40)) as pilot:
        app.run_view = view
        app.show_comparison()
        await pilot.pause()
        table = app.screen.query_one("#pages", DataTable)
        assert table.row_count == 3
        assert table.virtual_size.width <= table.scrollable_content_region.width


def test_a_starting_card_shows_the_stage_and_the_time_against_the_last_start() -> None:
    from ocrtui.status import ModelStatus
    from ocrtui.tui.widgets.model_card import card_content

    m = ModelStatus("glm", 8000, "starting", 9469, stage="engine spawned", started_s=23.4,
                    last_start_s=51.0)  # fmt: skip
    assert "stage  engine spawned  23 s (last 51 s)" in card_content(m, None, "red").plain
    first = ModelStatus("glm", 8000, "starting", 9469, stage="engine spawned", started_s=3.0)
    assert "stage  engine spawned  3 s\n" in card_content(first, None, "red").plain


async def test_a_model_on_vllm_0_27_1_shows_the_loop_advisory_on_its_card(
    make_app: AppFactory,
) -> None:
    from ocrtui.tui.widgets.model_card import ModelCard
    from ocrtui.vllm.advisories import Versions, advisories, to_status

    lighton = recorded.config().model("lighton-ocr")
    found = advisories(lighton, Versions(server_vllm="0.27.1", transformers="5.16.1"), None)
    model = replace(recorded.LIGHTON, advisories=tuple(to_status(a) for a in found))
    snap = replace(recorded.READY, models=(recorded.GLM, model))
    app, _source = make_app(snap)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.dashboard.tick()
        cards = {c.model_name: str(c.render()) for c in app.dashboard.query(ModelCard)}
    assert (
        "⚠ lighton-ocr (vllm 0.27.1): vLLM 0.27.1 makes every LightOnOCR model loop"
        in (cards["lighton-ocr"])
    )
    assert "⚠" not in cards["glm-ocr"]


def test_a_cpu_build_s_card_shows_host_memory_not_vram() -> None:
    from ocrtui.status import ModelStatus
    from ocrtui.tui.widgets.model_card import card_content

    cpu = ModelStatus("tiny", 8000, "ready", 6801, rss_mib=3203)  # no GPU: nothing planned
    text = card_content(cpu, None, "red").plain
    assert "RAM    3.1 GiB (no GPU)" in text and "VRAM" not in text
    gpu = replace(recorded.READY.models[0], rss_mib=3203)
    assert "VRAM" in card_content(gpu, None, "red").plain


def test_a_card_says_the_watchdog_gave_up_with_the_last_crash_hint() -> None:
    glm = recorded.CRASHED.models[0]
    assert "watchdog" not in card_content(glm, None, "red").plain
    gave_up = WatchdogStatus("gave up", 3, "CUDA out of memory: lower gpu_memory_utilization")
    text = card_content(replace(glm, watchdog=gave_up), None, "red").plain
    assert "watchdog gave up after 3 restarts; last crash: CUDA out of memory" in text
