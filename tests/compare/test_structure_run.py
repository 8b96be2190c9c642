"""Structure scores through a whole run against the fake vLLM: a table read cell for cell
but laid out wrong keeps CER near 0 and loses TEDS, in results.jsonl, summary.json and
report.md; tests are counted per kind and per tag, Hani and Latn apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ocrtui.compare.client import ModelTarget
from ocrtui.compare.documents import Document, DocumentSpec
from ocrtui.compare.events import RunDone
from ocrtui.compare.page_tests import Order, Present
from ocrtui.compare.results import PassCount, Summary
from ocrtui.compare.runner import RunPlan
from ocrtui.compare.tally import score_page
from ocrtui.config import CompareConfig
from tests.compare.test_runner import lines, run_to_end
from tests.plugins.compare_inputs import MakePdf, model
from tests.plugins.fake_chat_server import completion, fake_vllm

ROWS = [["项目", "数量", "备注"], ["钥匙", "3", "门禁卡两张"], ["水表读数", "1024", "已核对"]]


def html_table(rows: list[list[str]]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{body}</table>"


REFERENCE = "房屋交付确认书\n\n" + html_table(ROWS) + "\n\nSigned on delivery"
# Every cell's text, in reading order, but the three rows run together as one.
ONE_ROW = [c for row in ROWS for c in row]
BROKEN = "房屋交付确认书\n\n" + html_table([ONE_ROW]) + "\n\nSigned on delivery"
SETTINGS = CompareConfig(concurrency=2, retries=0)


def table_doc(make_pdf: MakePdf, tmp_path: Path) -> DocumentSpec:
    ref = tmp_path / "table.ref.md"
    ref.write_text(REFERENCE, encoding="utf-8")
    return DocumentSpec(
        path=make_pdf("table.pdf", ["table page"]),
        name="table",
        category="table",
        reference=str(ref),
        critical=("1024",),
        tests=(
            Present(text="门禁卡两张", tags=frozenset({"Hani"})),
            Order(before="房屋交付确认书", after="Signed", tags=frozenset({"Hani", "Latn"})),
            Present(text="Signed on arrival", tags=frozenset({"Latn"})),
        ),
    )


async def test_broken_table_structure_scores_below_one_with_cer_near_zero(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    def respond(payload: dict[str, Any], n: int) -> tuple[int, dict[str, Any]]:
        return completion(REFERENCE if payload["model"] == "intact" else BROKEN)

    run_dir = tmp_path / "run"
    with fake_vllm(respond) as fake:
        arms = (
            ModelTarget(model("intact", "glm-ocr"), fake.url),
            ModelTarget(model("broken", "lighton-ocr"), fake.url),
        )
        plan = RunPlan((table_doc(make_pdf, tmp_path),), arms, SETTINGS, speed_phases=False)
        events = await run_to_end(plan, run_dir)
    done = events[-1]
    assert isinstance(done, RunDone) and done.exit_code == 0

    rows = {r["model"]: r for r in lines(run_dir)}
    assert rows["intact"]["teds"] == 1.0 and rows["intact"]["teds_s"] == 1.0
    assert rows["broken"]["cer"] < 0.02
    assert rows["broken"]["teds"] < 0.8 and rows["broken"]["teds_s"] < 0.8
    assert rows["broken"]["formula_ed"] is None  # the reference has no formula
    tests = rows["broken"]["tests"]
    assert tests["overall"] == {"passed": 2, "total": 3}
    assert tests["by_tag"]["Latn"] == {"passed": 1, "total": 2}

    summary = Summary.from_json(json.loads((run_dir / "summary.json").read_text()))
    intact, broken = summary.models["intact"], summary.models["broken"]
    cat = broken.by_category["table"]
    assert cat.cer is not None and cat.cer < 0.02
    assert cat.teds is not None and cat.teds < 0.8
    assert intact.by_category["table"].teds == 1.0
    # The critical string is one more present test, tagged by its script (digits: none).
    assert broken.tests is not None
    assert broken.tests.overall == PassCount(3, 4)
    assert broken.tests.by_kind["present"] == PassCount(2, 3)
    assert broken.tests.by_tag["Hani"] == PassCount(2, 2)
    assert broken.tests.by_tag["Latn"] == PassCount(1, 2)
    assert cat.test_pass_rate == 0.75

    report = (run_dir / "report.md").read_text(encoding="utf-8")
    header = next(line for line in report.splitlines() if line.startswith("| Category"))
    broken_row = next(ln for ln in report.splitlines() if ln.startswith("| table | broken"))
    cells = [c.strip() for c in broken_row.split("|")[1:-1]]
    heads = [c.strip() for c in header.split("|")[1:-1]]
    assert cells[heads.index("TEDS")] == f"{cat.teds * 100:.1f} %"
    assert cells[heads.index("CER")] == f"{cat.cer * 100:.1f} %"
    assert "| tag Hani | 2/2 (100.0 %) | 2/2 (100.0 %) |" in report
    assert "| tag Latn | 1/2 (50.0 %) | 1/2 (50.0 %) |" in report

    # report.html draws each output's table beside the reference's, differing cells marked:
    # the intact table has none, the broken one's second to ninth cells sit in other slots.
    from lxml import html as lxml_html

    page = lxml_html.fromstring((run_dir / "report.html").read_bytes())
    cols = {c.findtext("h4"): c for c in page.find_class("col")}
    intact_cells = [td.get("class") for td in cols["intact"].iter("td")]
    broken_cells = [td.get("class") for td in cols["broken"].iter("td")]
    assert len(intact_cells) == 9 and "differs" not in intact_cells
    assert len(broken_cells) == 9 and broken_cells.count("differs") == 6
    assert "TEDS" in cols["broken"].find_class("meta")[0].text_content()


def _image(payload: dict[str, Any]) -> str:
    """The data URL of a chat request's page image."""
    return next(
        part["image_url"]["url"]
        for msg in payload["messages"]
        if isinstance(msg["content"], list)
        for part in msg["content"]
        if part.get("type") == "image_url"
    )


async def test_variants_score_apart_and_the_report_names_the_flip(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    # Each model reads its documents one at a time, clean first: its first request is the
    # clean page, its second the blurred copy. "a" gets the table right on the clean page
    # and wrong on the blurred one; "b" misreads one cell of the clean page only.
    slightly_off = REFERENCE.replace("已核对", "己核对")
    answers = {"a": [REFERENCE, BROKEN], "b": [slightly_off, REFERENCE]}
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def respond(payload: dict[str, Any], n: int) -> tuple[int, dict[str, Any]]:
        mine = seen[payload["model"]]
        mine.append(_image(payload))
        return completion(answers[payload["model"]][len(mine) - 1])

    run_dir = tmp_path / "run"
    with fake_vllm(respond) as fake:
        arms = (
            ModelTarget(model("a", "glm-ocr"), fake.url),
            ModelTarget(model("b", "glm-ocr"), fake.url),
        )
        plan = RunPlan(
            (table_doc(make_pdf, tmp_path),), arms, SETTINGS, speed_phases=False,
            variants=("clean", "blur"),
        )  # fmt: skip
        events = await run_to_end(plan, run_dir)
    done = events[-1]
    assert isinstance(done, RunDone) and done.exit_code == 0
    # The blurred copy is another image, the same one for both models (seeded per page).
    assert seen["a"][0] != seen["a"][1] and seen["a"][1] == seen["b"][1]
    assert seen["a"][0] == seen["b"][0]

    rows = {(r["doc"], r["model"]): r for r in lines(run_dir)}
    assert rows[("table@blur", "a")]["teds"] < 0.8 and rows[("table", "a")]["teds"] == 1.0

    summary = Summary.from_json(json.loads((run_dir / "summary.json").read_text()))
    a, b = summary.models["a"], summary.models["b"]
    assert set(a.by_variant) == {"clean", "blur"}
    assert a.by_category["table"] == a.by_variant["clean"]["table"]  # the rest is clean's
    assert (a.pages_ok, a.pages_failed) == (2, 0)  # pages sent: each copy counts
    blur_a, blur_b = a.by_variant["blur"]["table"], b.by_variant["blur"]["table"]
    assert blur_a.teds is not None and blur_b.teds == 1.0 and blur_a.teds < 0.8
    clean_b = b.by_variant["clean"]["table"]
    assert clean_b.teds is not None and 0.8 < clean_b.teds < 1.0

    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Degraded variants" in report
    flips = [ln for ln in report.splitlines() if ln.startswith("- table, TEDS:")]
    assert flips == [
        f"- table, TEDS: clean a 100.0 % > b {clean_b.teds * 100:.1f} %; "
        f"blur b 100.0 % > a {blur_a.teds * 100:.1f} %"
    ]
    assert "blur b 100.0 % &gt; a" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_score_page_scores_formulas_and_only_the_pages_own_tests(tmp_path: Path) -> None:
    spec = DocumentSpec(
        path=tmp_path / "paper.pdf",
        name="paper",
        category="en_latex",
        tests=(Present(page=2, text="Theorem", tags=frozenset({"Latn"})),),
    )
    doc = Document(spec, "pdf", 2, (1, 2), {1: "Energy $$E = m c^{2}$$", 2: "Theorem 1"})
    first = score_page(doc, 1, "Energy $$E = m c^{3}$$")
    assert first.structure.formulas is not None
    assert 0 < first.structure.formulas.distance < 0.5
    assert first.structure.tests is None  # the test is page 2's
    second = score_page(doc, 2, "Theorem 1")
    assert second.structure.formulas is None  # no formula in page 2's reference
    assert second.structure.tests is not None
    assert second.structure.tests.by_tag["Latn"] == PassCount(1, 1)


async def test_a_resumed_variant_run_sends_nothing_again_and_keeps_its_figures(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    with fake_vllm(lambda p, n: completion(BROKEN)) as fake:
        arms = (ModelTarget(model("a", "glm-ocr"), fake.url),)
        plan = RunPlan(
            (table_doc(make_pdf, tmp_path),), arms, SETTINGS, speed_phases=False,
            variants=("clean", "jpeg"),
        )  # fmt: skip
        await run_to_end(plan, run_dir)
        first = json.loads((run_dir / "summary.json").read_text())
        sent = len(fake.requests)
        await run_to_end(plan, run_dir, resume=True)
        assert len(fake.requests) == sent == 2
    again = json.loads((run_dir / "summary.json").read_text())
    assert again["models"]["a"]["by_variant"] == first["models"]["a"]["by_variant"]
    assert again["models"]["a"]["by_variant"]["jpeg"]["table"]["teds"] < 0.8
