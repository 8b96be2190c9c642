"""report.html from run directories (synthetic ones from tests/plugins/run_dirs.py, and one
real run against the fake vLLM), and the page files it reads."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ocrtui.cli import main
from ocrtui.compare import page_files, report_html
from ocrtui.compare.client import ModelTarget
from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import RenderedPage
from ocrtui.compare.report_html import write_html_report
from ocrtui.compare.runner import RunPlan, start_run
from ocrtui.compare.scoring import diff_segments
from ocrtui.compare.store import RunRecord, RunStore
from ocrtui.config import CompareConfig
from tests.plugins.compare_inputs import MakePdf, model
from tests.plugins.fake_chat_server import completion, fake_vllm
from tests.plugins.run_dirs import SynthPage, page_image

MakeRun = Callable[..., Path]
HOSTILE = "<script>alert(1)</script></textarea></pre><img src=x onerror=alert(2)>{{ 7*7 }}"
HOSTILE_DOC = "<b>evil</b>/../doc.png"


def pages_fixture() -> list[SynthPage]:
    return [
        SynthPage("lease.pdf", 1, {"glm-ocr": "租金¥4,500.00", "lighton-ocr": "租金¥4,5OO.OO"},
                  "租金¥4,500.00", "zh_contract"),
        SynthPage("lease.pdf", 2, {"glm-ocr": "第二条", "lighton-ocr": None}, "第二条",
                  "zh_contract"),
        SynthPage("lease.pdf", 3, {"glm-ocr": "甲方乙方", "lighton-ocr": "甲方乙方"}, "甲方乙方",
                  "zh_contract"),
        SynthPage(HOSTILE_DOC, 1, {"glm-ocr": HOSTILE, "lighton-ocr": "hello"}, None, "other"),
    ]  # fmt: skip


def sections(html: str) -> list[str]:
    """Each page section's heading text, in document order."""
    return re.findall(r'<section class="page" id="p\d+">\s*<h3>(.*?)<span', html, re.S)


def test_sections_worst_first_with_images_plots_and_anchors(make_run_dir: MakeRun) -> None:
    run_dir = make_run_dir(pages_fixture(), image=page_image())
    out = write_html_report(run_dir)
    assert out == run_dir / "report.html"
    html = out.read_text(encoding="utf-8")
    heads = [h.strip() for h in sections(html)]
    # the failed page first, then by the worst CER: the models' disagreement on the page
    # without a reference (~100 %), lighton's 38 % on p.1, the perfect p.3
    assert [h.split(" ", 1)[0] for h in heads] == ["#1", "#2", "#3", "#4"]
    assert [h.split(" ", 1)[1] for h in heads] == [
        "lease.pdf p.2", "&lt;b&gt;evil&lt;/b&gt;/../doc.png p.1", "lease.pdf p.1", "lease.pdf p.3"
    ]  # fmt: skip
    for i in range(1, 5):
        assert f'<a href="#p{i}">' in html and f'id="p{i}"' in html
    assert html.count('src="data:image/jpeg;base64,') == 4
    assert html.count('src="data:image/svg+xml;base64,') == 3
    assert "as sent (dpi200-max3500, 620×877 px)" in html  # same bytes for both targets
    assert "GLM-OCR, seed (hand-measured)" in html and "1.16 s" in html
    for figure in ("94.62", "1.86 pages/s", "5.71 pages/s", "83.2 ± 0.9"):
        assert figure in html
    assert "two-stage pipeline" in html and "one H100" in html
    assert "failed: HTTP 500: engine died" in html
    failed = html[html.index('id="p1"') : html.index('id="p2"')]  # its reference is shown
    assert '<h4>reference</h4>\n<pre class="text">第二条</pre>' in failed
    # the diff: lighton's O for 0 struck/underlined against the reference
    assert "<ins>OO</ins>" in html and "<del>00</del>" in html
    assert "no reference: agreement between the models is shown" in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch


def test_hostile_text_and_names_are_inert(make_run_dir: MakeRun) -> None:
    html = write_html_report(make_run_dir(pages_fixture())).read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "</textarea>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/textarea&gt;&lt;/pre&gt;" in html
    assert "{{ 7*7 }}" in html  # data, never a template
    assert "&lt;b&gt;evil&lt;/b&gt;/../doc.png p.1" in html


def test_missing_image_rerendered_from_the_document_or_placeheld(
    make_run_dir: MakeRun, make_pdf: MakePdf
) -> None:
    pdf = make_pdf("scan.pdf", ["first page", "second page"])
    pages = [
        SynthPage("scan.pdf", 1, {"glm-ocr": "first", "lighton-ocr": "first page"}),
        SynthPage("gone.pdf", 1, {"glm-ocr": "x", "lighton-ocr": "y"}),
    ]
    html = write_html_report(make_run_dir(pages, doc_paths={"scan.pdf": pdf})).read_text("utf-8")
    assert html.count('src="data:image/jpeg;base64,') == 1
    assert "rendered again from the document (the run kept no image)" in html
    assert "no page image: not kept, cannot be rendered" in html


def test_image_budget_links_the_rest(
    make_run_dir: MakeRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = [SynthPage("d", p, {"glm-ocr": "a" * p, "lighton-ocr": "b"}, "a") for p in (1, 2, 3)]
    run_dir = make_run_dir(pages, image=page_image())
    monkeypatch.setattr(report_html, "IMAGE_BUDGET_BYTES", 1)  # the first image spends it
    html = write_html_report(run_dir).read_text(encoding="utf-8")
    assert html.count('src="data:image/jpeg;base64,') == 1
    assert "2 page image(s) not embedded" in html
    links = re.findall(r'<a href="(pages/[^"]+)">kept file</a>', html)
    assert len(links) == 3 and all((run_dir / link).is_file() for link in links)


def test_report_elsewhere_links_relative_to_it(make_run_dir: MakeRun, tmp_path: Path) -> None:
    run_dir = make_run_dir(pages_fixture()[:1], image=page_image())
    out = write_html_report(run_dir, tmp_path / "elsewhere" / "r.html")
    link = re.search(r'<a href="([^"]+)">kept file</a>', out.read_text("utf-8"))
    assert link and (out.parent / link.group(1)).resolve().is_file()


def test_sweep_drawn_when_present(make_run_dir: MakeRun) -> None:
    sweep = {"glm-ocr": [{"concurrency": c, "images_per_s": c * 1.5, "p50": 1.0, "p95": 2.0}
                         for c in (1, 2, 4, 8)]}  # fmt: skip
    with_sweep = write_html_report(make_run_dir(pages_fixture(), sweep=sweep)).read_text("utf-8")
    without = write_html_report(make_run_dir(pages_fixture())).read_text("utf-8")
    assert "Throughput against concurrency</figcaption>" in with_sweep
    assert "no sweep in this run" in without


def test_reference_read_again_from_the_document(make_run_dir: MakeRun, make_pdf: MakePdf) -> None:
    pdf = make_pdf("paper.pdf", ["the quick brown fox"])
    pages = [SynthPage("paper.pdf", 1, {"glm-ocr": "the quick brown fax", "lighton-ocr": "the"},
                       "the quick brown fox")]  # fmt: skip
    info = {"docs": ["paper.pdf"], "cwd": str(pdf.parent), "reference": "text-layer"}
    run_dir = make_run_dir(pages, keep_references=False, info=info)
    html = write_html_report(run_dir).read_text(encoding="utf-8")
    assert "reference (read again from the document)" in html
    assert '<pre class="text">the quick brown fox' in html


def test_cli_report_and_a_clear_error(
    make_run_dir: MakeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = make_run_dir(pages_fixture())
    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "run.json").write_text("{}")
    assert main(["report", str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ocrtui: {tmp_path / 'half'}: no summary.json (the run has not finished; " \
        "continue it with --resume)"  # fmt: skip


def test_a_summary_missing_fields_is_one_clear_error(
    make_run_dir: MakeRun, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = make_run_dir(pages_fixture())
    (run_dir / "summary.json").write_text('{"run": {"concurrency": 5}, "models": {"m": {}}}')
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"ocrtui: {run_dir / 'summary.json'}: not a summary")
    assert not list(run_dir.glob("*.html*"))


async def test_report_of_a_real_run(make_pdf: MakePdf, tmp_path: Path) -> None:
    """The summary and results the runner writes are what the report reads."""
    path = make_pdf("doc.pdf", ["page one", "page two"])
    spec = DocumentSpec(path=path, name=str(path), reference="text-layer")
    info = RunRecord(docs=(str(path),), cwd=str(tmp_path), reference="text-layer")
    settings = CompareConfig(warm_runs=2, throughput_requests=2, concurrency=2, retries=0)
    with fake_vllm(lambda payload, n: completion("page one <script>x</script>")) as fake:
        targets = tuple(ModelTarget(model(n, n), fake.url) for n in ("glm-ocr", "lighton-ocr"))
        store = RunStore.create(tmp_path / "r", info)
        await start_run(RunPlan((spec,), targets, settings), store).wait()
    html = write_html_report(tmp_path / "r").read_text(encoding="utf-8")
    assert len(sections(html)) == 2
    # The runner keeps every rendered page and reference, so nothing is rendered again.
    assert "rendered again from the document" not in html
    assert "reference (read again from the document)" not in html
    kept = sorted(p.name for p in (tmp_path / "r" / "pages").rglob("*.jpg"))
    assert len(kept) == 4  # 2 pages x 2 render targets
    assert '<pre class="text">page two' in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html


def test_page_files_names_are_safe_and_written_once(tmp_path: Path) -> None:
    names = ["../../etc/passwd", "a/b", "a_b", "", "合同.pdf", "x" * 300, "<>:|?*\0"]
    slugs = [page_files.doc_slug(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,49}", s) and not s.startswith(".") for s in slugs)
    target = TARGETS["glm-ocr"]
    first = page_files.save_page_image(tmp_path, "../../etc/passwd", 3, target, page_image())
    other = RenderedPage(b"not the same bytes", "image/jpeg", 1, 1)
    again = page_files.save_page_image(tmp_path, "../../etc/passwd", 3, target, other)
    assert first == again and first.read_bytes() == page_image().data
    assert first.parent.parent == tmp_path / "pages" and first.name == "3-dpi200-max3500.jpg"
    assert page_files.kept_images(tmp_path, "../../etc/passwd") == {3: [first]}
    page_files.save_references(tmp_path, "合同.pdf", {1: "甲方"})
    assert page_files.read_reference(tmp_path, "合同.pdf", 1) == "甲方"
    assert page_files.read_reference(tmp_path, "合同.pdf", 2) is None


@pytest.mark.parametrize(
    ("hyp", "ref"), [("2了号", "27号"), ("", "abc"), ("abc", ""), ("租金 ¥4,5OO", "租金¥4,500.00")]
)
def test_diff_segments_rebuild_both_texts(hyp: str, ref: str) -> None:
    segs = diff_segments(hyp, ref)
    assert "".join(t for k, t in segs if k != "extra") == ref
    assert "".join(t for k, t in segs if k != "missing") == hyp


async def test_report_md_and_report_html_rank_the_worst_pages_alike(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    """One ranking (ranking.py): summary.json's worst pages, one per page with the arm that
    did worst on it, come in report.html's order."""
    path = make_pdf("doc.pdf", ["page one", "page two", "three"])
    spec = DocumentSpec(path=path, name="doc", reference="text-layer")
    settings = CompareConfig(concurrency=1, retries=0)
    said = {"glm-ocr": "page one", "lighton-ocr": "page two"}
    with fake_vllm(lambda payload, n: completion(said[payload["model"]])) as fake:
        targets = tuple(ModelTarget(model(n, n), fake.url) for n in said)
        store = RunStore.create(tmp_path / "r", RunRecord())
        plan = RunPlan((spec,), targets, settings, speed_phases=False)
        done = await start_run(plan, store).wait()
    assert done.summary is not None
    worst = [(w.doc, w.page) for w in done.summary.worst_pages]
    html = write_html_report(tmp_path / "r").read_text(encoding="utf-8")
    heads = [h.strip().split(" ", 1)[1] for h in sections(html)]
    assert [f"{d} p.{p}" for d, p in worst] == heads
    assert worst[0] == ("doc", 3) and len(set(worst)) == len(worst) == 3
    assert done.summary.worst_pages[0].model == "lighton-ocr"  # "page two" is further from "three"
