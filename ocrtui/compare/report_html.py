"""report.html: one self-contained page (images and plots embedded, no network, no script
needed) built from a run directory's files alone (docs/compare.md): run.json, summary.json,
results.jsonl and pages/ (page_files.py). ``ocrtui report RUN_DIR`` writes it again for any
run directory.

Sections: the comparison table (report.comparison_rows, with the seed's baseline column),
the streamed timings and server counters per arm and phase (report.streaming_rows) and the
published figures, each labelled with the configuration it came from; accuracy by
category; a serve sweep's flag sets (report.flag_set_rows) beside their latency against
throughput with the Pareto front; documents; plots (latency, throughput against
concurrency, CER by category); the
pages, worst first, each as page image | one column per model | reference, every model's
text diffed against the reference (scoring.diff_segments) or, without a reference, the
other models' against the first one's.

Worst first: ranking.py's order, the one report.md's worst pages follow (pages a model
failed, then by the highest CER any model got, without a reference the agreement CER
between the first two models' outputs, tally.agreement_count; then by flags).

The summary is read as results.Summary (any version's summary.json) and the template reads
that typed value; results.jsonl through store.read_result_lines.

Bounded memory: results.jsonl is read once for the small fields and the offset of each
line; a page's texts are read back by offset while its section is written, and the page is
streamed to the file (Jinja's ``TemplateStream``). Bounded size: images are shrunk to
``IMAGE_WIDTH`` px JPEG and embedded, worst page first, until ``IMAGE_BUDGET_BYTES``; later
pages link to their file in pages/ instead. A page whose image the run did not keep is
rendered again from its document (render.py), or shown as a labelled placeholder.

Everything from the run (texts, names, errors) goes through Jinja's autoescaping; plots are
``<img>`` data URIs, so nothing in them can run. Blocking: call it off the event loop.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, UndefinedError

from ocrtui.compare import page_files, ranking, report, report_plots, tables
from ocrtui.compare.documents import DocumentError, DocumentSpec, expand_inputs, inspect_document
from ocrtui.compare.pages import ALL_PAGES, parse_page_spec
from ocrtui.compare.render import (
    RenderError,
    RenderTarget,
    close_cached_documents,
    render_page_sync,
)
from ocrtui.compare.results import CATEGORY_COLUMNS, Summary
from ocrtui.compare.scoring import DiffKind, diff_segments
from ocrtui.compare.store import (
    RESULTS,
    RUN,
    SUMMARY,
    RunRecord,
    read_result_lines,
    text_at,
)
from ocrtui.compare.suite import load_suite
from ocrtui.compare.tally import agreement_count
from ocrtui.errors import InputError, OcrtuiError
from ocrtui.published import ANCHORS, ANCHORS_LABEL

REPORT_HTML = "report.html"
IMAGE_WIDTH = 900
IMAGE_QUALITY = 70
IMAGE_BUDGET_BYTES = 10 << 20  # base64 included
DIFF_CHARS = 8000  # per text; the rest is shown without highlighting
RERENDER_TARGET = RenderTarget(longest_side=1600)


@dataclass(frozen=True, slots=True)
class Cell:
    """One model's result of one page, without its text (read back by ``offset``)."""

    ok: bool
    error: str | None
    cer: float | None
    latency_s: float | None
    finish_reason: str | None
    flags: tuple[str, ...]
    offset: int
    teds: float | None = None  # the page's tables against the reference's (tables.py)
    teds_s: float | None = None


@dataclass(slots=True)
class PageEntry:
    doc: str
    page: int
    category: str
    order: tuple[int, int]  # run order: documents as in the summary, then pages
    cells: dict[str, Cell] = field(default_factory=dict)
    agreement: float | None = None  # CER between the first two models (no reference)

    @property
    def has_reference(self) -> bool:
        return any(c.cer is not None for c in self.cells.values())

    def worst_first(self, models: list[str]) -> ranking.RankKey:
        return ranking.worst_first(self.cells, models, self.agreement, self.order)


@dataclass(frozen=True)
class CellView:
    """One table cell as the report draws it; ``differs``: the other side's cell in the same
    slot (row, cell of the row) has other text or spans, or there is none."""

    text: str
    colspan: int
    rowspan: int
    differs: bool


TableView = list[list[CellView]]


@dataclass(frozen=True)
class TextColumn:
    title: str
    cell: Cell | None
    segments: list[tuple[DiffKind, str]]
    tail: str  # past DIFF_CHARS, not highlighted
    note: str | None
    tables: list[TableView] = field(default_factory=list)  # beside the reference's


@dataclass(frozen=True)
class ImageView:
    uri: str | None
    caption: str
    link: str | None


@dataclass(frozen=True)
class PageView:
    anchor: str
    rank: int
    entry: PageEntry
    image: ImageView
    columns: list[TextColumn]
    reference: str | None
    reference_note: str
    reference_tables: list[TableView] = field(default_factory=list)


@dataclass(frozen=True)
class PlotView:
    title: str
    uri: str | None  # None: nothing to draw, ``empty`` says why
    empty: str


@dataclass
class RunFiles:
    """What the report reads of a run directory (texts stay on disk)."""

    dir: Path
    info: RunRecord
    summary: Summary
    models: list[str]
    pages: list[PageEntry]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object")
    return data


def load_run(run_dir: Path) -> RunFiles:
    """run.json, summary.json and the small fields of results.jsonl; InputError (one line,
    naming the file) when the directory is not a finished run."""
    if not (run_dir / RUN).is_file():
        raise InputError(f"{run_dir}: not a run directory (no {RUN})")
    if not (run_dir / SUMMARY).is_file():
        raise InputError(
            f"{run_dir}: no {SUMMARY} (the run has not finished; continue it with --resume)"
        )
    info = RunRecord.from_json(_read_json(run_dir / RUN))
    try:
        summary = Summary.from_json(_read_json(run_dir / SUMMARY))
    except ValueError as exc:
        raise InputError(f"{run_dir / SUMMARY}: not a summary this report reads ({exc})") from None
    models = list(summary.run.models)
    order = {d: i for i, d in enumerate(summary.documents)}
    entries: dict[tuple[str, int], PageEntry] = {}
    for offset, r in read_result_lines(run_dir / RESULTS, text=False):
        if r.model not in models:
            models.append(r.model)
        entry = entries.get((r.doc, r.page))
        if entry is None:
            rank = order.setdefault(r.doc, len(order))
            entry = entries[(r.doc, r.page)] = PageEntry(r.doc, r.page, r.category, (rank, r.page))
        old = entry.cells.get(r.model)
        if old is None or r.ok or not old.ok:  # the last ok line wins, as on --resume
            entry.cells[r.model] = Cell(
                r.ok, r.error, r.cer, r.latency_s, r.finish_reason, r.flags, offset,
                r.teds, r.teds_s,
            )  # fmt: skip
    pages = sorted(entries.values(), key=lambda e: e.order)
    run = RunFiles(run_dir, info, summary, models, pages)
    _score_agreement(run)
    return run


def _score_agreement(run: RunFiles) -> None:
    if len(run.models) < 2:
        return
    a, b = run.models[:2]
    with _open_results(run.dir) as f:
        for e in run.pages:
            ca, cb = e.cells.get(a), e.cells.get(b)
            if e.has_reference or not (ca and cb and ca.ok and cb.ok):
                continue
            count = agreement_count(text_at(f, ca.offset), text_at(f, cb.offset))
            e.agreement = round(count.cer, 6)


# The documents, opened again only for what the run directory does not hold -----------------


class _Sources:
    """References and page images the run directory lacks (runs from before page_files),
    from the documents themselves: specs rebuilt from run.json, paths from summary.json."""

    def __init__(self, run: RunFiles) -> None:
        self.run = run
        self._specs: dict[str, DocumentSpec] | None = None
        self._refs: dict[str, dict[int, str] | str] = {}  # refs, or why there are none

    def _spec(self, doc: str) -> DocumentSpec | None:
        if self._specs is None:
            self._specs = {}
            info = self.run.info
            with contextlib.suppress(OcrtuiError):
                if info.suite:
                    self._specs.update({s.name: s for s in load_suite(info.suite).documents})
                if info.docs:
                    pages = parse_page_spec(info.pages) if info.pages else ALL_PAGES
                    cwd = Path(info.cwd) if info.cwd else None
                    specs = expand_inputs(
                        list(info.docs), pages=pages, reference=info.reference, base=cwd
                    )
                    self._specs.update({s.name: s for s in specs})
        return self._specs.get(doc)

    def reference(self, doc: str, page: int, *, scored: bool) -> tuple[str | None, str]:
        """The page's reference and its column title; ``scored``: a CER says it has one,
        worth opening the document for when the run directory lacks it."""
        kept = page_files.read_reference(self.run.dir, doc, page)
        if kept is not None:
            return kept, "reference"
        if not scored:
            return None, ""
        if doc not in self._refs:
            spec = self._spec(doc)
            if spec is None:
                self._refs[doc] = "the document is not in this run's inputs any more"
            else:
                try:
                    self._refs[doc] = inspect_document(spec).references
                except DocumentError as exc:
                    self._refs[doc] = str(exc)
        refs = self._refs[doc]
        if isinstance(refs, str):
            return None, f"no reference kept, and it cannot be read again: {refs}"
        ref = refs.get(page)
        return ref, "reference (read again from the document)" if ref is not None else ""

    def render(self, doc: str, page: int) -> bytes:
        """The page rendered again from its document; RenderError when it cannot be."""
        d = self.run.summary.documents.get(doc)
        path = d.path if d is not None else None
        if not path:
            raise RenderError(f"{doc}: its path is not in {SUMMARY}")
        kind = "pdf" if str(path).lower().endswith(".pdf") else "image"
        return render_page_sync(str(path), kind, None, page, RERENDER_TARGET, "jpeg").data


def _shrink(src: Path | bytes) -> tuple[bytes, tuple[int, int]]:
    """A JPEG at most IMAGE_WIDTH wide, and the source's size."""
    from PIL import Image

    with Image.open(src if isinstance(src, Path) else io.BytesIO(src)) as im:
        size = im.size
        im.thumbnail((IMAGE_WIDTH, IMAGE_WIDTH * 20))  # JPEG: decoded at a reduced scale
        rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=IMAGE_QUALITY)
    return buf.getvalue(), size


class _Images:
    def __init__(self, run: RunFiles, sources: _Sources, out_dir: Path) -> None:
        self.run = run
        self.sources = sources
        self.out_dir = out_dir
        self.budget = IMAGE_BUDGET_BYTES
        self.left_out = 0
        self._kept: dict[str, dict[int, list[Path]]] = {}

    def view(self, doc: str, page: int) -> ImageView:
        if doc not in self._kept:
            self._kept[doc] = page_files.kept_images(self.run.dir, doc)
        files = self._kept[doc].get(page, [])
        link = None
        if files:
            rel = os.path.relpath(files[0], self.out_dir)
            link = quote(Path(rel).as_posix())
        if self.budget <= 0:
            self.left_out += 1
            why = "not embedded: the report's image budget went to worse pages"
            return ImageView(None, why + ("; the link opens the kept file" if link else ""), link)
        try:
            if files:
                data, (w, h) = _shrink(files[0])
                caption = f"as sent ({files[0].stem.partition('-')[2]}, {w}×{h} px)"
            else:
                data, (w, h) = _shrink(self.sources.render(doc, page))
                caption = "rendered again from the document (the run kept no image)"
        except (RenderError, OSError, ValueError) as exc:
            return ImageView(None, f"no page image: not kept, cannot be rendered ({exc})", None)
        uri = "data:image/jpeg;base64," + _b64(data)
        self.budget -= len(uri)
        return ImageView(uri, caption, link)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _column(title: str, cell: Cell | None, text: str | None, base: str | None) -> TextColumn:
    if cell is None:
        return TextColumn(title, None, [], "", "no result")
    if not cell.ok or text is None:
        return TextColumn(title, cell, [], "", f"failed: {cell.error or 'no text'}")
    head, tail = text[:DIFF_CHARS], text[DIFF_CHARS:]
    segments: list[tuple[DiffKind, str]] = (
        diff_segments(head, base[:DIFF_CHARS]) if base is not None else [("same", head)]
    )
    note = f"highlighted: the first {DIFF_CHARS} characters" if tail else None
    drawn = table_views(text, base) if cell.teds is not None and base is not None else []
    return TextColumn(title, cell, segments, tail, note, drawn)


def table_views(text: str, other: str) -> list[TableView]:
    """``text``'s tables to draw, each cell marked where ``other``'s table of the same rank
    holds something else in its slot (the i-th table against the i-th, as TEDS pairs them)."""
    mine, theirs = tables.parse_tables(text), tables.parse_tables(other)
    out: list[TableView] = []
    for i, table in enumerate(mine):
        rows = theirs[i].rows if i < len(theirs) else ()
        out.append([
            [CellView(c.text, c.colspan, c.rowspan,
                      _slot(rows, r, j) != (c.text, c.colspan, c.rowspan))
             for j, c in enumerate(row)]
            for r, row in enumerate(table.rows)
        ])  # fmt: skip
    return out


def _slot(rows: tuple[tuple[tables.Cell, ...], ...], r: int, j: int) -> tuple[str, int, int] | None:
    if r >= len(rows) or j >= len(rows[r]):
        return None
    c = rows[r][j]
    return (c.text, c.colspan, c.rowspan)


def _page_views(
    run: RunFiles, f: IO[bytes], sources: _Sources, images: _Images
) -> Iterator[PageView]:
    ranked = sorted(run.pages, key=lambda e: e.worst_first(run.models))
    for rank, e in enumerate(ranked, start=1):
        texts = {m: text_at(f, c.offset) if c.ok else None for m, c in e.cells.items()}
        ref, ref_note = sources.reference(e.doc, e.page, scored=e.has_reference)
        first = run.models[0]
        columns = []
        for m in run.models:
            if ref is not None:
                columns.append(_column(m, e.cells.get(m), texts.get(m), ref))
            elif m == first:
                columns.append(_column(m, e.cells.get(m), texts.get(m), None))
            else:
                columns.append(
                    _column(f"{m} (diff against {first})", e.cells.get(m), texts.get(m),
                            texts.get(first))
                )  # fmt: skip
        if ref is None and not ref_note:
            ref_note = "no reference: agreement between the models is shown"
        # The reference's tables, marked against the first output that has a table score.
        scored = next((m for m in run.models if (c := e.cells.get(m)) and c.teds is not None), None)
        ref_tables = table_views(ref, texts.get(scored) or "") if ref is not None and scored else []
        yield PageView(
            f"p{rank}", rank, e, images.view(e.doc, e.page), columns, ref,
            ref_note or "reference", ref_tables,
        )  # fmt: skip


# Summary tables and plots --------------------------------------------------------------------


def _plots(run: RunFiles) -> list[PlotView]:
    models = run.summary.models
    warm = {m: ms.speed.get("warm") for m, ms in models.items()}
    lat = {
        m: [c.latency_s for e in run.pages if (c := e.cells.get(m)) and c.ok and c.latency_s]
        for m in run.models
    }
    conc = run.summary.run.concurrency
    lat_title = f"Page latency (documents phase, up to {conc} in flight per model)"
    marks = {
        m: [v for v in (w.latency_p50_s, w.latency_p95_s) if v is not None]
        for m, w in warm.items()
        if w is not None
    }
    points: dict[str, list[tuple[int, float]]] = {}
    swept = False
    for m in run.models:
        ms = models.get(m)
        if ms is None:
            continue
        if run.summary.swept and ms.sweep:
            swept = True
            points[m] = [(p.concurrency, p.images_per_s) for p in ms.sweep
                         if p.images_per_s is not None]  # fmt: skip
        elif ms.throughput_images_per_s is not None:
            points[m] = [(conc or 0, ms.throughput_images_per_s)]
    by_cat = {
        m: {c: v.cer for c, v in ms.by_category.items() if v.cer is not None}
        for m, ms in models.items()
        if ms.by_category
    }
    plots = [
        (lat_title + "; red diamonds: warm p50 and p95", report_plots.latency_plot(lat, marks),
         "no successful request"),
        ("Throughput against concurrency" + ("" if swept else " (no sweep in this run: one "
         "point, the throughput phase)"), report_plots.throughput_plot(points),
         "no throughput phase in this run"),
        ("CER by category (strict)", report_plots.cer_plot(by_cat), "no page with a reference"),
    ]  # fmt: skip
    return [_plot_view(title, svg, empty) for title, svg, empty in plots]


def _plot_view(title: str, svg: bytes | None, empty: str) -> PlotView:
    return PlotView(title, None if svg is None else "data:image/svg+xml;base64," + _b64(svg), empty)


def _serve_sweep_plot(summary: Summary) -> PlotView | None:
    """A serve sweep's latency against throughput per flag set, the front marked (shown
    beside the sweep's table)."""
    if summary.serve_sweep is None:
        return None
    fps = report.flag_set_points(summary)
    points: dict[str, list[tuple[float, float, int]]] = {}
    for fp in fps:
        p = fp.point
        points.setdefault(fp.arm, []).append((p.images_per_s or 0.0, p.p50_s or 0.0, p.concurrency))
    front = [(fp.point.images_per_s or 0.0, fp.point.p50_s or 0.0) for fp in fps if fp.pareto]
    return _plot_view(
        f"{summary.serve_sweep.model}: median latency against throughput per flag set, the "
        "Pareto front ringed",
        report_plots.pareto_plot(points, front),
        "no flag set finished a throughput phase",
    )


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("ocrtui.compare", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x: "—" if x is None else f"{x * 100:.1f} %"
    env.filters["sec"] = lambda x: "—" if x is None else f"{x:.2f} s"
    return env


def write_html_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write report.html (default: in the run directory) and return its path."""
    run = load_run(run_dir)
    out = out or run_dir / REPORT_HTML
    sources = _Sources(run)
    images = _Images(run, sources, out.parent)
    baseline = report.load_baseline()
    profiles = {m: v.profile for m, v in run.summary.models.items()}
    context = {
        "run": run,
        "info": run.info,
        "summary": run.summary,
        "models": run.models,
        "comparison": report.comparison_rows(run.summary),
        "baseline": baseline,
        "published": {"label": ANCHORS_LABEL, "anchors": ANCHORS},
        "profiles": profiles,
        "categories": report.category_rows(run.summary),
        "streaming": report.streaming_rows(run.summary),
        "streaming_header": report.STREAMING_HEADER,
        "server_rows": report.server_rows(run.summary),
        "server_header": report.SERVER_HEADER,
        "flag_sets": report.flag_set_rows(run.summary),
        "flag_set_plot": _serve_sweep_plot(run.summary),
        "flag_set_header": report.FLAG_SET_HEADER,
        "category_headings": [h for h, _attr, _fmt in CATEGORY_COLUMNS],
        "structure_note": report.STRUCTURE_NOTE,
        "tests": report.test_rows(run.summary),
        "variants": report.variant_rows(run.summary),
        "flips": report.ranking_flips(run.summary),
        "plots": _plots(run),
        "index": sorted(run.pages, key=lambda e: e.worst_first(run.models)),
        "images": images,
        "image_budget_mb": IMAGE_BUDGET_BYTES >> 20,
    }
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with _open_results(run_dir) as f, tmp.open("wb") as html:
            context["pages"] = _page_views(run, f, sources, images)
            _env().get_template("report.html.j2").stream(context).dump(html, "utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{out}: cannot write the report: {exc.strerror or exc}") from None
    except UndefinedError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{run_dir / SUMMARY}: not a summary this report reads ({exc})") from None
    finally:
        close_cached_documents()  # PDFs opened to render pages again
    return out


def _open_results(run_dir: Path) -> IO[bytes]:
    try:
        return (run_dir / RESULTS).open("rb")
    except FileNotFoundError:  # every document failed: the report still says why
        return io.BytesIO()
