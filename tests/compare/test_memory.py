"""A run keeps compact records in memory, never page texts (beyond pairs awaiting agreement)."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, replace
from pathlib import Path

from ocrtui.compare.documents import Document, DocumentSpec
from ocrtui.compare.scoring import edit_count
from ocrtui.compare.store import RESULTS, PageResult, RunRecord, RunStore
from ocrtui.compare.tally import Tally

PAGES = 300
CHARS = 3000
MODELS = ("glm-ocr", "lighton-ocr")


def text(model: str, page: int) -> str:
    marker = f"<<{model}:{page}>>"  # unique per page and model, findable in any dump
    return (marker + "第二条 租金：每月人民币肆仟伍佰元整（¥4,500.00）。" * 100)[:CHARS]


def result(model: str, page: int, ok: bool = True) -> PageResult:
    return PageResult(
        "doc", page, model, ok, None if ok else "HTTP 500", 1.0, 900, 400, "stop",
        text(model, page) if ok else "", None, "other",
    )  # fmt: skip


def document(tmp_path: Path) -> Document:
    spec = DocumentSpec(path=tmp_path / "doc.pdf", name="doc", critical=("租金",))
    refs = {p: text("ref", p) for p in range(1, PAGES + 1) if p % 3 == 0}
    return Document(spec, "pdf", PAGES, tuple(range(1, PAGES + 1)), refs)


async def test_memory_holds_no_texts_beyond_pending_pairs(tmp_path: Path) -> None:
    doc = document(tmp_path)
    store = RunStore.create(tmp_path / "run", RunRecord())
    tally = Tally(MODELS)
    try:
        for p in doc.pages:
            first = result(MODELS[0], p, ok=p % 10 != 7)
            await store.add_result(first)
            tally.add(doc, first)
            if p % 5 == 0:
                continue  # the second model has not answered this page yet
            second = result(MODELS[1], p, ok=p % 10 != 4)
            await store.add_result(second)
            tally.add(doc, second)
    finally:
        store.close()

    no_ref = {p for p in doc.pages if p not in doc.references}
    waiting = {("doc", p) for p in no_ref if p % 5 == 0 and p % 10 != 7}
    assert set(tally.pending) == waiting
    assert len(store.results) == PAGES + len([p for p in doc.pages if p % 5])

    kept = pickle.dumps((store.results, tally.scores, tally.agreement))
    for p in doc.pages:
        for m in MODELS:
            assert f"<<{m}:{p}>>".encode() not in kept
    # Compact: a record and its score are a small fraction of one page's text.
    assert len(kept) < len(store.results) * CHARS // 10

    paired = {
        p for p in no_ref if p % 5 and p % 10 != 7 and p % 10 != 4
    }  # both models answered and succeeded
    assert set(tally.agreement) == {("doc", p) for p in paired}
    p = min(paired)
    assert tally.agreement[("doc", p)] == edit_count(text(MODELS[0], p), text(MODELS[1], p))


async def test_resume_keeps_no_texts_and_reads_them_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    store = RunStore.create(run_dir, RunRecord())
    try:
        for p in range(1, 51):
            await store.add_result(result(MODELS[0], p, ok=p != 3))
    finally:
        store.close()
    # The same page stored twice (last ok line wins, in the place of the first) and a torn tail.
    again = replace(result(MODELS[0], 2), latency_s=9.0)
    with (run_dir / RESULTS).open("ab") as f:
        f.write((json.dumps(asdict(again), ensure_ascii=False) + "\n").encode())
        f.write(b'{"doc": "doc", "page": 51')

    store = RunStore.resume(run_dir)
    try:
        assert "<<" not in repr(store.results)
        assert not store.is_done("doc", 3, MODELS[0])
        rows = [json.loads(line) for line in (run_dir / RESULTS).read_text("utf-8").splitlines()]
        assert [r["page"] for r in rows] == [p for p in range(1, 51) if p != 3]
        assert rows[1]["latency_s"] == 9.0
        keys = {("doc", 2, MODELS[0]), ("doc", 40, MODELS[0])}
        back = [r async for r in store.read_results(keys, batch_bytes=4096)]
        assert [(r.page, r.text) for r in back] == [
            (2, text(MODELS[0], 2)),
            (40, text(MODELS[0], 40)),
        ]
    finally:
        store.close()
