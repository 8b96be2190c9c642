import re
from pathlib import Path

import pytest
from PIL import Image

from ocrtui.compare import sample_suite as suite_module
from ocrtui.compare.documents import DocumentSpec, inspect_document
from ocrtui.compare.page_tests import Present, pass_rates
from ocrtui.compare.scoring import cer, critical_found, normalize, score_structure
from ocrtui.compare.suite import load_suite
from ocrtui.errors import InputError

_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)


def test_sample_suite_covers_the_seed_dimensions(sample_suite: Path) -> None:
    suite = load_suite(sample_suite)
    docs = [inspect_document(d) for d in suite.documents]
    assert [d.spec.category for d in docs] == ["zh_contract", "en_latex", "table", "id_card"]
    assert sum(len(d.pages) for d in docs) == 5
    assert all(set(d.references) == set(d.pages) for d in docs)
    assert all(d.spec.critical for d in docs)
    with Image.open(sample_suite.parent / "id_card.png") as im:
        assert im.size == (1012, 638)


def test_references_are_exactly_what_the_pdfs_print(sample_suite: Path) -> None:
    for d in load_suite(sample_suite).documents:
        if d.path.suffix != ".pdf":
            continue
        doc = inspect_document(d)
        printed = inspect_document(DocumentSpec(d.path, d.name, reference="text-layer"))
        for page, ref in doc.references.items():
            # Formulas are LaTeX in the reference, drawn as Unicode: compared apart, below.
            drawn = normalize(printed.references[page])
            for kind, text, _ in suite_module.PAPER_LINES:
                if kind == "math" and d.category == "en_latex":
                    assert normalize(text) in drawn
                    drawn = drawn.replace(normalize(text), "")
            assert cer(drawn, _DISPLAY_MATH.sub("", ref)) == 0.0, (d.name, page)
        for c in d.critical:
            assert any(c in r for r in doc.references.values()), c


def test_cached_per_version(sample_suite: Path) -> None:
    stamp = sample_suite.stat().st_mtime_ns
    assert suite_module.sample_suite_path(sample_suite.parents[2]) == sample_suite
    assert sample_suite.stat().st_mtime_ns == stamp  # not regenerated
    assert sample_suite.parent.name == suite_module.SAMPLES_VERSION


def test_missing_cjk_font_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite_module, "CJK_FONT", tmp_path / "no-such-font.ttc")
    with pytest.raises(InputError, match="install the Debian package fonts-wqy-microhei"):
        suite_module.sample_suite_path(tmp_path)


def test_every_test_passes_on_its_own_reference(sample_suite: Path) -> None:
    for d in load_suite(sample_suite).documents:
        doc = inspect_document(d)
        assert d.tests, d.name
        for page, ref in doc.references.items():
            rates = pass_rates(ref, [t for t in d.tests if t.page == page])
            assert rates.overall.passed == rates.overall.total, (d.name, page)
        for c in d.critical:
            assert any(critical_found(r, c) for r in doc.references.values()), c
        script = "Latn" if d.category == "en_latex" else "Hani"
        assert all(script in t.tags for t in d.tests), d.name


def test_contract_clauses_are_tested_in_order(sample_suite: Path) -> None:
    contract = next(d for d in load_suite(sample_suite).documents if d.category == "zh_contract")
    doc = inspect_document(contract)
    swapped = doc.references[1].replace("第一条", "第X条").replace("第二条", "第一条")
    rates = pass_rates(
        swapped.replace("第X条", "第二条"), [t for t in contract.tests if t.page == 1]
    )
    assert rates.by_kind["order"].passed < rates.by_kind["order"].total


def test_every_digit_string_of_the_id_card_is_a_present_test(sample_suite: Path) -> None:
    card = next(d for d in load_suite(sample_suite).documents if d.category == "id_card")
    texts = [t.text for t in card.tests if isinstance(t, Present)]
    runs = re.findall(r"\d+", " ".join(v for _, v in suite_module.ID_LINES))
    assert runs and all(any(r in t for t in texts) for r in runs)


def test_table_reference_has_a_merged_and_a_multi_line_cell(sample_suite: Path) -> None:
    ref = (sample_suite.parent / "refs" / "table.p1.md").read_text(encoding="utf-8")
    assert ref.rstrip("\n") == suite_module.table_reference()
    assert 'rowspan="3"' in ref and 'colspan="3"' in ref and "<br>" in ref
    clean = score_structure(ref, ref).tables
    assert clean is not None and clean.teds == 1.0


def test_table_text_intact_structure_broken_scores_low_teds_near_zero_cer() -> None:
    ref = suite_module.table_reference()
    no_spans = re.sub(r' (rowspan|colspan)="\d"', "", ref)
    flat = re.sub(r"<table>.*</table>", _markdown_table(), ref, flags=re.S)
    for output in (no_spans, flat):
        assert cer(output, ref) < 0.01
        tables = score_structure(output, ref).tables
        assert tables is not None and tables.teds is not None and tables.teds_structure is not None
        assert tables.teds < 0.95 and tables.teds_structure < 0.95, output


def _markdown_table() -> str:
    """The sample table as a model answering in Markdown writes it: no spans, every cell in
    the row it starts in, the line break as a space."""
    rows = [[c.text.replace("\n", " ") for c in row] for row in suite_module.TABLE_ROWS]
    width = max(map(len, rows))
    lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
    return "\n".join([lines[0], "|" + "---|" * width, *lines[1:]])
