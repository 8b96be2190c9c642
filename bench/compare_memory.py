"""Memory a run's results hold over a long documents phase (default 1000 pages x 2 models,
3000-character page texts, a reference on every third page), measured with tracemalloc
(peak, all threads) in the same process:

- old: every PageResult (with its text) kept in a dict for the summary, scored at the end
  (what RunStore.results held before tally.py);
- new: RunStore's compact records plus Tally (scores computed as each result arrives; a
  page's first text held only until its pair arrives).

Both write results.jsonl through a real RunStore in a temporary directory. With
``--schedule sequential`` the second model starts after the first has finished every page,
so the new approach holds the first model's texts of pages without a reference until then.

    .venv/bin/python bench/compare_memory.py [--pages 1000] [--chars 3000]
        [--schedule parallel|sequential]

Goal: peak <= 0.5x the old way's.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import jsonl

from ocrtui.compare.documents import Document, DocumentSpec
from ocrtui.compare.scoring import edit_count
from ocrtui.compare.store import PageResult, RunRecord, RunStore
from ocrtui.compare.tally import Tally

MODELS = ("glm-ocr", "lighton-ocr")
LINE = "第二条 租金：每月人民币肆仟伍佰元整（¥4,500.00），按季度支付。"


def page_text(tag: str, p: int, chars: int) -> str:
    return (f"{tag} p{p} " + LINE * (chars // len(LINE) + 1))[:chars]


def arrivals(pages: int, schedule: str) -> Iterator[tuple[str, int]]:
    if schedule == "parallel":
        return ((m, p) for p in range(1, pages + 1) for m in MODELS)
    return ((m, p) for m in MODELS for p in range(1, pages + 1))


def result(model: str, p: int, chars: int) -> PageResult:
    return PageResult("doc", p, model, True, None, 1.0, 900, 400, "stop",
                      page_text(model, p, chars), None, "other")  # fmt: skip


async def run(doc: Document, chars: int, schedule: str, keep_texts: bool) -> tuple[int, int]:
    """(peak bytes, bytes still held at the end) above the starting point."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create(Path(tmp) / "run", RunRecord())
        tally = Tally(MODELS)
        old: dict[tuple[str, int, str], PageResult] = {}
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        try:
            for m, p in arrivals(len(doc.pages), schedule):
                r = result(m, p, chars)
                await store.add_result(r)
                if keep_texts:
                    old[r.key] = r
                else:
                    tally.add(doc, r)
                del r
            if keep_texts:  # what the summary did at the end, over the kept texts
                for r in old.values():
                    ref = doc.references.get(r.page)
                    if ref is not None and r.text is not None:
                        edit_count(r.text, ref)
                        edit_count(r.text, ref, lenient=True)
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            store.close()
        return peak - base, held - base


def main(pages: int, chars: int, schedule: str) -> None:
    spec = DocumentSpec(path=Path("doc.pdf"), name="doc", critical=("租金",))
    refs = {p: page_text("ref", p, chars) for p in range(1, pages + 1) if p % 3 == 0}
    doc = Document(spec, "pdf", pages, tuple(range(1, pages + 1)), refs)
    old_peak, old_held = asyncio.run(run(doc, chars, schedule, keep_texts=True))
    new_peak, new_held = asyncio.run(run(doc, chars, schedule, keep_texts=False))
    mib = 2**20
    jsonl.emit(f"compare_memory_peak_{pages}_pages", new_peak / mib, old_peak / mib, 0.5, "MiB",
               False, chars=chars, schedule=schedule, held_ours=round(new_held / mib, 3),
               held_baseline=round(old_held / mib, 3),
               baseline_is="every PageResult kept")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--chars", type=int, default=3000)
    ap.add_argument("--schedule", choices=("parallel", "sequential"), default="parallel")
    a = ap.parse_args()
    main(a.pages, a.chars, a.schedule)
