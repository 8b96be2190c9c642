from pathlib import Path

import pytest

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
