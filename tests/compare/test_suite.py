import os
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrtui.compare.page_tests import Order, Present
from ocrtui.compare.suite import load_suite
from ocrtui.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "suite.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_valid_suite_resolves_paths_relative_to_the_file(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
name = "mine"
[[documents]]
path = "docs/lease.pdf"
category = "zh_contract"
pages = "1-2,4"
reference = "refs/lease.p{page}.md"
critical = ["¥4,500.00"]

[[documents]]
path = "scan.png"
""",
    )
    suite = load_suite(p, password="pw")
    assert suite.name == "mine"
    a, b = suite.documents
    assert a.path == tmp_path / "docs/lease.pdf"
    assert a.name == "lease" and a.category == "zh_contract"
    assert a.pages.select(5) == [1, 2, 4]
    assert a.reference == str(tmp_path / "refs/lease.p{page}.md")
    assert a.critical == ("¥4,500.00",) and a.password == "pw"
    assert b.category == "other" and b.reference is None


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("[[documents]]\npath = 'a.pdf'\ncategory = 'poem'", "documents[0].category", "not one of"),
        ("[[documents]]\npath = 'a.pdf'\npages = '3-1'", "documents[0].pages", "backwards"),
        ("[[documents]]\npath = 'a.pdf'\nrefrence = 'x'", "documents[0].refrence", "unknown key"),
        ("[[documents]]\ncategory = 'table'", "documents[0].path", "missing"),
        ("[[documents]]\npath = 'a.pdf'\ncritical = 'x'", "documents[0].critical", "list"),
        ("[[documents]]\npath = 1", "documents[0].path", "string"),
        ("name = 'x'", "documents", "at least one"),
        ("[[documents]]\npath = 'a.pdf'\ntests = 'x'", "documents[0].tests", "list"),
        (
            "[[documents]]\npath = 'a.pdf'\n[[documents.tests]]\nkind = 'present'",
            "documents[0].tests[0].text",
            "missing",
        ),
        (
            "[[documents]]\npath = 'a.pdf'\n[[documents.tests]]\nkind = 'present'\ntext = 'ab'"
            "\ntags = ['Chinese']",
            "documents[0].tests[0].tags",
            "unknown 'Chinese'",
        ),
        ("docs = []", "docs", "unknown key"),
    ],
)
def test_errors_name_file_key_and_problem(
    tmp_path: Path, body: str, key: str, problem: str
) -> None:
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as exc:
        load_suite(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: {key}: ") and problem in msg
    assert exc.value.exit_code == 2


def test_unreadable_suite_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="suite file not found"):
        load_suite(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_suite(write(tmp_path, "[[documents]\n"))


_KEYS = st.sampled_from(
    ["name", "documents", "path", "category", "pages", "reference", "critical", "tests", "kind",
     "text", "max_diffs", "tags", "x"]
)  # fmt: skip
_SCALARS = (
    st.text(max_size=8)
    | st.integers()
    | st.booleans()
    | st.sampled_from(
        ["zh_contract", "1-3", "text-layer", "{page}.md", "a.pdf", "3-1", "present", "Hani"]
    )
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=12,
)
_SUITES = st.dictionaries(_KEYS, _VALUES, max_size=3) | st.builds(
    lambda docs, name: {"name": name, "documents": docs},
    st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), max_size=3),
    _SCALARS,
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(_SUITES)
def test_any_toml_document_is_a_suite_or_one_config_error(data: dict[str, object]) -> None:
    try:
        text = tomli_w.dumps(data)
    except (TypeError, ValueError):  # not representable as TOML
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "suite.toml"
        path.write_text(text, encoding="utf-8")
        try:
            suite = load_suite(path)
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
        else:
            assert suite.documents


def test_suite_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "suite.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"suite\.toml: is a FIFO"):
        load_suite(fifo)


def test_suite_nested_too_deeply_is_one_error(tmp_path: Path) -> None:
    p = write(tmp_path, "name = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_suite(p)


def test_documents_carry_their_tests(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        """
[[documents]]
path = "lease.pdf"
[[documents.tests]]
kind = "order"
before = "第一条"
after = "第二条"
tags = ["Hani", "zho"]
[[documents.tests]]
kind = "present"
page = 2
text = "110101199003071234"
""",
    )
    (doc,) = load_suite(p).documents
    assert doc.tests == (
        Order(before="第一条", after="第二条", tags=frozenset({"Hani", "zho"})),
        Present(page=2, text="110101199003071234"),
    )
