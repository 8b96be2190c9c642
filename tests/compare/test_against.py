"""Run against run: against.py's diff and `ocrtui report --against`'s two files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ocrtui.cli import main
from ocrtui.compare.against import (
    CategoryFigures,
    LoadedRun,
    ModelFigures,
    PageFigures,
    diff_runs,
)


def _model(cer: float, critical: float, p50: float, imgs: float) -> ModelFigures:
    return ModelFigures(cer, critical, p50, imgs, {"table": CategoryFigures(cer, critical)})


def test_deltas_per_model_and_category_and_worst_regressions_first() -> None:
    before = LoadedRun(
        "mtp-off",
        {"a": _model(0.10, 0.8, 2.0, 1.0), "gone": _model(0.1, 1, 1, 1)},
        {
            ("t.pdf", 1, "a"): PageFigures("table", True, 0.05, 0.95),
            ("t.pdf", 2, "a"): PageFigures("table", True, 0.02, 0.90),
            ("t.pdf", 3, "a"): PageFigures("table", True, 0.10, None),
            ("t.pdf", 4, "a"): PageFigures("table", True, 0.01, None),
            ("t.pdf", 5, "a"): PageFigures("table", True, 0.30, None),
            ("old.pdf", 1, "a"): PageFigures("other", True, 0.0),
        },
    )
    after = LoadedRun(
        "mtp-on",
        {"a": _model(0.12, 0.6, 1.5, 2.0)},
        {
            ("t.pdf", 1, "a"): PageFigures("table", True, 0.05, 0.60),  # TEDS down 0.35
            ("t.pdf", 2, "a"): PageFigures("table", True, 0.02, 0.90),  # unchanged
            ("t.pdf", 3, "a"): PageFigures("table", True, 0.20, None),  # CER up 0.10
            ("t.pdf", 4, "a"): PageFigures("table", False, None, None),  # newly failed
            ("t.pdf", 5, "a"): PageFigures("table", True, 0.10, None),  # better
            ("new.pdf", 1, "a"): PageFigures("other", True, 0.0),
        },
    )
    diff = diff_runs(before, after)
    assert diff.models == ("a",) and diff.models_left_out == ("gone",)
    assert diff.pages_compared == 5 and not diff.same_pages
    assert diff.only_before == (("old.pdf", 1, "a"),) and diff.only_after == (("new.pdf", 1, "a"),)
    overall = {m.metric: m for m in diff.scopes[0].metrics}
    assert diff.scopes[0].category is None
    assert overall["cer"].delta == pytest.approx(0.02) and overall["cer"].verdict == "worse"
    assert overall["critical_pass_rate"].verdict == "worse"
    assert overall["latency_warm_p50_s"].verdict == "better"
    assert overall["throughput_imgs_per_s"].delta == pytest.approx(1.0)
    assert overall["throughput_imgs_per_s"].verdict == "better"
    # TEDS over the pages both runs scored with it: (0.95 + 0.90) / 2 -> (0.60 + 0.90) / 2
    assert overall["teds"].before == pytest.approx(0.925)
    assert overall["teds"].after == pytest.approx(0.75) and overall["teds"].verdict == "worse"
    table = next(s for s in diff.scopes if s.category == "table")
    assert {m.metric for m in table.metrics} == {"cer", "critical_pass_rate", "teds"}
    assert [c.page for c in diff.changes] == [4, 1, 3, 5]  # failed, -0.35 TEDS, +0.10 CER, better


def _run_dir(root: Path, name: str, pages: dict[tuple[str, int], tuple[float | None, Any]]) -> Path:
    d = root / name
    d.mkdir()
    (d / "run.json").write_text(json.dumps({"models": ["glm-ocr"]}), encoding="utf-8")
    cer = sum(c for c, _ in pages.values() if c is not None) / len(pages)
    summary = {
        "run": {"models": ["glm-ocr"]},
        "models": {
            "glm-ocr": {
                "pages_ok": len(pages), "pages_failed": 0,
                "cer": cer, "critical_pass_rate": 1.0, "latency_warm_p50_s": 1.25,
                "throughput_imgs_per_s": 3.0,
                "by_category": {"table": {"cer": cer, "critical_pass_rate": 1.0, "pages": 2}},
            }
        },
        "documents": {},
    }  # fmt: skip
    (d / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    lines = [
        json.dumps({"doc": doc, "page": page, "model": "glm-ocr", "ok": c is not None,
                    "cer": c, "teds": teds, "category": "table", "text": "x"})
        for (doc, page), (c, teds) in pages.items()
    ]  # fmt: skip
    (d / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def test_cli_writes_against_md_and_html_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "<script>alert(1)</script>|.pdf"
    other = _run_dir(tmp_path, "vllm-0.11", {(hostile, 1): (0.01, 0.98), ("b.pdf", 1): (0.0, None)})
    run = _run_dir(tmp_path, "vllm-0.12", {(hostile, 1): (0.01, 0.70), ("c.pdf", 1): (None, None)})
    assert main(["report", "--against", str(other), str(run)]) == 0
    assert capsys.readouterr().out.split() == [str(run / "against.md"), str(run / "against.html")]
    md = (run / "against.md").read_text(encoding="utf-8")
    assert md.startswith("# vllm-0.12 against vllm-0.11\n")
    assert "| TEDS | 0.980 | 0.700 | -0.280 | worse |" in md
    assert "| critical strings | 100.0 % | 100.0 % | 0.0 pp | same |" in md
    assert "| warm latency p50 | 1.25 s | 1.25 s | +0.00 s | same |" not in md  # 0 is unsigned
    assert "| warm latency p50 | 1.25 s | 1.25 s | 0.00 s | same |" in md
    assert "\\|.pdf p.1 | glm-ocr | table | CER 1.0 %, TEDS 0.980 | CER 1.0 %, TEDS 0.700 |" in md
    assert "Only in vllm-0.11: b.pdf p.1 (glm-ocr)." in md
    assert "Only in vllm-0.12: c.pdf p.1 (glm-ocr)." in md
    html = (run / "against.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<td class="num worse">-0.280</td>' in html


def test_against_what_is_not_a_run_is_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir(tmp_path, "run", {("a.pdf", 1): (0.0, None)})
    assert main(["report", "--against", str(tmp_path / "nope"), str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'nope'}: not a run directory" in err
    assert not (run / "against.md").exists()
    assert main(["report", "--against", str(run), "--out", "x.html", str(run)]) == 2
    assert "drop --out" in capsys.readouterr().err


def test_runs_written_as_the_run_directory_contract_says(tmp_path: Path) -> None:
    from ocrtui.compare.against_report import load_against
    from tests.plugins.run_dirs import SynthPage, write_run_dir

    ref = "第一条 租赁期限：自2026年3月1日起至2027年2月28日止。"
    good = {"glm-ocr": ref, "lighton-ocr": ref}
    bad = {"glm-ocr": ref.replace("2026", "2028"), "lighton-ocr": None}
    pages = [SynthPage("lease.pdf", 1, good, ref, "zh_contract"),
             SynthPage("lease.pdf", 2, good, ref, "zh_contract")]  # fmt: skip
    before = write_run_dir(tmp_path / "before", pages)
    after = write_run_dir(tmp_path / "after", [pages[0], SynthPage("lease.pdf", 2, bad, ref,
                                                                   "zh_contract")])  # fmt: skip
    diff = diff_runs(load_against(before), load_against(after))
    assert diff.models == ("glm-ocr", "lighton-ocr") and diff.same_pages
    assert diff.pages_compared == 4
    assert [(c.model, c.newly_failed) for c in diff.changes] == [
        ("lighton-ocr", True), ("glm-ocr", False)
    ]  # fmt: skip
    cer = {(s.model, s.category): s.metrics[0] for s in diff.scopes}
    assert cer[("glm-ocr", None)].verdict == "worse"
    assert cer[("glm-ocr", "zh_contract")].verdict == "worse"
