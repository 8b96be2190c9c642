"""summary.json and report.md from a run's results.

summary.json: ``{"run": {...}, "models": {NAME: {...}}, "documents": {DOC: {...}},
"agreement": {...}, "sweep": {NAME: [...]}}``; each model carries the contract fields
(pages_ok, pages_failed, latency_cold_s, latency_warm_p50_s, latency_warm_p95_s,
throughput_c5_imgs_per_s, pages_per_s, cer, cer_lenient, by_category, critical_pass_rate)
plus flags, the raw speed-phase stats, its ``arm`` (compare/arms.py) and ``error``: why the
model stopped (ModelStopped), else, when it read no page, its first failure (None
otherwise); each document its
category, pages, error (None when it ran) and pages/s per model.

Throughput is named by its concurrency: ``throughput_imgs_per_s`` at
``throughput_concurrency`` (the run's ``concurrency``); ``throughput_c5_imgs_per_s`` is that
same figure only when the concurrency is 5, else None (issue #11: a figure at another
concurrency is not the seed's c5). ``sweep`` (only when more than one level ran) lists per
model ``{concurrency, images_per_s, p50, p95, request_throughput, median_e2el_ms,
p95_e2el_ms, completed, failed, duration}`` ascending (p50/p95 in seconds; the last five
named as in ``vllm bench serve``'s result JSON), and each model gets ``knee_concurrency``
(the highest level whose p95 stays within ``run.knee_p95_s``, None when none does) and
``saturation_imgs_per_s`` (the highest images/s of any level).
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
from ocrtui.compare.events import phase_key
from ocrtui.compare.scoring import EditCount, corpus_cer, critical_found
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
    arms: Mapping[str, Mapping[str, Any]] | None = None  # model -> arms.arm_record

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


def build_summary(run: FinishedRun) -> dict[str, Any]:
    """The summary from the run's compact records and scores (no page texts; the worst
    pages' diffs are attached by :func:`add_diffs`)."""
    docs = {d.name: d for d in run.documents}
    results = list(run.results.values())
    scores = run.tally.scores
    models: dict[str, Any] = {}
    sweep: dict[str, list[dict[str, Any]]] = {}
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
        conc = run.settings.concurrency
        main = phases.get(phase_key("throughput", conc), {}).get("imgs_per_s")
        points = _sweep_points(phases, run.throughput_levels)
        if len(run.throughput_levels) > 1:
            sweep[m.name] = points
        knee = [p["concurrency"] for p in points
                if p["p95"] is not None and p["p95"] <= run.settings.knee_p95_s]  # fmt: skip
        rates = [p["images_per_s"] for p in points if p["images_per_s"] is not None]
        models[m.name] = {
            # "api": a document API ([[api_arms]]): no speed phases, no tokens ("via API")
            "kind": "api" if isinstance(m, ApiArmConfig) else "vllm",
            "profile": m.profile if isinstance(m, ModelConfig) else None,
            "pages_ok": len(ok),
            "pages_failed": sum(1 for r in mine if not r.ok),
            "latency_cold_s": phases.get("cold", {}).get("latency_p50_s"),
            "latency_warm_p50_s": phases.get("warm", {}).get("latency_p50_s"),
            "latency_warm_p95_s": phases.get("warm", {}).get("latency_p95_s"),
            "throughput_c5_imgs_per_s": main if conc == 5 else None,
            "throughput_imgs_per_s": main,
            "throughput_concurrency": conc,
            "knee_concurrency": max(knee) if knee else None,
            "saturation_imgs_per_s": max(rates) if rates else None,
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
            "arm": dict((run.arms or {}).get(m.name) or {}),
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
            "throughput_concurrencies": list(run.throughput_levels),
            "knee_p95_s": run.settings.knee_p95_s,
            "image_format": run.settings.image_format,
        },
        "models": models,
        "documents": documents,
        "agreement": _agreement(run, docs),
        "worst_pages": _worst(run, docs),
    }
    if sweep:
        summary["sweep"] = sweep
    return summary


def _sweep_points(phases: Mapping[str, Any], levels: tuple[int, ...]) -> list[dict[str, Any]]:
    """One point per measured throughput level (the shape report_html's plot reads)."""
    out = []
    for c in sorted(levels):
        st = phases.get(phase_key("throughput", c))
        if st is None:
            continue
        p50, p95 = st.get("latency_p50_s"), st.get("latency_p95_s")
        out.append({
            "concurrency": c,
            "images_per_s": st.get("imgs_per_s"),
            "p50": p50,
            "p95": p95,
            "request_throughput": st.get("imgs_per_s"),
            "median_e2el_ms": None if p50 is None else round(p50 * 1000, 2),
            "p95_e2el_ms": None if p95 is None else round(p95 * 1000, 2),
            "completed": st.get("ok"),
            "failed": st.get("failed"),
            "duration": st.get("wall_s"),
        })  # fmt: skip
    return out


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
            [_num(throughput(models[n]), "img/s") for n in names],
            _num(base["throughput_c5_imgs_per_s"], "img/s") if conc == 5 else "—",
        ),
        ("Document parse speed", [_num(models[n]["pages_per_s"], "pages/s") for n in names],
         docs_base),
        ("Critical strings", [_pct(models[n]["critical_pass_rate"]) for n in names], "—"),
        ("Pages ok / failed",
         [f"{models[n]['pages_ok']} / {models[n]['pages_failed']}" for n in names], "—"),
    ]  # fmt: skip
    return rows


def throughput(model: Mapping[str, Any]) -> float | None:
    """The run's throughput figure (summaries before the sweep had only the c5 name)."""
    value = model.get("throughput_imgs_per_s", model.get("throughput_c5_imgs_per_s"))
    return float(value) if isinstance(value, int | float) else None


def arm_labels(summary: dict[str, Any]) -> list[str]:
    """Each arm's name as a column heading: an API arm is marked "(via API)"."""
    return [
        f"{name} (via API)" if m.get("kind") == "api" else name
        for name, m in summary["models"].items()
    ]


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
    labels = arm_labels(summary)
    out.append(f"Models: {', '.join(labels)}. Run directory: `{summary['run']['dir']}`.")
    out.append("CER: Levenshtein edits / longer string after normalization (docs/compare.md); ")
    out.append("corpus figures are Σ edits / Σ lengths. Lower is better.")
    out.append("")
    out.append("## Comparison")
    out.append("")
    rows = [[label, *cells, b] for label, cells, b in comparison_rows(summary)]
    out += _table(["Dimension", *labels, base["label"]], rows)
    out.append("")
    for n in names:
        if models[n].get("error"):
            out += [f"**{n} error:** {models[n]['error']}", ""]
    out += _arms_md(summary)
    out += _sweep_md(summary)
    out += _published_md(summary)
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


def _arms_md(summary: dict[str, Any]) -> list[str]:
    models = summary["models"]
    out = ["## Arms", "", "What each model ran as (summary.json `models.NAME.arm`).", ""]
    for n, m in models.items():
        arm = m.get("arm") or {}
        if not arm:
            continue
        v = arm.get("versions") or {}
        known = [f"{k} {v[k]}" for k in ("server_vllm", "vllm", "transformers") if v.get(k)]
        shown = ", ".join(known) or f"unknown ({v.get('error') or 'not probed'})"
        argv = arm.get("serve_argv")
        out += [f"- **{n}**: {arm.get('label')}", f"  - versions: {shown}"]
        out.append(f"  - served as: `{' '.join(argv)}`" if argv else "  - served as: unknown")
        for a in arm.get("advisories") or []:
            src = f" ({a['source']})" if a.get("source") else ""
            out.append(f"  - {a['severity']}: {a['text']}{src}")
    return [*out, ""] if len(out) > 4 else []


def _sweep_md(summary: dict[str, Any]) -> list[str]:
    sweep = summary.get("sweep") or {}
    if not sweep:
        return []
    bound = summary["run"].get("knee_p95_s")
    out = ["## Throughput sweep", "",
           f"Images/s and latency at each concurrency ({summary['run']['throughput_requests']} "
           f"requests per level); knee: the highest concurrency whose p95 stays within "
           f"{bound:g} s; saturation: the highest images/s.", ""]  # fmt: skip
    rows = []
    for n, points in sweep.items():
        for p in points:
            rows.append([n, str(p["concurrency"]), _num(p["images_per_s"], "img/s"),
                         _sec(p["p50"]), _sec(p["p95"]), str(p.get("failed") or 0)])  # fmt: skip
    out += _table(["Model", "Concurrency", "Throughput", "p50", "p95", "Failed"], rows)
    out.append("")
    for n in sweep:
        m = summary["models"][n]
        knee = m.get("knee_concurrency")
        out.append(f"- {n}: knee {knee if knee is not None else 'none (every p95 is over)'}, "
                   f"saturation {_num(m.get('saturation_imgs_per_s'), 'img/s')}")  # fmt: skip
    return [*out, ""]


ANCHOR_HEADER = [
    "Model", "Metric", "Value", "Configuration it came from", "Source", "Same profile in this run"
]  # fmt: skip


def _published_md(summary: dict[str, Any]) -> list[str]:
    profiles = {n: m.get("profile") for n, m in summary["models"].items()}
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
