import json
from pathlib import Path

import pytest

from ocrtui.compare.bench_suites import load_omni_parse_bench
from ocrtui.compare.page_tests import (
    Absent,
    Order,
    PageTest,
    PageTestError,
    Present,
    Repeat,
    TableCell,
    critical_tests,
    fold,
    parse_test,
    pass_rates,
    run_test,
)
from ocrtui.compare.results import PassCount
from ocrtui.compare.scoring import critical_found

PAGE = """# 房屋租赁合同

第一条 租金为每月 **¥4,500.00** 元。

第二条 押金为两个月租金。

Signed by “Alice” — 2026-03-01

| 项目 | 数量 | 金额 |
|---|---|---|
| 钥匙 | 3 | ¥0 |
| 门禁卡 | 2 | ¥50 |

Page 1 of 2
"""


def test_folding_drops_markup_spaces_and_typography() -> None:
    assert fold("**¥4,500.00** 元") == "¥4,500.00元"
    assert fold("“Alice” — x<br>y") == '"Alice"-xy'
    assert fold("（全角）") == "(全角)"


@pytest.mark.parametrize(
    ("test", "passed"),
    [
        (Present(text="租金为每月¥4,500.00元"), True),
        (Present(text="¥4,500.01"), False),
        (Present(text="¥4,500.01", max_diffs=1), True),
        (Absent(text="Page 1 of 2"), False),
        (Absent(text="Confidential"), True),
        (Order(before="第一条", after="第二条"), True),
        (Order(before="第二条", after="第一条"), False),
        (Order(before="第一条", after="第九条"), False),
        (Repeat(text="第一条", count=1), True),
        (Repeat(text="第一条", count=2), False),
        (Repeat(text="租金", count=0), True),  # only inside longer runs (租金为每月)
        (Repeat(text="age", count=0), True),  # only inside "Page"
        (TableCell(cell="2", relations=(("top_heading", "数量"), ("left", "门禁卡"))), True),
        (TableCell(cell="2", relations=(("up", "3"), ("right", "¥50"))), True),
        (TableCell(cell="2", relations=(("left_heading", "钥匙"),)), False),
        (TableCell(cell="99"), False),
    ],
)
def test_each_kind(test, passed: bool) -> None:
    verdict = run_test(test, PAGE)
    assert verdict.passed is passed
    assert (verdict.why == "") is passed


def test_table_cell_reads_html_spans() -> None:
    html = (
        "<table><tr><th>名称</th><th colspan='2'>金额</th></tr>"
        "<tr><td>租金</td><td>¥4,500</td><td>月</td></tr></table>"
    )
    assert run_test(TableCell(cell="月", relations=(("top_heading", "金额"),)), html).passed
    assert run_test(TableCell(cell="¥4,500", relations=(("up", "金额"),)), html).passed
    assert not run_test(TableCell(cell="月", relations=(("top_heading", "名称"),)), html).passed
    assert run_test(TableCell(cell="月"), "no table").why == "no table"


@pytest.mark.parametrize(
    "critical", ["¥4,500.00", "第一条", "2026-03-01", "¥4,500.01", "2026-03-02", "门禁卡 2"]
)
def test_critical_strings_are_present_tests_with_the_same_verdict(critical: str) -> None:
    (test,) = critical_tests([critical])
    assert test.max_diffs == 0 and test.kind == "present"
    assert run_test(test, PAGE).passed is critical_found(PAGE, critical)


def test_pass_rates_per_kind_and_tag_sum_over_pages() -> None:
    tests: list[PageTest] = [
        Present(text="第一条", tags=frozenset({"Hani", "zho"})),
        Present(text="Alice", tags=frozenset({"Latn", "eng"})),
        Absent(text="Page 1 of 2", tags=frozenset({"Latn", "header_footer"})),
        Order(before="第二条", after="第一条", tags=frozenset({"Hani"})),
    ]
    rates = pass_rates(PAGE, tests)
    assert rates.overall == PassCount(2, 4)
    assert rates.by_kind == {"absent": PassCount(0, 1), "order": PassCount(0, 1),
                             "present": PassCount(2, 2)}  # fmt: skip
    assert rates.by_tag["Hani"] == PassCount(1, 2)
    assert rates.by_tag["Latn"] == PassCount(1, 2)
    assert rates.by_tag["header_footer"].rate == 0.0
    both = rates + pass_rates("第一条 only", tests[:1])
    assert both.overall == PassCount(3, 5)
    assert both.by_tag["zho"] == PassCount(2, 2)
    assert pass_rates(PAGE, []).overall.rate is None


def test_parse_builds_each_kind() -> None:
    t = parse_test(
        {"kind": "table_cell", "cell": "2", "top_heading": "数量", "tags": ["Hani", "table"]},
        "documents[0].tests[0]",
    )
    assert t == TableCell(cell="2", relations=(("top_heading", "数量"),),
                          tags=frozenset({"Hani", "table"}))  # fmt: skip
    r = parse_test({"kind": "repeat", "text": "租金", "count": 2, "page": 3}, "x")
    assert r == Repeat(page=3, text="租金", count=2, tags=frozenset({"Hani"}))
    mixed = parse_test({"kind": "present", "text": "甲方 Alice"}, "x")
    assert mixed.tags == {"Hani", "Latn"}
    digits = parse_test({"kind": "present", "text": "31011519900307123X"}, "x")
    assert digits.tags == {"Latn"}  # the X
    given = parse_test({"kind": "present", "text": "甲方", "tags": ["Latn", "caption"]}, "x")
    assert given.tags == {"Latn", "caption"}  # a given script is not second-guessed
    assert parse_test({"kind": "present", "text": "4,500.00"}, "x").tags == frozenset()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "presence", "text": "a"}, "x.kind: 'presence' is not one of"),
        ({"kind": "present"}, "x.text: missing"),
        ({"kind": "present", "text": "  "}, "x.text: must be a non-empty string"),
        ({"kind": "present", "text": "abc", "before": "a"}, "x.before: unknown key"),
        ({"kind": "present", "text": "abc", "max_diffs": 3}, "x.max_diffs: 3 edits"),
        ({"kind": "present", "text": "abc", "page": 0}, "x.page: must be a page number"),
        ({"kind": "present", "text": "abc", "tags": ["chinese!"]}, "x.tags: unknown 'chinese!'"),
        ({"kind": "order", "before": "a"}, "x.after: missing"),
        ({"kind": "repeat", "text": "abc", "max_diffs": 1}, "x.max_diffs: a repeat test"),
        ({"kind": "repeat", "text": "abc", "count": -1}, "x.count: must be a whole number"),
    ],
)
def test_parse_errors_name_the_test_and_key(data: dict, message: str) -> None:
    with pytest.raises(PageTestError, match=f"^{message}".replace("(", r"\(")):
        parse_test(data, "x")


OMNI = json.loads((Path(__file__).parent / "data" / "omni_parse_bench_verdicts.json").read_text())


def test_verdicts_agree_with_omni_parse_bench(tmp_path: Path) -> None:
    (tmp_path / "gold").mkdir()
    for page in OMNI["pages"]:
        gold = json.dumps({"tests": page["tests"]}, ensure_ascii=False)
        (tmp_path / "gold" / f"{page['id']}.json").write_text(gold, encoding="utf-8")
    bench = load_omni_parse_bench(tmp_path)
    assert bench.skipped == {}
    pages = {p["id"]: p for p in OMNI["pages"]}
    for doc in bench.documents:
        page = pages[doc.name]
        ours = {t.id: run_test(t, page["html"]).passed for t in doc.tests}
        assert ours == page["verdicts"], doc.name
        # and so the pass rates per tag, which are sums of verdicts
        theirs: dict[str, PassCount] = {}
        for t in doc.tests:
            one = PassCount(int(page["verdicts"][t.id]), 1)
            for tag in t.tags:
                theirs[tag] = theirs.get(tag, PassCount()) + one
        assert pass_rates(page["html"], doc.tests).by_tag == dict(sorted(theirs.items()))


def test_omni_parse_bench_pages_pass_and_fail() -> None:
    verdicts = [v for p in OMNI["pages"] for v in p["verdicts"].values()]
    assert 5 < sum(verdicts) < len(verdicts) - 5


def test_huge_spans_are_bounded() -> None:
    html = "<table><tr><td rowspan='999999999' colspan='999999999'>x</td><td>y</td></tr></table>"
    verdict = run_test(TableCell(cell="y", relations=(("left", "x"),)), html)
    assert verdict.passed
