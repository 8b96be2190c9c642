"""summary.json and report.md from a run's results.

summary.json: ``{"run": {...}, "models": {NAME: {...}}, "documents": {DOC: {...}},
"agreement": {...}}``; each model carries the contract fields (pages_ok, pages_failed,
latency_cold_s, latency_warm_p50_s, latency_warm_p95_s, throughput_c5_imgs_per_s,
pages_per_s, cer, cer_lenient, by_category, critical_pass_rate) plus flags and the raw
speed-phase stats, and ``error``: why the model stopped (ModelStopped), else, when it read
no page, its first failure (None otherwise); each document its category, pages, error
(None when it ran) and pages/s per model.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ocrtui.compare.documents import Document, DocumentSpec
from ocrtui.compare.scoring import EditCount, corpus_cer, critical_found
from ocrtui.compare.store import PageResult, PhaseRecord
from ocrtui.compare.tally import Tally
from ocrtui.config import CompareConfig, ModelConfig

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


def load_baseline() -> dict[str, Any]:
    text = resources.files("ocrtui.compare").joinpath("baseline.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


@dataclass(frozen=True)
class FinishedRun:
    """What the report reads of a run: its plan, opened documents, compact results (no
    texts), phase records and scores."""

    run_dir: str
    models: tuple[ModelConfig, ...]
    settings: CompareConfig
    specs: tuple[DocumentSpec, ...]  # the documents asked for
    documents: tuple[Document, ...]  # those that opened
    failed_documents: Mapping[str, str]  # name -> error
    results: Mapping[tuple[str, int, str], PageResult]
    phases: Mapping[tuple[str, str], PhaseRecord]
    tally: Tally
    stopped: Mapping[str, str] = field(default_factory=dict)  # model -> why it was stopped


def _model_error(run: FinishedRun, name: str, mine: list[PageResult]) -> str | None:
    """Why a model stopped, or the first error of a model that read nothing."""
    if name in run.stopped:
        return run.stopped[name]
    if any(r.ok for r in mine):
        return None
    return next((r.error for r in mine if r.error), None)


def build_summary(run: FinishedRun) -> dict[str, Any]:
    """The summary from the run's compact records and scores (no page texts; the worst
    pages' diffs are attached by :func:`add_diffs`)."""
    docs = {d.name: d for d in run.documents}
    results = list(run.results.values())
    scores = run.tally.scores
    models: dict[str, Any] = {}
    for m in run.models:
        mine = [r for r in results if r.model == m.name and r.doc in docs]
        ok = [r for r in mine if r.ok]
        strict: list[EditCount] = []
        lenient: list[EditCount] = []
        by_cat: dict[str, dict[str, list[EditCount]]] = defaultdict(
            lambda: {"strict": [], "lenient": []}
        )
        found: dict[str, set[int]] = defaultdict(set)
        for r in ok:
            sc = scores.get((r.doc, r.page, r.model))
            if sc is None:
                continue
            found[r.doc] |= sc.critical
            if sc.strict is None or sc.lenient is None:
                continue
            strict.append(sc.strict)
            lenient.append(sc.lenient)
            by_cat[r.category]["strict"].append(sc.strict)
            by_cat[r.category]["lenient"].append(sc.lenient)
        crit_total: Counter[str] = Counter()
        crit_pass: Counter[str] = Counter()
        for d in docs.values():
            if not d.spec.critical:
                continue
            crit_total[d.spec.category] += len(d.spec.critical)
            crit_pass[d.spec.category] += sum(
                i in found[d.name] or critical_found("", c)  # an empty string is always found
                for i, c in enumerate(d.spec.critical)
            )
        phases = {p: rec.stats for (name, p), rec in run.phases.items() if name == m.name}
        doc_recs = [st for p, st in phases.items() if p.startswith("document:")]
        doc_pages = sum(int(st.get("pages_ok") or 0) for st in doc_recs)
        doc_time = sum(float(st.get("elapsed_s") or 0) for st in doc_recs)
        categories = sorted(set(by_cat) | set(crit_total))
        flags = Counter(f for r in ok for f in r.flags)
        models[m.name] = {
            "profile": m.profile,
            "pages_ok": len(ok),
            "pages_failed": sum(1 for r in mine if not r.ok),
            "latency_cold_s": phases.get("cold", {}).get("latency_p50_s"),
            "latency_warm_p50_s": phases.get("warm", {}).get("latency_p50_s"),
            "latency_warm_p95_s": phases.get("warm", {}).get("latency_p95_s"),
            "throughput_c5_imgs_per_s": phases.get("throughput", {}).get("imgs_per_s"),
            "pages_per_s": _r(doc_pages / doc_time) if doc_pages and doc_time > 0 else None,
            "cer": _r(corpus_cer(strict)),
            "cer_lenient": _r(corpus_cer(lenient)),
            "by_category": {
                c: {
                    "pages": len(by_cat[c]["strict"]),
                    "cer": _r(corpus_cer(by_cat[c]["strict"])),
                    "cer_lenient": _r(corpus_cer(by_cat[c]["lenient"])),
                    "critical_pass_rate": _r(crit_pass[c] / crit_total[c])
                    if crit_total[c]
                    else None,
                }
                for c in categories
            },
            "critical_pass_rate": _r(sum(crit_pass.values()) / sum(crit_total.values()))
            if crit_total
            else None,
            "flags": dict(sorted(flags.items())),
            "speed": {p: st for p, st in phases.items() if not p.startswith("document:")},
            "error": _model_error(run, m.name, mine),
        }
    documents: dict[str, Any] = {}
    for spec in run.specs:
        opened = docs.get(spec.name)
        per_model = {}
        for m in run.models:
            rec = run.phases.get((m.name, f"document:{spec.name}"))
            per_model[m.name] = rec.stats.get("pages_per_s") if rec else None
        documents[spec.name] = {
            "path": str(spec.path),
            "category": spec.category,
            "pages": list(opened.pages) if opened else [],
            "has_reference": bool(opened and opened.references),
            "error": run.failed_documents.get(spec.name),
            "pages_per_s": per_model,
        }
    summary = {
        "run": {
            "dir": run.run_dir,
            "models": [m.name for m in run.models],
            "schedule": run.settings.schedule,
            "concurrency": run.settings.concurrency,
            "warm_runs": run.settings.warm_runs,
            "throughput_requests": run.settings.throughput_requests,
            "image_format": run.settings.image_format,
        },
        "models": models,
        "documents": documents,
        "agreement": _agreement(run, docs),
        "worst_pages": _worst(run, docs),
    }
    return summary


def _agreement(run: FinishedRun, docs: dict[str, Document]) -> dict[str, Any] | None:
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
    return {"models": list(pair), "pages": len(counts), "cer": _r(corpus_cer(counts))}


def _worst(run: FinishedRun, docs: dict[str, Document]) -> list[dict[str, Any]]:
    scored = [r for r in run.results.values() if r.ok and r.cer is not None and r.doc in docs]
    scored.sort(key=lambda r: r.cer or 0.0, reverse=True)
    return [
        {"doc": r.doc, "page": r.page, "model": r.model, "cer": r.cer, "flags": list(r.flags)}
        for r in scored[:WORST_PAGES]
        if (r.cer or 0) > 0
    ]


def exit_code(summary: dict[str, Any]) -> int:
    """0 all done; 1 any failed page or document."""
    failed_docs = any(d["error"] for d in summary["documents"].values())
    failed_pages = any(m["pages_failed"] for m in summary["models"].values())
    return 1 if failed_docs or failed_pages else 0


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, ensure_ascii=False, indent=2) + "\n"


# report.md ----------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f} %"


def _sec(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} s"


def _num(x: float | None, unit: str) -> str:
    return "—" if x is None else f"{x:.2f} {unit}"


def comparison_rows(summary: dict[str, Any]) -> list[tuple[str, list[str], str]]:
    """The seed's table: (dimension, one cell per model, baseline cell). Shared with the CLI."""
    base = load_baseline()
    models = summary["models"]
    names = list(models)
    rows: list[tuple[str, list[str], str]] = []
    present = {c for m in models.values() for c in m["by_category"]}
    for label, cat in DIMENSIONS:
        if cat not in present:
            continue
        cells = []
        for n in names:
            c = models[n]["by_category"].get(cat, {})
            cell = f"CER {_pct(c.get('cer'))}"
            if c.get("critical_pass_rate") is not None:
                cell += f", critical {_pct(c['critical_pass_rate'])}"
            cells.append(cell)
        rows.append((label, cells, "—"))
    conc = summary["run"]["concurrency"]
    docs_base = " / ".join(f"{d['pages_per_s']:.2f} ({d['label']})" for d in base["documents"])
    rows += [
        ("Cold latency (first request)", [_sec(models[n]["latency_cold_s"]) for n in names], "—"),
        (
            "Warm latency p50 / p95",
            [
                f"{_sec(models[n]['latency_warm_p50_s'])} / {_sec(models[n]['latency_warm_p95_s'])}"
                for n in names
            ],
            _sec(base["latency_warm_s"]),
        ),
        (
            f"Throughput at {conc} concurrent",
            [_num(models[n]["throughput_c5_imgs_per_s"], "img/s") for n in names],
            _num(base["throughput_c5_imgs_per_s"], "img/s") if conc == 5 else "—",
        ),
        ("Document parse speed", [_num(models[n]["pages_per_s"], "pages/s") for n in names],
         docs_base),
        ("Critical strings", [_pct(models[n]["critical_pass_rate"]) for n in names], "—"),
        ("Pages ok / failed",
         [f"{models[n]['pages_ok']} / {models[n]['pages_failed']}" for n in names], "—"),
    ]  # fmt: skip
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in esc),
    ]


def render_markdown(summary: dict[str, Any]) -> str:
    base = load_baseline()
    models = summary["models"]
    names = list(models)
    out = ["# OCR comparison", ""]
    out.append(f"Models: {', '.join(names)}. Run directory: `{summary['run']['dir']}`.")
    out.append("CER: Levenshtein edits / longer string after normalization (docs/compare.md); ")
    out.append("corpus figures are Σ edits / Σ lengths. Lower is better.")
    out.append("")
    out.append("## Comparison")
    out.append("")
    rows = [[label, *cells, b] for label, cells, b in comparison_rows(summary)]
    out += _table(["Dimension", *names, base["label"]], rows)
    out.append("")
    for n in names:
        if models[n].get("error"):
            out += [f"**{n} error:** {models[n]['error']}", ""]
    out.append("## Accuracy by category")
    out.append("")
    cats = sorted({c for m in models.values() for c in m["by_category"]})
    crow = []
    for c in cats:
        for n in names:
            v = models[n]["by_category"].get(c)
            if v:
                crow.append(
                    [c, n, str(v["pages"]), _pct(v["cer"]), _pct(v["cer_lenient"]),
                     _pct(v["critical_pass_rate"])]
                )  # fmt: skip
    out += _table(["Category", "Model", "Pages", "CER", "CER lenient", "Critical"], crow)
    out += ["", "Overall: " + "; ".join(
        f"{n} CER {_pct(models[n]['cer'])} (lenient {_pct(models[n]['cer_lenient'])})"
        for n in names
    ), ""]  # fmt: skip
    flags = [f"{n}: " + ", ".join(f"{k} {v}" for k, v in models[n]["flags"].items()) for n in names
             if models[n]["flags"]]  # fmt: skip
    if flags:
        out += ["Flags: " + "; ".join(flags), ""]
    agree = summary.get("agreement")
    if agree and agree["pages"]:
        out += [
            f"Agreement on {agree['pages']} page(s) without reference: CER between "
            f"{agree['models'][0]} and {agree['models'][1]} {_pct(agree['cer'])}.",
            "",
        ]
    out += ["## Documents", ""]
    drows = []
    for name, d in summary["documents"].items():
        speeds = ", ".join(
            f"{m} {_num(v, 'pages/s')}" for m, v in d["pages_per_s"].items() if v is not None
        )
        status = f"**error:** {d['error']}" if d["error"] else (speeds or "ok")
        drows.append([name, d["category"], str(len(d["pages"])), status])
    out += _table(["Document", "Category", "Pages", "Result"], drows)
    out.append("")
    worst = summary.get("worst_pages") or []
    if worst:
        out += ["## Worst pages", ""]
        for w in worst:
            flags_txt = f" flags: {', '.join(w['flags'])}" if w["flags"] else ""
            out += [f"### {w['doc']} p.{w['page']} — {w['model']}: CER {_pct(w['cer'])}"
                    f"{flags_txt}", ""]  # fmt: skip
            if w.get("diff"):
                out += ["```diff", *w["diff"], "```", ""]
    return "\n".join(out).rstrip() + "\n"


def add_diffs(
    summary: dict[str, Any], run: FinishedRun, texts: Mapping[tuple[str, int, str], str]
) -> None:
    """Attach a reference-vs-output line diff to each worst page; ``texts`` are theirs,
    read back from results.jsonl (the run keeps no texts in memory)."""
    docs = {d.name: d for d in run.documents}
    for w in summary.get("worst_pages") or []:
        text = texts.get((w["doc"], w["page"], w["model"]))
        ref = docs[w["doc"]].references.get(w["page"]) if w["doc"] in docs else None
        if text is None or ref is None:
            continue
        diff = list(
            difflib.unified_diff(
                ref.splitlines(), text.splitlines(), "reference", w["model"], lineterm="", n=0
            )
        )
        w["diff"] = diff[:DIFF_LINES] + (["…"] if len(diff) > DIFF_LINES else [])
