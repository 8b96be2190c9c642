"""The comparison: a header naming pod, GPU, models and settings; each model's text
streaming into its own pane beside the page they were sent; a per-page table, the selected
page's character diff, and a live summary with latency and throughput plots and, per model,
its last measured phase's TTFT, TPOT and ITL (median/p90/p99) and spec-decode acceptance.

A page in flight streams into the bottom of its model's pane (``#stream-N``: the newest
page's last ``STREAM_LINES`` lines) as its tokens arrive; once done, its result's text goes
into the pane's log like every page's.

The screen only views the app's :class:`RunView`: on mount it replays what the run holds,
then follows its updates, coalesced into one repaint per ``FLUSH_S`` so a fast stream of
results cannot starve the keyboard. Leaving the screen unsubscribes; the run goes on (a
repaint that comes due while the screen's widgets are being removed is dropped).
The page pane (``p``) shows the table's selected page; it starts hidden on terminals
narrower than ``PAGE_PANE_MIN_COLUMNS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ocrtui.compare.report import STREAM_STATS
from ocrtui.compare.report_html import REPORT_HTML
from ocrtui.compare.scoring import (
    FLAG_BOILERPLATE,
    FLAG_LENGTH_RATIO,
    FLAG_REPETITION,
    FLAG_TRUNCATED,
    diff_segments,
)
from ocrtui.compare.store import PageResult
from ocrtui.tui.run_view import PageRow, PageUpdate, RunView
from ocrtui.tui.screens.dialogs import HelpScreen
from ocrtui.tui.widgets.format import visible
from ocrtui.tui.widgets.gpu_panel import model_styles
from ocrtui.tui.widgets.log_pane import FollowingLog
from ocrtui.tui.widgets.page_pane import PagePane
from ocrtui.tui.widgets.run_header import RunHeader
from ocrtui.tui.widgets.run_plots import RunPlot, latency_series, throughput_points

if TYPE_CHECKING:
    from ocrtui.tui.app import OcrtuiApp

FLUSH_S = 0.1
PANE_LINES = 3000
DIFF_CHARS = 4000  # longer texts are cut for the on-screen diff (the report has them all)
WAITING_FOR_TEXT = "Waiting for both models' text for this page."
TEXT_GONE = "This page's text is no longer in memory; it is in results.jsonl."
PAGE_PANE_MIN_COLUMNS = 160  # narrower: two text panes and a page are too cramped to read
STREAM_LINES = 6  # lines of a page in flight shown under its model's pane


def stream_content(pages: Sequence[tuple[str, str]]) -> str:
    """A model's pages in flight ((doc#page, text so far), oldest first): the newest one's
    last STREAM_LINES lines under a header."""
    if not pages:
        return ""
    key, text = pages[-1]
    doc, _, page = key.rpartition("#")
    more = f" · +{len(pages) - 1} more in flight" if len(pages) > 1 else ""
    lines = text.splitlines()[-STREAM_LINES:]
    return "\n".join([f"── {doc} p.{page} · streaming{more} ──", *lines])


def _stream_line(run: RunView, model: str) -> str | None:
    """The model's last measured phase: TTFT, TPOT and ITL at STREAM_STATS, acceptance."""
    measured = [(p, v) for (m, p), v in run.measures.items() if m == model]
    if not measured:
        return None
    phase, v = measured[-1]
    bits = []
    for metric in ("ttft", "tpot", "itl"):
        values = [x for stat in STREAM_STATS if (x := v.stream_ms(metric, stat)) is not None]
        if len(values) == len(STREAM_STATS):
            bits.append(f"{metric.upper()} " + "/".join(f"{x:.0f}" for x in values))
    acc = v.spec_decode_acceptance
    if acc is not None:
        bits.append(f"accept {acc:.0%}")
    return f"  {phase}: " + " · ".join(bits) + " ms p50/p90/p99" if bits else None


def summary_content(run: RunView) -> Content:
    s = run.summary()
    if not run.finished:
        badge, style = "RUNNING", "$warning"
    elif run.error:
        badge, style = "FAILED", "$error"
    else:
        badge, style = "DONE", "$success"
    expected = f"/{run.expected_pages}" if run.expected_pages else ""
    parts: list[str | tuple[str, str]] = [
        (f" {badge} ", f"reverse bold {style}"),
        f" {visible(run.label)} · {run.phase} · pages {s['pages']}{expected} · ",
        *([(f"{run.pause_text()} · ", "bold $warning")] if run.pauses else []),
        f"{s['pages_per_s']:.2f} pages/s",
    ]
    styles = model_styles(run.models)
    for m in run.models:
        p50 = run.p50(m)
        ips = run.images_per_s(m)
        failed = f" {run.failed[m]} failed" if run.failed.get(m) else ""
        parts += [
            "\n",
            ("■ ", styles[m]),
            f"{m}: {run.done.get(m, 0)} pages{failed} · p50 ",
            "-" if p50 is None else f"{p50:.2f} s",
            " · ",
            "- images/s" if ips is None else f"{ips:.2f} images/s",
        ]
        if (line := _stream_line(run, m)) is not None:
            parts += ["\n", (line, "$text-muted")]
    if run.notes:
        parts += ["\n", (visible("; ".join(run.notes[-2:])), "$error")]
    if run.out_dir:
        parts += [("\n" + f"results: {run.out_dir}", "$text-muted")]
    return Content.assemble(*parts)


# The pages table's short forms, so every column fits at 130 columns; the pane's page
# header and the reports spell them out.
FLAG_CELLS = {
    FLAG_REPETITION: "rep",
    FLAG_TRUNCATED: "trunc",
    FLAG_BOILERPLATE: "blank",
    FLAG_LENGTH_RATIO: "len",
}
ERROR_CELL = 10


def page_header(r: PageResult) -> str:
    bits = [f"{r.doc} p.{r.page}"]
    if r.latency_s is not None:
        bits.append(f"{r.latency_s:.2f} s")
    if r.cer is not None:
        bits.append(f"CER {r.cer:.1%}")
    if r.teds is not None and r.teds_s is not None:
        bits.append(f"TEDS {r.teds:.1%} (structure {r.teds_s:.1%})")
    if r.formula_ed is not None:
        bits.append(f"formula ED {r.formula_ed:.1%}")
    if r.tests is not None:
        bits.append(f"tests {r.tests.overall.passed}/{r.tests.overall.total}")
    if r.flags:
        bits.append(",".join(r.flags))
    if not r.ok:
        bits.append(f"FAILED: {r.error}")
    return visible("── " + " · ".join(bits) + " ──")


def pane_lines(r: PageResult) -> list[str]:
    """A page's block in its model's pane: the header, then the model's text (shown, never
    obeyed: see :func:`~ocrtui.tui.widgets.format.visible`)."""
    return [page_header(r), *visible(r.text or "").splitlines()]


def diff_content(hypothesis: str, reference: str) -> Content:
    """Character diff: deleted reference text struck in red, inserted text underlined green."""
    styles = {"same": "", "missing": "$error strike", "extra": "$success underline"}
    return Content.assemble(
        *(
            (visible(text), styles[kind])
            for kind, text in diff_segments(hypothesis[:DIFF_CHARS], reference[:DIFF_CHARS])
        )
    )


class ComparePane(FollowingLog):
    DEFAULT_CSS = """
    /* Log scrolls both ways always: its empty scrollbar tracks read as a dark block in
       every screenshot; scrollbars only once the text overflows. */
    ComparePane { border: round $panel-lighten-2; width: 1fr; height: 1fr; overflow: auto; }
    ComparePane:focus { border: round $primary; }
    """


class CompareScreen(Screen[None]):
    DEFAULT_CSS = """
    #live { height: 9; background: $panel; }
    #summary { width: 2fr; height: 9; padding: 0 1; }
    #latency-plot { width: 2fr; }
    #throughput-plot { width: 1fr; }
    #panes { height: 3fr; }
    .model-column { width: 1fr; height: 1fr; }
    .stream { height: auto; max-height: 8; border: round $accent; display: none; }
    .stream.-live { display: block; }
    #bottom { height: 2fr; }
    #pages { width: 3fr; height: 1fr; border: round $panel-lighten-2; }
    #diff-box { width: 2fr; border: round $panel-lighten-2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Dashboard (run continues)", id="compare.back"),
        Binding("d", "diff_mode", "Diff: reference/models", id="compare.diff_mode"),
        Binding("p", "page_pane", "Page pane", id="compare.page_pane"),
        Binding("g", "graphics", "Page graphics", id="compare.graphics"),
        Binding("o", "open_report", "Open report.html", id="compare.open_report"),
        Binding("question_mark", "help", "Help", id="compare.help"),
    ]

    def __init__(self, run: RunView) -> None:
        super().__init__()
        self.run = run
        self._page_updates: list[PageUpdate] = []
        self._flush_scheduled = False
        self._unsubscribe: object = None
        self._cells: dict[str, list[str | Text]] = {}
        self._diff_key: str | None = None
        self.diff_between_models = False

    @property
    def ocr_app(self) -> OcrtuiApp:
        return cast("OcrtuiApp", self.app)

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with Horizontal(id="live"):
            yield Static(id="summary")
            yield RunPlot("latency s", "page", id="latency-plot")
            yield RunPlot("images/s", "concurrency", id="throughput-plot")
        with Horizontal(id="panes"):
            for i, name in enumerate(self.run.models):
                with Vertical(classes="model-column"):
                    pane = ComparePane(max_lines=PANE_LINES, id=f"pane-{i}")
                    pane.border_title = self.run.title(name)
                    yield pane
                    yield Static(id=f"stream-{i}", classes="stream", markup=False)
            page = PagePane(self.ocr_app.config.ui.page_graphics, id="page-pane")
            page.display = self.app.size.width >= PAGE_PANE_MIN_COLUMNS
            yield page
        with Horizontal(id="bottom"):
            table: DataTable[str] = DataTable(id="pages", cursor_type="row", zebra_stripes=True)
            table.border_title = "pages"
            yield table
            with VerticalScroll(id="diff-box"):
                yield Static(id="diff")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#pages", DataTable)
        table.add_column("page", key="page")
        for m in self.run.models:
            table.add_column(f"{m} s", key=f"{m}:lat")
            table.add_column("CER", key=f"{m}:cer")
            table.add_column("flags", key=f"{m}:flags")
        # Rejoining: show what the run already holds, then follow it.
        with self.app.batch_update():
            for row in self.run.rows.values():
                self._upsert(row)
            for i, m in enumerate(self.run.models):
                pane = self.query_one(f"#pane-{i}", ComparePane)
                for key in self.run.rows:
                    held = self.run.text(key, m)
                    if held is not None:
                        pane.append(pane_lines(held))
                self._show_stream(i, m)
        self._unsubscribe = self.run.subscribe(self._run_changed)
        self._show_summary()
        self._show_plots()
        self.set_interval(1.0, self._tick, name="summary")

    def _tick(self) -> None:
        if not self.is_running:
            return  # see _flush
        self._show_summary()
        self._show_plots()

    @property
    def repaint_pending(self) -> bool:
        """Run updates received but not yet on screen (they are coalesced per FLUSH_S)."""
        return self._flush_scheduled

    def on_unmount(self) -> None:
        if callable(self._unsubscribe):
            self._unsubscribe()

    # -- following the run ------------------------------------------------------------

    def _run_changed(self, update: PageUpdate | None) -> None:
        if update is not None:
            self._page_updates.append(update)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH_S, self._flush)

    def _flush(self) -> None:
        if not self.is_running:
            # Leaving: Textual removes the widgets after the screen's loop ends and unmounts
            # the screen (unsubscribing) last; a repaint due meanwhile runs after that
            # unmount, with the widgets gone (NoMatches would end the app, and the run).
            return
        self._flush_scheduled = False
        pending, self._page_updates = self._page_updates, []
        with self.app.batch_update():
            by_model: dict[str, list[str]] = {}
            for u in pending:
                lines = by_model.setdefault(u.outcome.model, [])
                lines += pane_lines(u.outcome)
                self._upsert(u.row)
            for i, m in enumerate(self.run.models):
                if by_model.get(m):
                    self.query_one(f"#pane-{i}", ComparePane).append(by_model[m])
                self._show_stream(i, m)
            self._show_summary()
        if self._diff_key is None and self.run.rows:
            self._show_diff(next(iter(self.run.rows)))
        elif self._diff_key is not None and any(u.row.key == self._diff_key for u in pending):
            self._show_diff(self._diff_key)  # e.g. the second model's text for it arrived

    def _show_stream(self, i: int, model: str) -> None:
        in_flight = self.run.streamed(model)
        box = self.query_one(f"#stream-{i}", Static)
        box.set_class(bool(in_flight), "-live")
        if in_flight:
            box.update(stream_content(in_flight))

    def _show_summary(self) -> None:
        self.query_one("#summary", Static).update(summary_content(self.run))
        for i, name in enumerate(self.run.models):  # the arm labels arrive with RunStarted
            arm = self.run.arms.get(name)
            pane = self.query_one(f"#pane-{i}", ComparePane)
            pane.border_subtitle = None if arm is None else Content(visible(arm))
        if self.run.facts is not None:
            app = self.ocr_app
            pods = {app.pod_of(m).name: app.pod_of(m).source for m in self.run.models}
            first, *others = [source.snapshot for source in pods.values()]
            placements = {m: app.pod_of(m).source.placement(m) for m in self.run.models}
            self.query_one(RunHeader).show(
                self.run.facts, first, self.run.models, placements, others
            )

    def _show_plots(self) -> None:
        """At most once a second (plotext redraws the whole plot)."""
        models = self.run.models
        latencies = latency_series({m: self.run.latencies(m) for m in models})
        self.query_one("#latency-plot", RunPlot).show(latencies, models, "no pages yet")
        throughput = throughput_points(self.run.speed)
        self.query_one("#throughput-plot", RunPlot).show(
            throughput, models, "after the throughput phase"
        )

    def _row_cells(self, row: PageRow) -> list[str | Text]:
        # Outside text as Text: DataTable reads a str cell as markup.
        cells: list[str | Text] = [Text(visible(f"{row.doc} p.{row.page}"))]
        for m in self.run.models:
            r = row.outcomes.get(m)
            if r is None:
                cells += ["…", "", ""]
            elif not r.ok:
                cells += ["FAIL", "", Text(visible((r.error or "")[:ERROR_CELL]))]
            else:
                lat = "-" if r.latency_s is None else f"{r.latency_s:.2f}"
                cer = "-" if r.cer is None else f"{r.cer:.1%}"
                cells += [lat, cer, ",".join(FLAG_CELLS.get(f, f) for f in r.flags)]
        return cells

    def _upsert(self, row: PageRow) -> None:
        table = self.query_one("#pages", DataTable)
        cells = self._row_cells(row)
        old = self._cells.get(row.key)
        if old is None:
            table.add_row(*cells, key=row.key)
        else:
            keys = ["page"] + [f"{m}:{c}" for m in self.run.models for c in ("lat", "cer", "flags")]
            for col, new, was in zip(keys, cells, old, strict=True):
                if new != was:
                    table.update_cell(row.key, col, new)
        self._cells[row.key] = cells

    # -- the diff ---------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#pages")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._show_diff(event.row_key.value)

    def action_diff_mode(self) -> None:
        self.diff_between_models = not self.diff_between_models
        if self._diff_key is not None:
            self._show_diff(self._diff_key)

    def _show_diff(self, key: str) -> None:
        # Titles are read as markup unless given as Content; the key holds a document's name.
        self._diff_key = key
        self._show_page(key)
        box = self.query_one("#diff-box")
        texts = [self.run.text(key, m) for m in self.run.models]
        reference = self.run.references.get(key)
        if any(t is None for t in texts):
            box.border_title = Content(visible(f"diff {key}"))
            row = self.run.rows.get(key)
            arrived = row is not None and all(m in row.outcomes for m in self.run.models)
            note = TEXT_GONE if arrived else WAITING_FOR_TEXT
            self.query_one("#diff", Static).update(Content.styled(note, "$text-muted"))
            return
        if reference is not None and not self.diff_between_models:
            box.border_title = Content(visible(f"diff vs reference · {key}"))
            body = _stack(
                [
                    (m, diff_content(t.text or "", reference))
                    for m, t in zip(self.run.models, texts, strict=True)
                    if t is not None
                ]
            )
        else:
            a, b = self.run.models[0], self.run.models[-1]
            box.border_title = Content(visible(f"diff {a} → {b} · {key}"))
            ta, tb = texts[0], texts[-1]
            assert ta is not None and tb is not None
            body = _stack(
                [(f"{b} (struck) vs {a} (underlined)", diff_content(ta.text or "", tb.text or ""))]
            )
        self.query_one("#diff", Static).update(body)

    # -- the page pane, report.html, help ---------------------------------------------

    def _show_page(self, key: str) -> None:
        row = self.run.rows.get(key)
        if row is None or not self.run.out_dir:
            return
        keys = list(self.run.rows)
        i = keys.index(key)
        near = [self.run.rows[k] for k in (keys[i + 1 : i + 2] + keys[max(0, i - 1) : i])]
        self.query_one(PagePane).show_page(
            Path(self.run.out_dir), row.doc, row.page, [(r.doc, r.page) for r in near]
        )

    def action_page_pane(self) -> None:
        pane = self.query_one(PagePane)
        pane.display = not pane.display
        if pane.display:
            pane.reload()
        self.refresh_bindings()

    def action_graphics(self) -> None:
        self.notify(f"page graphics: {self.query_one(PagePane).cycle_graphics()}")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "graphics":
            panes = self.query(PagePane)
            return bool(panes) and panes.first().display
        if action == "open_report":
            return self.run.out_dir is not None
        return True

    def action_open_report(self) -> None:
        if self.run.out_dir is not None:
            self.ocr_app.open_report(Path(self.run.out_dir) / REPORT_HTML)

    def action_help(self) -> None:
        rows = [
            (self.app.get_key_display(a.binding), a.binding.description)
            for a in self.active_bindings.values()
            if a.enabled and a.binding.description
        ]
        self.app.push_screen(HelpScreen(rows, self.ocr_app.readonly))

    def action_back(self) -> None:
        self.dismiss()


def _stack(sections: Sequence[tuple[str, Content]]) -> Content:
    parts: list[Content | tuple[str, str] | str] = []
    for title, body in sections:
        parts += [(title, "bold"), "\n", body, "\n\n"]
    return Content.assemble(*parts)
