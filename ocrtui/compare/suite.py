"""Suite files: a named list of documents with categories, pages, references, critical
strings and tests. Every problem is a ConfigError naming the file, the key and the problem.

:func:`load_suite` reads the three kinds ``--suite`` takes: an olmOCR-bench JSONL file
(``*.jsonl``) or an Omni Parse Bench dataset folder, through bench_suites.py, and otherwise
ocrtui's own TOML:

    name = "contracts"
    [[documents]]
    path = "lease.pdf"                  # relative to this file
    category = "zh_contract"            # zh_contract en_latex table id_card handwriting other
    pages = "1-3"                       # optional page spec
    reference = "refs/lease.p{page}.md" # optional: sidecar pattern, or "text-layer"
    critical = ["¥4,500.00", "2026年3月1日"]
    [[documents.tests]]                 # optional: yes/no tests on one page (page_tests.py)
    kind = "order"                      # present absent order table_cell repeat
    page = 1                            # default 1
    before = "第一条"
    after = "第二条"
    max_diffs = 0                       # edits allowed; default 0
    tags = ["Hani", "zho"]              # script, language, role, rendering
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from ocrtui.compare.bench_suites import load_olmocr_bench, load_omni_parse_bench
from ocrtui.compare.documents import (
    CATEGORIES,
    TEXT_LAYER,
    Category,
    DocumentSpec,
    Suite,
    unique_names,
)
from ocrtui.compare.page_tests import PageTest, PageTestError, parse_test
from ocrtui.compare.pages import ALL_PAGES, parse_page_spec
from ocrtui.errors import ConfigError, InputError
from ocrtui.userfiles import UserFileError, display_path, load_toml

_DOC_KEYS = {"path", "name", "category", "pages", "reference", "critical", "tests"}


def load_suite(path: str | Path, *, password: str | None = None) -> Suite:
    """A suite from its file: a benchmark's (module docstring) or ocrtui's TOML."""
    p = Path(path).expanduser()
    if p.is_dir() or p.suffix.lower() == ".jsonl":
        load = load_omni_parse_bench if p.is_dir() else load_olmocr_bench
        return load(p, password=password)
    try:
        data = load_toml(p, what="suite file")
    except UserFileError as exc:
        raise ConfigError(str(exc)) from None
    return parse_suite(data, p, password=password)


def parse_suite(data: dict[str, Any], path: Path, *, password: str | None = None) -> Suite:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{display_path(path)}: {key}: {problem}")

    for key in data:
        if key not in ("name", "documents"):
            raise fail(key, "unknown key (expected name, documents)")
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        raise fail("name", "must be a string")
    docs = data.get("documents")
    if not isinstance(docs, list) or not docs:
        raise fail("documents", "needs at least one [[documents]] table")
    base = path.parent
    specs: list[DocumentSpec] = []
    for i, d in enumerate(docs):
        at = f"documents[{i}]"
        if not isinstance(d, dict):
            raise fail(at, "must be a table")
        for key in d:
            if key not in _DOC_KEYS:
                raise fail(f"{at}.{key}", f"unknown key (expected {', '.join(sorted(_DOC_KEYS))})")
        for key in ("path", "name", "category", "pages", "reference"):
            if key in d and not isinstance(d[key], str):
                raise fail(f"{at}.{key}", "must be a string")
        if not d.get("path"):
            raise fail(f"{at}.path", "missing")
        category = d.get("category", "other")
        if category not in CATEGORIES:
            raise fail(f"{at}.category", f"{category!r} is not one of {', '.join(CATEGORIES)}")
        pages = ALL_PAGES
        if "pages" in d:
            try:
                pages = parse_page_spec(d["pages"])
            except InputError as exc:
                raise fail(f"{at}.pages", str(exc)) from None
        reference = d.get("reference")
        if reference is not None and reference != TEXT_LAYER:
            if "{page}" not in reference and not reference.strip():
                raise fail(f"{at}.reference", "empty")
            reference = str(base / reference)
        critical = d.get("critical", [])
        if not isinstance(critical, list) or not all(
            isinstance(c, str) and c.strip() for c in critical
        ):
            raise fail(f"{at}.critical", "must be a list of non-empty strings")
        raw_tests = d.get("tests", [])
        if not isinstance(raw_tests, list) or not all(isinstance(t, dict) for t in raw_tests):
            raise fail(f"{at}.tests", "must be a list of [[documents.tests]] tables")
        tests: list[PageTest] = []
        for j, t in enumerate(raw_tests):
            try:
                tests.append(parse_test(t, f"{at}.tests[{j}]"))
            except PageTestError as exc:
                raise ConfigError(f"{display_path(path)}: {exc}") from None
        doc_path = base / d["path"]
        specs.append(
            DocumentSpec(
                path=doc_path,
                name=d.get("name") or Path(d["path"]).stem,
                category=cast(Category, category),
                pages=pages,
                reference=reference,
                critical=tuple(critical),
                tests=tuple(tests),
                password=password,
            )
        )
    return Suite(name, path, tuple(unique_names(specs)))
