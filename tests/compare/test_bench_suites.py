import json
from pathlib import Path

import pytest

from ocrtui.compare.bench_suites import load_olmocr_bench, load_omni_parse_bench
from ocrtui.compare.page_tests import Absent, Order, Present, Repeat, TableCell
from ocrtui.errors import ConfigError


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_olmocr_bench_jsonl_loads_as_a_suite(tmp_path: Path) -> None:
    jsonl = _jsonl(
        tmp_path / "headers_footers.jsonl",
        [
            {"pdf": "hf/a.pdf", "page": 1, "id": "t1", "type": "absent", "text": "Page 3",
             "max_diffs": 0},
            {"pdf": "hf/a.pdf", "page": 2, "id": "t2", "type": "present", "text": "Results",
             "max_diffs": 1, "checked": "verified"},
            {"pdf": "hf/b.pdf", "page": 1, "id": "t3", "type": "order", "before": "Intro",
             "after": "Method"},
            {"pdf": "hf/b.pdf", "page": 1, "id": "t4", "type": "table", "cell": "4.2",
             "top_heading": "Q3", "up": "", "left": "Revenue"},
            {"pdf": "hf/b.pdf", "page": 1, "id": "t5", "type": "math", "math": "x^2"},
            {"pdf": "hf/b.pdf", "page": 1, "id": "t6", "type": "baseline"},
            {"pdf": "hf/b.pdf", "page": 1, "id": "t7", "type": "absent", "text": "Footer",
             "last_n": 100},
            {"pdf": "hf/b.pdf", "page": 1, "id": "t8", "type": "present", "text": "x",
             "checked": "rejected"},
            {"pdf": "hf/b.pdf", "page": 1, "id": "t9", "type": "present", "text": "ab",
             "max_diffs": 2},
        ],
    )  # fmt: skip
    (tmp_path / "pdfs" / "hf").mkdir(parents=True)
    (tmp_path / "pdfs" / "hf" / "a.pdf").write_bytes(b"%PDF")
    bench = load_olmocr_bench(jsonl)
    a, b = bench.documents
    assert a.path == tmp_path / "pdfs" / "hf" / "a.pdf" and a.name == "hf/a.pdf"
    assert a.pages.select(5) == [1, 2]
    tags = frozenset({"Latn", "eng", "header_footer"})
    assert a.tests == (
        Absent(page=1, text="Page 3", tags=tags, id="t1"),
        Present(page=2, text="Results", max_diffs=1, tags=tags, id="t2"),
    )
    assert b.tests == (
        Order(before="Intro", after="Method", tags=tags, id="t3"),
        TableCell(cell="4.2", relations=(("left", "Revenue"), ("top_heading", "Q3")),
                  tags=tags, id="t4"),
    )  # fmt: skip
    assert bench.skipped == {
        "first_n/last_n": 1, "invalid": 1, "rejected": 1, "type baseline": 1, "type math": 1
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json\n", "line 1: not JSON"), ('{"page": 1}\n', "line 1: a test is an object")],
)
def test_olmocr_bench_errors_name_the_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{path}: {message}"):
        load_olmocr_bench(path)


def _gold(tests: list[dict]) -> dict:
    base = {"output_type": "html", "derivation": "authored", "settings": {}}
    return {"tests": [{**base, **t} for t in tests]}


def test_omni_parse_bench_folder_loads_as_a_suite(tmp_path: Path) -> None:
    (tmp_path / "gold").mkdir()
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "p2.png").write_bytes(b"png")
    gold = _gold(
        [
            {"id": "a", "test_type": "present", "tags": ["Hani", "zho", "not a tag"],
             "args": {"content": {"text": "房屋交付确认书", "max_diffs": 0}}},
            {"id": "b", "test_type": "order", "tags": [],
             "args": {"before": {"text": "第一条", "max_diffs": 0},
                      "after": {"text": "第二条", "max_diffs": 0}}},
            {"id": "c", "test_type": "repeat", "tags": [], "settings": {"expected_count": 2},
             "args": {"content": {"text": "甲方", "max_diffs": 0}}},
            {"id": "d", "test_type": "table_cell", "tags": ["table"],
             "args": {"cell": {"text": "3", "max_diffs": 0},
                      "top_heading": {"text": "数量", "max_diffs": 0}}},
            {"id": "e", "test_type": "present", "tags": [],
             "args": {"content": {"number": "1,240"}}},
            {"id": "f", "test_type": "layout_kind", "tags": [], "settings": {"kind": "heading"},
             "args": {"content": {"text": "Title", "max_diffs": 0}}},
            {"id": "g", "test_type": "table_cell", "tags": [],
             "args": {"cell": {"text": "3", "max_diffs": 0},
                      "headings": [{"text": "数量", "max_diffs": 0}]}},
        ]
    )  # fmt: skip
    (tmp_path / "gold" / "p1.json").write_text(json.dumps(gold), encoding="utf-8")
    (tmp_path / "gold" / "p2.json").write_text(json.dumps(_gold(gold["tests"][:1])), "utf-8")
    bench = load_omni_parse_bench(tmp_path)
    p1, p2 = bench.documents
    assert p1.name == "p1" and p1.path == tmp_path / "pages" / "p1.pdf"
    assert p2.path == tmp_path / "pages" / "p2.png"
    assert p1.tests == (
        Present(text="房屋交付确认书", tags=frozenset({"Hani", "zho"}), id="a"),
        Order(before="第一条", after="第二条", tags=frozenset({"Hani"}), id="b"),
        Repeat(text="甲方", count=2, tags=frozenset({"Hani"}), id="c"),
        TableCell(cell="3", relations=(("top_heading", "数量"),),
                  tags=frozenset({"table", "Hani"}), id="d"),
    )  # fmt: skip
    assert bench.skipped == {
        "present with number or LaTeX args": 1,
        "table_cell over headings, sections or row groups": 1,
        "test_type layout_kind": 1,
    }


def test_omni_parse_bench_without_gold_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gold: no gold/<page_id>\.json files"):
        load_omni_parse_bench(tmp_path)
