"""Writing a finished run's report files, for the runner: summary.json and report.md
(report.py) and report.html (report_html.py, imported only in :func:`write_html`, so Jinja2
and matplotlib load only when a report is written, never with the runner)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ocrtui.compare import report
from ocrtui.compare.results import Summary
from ocrtui.compare.store import REPORT, SUMMARY, RunStore


async def write_summary(run: report.FinishedRun, store: RunStore) -> Summary:
    """The run's summary, its worst pages' diffs attached (their texts read back from
    results.jsonl), written as summary.json and report.md on the store's thread."""
    summary = report.build_summary(run)
    worst = {(w.doc, w.page, w.model) for w in summary.worst_pages}
    texts = {r.key: r.text or "" async for r in store.read_results(worst)}
    summary = report.with_diffs(summary, run, texts)
    await store.write_text(SUMMARY, report.summary_json(summary))
    await store.write_text(REPORT, report.render_markdown(summary))
    return summary


async def write_html(run_dir: Path) -> Path:
    """report.html from the run directory's files, on a thread."""
    from ocrtui.compare import report_html

    return await asyncio.to_thread(report_html.write_html_report, run_dir)
