"""summary.json, report.md and report.html from a run's results.

:func:`build_summary` makes the typed :class:`~ocrtui.compare.results.Summary` (results.py
has its fields and the shape summary.json is written in) from a :class:`FinishedRun`,
:func:`with_diffs` attaches the worst pages' diffs, :func:`render_markdown` is report.md.
report_files.py writes the files (the runner never renders).

Throughput is named by its concurrency: ``throughput_imgs_per_s`` at
``throughput_concurrency`` (the run's ``concurrency``); ``throughput_c5_imgs_per_s`` is that
same figure only when the concurrency is 5, else None (issue #11: a figure at another
concurrency is not the seed's c5). ``sweep`` (only when more than one level ran) lists each
model's levels ascending; each model gets ``knee_concurrency`` (the highest level whose p95
stays within ``run.knee_p95_s``, None when none does) and ``saturation_imgs_per_s`` (the
highest images/s of any level). ``worst_pages``: the first WORST_PAGES pages in ranking.py's
order that an arm got wrong (CER above 0), each with the arm that did worst on it.

Beside CER, each category gets the structure metrics (TEDS, TEDS-S, formula edit distance,
test pass rate: means over the pages that have them, from the tally's
scoring.StructureScore) and each model its tests per kind and per tag (``tests``), a
document's critical strings counted as ``present`` tests. With degraded variants every
figure is the clean pages' but ``by_variant`` (each variant's by category), and
:func:`ranking_flips` says where the arms' order differs between clean and a variant.

``streaming`` and ``server`` (per vLLM arm, per phase: results.PhaseMeasures) are the runner's
measures; report.md and report.html show them through :func:`streaming_rows`.

report.md, report.html and the CLI's table share :func:`comparison_rows` and
:func:`category_rows`; a model's ``error`` is why it stopped (ModelStopped), else, when it
read no page, its first failure.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources

from ocrtui.compare import ranking
from ocrtui.compare.arms import ArmRecord
from ocrtui.compare.documents import Document, DocumentSpec
from ocrtui.compare.events import phase_key
from ocrtui.compare.results import (
    CATEGORY_COLUMNS,
    Agreement,
    CategoryStats,
    DocumentStats,
    DocumentSummary,
    Format,
    ModelSummary,
    PassCount,
    PassRates,
    PhaseMeasures,
    PhaseStats,
    RunInfo,
    ServeSweepRecord,
    Summary,
    SweepPoint,
    WorstPage,
)
from ocrtui.compare.scoring import EditCount, StructureScore, corpus_cer, critical_found
from ocrtui.compare.store import PageResult, PhaseRecord
from ocrtui.compare.tally import Tally
from ocrtui.config import ApiArmConfig, CompareConfig, ModelConfig
from ocrtui.published import ANCHORS, ANCHORS_LABEL

WORST_PAGES = 5
DIFF_LINES = 30
DIMENSIONS = [
    ("中文 / zh accuracy (contract)", "zh_contract"),
    ("English / LaTeX", "en_latex"),
    ("Tables", "table"),
    ("ID card", "id_card"),
    ("Handwriting", "handwriting"),
    ("Other documents", "other"),
]


@dataclass(frozen=True)
class BaselineDocument:
    label: str
    pages_per_s: float


@dataclass(frozen=True)
class Baseline:
    """The seed's hand-measured GLM-OCR figures (baseline.json): the reports' last column."""

    label: str
    source: str
    latency_warm_s: float
    throughput_c5_images_per_s: float
    documents: tuple[BaselineDocument, ...]


@functools.cache
def load_baseline() -> Baseline:
    text = resources.files("ocrtui.compare").joinpath("baseline.json").read_text("utf-8")
    d = json.loads(text)
    return Baseline(
        label=d["label"],
        source=d["source"],
        latency_warm_s=d["latency_warm_s"],
        throughput_c5_images_per_s=d["throughput_c5_imgs_per_s"],
        documents=tuple(BaselineDocument(x["label"], x["pages_per_s"]) for x in d["documents"]),
    )


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


@dataclass(frozen=True)
class FinishedRun:
    """What the report reads of a run: its plan, opened documents, compact results (no
    texts), phase records and scores."""

    run_dir: str
    models: tuple[ModelConfig | ApiArmConfig, ...]  # the arms: vLLM models and API arms
    settings: CompareConfig
    specs: tuple[DocumentSpec, ...]  # the documents asked for
    documents: tuple[Document, ...]  # those that opened
    failed_documents: Mapping[str, str]  # name -> error
    results: Mapping[tuple[str, int, str], PageResult]
    phases: Mapping[tuple[str, str], PhaseRecord]
    tally: Tally
    stopped: Mapping[str, str] = field(default_factory=dict)  # model -> why it was stopped
    levels: tuple[int, ...] = ()  # throughput concurrencies; empty: settings.concurrency
    arms: Mapping[str, ArmRecord] | None = None  # model -> what it ran as (arms.py)
    # (model, phase_key or "documents") -> its streamed timings and server counters
    measures: Mapping[tuple[str, str], PhaseMeasures] = field(default_factory=dict)
    serve_sweep: ServeSweepRecord | None = None  # the arms are a serve sweep's flag sets

    @property
    def throughput_levels(self) -> tuple[int, ...]:
        return self.levels or (self.settings.concurrency,)


def _model_error(run: FinishedRun, name: str, mine: list[PageResult]) -> str | None:
    """Why a model stopped, or the first error of a model that read nothing."""
    if name in run.stopped:
        return run.stopped[name]
    if any(r.ok for r in mine):
        return None
    return next((r.error for r in mine if r.error), None)


@dataclass
class _CategoryScores:
    """One category's page scores for one arm, gathered for :func:`category_stats`."""

    strict: list[EditCount] = field(default_factory=list)
    lenient: list[EditCount] = field(default_factory=list)
    teds: list[float] = field(default_factory=list)
    teds_s: list[float] = field(default_factory=list)
    formula_ed: list[float] = field(default_factory=list)
    tests: PassRates = field(default_factory=PassRates)

    @property
    def scored(self) -> bool:
        """Whether any figure of the category has a value (else it gets no row)."""
        return bool(self.strict or self.teds or self.formula_ed or self.tests.overall.total)

    def add_structure(self, st: StructureScore) -> None:
        if st.tables is not None and st.tables.teds is not None:
            self.teds.append(st.tables.teds)
        if st.tables is not None and st.tables.teds_structure is not None:
            self.teds_s.append(st.tables.teds_structure)
        if st.formulas is not None:
            self.formula_ed.append(st.formulas.distance)
        if st.tests is not None:
            self.tests += st.tests


def _mean(xs: list[float]) -> float | None:
    return _r(sum(xs) / len(xs)) if xs else None


def category_stats(sc: _CategoryScores, critical: tuple[int, int]) -> CategoryStats:
    """One category's accuracy for one arm: its pages' scores and (passed, total) critical
    strings. A new per-category metric is computed here."""
    passed, total = critical
    return CategoryStats(
        pages=len(sc.strict),
        cer=_r(corpus_cer(sc.strict)),
        cer_lenient=_r(corpus_cer(sc.lenient)),
        critical_pass_rate=_r(passed / total) if total else None,
        teds=_mean(sc.teds),
        teds_s=_mean(sc.teds_s),
        formula_ed=_mean(sc.formula_ed),
        test_pass_rate=_r(sc.tests.overall.rate),
    )


@dataclass
class _Accuracy:
    """One arm's scores over a set of documents, by category."""

    strict: list[EditCount]
    lenient: list[EditCount]
    by_category: dict[str, _CategoryScores]
    critical_passed: Counter[str]
    critical_total: Counter[str]

    def stats(self) -> dict[str, CategoryStats]:
        return {
            c: category_stats(sc, (self.critical_passed[c], self.critical_total[c]))
            for c, sc in sorted(self.by_category.items())
            if sc.scored
        }


def _accuracy(run: FinishedRun, docs: Mapping[str, Document], ok: list[PageResult]) -> _Accuracy:
    """The scores of one arm's successful pages ``ok`` of ``docs``."""
    acc = _Accuracy([], [], defaultdict(_CategoryScores), Counter(), Counter())
    found: dict[str, set[int]] = defaultdict(set)
    for r in ok:
        sc = run.tally.scores.get((r.doc, r.page, r.model))
        if sc is None:
            continue
        found[r.doc] |= sc.critical
        cat = acc.by_category[r.category]
        cat.add_structure(sc.structure)
        if sc.strict is None or sc.lenient is None:
            continue
        acc.strict.append(sc.strict)
        acc.lenient.append(sc.lenient)
        cat.strict.append(sc.strict)
        cat.lenient.append(sc.lenient)
    for d in docs.values():
        if not d.spec.critical:
            continue
        acc.by_category[d.spec.category].tests += _critical_rates(d, found[d.name])
        acc.critical_total[d.spec.category] += len(d.spec.critical)
        acc.critical_passed[d.spec.category] += sum(
            i in found[d.name] or critical_found("", c)  # an empty string is always found
            for i, c in enumerate(d.spec.critical)
        )
    return acc


def _critical_rates(doc: Document, found: set[int]) -> PassRates:
    """A document's critical strings as ``present`` tests (page_tests.critical_tests), each
    passed when one of its pages holds it (as the critical pass rate counts them)."""
    # Imported here: page_tests loads the table parsers, which the report needs only now.
    from ocrtui.compare.page_tests import critical_tests

    out = PassRates()
    for i, t in enumerate(critical_tests(doc.spec.critical)):
        one = PassCount(int(i in found or critical_found("", t.text)), 1)
        out += PassRates(one, {t.kind: one}, dict.fromkeys(sorted(t.tags), one))
    return out


def build_summary(run: FinishedRun) -> Summary:
    """The summary from the run's compact records and scores (no page texts; the worst
    pages' diffs are attached by :func:`with_diffs`)."""
    # Every figure but by_variant is the clean pages' (degraded copies: variants.py).
    docs = {d.name: d for d in run.documents if d.variant == "clean"}
    every = {d.name: d for d in run.documents}
    variants = sorted({d.variant for d in run.documents} - {"clean"})
    results = list(run.results.values())
    models: dict[str, ModelSummary] = {}
    for m in run.models:
        mine = [r for r in results if r.model == m.name and r.doc in docs]
        sent = [r for r in results if r.model == m.name and r.doc in every]
        ok = [r for r in mine if r.ok]
        acc = _accuracy(run, docs, ok)
        strict, lenient, by_cat = acc.strict, acc.lenient, acc.by_category
        crit_pass, crit_total = acc.critical_passed, acc.critical_total
        by_variant: dict[str, dict[str, CategoryStats]] = {}
        for v in ["clean", *variants] if variants else []:
            vdocs = {d.name: d for d in run.documents if d.variant == v}
            vok = [r for r in results if r.model == m.name and r.ok and r.doc in vdocs]
            by_variant[v] = _accuracy(run, vdocs, vok).stats()
        speed: dict[str, PhaseStats] = {}
        doc_pages = 0
        doc_time = 0.0
        for (name, p), rec in run.phases.items():
            if name != m.name:
                continue
            if isinstance(rec.stats, PhaseStats):
                speed[p] = rec.stats
            elif p.removeprefix("document:") in docs:
                doc_pages += rec.stats.pages_ok
                doc_time += rec.stats.elapsed_s
        categories = sorted(c for c, sc in by_cat.items() if sc.scored)
        tests = sum((by_cat[c].tests for c in categories), PassRates())
        flags = Counter(f for r in ok for f in r.flags)
        conc = run.settings.concurrency
        main = speed.get(phase_key("throughput", conc))
        points = tuple(
            SweepPoint.of(st, c)
            for c in sorted(run.throughput_levels)
            if (st := speed.get(phase_key("throughput", c))) is not None
        )
        knee = [p.concurrency for p in points
                if p.p95_s is not None and p.p95_s <= run.settings.knee_p95_s]  # fmt: skip
        rates = [p.images_per_s for p in points if p.images_per_s is not None]
        cold, warm = speed.get("cold"), speed.get("warm")
        models[m.name] = ModelSummary(
            # "api": a document API ([[api_arms]]): no speed phases, no tokens ("via API")
            kind="api" if isinstance(m, ApiArmConfig) else "vllm",
            profile=m.profile if isinstance(m, ModelConfig) else None,
            # Every copy sent counts (a failed variant page fails the run's exit code too).
            pages_ok=sum(1 for r in sent if r.ok),
            pages_failed=sum(1 for r in sent if not r.ok),
            latency_cold_s=cold.latency_p50_s if cold else None,
            latency_warm_p50_s=warm.latency_p50_s if warm else None,
            latency_warm_p95_s=warm.latency_p95_s if warm else None,
            throughput_images_per_s=main.images_per_s if main else None,
            throughput_concurrency=conc,
            knee_concurrency=max(knee) if knee else None,
            saturation_images_per_s=max(rates) if rates else None,
            pages_per_s=_r(doc_pages / doc_time) if doc_pages and doc_time > 0 else None,
            cer=_r(corpus_cer(strict)),
            cer_lenient=_r(corpus_cer(lenient)),
            by_category={
                c: category_stats(by_cat[c], (crit_pass[c], crit_total[c])) for c in categories
            },
            critical_pass_rate=_r(sum(crit_pass.values()) / sum(crit_total.values()))
            if crit_total
            else None,
            flags=dict(sorted(flags.items())),
            speed=speed,
            error=_model_error(run, m.name, mine),
            arm=arm.to_json() if (arm := (run.arms or {}).get(m.name)) is not None else {},
            sweep=points,
            tests=tests if tests.overall.total else None,
            by_variant=by_variant,
            measures={p: v for (n, p), v in run.measures.items() if n == m.name},
        )
    documents: dict[str, DocumentSummary] = {}
    for spec in run.specs:
        opened = docs.get(spec.name)
        per_model: dict[str, float | None] = {}
        for m in run.models:
            doc_rec = run.phases.get((m.name, f"document:{spec.name}"))
            stats = doc_rec.stats if doc_rec is not None else None
            per_model[m.name] = stats.pages_per_s if isinstance(stats, DocumentStats) else None
        documents[spec.name] = DocumentSummary(
            path=str(spec.path),
            category=spec.category,
            pages=tuple(opened.pages) if opened else (),
            has_reference=bool(opened and opened.references),
            error=run.failed_documents.get(spec.name),
            pages_per_s=per_model,
        )
    s = run.settings
    info = RunInfo(
        dir=run.run_dir,
        models=tuple(m.name for m in run.models),
        schedule=s.schedule,
        concurrency=s.concurrency,
        warm_runs=s.warm_runs,
        throughput_requests=s.throughput_requests,
        throughput_concurrencies=run.throughput_levels,
        knee_p95_s=s.knee_p95_s,
        image_format=s.image_format,
    )
    # Worst pages over every copy, as report.html ranks the pages of results.jsonl.
    return Summary(
        info, models, documents, _agreement(run, docs), _worst(run, every), run.serve_sweep
    )


def _agreement(run: FinishedRun, docs: dict[str, Document]) -> Agreement | None:
    """CER between the first two models on pages that have no reference."""
    pair = run.tally.pair
    if pair is None:
        return None
    agreed = run.tally.agreement
    counts = [
        agreed[(d.name, p)]
        for d in docs.values()
        for p in d.pages
        if p not in d.references and (d.name, p) in agreed
    ]
    return Agreement(pair, len(counts), _r(corpus_cer(counts)))


def _worst(run: FinishedRun, docs: dict[str, Document]) -> tuple[WorstPage, ...]:
    """The first WORST_PAGES pages, worst first (ranking.py), that an arm got wrong."""
    order = {d: i for i, d in enumerate(docs)}
    pages: dict[tuple[str, int], dict[str, PageResult]] = defaultdict(dict)
    for r in run.results.values():
        if r.doc in docs:
            pages[(r.doc, r.page)][r.model] = r
    names = [m.name for m in run.models]
    agreed = run.tally.agreement

    def key(item: tuple[tuple[str, int], dict[str, PageResult]]) -> ranking.RankKey:
        (doc, page), cells = item
        agreement = agreed[(doc, page)].cer if (doc, page) in agreed else None
        return ranking.worst_first(cells, names, agreement, (order[doc], page))

    out: list[WorstPage] = []
    for _page, cells in sorted(pages.items(), key=key):
        arm = ranking.worst_arm(cells)
        if arm is not None:
            r = cells[arm]
            out.append(WorstPage(r.doc, r.page, arm, r.cer, r.flags))
        if len(out) == WORST_PAGES:
            break
    return tuple(out)


def summary_json(summary: Summary) -> str:
    return json.dumps(summary.to_json(), ensure_ascii=False, indent=2) + "\n"


# report.md ----------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f} %"


def _sec(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def _num(x: float | None, unit: str) -> str:
    return "—" if x is None else f"{x:.2f} {unit}"


STREAM_STATS = ("median", "p90", "p99")
STREAMING_HEADER = [
    "Model", "Phase",
    *(f"{metric.upper()} {stat}" for metric in ("ttft", "tpot", "itl") for stat in STREAM_STATS),
    "Spec-decode acceptance",
]  # fmt: skip


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} ms"


def streaming_rows(summary: Summary) -> list[list[str]]:
    """Per vLLM arm and streamed phase: TTFT, TPOT and ITL at STREAM_STATS, and the
    server's spec-decode acceptance (STREAMING_HEADER's columns). report.md's and
    report.html's."""
    rows = []
    for n, m in summary.models.items():
        for phase, v in m.measures.items():
            if not v.streaming:
                continue
            cells = [_ms(v.stream_ms(metric, stat))
                     for metric in ("ttft", "tpot", "itl") for stat in STREAM_STATS]  # fmt: skip
            rows.append([n, phase, *cells, _pct(v.spec_decode_acceptance)])
    return rows


SERVER_HEADER = [
    "Model", "Phase", "Preemptions", "Queue time mean", "KV cache peak", "Prefix cache hits",
    "MM cache hits", "Mean acceptance length", "Finished by reason",
]  # fmt: skip


def server_rows(summary: Summary) -> list[list[str]]:
    """Per vLLM arm and phase whose server answered: its counters (SERVER_HEADER's
    columns). report.md's and report.html's."""
    rows = []
    for n, m in summary.models.items():
        for phase, v in m.measures.items():
            if not v.server:
                continue
            preempted = v.server_number("preemptions")
            queued = v.server_number("queue_time", "mean_s")
            reasons = ", ".join(f"{k} {c:g}" for k, c in sorted(v.finished_by_reason.items()) if c)
            mean_len = v.server_number("spec_decode", "mean_acceptance_length")
            rows.append([
                n, phase, "—" if preempted is None else f"{preempted:g}",
                "—" if queued is None else _ms(queued * 1000),
                _pct(v.server_number("kv_cache_usage_peak")),
                _pct(v.server_number("prefix_cache", "hit_rate")),
                _pct(v.server_number("mm_cache", "hit_rate")),
                "—" if mean_len is None else f"{mean_len:.2f}",
                reasons or "—",
            ])  # fmt: skip
    return rows


def _streaming_md(summary: Summary) -> list[str]:
    rows, counters = streaming_rows(summary), server_rows(summary)
    if not rows and not counters:
        return []
    out = [
        "## Streamed timings and server counters",
        "",
        "Per phase, as `vllm bench serve` measures them (summary.json `models.NAME.streaming`"
        " has the means and end-to-end latency), and what each server counted over the phase "
        "(`models.NAME.server`, with the counts behind each rate).",
        "",
    ]
    if rows:
        out += [*_table(STREAMING_HEADER, rows), ""]
    if counters:
        out += [*_table(SERVER_HEADER, counters), ""]
    return out


def comparison_rows(summary: Summary) -> list[tuple[str, list[str], str]]:
    """The seed's table: (dimension, one cell per model, baseline cell). report.md's, the
    CLI's and report.html's."""
    base = load_baseline()
    models = list(summary.models.values())
    rows: list[tuple[str, list[str], str]] = []
    present = {c for m in models for c in m.by_category}
    for label, cat in DIMENSIONS:
        if cat not in present:
            continue
        cells = []
        for m in models:
            c = m.by_category.get(cat, CategoryStats())
            cell = f"CER {_pct(c.cer)}"
            if c.critical_pass_rate is not None:
                cell += f", critical {_pct(c.critical_pass_rate)}"
            cells.append(cell)
        rows.append((label, cells, "—"))
    conc = summary.run.concurrency
    docs_base = " / ".join(f"{d.pages_per_s:.2f} ({d.label})" for d in base.documents)
    rows += [
        ("Cold latency (first request)", [_sec(m.latency_cold_s) for m in models], "—"),
        (
            "Warm latency p50 / p95",
            [f"{_sec(m.latency_warm_p50_s)} / {_sec(m.latency_warm_p95_s)}" for m in models],
            _sec(base.latency_warm_s),
        ),
        (
            f"Throughput at {conc} concurrent",
            [_num(m.throughput_images_per_s, "img/s") for m in models],
            _num(base.throughput_c5_images_per_s, "img/s") if conc == 5 else "—",
        ),
        ("Document parse speed", [_num(m.pages_per_s, "pages/s") for m in models], docs_base),
        ("Critical strings", [_pct(m.critical_pass_rate) for m in models], "—"),
        ("Pages ok / failed", [f"{m.pages_ok} / {m.pages_failed}" for m in models], "—"),
    ]
    return rows


def category_rows(summary: Summary) -> list[tuple[str, str, list[str]]]:
    """(category, arm, one cell per CATEGORY_COLUMNS) for every category an arm has."""
    cats = sorted({c for m in summary.models.values() for c in m.by_category})
    return [
        (c, n, [_cell(getattr(v, attr), fmt) for _head, attr, fmt in CATEGORY_COLUMNS])
        for c in cats
        for n, m in summary.models.items()
        if (v := m.by_category.get(c)) is not None
    ]


def _cell(value: object, fmt: Format) -> str:
    if fmt == "pct":
        return _pct(value if isinstance(value, int | float) else None)
    return "—" if value is None else str(value)


def arm_labels(summary: Summary) -> list[str]:
    """Each arm's name as a column heading: an API arm is marked "(via API)"."""
    return [f"{n} (via API)" if m.kind == "api" else n for n, m in summary.models.items()]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in esc),
    ]


def render_markdown(summary: Summary) -> str:
    base = load_baseline()
    models = summary.models
    out = ["# OCR comparison", ""]
    labels = arm_labels(summary)
    out.append(f"Models: {', '.join(labels)}. Run directory: `{summary.run.dir}`.")
    out.append("CER: Levenshtein edits / longer string after normalization (docs/compare.md); ")
    out.append("corpus figures are Σ edits / Σ lengths. Lower is better.")
    out.append("")
    out.append("## Comparison")
    out.append("")
    rows = [[label, *cells, b] for label, cells, b in comparison_rows(summary)]
    out += _table(["Dimension", *labels, base.label], rows)
    out.append("")
    for n, m in models.items():
        if m.error:
            out += [f"**{n} error:** {m.error}", ""]
    out += _arms_md(summary)
    out += _sweep_md(summary)
    out += _serve_sweep_md(summary)
    out += _streaming_md(summary)
    out += _published_md(summary)
    out.append("## Accuracy by category")
    out.append("")
    crow = [[c, n, *cells] for c, n, cells in category_rows(summary)]
    out += _table(["Category", "Model", *(h for h, _a, _f in CATEGORY_COLUMNS)], crow)
    out += ["", "Overall: " + "; ".join(
        f"{n} CER {_pct(m.cer)} (lenient {_pct(m.cer_lenient)})" for n, m in models.items()
    ), ""]  # fmt: skip
    out += [STRUCTURE_NOTE, ""]
    out += _tests_md(summary)
    out += _variants_md(summary)
    flags = [f"{n}: " + ", ".join(f"{k} {v}" for k, v in m.flags.items())
             for n, m in models.items() if m.flags]  # fmt: skip
    if flags:
        out += ["Flags: " + "; ".join(flags), ""]
    agree = summary.agreement
    if agree and agree.pages:
        out += [
            f"Agreement on {agree.pages} page(s) without reference: CER between "
            f"{agree.models[0]} and {agree.models[1]} {_pct(agree.cer)}.",
            "",
        ]
    out += ["## Documents", ""]
    drows = []
    for name, d in summary.documents.items():
        speeds = ", ".join(
            f"{m} {_num(v, 'pages/s')}" for m, v in d.pages_per_s.items() if v is not None
        )
        status = f"**error:** {d.error}" if d.error else (speeds or "ok")
        drows.append([name, d.category, str(len(d.pages)), status])
    out += _table(["Document", "Category", "Pages", "Result"], drows)
    out.append("")
    if summary.worst_pages:
        out += ["## Worst pages", ""]
        for w in summary.worst_pages:
            flags_txt = f" flags: {', '.join(w.flags)}" if w.flags else ""
            out += [f"### {w.doc} p.{w.page} — {w.model}: CER {_pct(w.cer)}{flags_txt}", ""]
            if w.diff:
                out += ["```diff", *w.diff, "```", ""]
    return "\n".join(out).rstrip() + "\n"


STRUCTURE_NOTE = (
    "TEDS / TEDS-S: tree edit distance similarity of the page's tables to the reference's "
    "(PubTabNet, OmniDocBench), higher is better; Formula ED: OmniDocBench's normalised "
    "LaTeX edit distance of the display formulas, lower is better (CDM is not computed); "
    "Tests: olmOCR-bench style yes/no tests passed, critical strings included."
)


def test_rows(summary: Summary) -> list[tuple[str, list[str]]]:
    """(``kind present`` / ``tag Hani``, one "passed/total (rate)" cell per arm) for every
    test kind and tag any arm ran."""
    rates = {n: m.tests for n, m in summary.models.items()}
    kinds = sorted({k for r in rates.values() if r for k in r.by_kind})
    tags = sorted({t for r in rates.values() if r for t in r.by_tag})

    def cell(r: PassRates | None, get: str, key: str) -> str:
        c = None if r is None else (r.by_kind if get == "kind" else r.by_tag).get(key)
        return "—" if c is None else f"{c.passed}/{c.total} ({_pct(c.rate)})"

    return [
        (f"{get} {key}", [cell(r, get, key) for r in rates.values()])
        for get, keys in (("kind", kinds), ("tag", tags))
        for key in keys
    ]


def variant_rows(summary: Summary) -> list[tuple[str, str, str, list[str]]]:
    """(variant, category, arm, one cell per CATEGORY_COLUMNS) for every variant's figures."""
    variants = list(dict.fromkeys(v for m in summary.models.values() for v in m.by_variant))
    return [
        (v, c, n, [_cell(getattr(s, attr), fmt) for _head, attr, fmt in CATEGORY_COLUMNS])
        for v in variants
        for c in sorted({c for m in summary.models.values() for c in m.by_variant.get(v, {})})
        for n, m in summary.models.items()
        if (s := m.by_variant.get(v, {}).get(c)) is not None
    ]


# The figures whose ranking of the arms is compared between clean pages and each variant:
# (heading, CategoryStats field, whether higher is better).
FLIP_METRICS: tuple[tuple[str, str, bool], ...] = (("CER", "cer", False), ("TEDS", "teds", True))


def ranking_flips(summary: Summary) -> list[str]:
    """One sentence per (variant, category, metric) where the arms' order on the degraded
    copies differs from their order on the clean pages."""
    out: list[str] = []
    variants = list(dict.fromkeys(v for m in summary.models.values() for v in m.by_variant))
    for v in (v for v in variants if v != "clean"):
        cats = sorted({c for m in summary.models.values() for c in m.by_variant.get(v, {})})
        for c in cats:
            for head, attr, higher in FLIP_METRICS:
                ranked = []
                for variant in ("clean", v):
                    vals = {
                        n: x
                        for n, m in summary.models.items()
                        if (x := getattr(m.by_variant.get(variant, {}).get(c), attr, None))
                        is not None
                    }
                    ranked.append(sorted(vals.items(), key=lambda kv: -kv[1] if higher else kv[1]))
                clean, worse = ranked
                if len(clean) < 2 or {n for n, _ in clean} != {n for n, _ in worse}:
                    continue
                if [n for n, _ in clean] != [n for n, _ in worse]:
                    say = lambda r: " > ".join(f"{n} {_pct(x)}" for n, x in r)  # noqa: E731
                    out.append(f"{c}, {head}: clean {say(clean)}; {v} {say(worse)}")
    return out


def _variants_md(summary: Summary) -> list[str]:
    rows = variant_rows(summary)
    if not rows:
        return []
    out = ["## Degraded variants", "",
           "The same pages rendered degraded (variants.py), each sent to each model; the "
           "figures above and the speed phases are the clean pages'.", ""]  # fmt: skip
    heads = ["Variant", "Category", "Model", *(h for h, _a, _f in CATEGORY_COLUMNS)]
    out += _table(heads, [[v, c, n, *cells] for v, c, n, cells in rows])
    flips = ranking_flips(summary)
    out += ["", "Ranking flips (best first):" if flips else "No ranking flips between clean "
            "and degraded pages."]  # fmt: skip
    out += [f"- {f}" for f in flips]
    return [*out, ""]


def _tests_md(summary: Summary) -> list[str]:
    rows = test_rows(summary)
    if not rows:
        return []
    out = ["### Tests by kind and tag", ""]
    out += _table(["Tests", *arm_labels(summary)], [[k, *cells] for k, cells in rows])
    return [*out, ""]


def _arms_md(summary: Summary) -> list[str]:
    out = ["## Arms", "", "What each model ran as (summary.json `models.NAME.arm`).", ""]
    for n, m in summary.models.items():
        arm = m.arm
        if not arm:
            continue
        v = arm.get("versions")
        v = v if isinstance(v, Mapping) else {}
        known = [f"{k} {v[k]}" for k in ("server_vllm", "vllm", "transformers") if v.get(k)]
        shown = ", ".join(known) or f"unknown ({v.get('error') or 'not probed'})"
        argv = arm.get("serve_argv")
        out += [f"- **{n}**: {arm.get('label')}", f"  - versions: {shown}"]
        if arm.get("pod"):
            out.append(f"  - on: pod {arm['pod']}, {arm.get('gpu') or 'GPU ?'}")
        out.append(
            f"  - served as: `{' '.join(map(str, argv))}`"
            if isinstance(argv, list) and argv
            else "  - served as: unknown"
        )
        advisories = arm.get("advisories")
        for a in advisories if isinstance(advisories, list) else []:
            src = f" ({a['source']})" if a.get("source") else ""
            out.append(f"  - {a['severity']}: {a['text']}{src}")
    return [*out, ""] if len(out) > 4 else []


def _sweep_md(summary: Summary) -> list[str]:
    if not summary.swept:
        return []
    bound = summary.run.knee_p95_s
    out = ["## Throughput sweep", "",
           f"Images/s and latency at each concurrency ({summary.run.throughput_requests} "
           f"requests per level); knee: the highest concurrency whose p95 stays within "
           f"{bound or 0:g} s; saturation: the highest images/s.", ""]  # fmt: skip
    rows = []
    for n, m in summary.models.items():
        for p in m.sweep:
            rows.append([n, str(p.concurrency), _num(p.images_per_s, "img/s"),
                         _sec(p.p50_s), _sec(p.p95_s), str(p.failed or 0)])  # fmt: skip
    out += _table(["Model", "Concurrency", "Throughput", "p50", "p95", "Failed"], rows)
    out.append("")
    for n, m in summary.models.items():
        knee = m.knee_concurrency
        out.append(f"- {n}: knee {knee if knee is not None else 'none (every p95 is over)'}, "
                   f"saturation {_num(m.saturation_images_per_s, 'img/s')}")  # fmt: skip
    return [*out, ""]


@dataclass(frozen=True)
class FlagSetPoint:
    """One throughput level of one serve-sweep arm, and whether it is on the Pareto front
    of all the sweep's points (no other point has as much throughput at as little latency,
    and more of one)."""

    arm: str
    point: SweepPoint
    pareto: bool


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """Per (throughput, latency) point: whether no other point dominates it (at least as
    much throughput and at most as much latency, better in one)."""
    return [
        not any(t2 >= t and l2 <= lat and (t2 > t or l2 < lat) for t2, l2 in points)
        for t, lat in points
    ]


def flag_set_points(summary: Summary) -> list[FlagSetPoint]:
    """Every measured throughput level of every serve-sweep arm, in file and level order,
    marked on the front by images/s and median latency."""
    sweep = summary.serve_sweep
    if sweep is None:
        return []
    pts: list[tuple[str, SweepPoint]] = []
    for name, _changes in sweep.arms:
        m = summary.models.get(name)
        if m is None:
            continue
        levels = m.sweep or tuple(
            SweepPoint.of(st, st.concurrency)
            for key, st in sorted(m.speed.items(), key=lambda kv: kv[1].concurrency or 0)
            if st.concurrency is not None and key == phase_key("throughput", st.concurrency)
        )
        pts += [(name, p) for p in levels if p.images_per_s is not None and p.p50_s is not None]
    front = pareto_front([(p.images_per_s or 0.0, p.p50_s or 0.0) for _n, p in pts])
    return [FlagSetPoint(n, p, on) for (n, p), on in zip(pts, front, strict=True)]


FLAG_SET_HEADER = [
    "Flag set", "Changes", "Concurrency", "Images/s", "p50", "p95", "Pareto", "CER",
    "CER lenient", "Critical", "TEDS", "Tests",
]  # fmt: skip


def flag_set_rows(summary: Summary) -> list[list[str]]:
    """Per serve-sweep arm and level: speed, whether on the front, and the arm's accuracy
    beside it (FLAG_SET_HEADER's columns; the accuracy figures on the arm's first row).
    report.md's and report.html's."""
    sweep = summary.serve_sweep
    if sweep is None:
        return []
    changes = dict(sweep.arms)
    rows = []
    seen: set[str] = set()
    points = flag_set_points(summary)
    for name, _c in sweep.arms:
        mine: list[FlagSetPoint | None] = [fp for fp in points if fp.arm == name] or [None]
        m = summary.models.get(name)
        for fp in mine:
            first = name not in seen
            seen.add(name)
            p = fp.point if fp is not None else None
            accuracy = (
                [_pct(m.cer), _pct(m.cer_lenient), _pct(m.critical_pass_rate),
                 _pct(_weighted(m, "teds")), _pct(_weighted(m, "test_pass_rate"))]
                if first and m is not None else [""] * 5
            )  # fmt: skip
            rows.append([
                name if first else "",
                _changes_text(changes[name]) if first else "",
                str(p.concurrency) if p else "—",
                _num(p.images_per_s if p else None, "img/s"),
                _sec(p.p50_s if p else None),
                _sec(p.p95_s if p else None),
                "yes" if fp is not None and fp.pareto else "",
                *accuracy,
            ])  # fmt: skip
    return rows


def _changes_text(changes: Mapping[str, object]) -> str:
    parts = []
    for k, v in changes.items():
        shown = " ".join(map(str, v)) if isinstance(v, list | tuple) else str(v)
        parts.append(f"{k} {shown}")
    return ", ".join(parts) or "as configured"


def _weighted(m: ModelSummary, attr: str) -> float | None:
    """A category figure over the arm's categories that have it, weighted by their pages."""
    have = [(c.pages, v) for c in m.by_category.values() if (v := getattr(c, attr)) is not None]
    pages = sum(n for n, _v in have)
    return sum(n * v for n, v in have) / pages if pages else None


def _serve_sweep_md(summary: Summary) -> list[str]:
    sweep = summary.serve_sweep
    if sweep is None:
        return []
    return [
        "## Serve sweep",
        "",
        f"{sweep.model} restarted once per flag set of `{sweep.file}`; the same pages at the "
        "same concurrencies for each. Pareto: no other flag set's point has as much "
        "throughput at as little median latency. Accuracy: the arm's pages "
        "(TEDS and Tests: over its categories that have them, weighted by pages).",
        "",
        *_table(FLAG_SET_HEADER, flag_set_rows(summary)),
        "",
    ]


ANCHOR_HEADER = [
    "Model", "Metric", "Value", "Configuration it came from", "Source", "Same profile in this run"
]  # fmt: skip


def _published_md(summary: Summary) -> list[str]:
    profiles = {n: m.profile for n, m in summary.models.items()}
    rows = []
    for a in ANCHORS:
        beside = ", ".join(n for n, p in profiles.items() if p == a.profile) or "—"
        rows.append([a.model, a.metric, a.value, a.configuration, a.source, beside])
    return [
        f"## {ANCHORS_LABEL}",
        "",
        *_table(ANCHOR_HEADER, rows),
        "",
        "This run sends whole pages to the bare model through vLLM; none of these figures was "
        "measured that way, on this hardware, or on these pages.",
        "",
    ]


def with_diffs(
    summary: Summary, run: FinishedRun, texts: Mapping[tuple[str, int, str], str]
) -> Summary:
    """The summary with a reference-vs-output line diff on each worst page; ``texts`` are
    theirs, read back from results.jsonl (the run keeps no texts in memory)."""
    docs = {d.name: d for d in run.documents}
    worst = []
    for w in summary.worst_pages:
        text = texts.get((w.doc, w.page, w.model))
        ref = docs[w.doc].references.get(w.page) if w.doc in docs else None
        if text is not None and ref is not None:
            diff = list(
                difflib.unified_diff(
                    ref.splitlines(), text.splitlines(), "reference", w.model, lineterm="", n=0
                )
            )
            w = replace(w, diff=(*diff[:DIFF_LINES], *(["…"] if len(diff) > DIFF_LINES else [])))
        worst.append(w)
    return replace(summary, worst_pages=tuple(worst))
