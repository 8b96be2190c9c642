"""``ocrtui report --against OTHER_RUN_DIR RUN_DIR``: against.md and against.html in RUN_DIR,
RUN_DIR's run side by side with OTHER_RUN_DIR's (against.py computes the diff).

Each run directory is read from its files alone: summary.json (the models' figures) and
results.jsonl (per page: category, ok, CER, TEDS where recorded) streamed through the run
store's line parser (memory grows with the pages, never with their texts). Both files are
rendered here, from the one diff: the Markdown by hand (pipes and line breaks in names
escaped), the HTML from templates/against.html.j2 with report_html's Jinja environment
(autoescaping on). Blocking: call it off the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ocrtui.compare.against import (
    CategoryFigures,
    LoadedRun,
    MetricDelta,
    ModelFigures,
    PageFigures,
    PageKey,
    RunDiff,
    diff_runs,
)
from ocrtui.compare.report_html import _env, _read_json
from ocrtui.compare.results import JsonIn, Summary
from ocrtui.compare.store import RESULTS, RUN, SUMMARY, PageResult, parse_line
from ocrtui.errors import InputError

AGAINST_MD = "against.md"
AGAINST_HTML = "against.html"
CHANGED_PAGES = 200  # listed in each file, worst first; the count says how many more
LEFT_OUT_PAGES = 50

METRIC_LABELS = {
    "cer": "CER",
    "critical_pass_rate": "critical strings",
    "teds": "TEDS",
    "latency_warm_p50_s": "warm latency p50",
    "throughput_imgs_per_s": "throughput",
}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def load_against(run_dir: Path) -> LoadedRun:
    """A run directory's figures for the diff; InputError naming the file when it is not a
    finished run."""
    if not (run_dir / RUN).is_file():
        raise InputError(f"{run_dir}: not a run directory (no {RUN})")
    if not (run_dir / SUMMARY).is_file():
        raise InputError(
            f"{run_dir}: no {SUMMARY} (the run has not finished; continue it with --resume)"
        )
    try:
        summary = Summary.from_json(_read_json(run_dir / SUMMARY))
    except ValueError as exc:
        raise InputError(f"{run_dir / SUMMARY}: {exc}") from None
    models = {
        name: ModelFigures(
            cer=m.cer,
            critical_pass_rate=m.critical_pass_rate,
            latency_warm_p50_s=m.latency_warm_p50_s,
            throughput_imgs_per_s=m.throughput_images_per_s,
            by_category={
                c: CategoryFigures(v.cer, v.critical_pass_rate) for c, v in m.by_category.items()
            },
        )
        for name, m in summary.models.items()
    }
    pages: dict[PageKey, PageFigures] = {}
    for line in _result_lines(run_dir / RESULTS):
        try:
            r = PageResult.from_json(line)
        except TypeError:
            continue
        if r.key in pages and pages[r.key].ok and not r.ok:
            continue  # the last ok line wins, as on --resume
        pages[r.key] = PageFigures(r.category, r.ok, r.cer, r.teds)
    return LoadedRun(run_dir.name, models, pages)


def _result_lines(path: Path) -> Iterator[JsonIn]:
    """results.jsonl one line at a time (its texts are never all held), parsed by the
    store's line parser."""
    try:
        f = path.open("rb")
    except FileNotFoundError:  # every document failed
        return
    with f:
        for raw in f:
            if (line := parse_line(raw)) is not None:
                yield line


def _fmt(metric: str, value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    sign = "+" if signed and value > 0 else ""
    if metric in ("cer", "critical_pass_rate"):  # a rate's delta is in percentage points
        return f"{sign}{value * 100:.1f} {'pp' if signed else '%'}"
    if metric == "teds":
        return f"{sign}{value:.3f}"
    if metric == "latency_warm_p50_s":
        return f"{sign}{value:.2f} s"
    return f"{sign}{value:.2f} img/s"


def _cells(d: MetricDelta) -> dict[str, str]:
    return {
        "label": METRIC_LABELS[d.metric],
        "before": _fmt(d.metric, d.before),
        "after": _fmt(d.metric, d.after),
        "delta": _fmt(d.metric, d.delta, signed=True),
        "verdict": d.verdict,
    }


def _page_key(k: PageKey) -> str:
    return f"{k[0]} p.{k[1]} ({k[2]})"


def _view(diff: RunDiff) -> dict[str, Any]:
    """The diff as the strings both files show, so the two never disagree."""

    def page_figure(p: PageFigures) -> str:
        if not p.ok:
            return "failed"
        parts = [f"CER {_fmt('cer', p.cer)}"]
        if p.teds is not None:
            parts.append(f"TEDS {_fmt('teds', p.teds)}")
        return ", ".join(parts)

    return {
        "diff": diff,
        "scopes": [
            {
                "model": s.model,
                "scope": s.category or "all pages",
                "rows": [
                    _cells(m) for m in s.metrics if m.before is not None or m.after is not None
                ],
            }
            for s in diff.scopes
        ],
        "changes": [
            {
                "page": f"{c.doc} p.{c.page}",
                "model": c.model,
                "category": c.category,
                "before": page_figure(c.before),
                "after": page_figure(c.after),
                "verdict": "worse" if c.regression > 0 else "better",
            }
            for c in diff.changes[:CHANGED_PAGES]
        ],
        "more_changes": max(0, len(diff.changes) - CHANGED_PAGES),
        "only_before": [_page_key(k) for k in diff.only_before[:LEFT_OUT_PAGES]],
        "only_after": [_page_key(k) for k in diff.only_after[:LEFT_OUT_PAGES]],
        "more_left_out": max(0, len(diff.only_before) + len(diff.only_after) - 2 * LEFT_OUT_PAGES),
    }


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return [*lines, ""]


def render_markdown(diff: RunDiff) -> str:
    v = _view(diff)
    b, a = _md_cell(diff.before), _md_cell(diff.after)
    out = [f"# {a} against {b}", "", f"Deltas are {a} − {b}.", ""]
    out += _notes_md(diff, v)
    for s in v["scopes"]:
        out += [f"## {_md_cell(s['model'])}: {_md_cell(s['scope'])}", ""]
        rows = [[r["label"], r["before"], r["after"], r["delta"], r["verdict"]] for r in s["rows"]]
        out += _md_table(["metric", b, a, "delta", ""], rows)
    out += [f"## Pages that changed ({len(diff.changes)}), worst regressions first", ""]
    if v["changes"]:
        rows = [
            [c["page"], c["model"], c["category"], c["before"], c["after"], c["verdict"]]
            for c in v["changes"]
        ]
        out += _md_table(["page", "model", "category", b, a, ""], rows)
        if v["more_changes"]:
            out += [f"and {v['more_changes']} more.", ""]
    else:
        out += ["None: every compared page scored the same.", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _notes_md(diff: RunDiff, v: dict[str, Any]) -> list[str]:
    out = [f"Pages compared: {diff.pages_compared} (page × model in both runs)."]
    if diff.models_left_out:
        out.append(f"Models in one run only, left out: {', '.join(diff.models_left_out)}.")
    if not diff.same_pages:
        out.append(
            f"The runs' pages differ: {len(diff.only_before)} only in {diff.before}, "
            f"{len(diff.only_after)} only in {diff.after}, left out of the page changes and "
            "TEDS; CER, critical strings and speed are each run's own (summary.json)."
        )
        for who, keys in ((diff.before, v["only_before"]), (diff.after, v["only_after"])):
            if keys:
                out.append(f"Only in {who}: {', '.join(keys)}.")
        if v["more_left_out"]:
            out.append(f"And {v['more_left_out']} more left out.")
    return [part for line in out for part in (_md_cell(line), "")]


def write_against(run_dir: Path, other_dir: Path) -> tuple[Path, Path]:
    """Write RUN_DIR/against.md and RUN_DIR/against.html; their paths."""
    diff = diff_runs(load_against(other_dir), load_against(run_dir))
    outputs = (
        (run_dir / AGAINST_MD, render_markdown(diff)),
        (run_dir / AGAINST_HTML, _env().get_template("against.html.j2").render(_view(diff))),
    )
    for path, text in outputs:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return run_dir / AGAINST_MD, run_dir / AGAINST_HTML
