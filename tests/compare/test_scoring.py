import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrtui.compare.scoring import (
    EditCount,
    cer,
    corpus_cer,
    critical_found,
    edit_count,
    flags_for,
    normalize,
    score_structure,
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("甲方：张三，乙方：李四。", "甲方:张三,乙方:李四。"),  # NFKC full-width punctuation
        ("# Title\n\n**bold** and `code`", "Titleboldandcode"),
        ("| a | b |\n|---|:---:|\n| 1 | 2 |", "ab12"),
        ("<table><tr><td>a</td><td>b</td></tr></table>", "ab"),
        ("line<br>next &amp; more", "line next&more".replace(" ", "")),
        ("![fig](x.png) see [link](http://x)", "figseelink"),
        ("$\\frac{a}{b} + \\alpha^{2}$", "a/b+α2"),
        ("x² + yᵢ", "x2+yi"),  # NFKC sub/superscripts meet LaTeX ^ and _
        ("“quoted” — dash", '"quoted"-dash'),
        ("```markdown\nhello\n```", "hello"),
    ],
)
def test_normalize_strict(text: str, want: str) -> None:
    assert normalize(text) == want


def test_normalize_lenient_drops_punctuation_keeps_cjk() -> None:
    assert normalize("合同编号：ZL-2026-0315。", lenient=True) == "合同编号ZL20260315"


def test_cer_is_edits_over_longer_string() -> None:
    assert cer("abcd", "abcd") == 0.0
    assert cer("abcx", "abcd") == pytest.approx(1 / 4)
    assert cer("ab", "abcd") == pytest.approx(2 / 4)
    assert cer("abcdefgh", "abcd") == pytest.approx(4 / 8)  # never above 1
    assert cer("", "") == 0.0
    assert cer("", "abc") == 1.0


def test_markup_does_not_count_as_errors() -> None:
    ref = "房屋交付确认书\n项目 数量\n钥匙 3把"
    hyp = "# 房屋交付确认书\n\n| 项目 | 数量 |\n|---|---|\n| 钥匙 | 3把 |"
    assert cer(hyp, ref) == 0.0


def test_lenient_ignores_punctuation_strict_does_not() -> None:
    assert cer("甲方张三", "甲方：张三") > 0
    assert cer("甲方张三", "甲方：张三", lenient=True) == 0


def test_corpus_cer_weights_by_length() -> None:
    counts = [EditCount(1, 10), EditCount(9, 10), EditCount(0, 80)]
    assert corpus_cer(counts) == pytest.approx(10 / 100)
    assert corpus_cer([]) is None
    assert edit_count("ab", "abc") == EditCount(1, 3)


def test_critical_strings_are_verbatim() -> None:
    text = "身份证号：1101 0519 7803 152417，租金 ¥4,500.00"
    assert critical_found(text, "110105197803152417")
    assert critical_found(text, "¥4,500.00")
    assert not critical_found(text, "¥4,500.01")
    assert not critical_found(text.replace("12D", ""), "12D")
    assert critical_found("（¥9,000.00）", "(¥9,000.00)")  # NFKC both sides


def test_flags() -> None:
    ref = "the quick brown fox jumps over the lazy dog " * 2
    assert flags_for("", "stop", ref) == ["empty"]
    assert flags_for(ref, "length", ref) == ["truncated"]
    assert "repetition" in flags_for("start " + "loop text " * 20, "stop", None)
    assert "repetition" not in flags_for(ref, "stop", ref)
    boiler = "There is no content in the provided image to convert into Markdown format."
    assert "blank_boilerplate" in flags_for(boiler, "stop", None)
    assert flags_for("short", "stop", ref) == ["length_ratio"]
    assert flags_for(ref * 3, "stop", ref) == ["length_ratio"]
    assert flags_for("short", "stop", "tiny ref") == []  # ratio needs a long enough reference
    assert flags_for(ref, "stop", ref) == []


def test_table_separator_rows_are_not_a_loop() -> None:
    table = "| a | b |\n" + "|---|---|\n" + "| | |\n" * 30
    assert "repetition" not in flags_for(table, "stop", None)


def test_dot_leaders_are_not_a_loop() -> None:
    assert "repetition" not in flags_for("Contents " + "." * 120 + " 5", "stop", None)


# Text with the markup normalize() strips: tags, entities, fences, LaTeX, tables, emphasis.
_PIECES = st.sampled_from(
    ["<td>", "</tr>", "<br>", "&amp;", "&lt;", "lt;", "amp;", "gt;", "td", "&", "#", "|",
     "\\mid", "---", "```", "**", "_", "$", "\\frac{a}{b}", "\\(", "\\)", "![x](y)",
     "[a](b)", "\n", " ", "\u3000", "ﬁ",
     "“", "’", "- ", "1. ", "ⅷ", "x²", "\u0301", "e\u0301", "¥4,500.00"]
)  # fmt: skip
_TEXTS = st.lists(_PIECES | st.text(max_size=6), max_size=12).map("".join)


@pytest.mark.parametrize("text", ["&amp;lt;", "&lt;td&gt;x", "a\\mid b"])
def test_normalize_is_stable_where_one_pass_is_not(text: str) -> None:
    assert normalize(normalize(text)) == normalize(text)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(_TEXTS, st.booleans())
def test_normalize_is_idempotent_and_never_raises(text: str, lenient: bool) -> None:
    once = normalize(text, lenient=lenient)
    assert normalize(once, lenient=lenient) == once


def test_broken_table_structure_shows_in_teds_not_in_cer() -> None:
    from ocrtui.compare.sample_suite import table_reference

    reference = table_reference()
    # A row break lost: 电表's cells run on after 水表's.
    output = reference.replace("</td></tr>\n<tr><td>电表", "</td><td>电表")
    assert output != reference
    assert cer(output, reference) == 0.0
    score = score_structure(output, reference)
    tables = score.tables
    assert tables is not None and tables.teds is not None and tables.teds_structure is not None
    assert tables.teds < 0.95 and tables.teds_structure < 0.95
    assert score.formulas is None and score.tests is None
    clean = score_structure(reference, reference)
    assert clean.tables is not None and clean.tables.teds == 1.0


def test_structure_score_of_formulas_and_tests() -> None:
    from ocrtui.compare.page_tests import Order

    reference = "Loss:\n\n$$L = \\lambda \\|\\theta\\|^2$$\n\n第一条 第二条"
    output = "Loss:\n\n$$L = \\lambda \\|\\theta\\|^3$$\n\n第二条 第一条"
    score = score_structure(output, reference, [Order(before="第一条", after="第二条")])
    assert score.tables is None
    assert score.formulas is not None and 0 < score.formulas.distance < 0.2
    assert score.tests is not None and score.tests.overall.rate == 0.0
    assert score_structure(output, None).formulas is None


_MARKUP = st.lists(
    st.sampled_from(
        ["<table>", "</table>", "<tr>", "<td>", "</td>", "<th colspan='2'>", "<td rowspan=x>",
         "|", "| a |", "\n|---|", "\n", "$$", "\\[", "\\]", "\\begin{align}", "\\end{align}",
         "{", "}", "第一条", "x", "<br>", "**", "\x00", "&amp;", "<!--", "<"]
    )
    | st.text(max_size=4),
    max_size=30,
).map("".join)  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(_MARKUP, _MARKUP)
def test_structure_scores_take_any_text(output: str, reference: str) -> None:
    from ocrtui.compare.page_tests import Order, PageTest, Present, Repeat, TableCell

    tests: list[PageTest] = [
        Present(text="第一条"),
        Order(before="x", after="a"),
        Repeat(text="x", count=1),
        TableCell(cell="a", relations=(("up", "x"),)),
    ]
    score = score_structure(output, reference, tests)
    if score.tables is not None and score.tables.teds is not None:
        assert 0.0 <= score.tables.teds <= 1.0
        assert score.tables.teds_structure is not None and 0.0 <= score.tables.teds_structure <= 1
    if score.formulas is not None:
        assert 0.0 <= score.formulas.distance <= 1.0
    assert score.tests is not None and score.tests.overall.total == 4
