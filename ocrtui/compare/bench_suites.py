"""Suites from the two benchmarks that write accuracy as tests: olmOCR-bench and Omni Parse
Bench, their page files beside their test files (``ocrtui compare --suite`` takes either,
through suite.py's load_suite). Tests they write that page_tests.py has no kind for are left out
and counted in the suite's ``skipped`` (by the reason), never guessed at.

olmOCR-bench (allenai/olmocr ``olmocr/bench``): a JSONL file of tests, one object a line,
``{"pdf": "arxiv_math/x.pdf", "page": 1, "id": "...", "type": "present", "text": "...",
"max_diffs": 0}``, the PDFs under ``pdfs/`` beside it. ``present``/``absent``/``order``/
``table`` become present/absent/order/table_cell; ``math``, ``baseline``, ``format`` and
``footnote`` are skipped, as are tests limited to the first or last characters, case
insensitive ones and those marked ``"checked": "rejected"``; a test page_tests.py refuses
(``max_diffs`` as long as its text) is skipped as ``invalid``. Every test is tagged ``Latn``
and ``eng`` (the benchmark is English) and by its file's category (``headers_footers`` →
``header_footer``, ``old_scans`` → ``degraded``, ``table_tests`` → ``table``, ``multi_column``,
``long_tiny_text`` → ``tiny``, ``arxiv_math`` → ``math``).

Omni Parse Bench (``omni-parse-bench``): a dataset folder with ``gold/<page_id>.json``
(``{"tests": [{"id", "test_type", "args", "settings", "tags", ...}]}``) and the page
``pages/<page_id>.pdf`` (or ``.png``/``.jpg``). ``present`` (text args), ``order``,
``repeat`` and ``table_cell`` (neighbours and headings by relation) load; ``layout_kind``,
number and LaTeX args, and table tests over column headings, sections or row groups are
skipped. Their tags are kept.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ocrtui.compare.documents import Category, DocumentSpec, Suite
from ocrtui.compare.page_tests import PageTest, PageTestError, check_tag, parse_test
from ocrtui.compare.pages import parse_page_spec
from ocrtui.errors import ConfigError
from ocrtui.userfiles import UserFileError, display_path, read_text

_OLMOCR_KINDS = {"present": "present", "absent": "absent", "order": "order", "table": "table_cell"}
_OLMOCR_TABLE_KEYS = ("up", "down", "left", "right", "top_heading", "left_heading")
_OLMOCR_CATEGORY_TAGS = {
    "headers_footers": ("header_footer",),
    "old_scans": ("degraded",),
    "old_scans_math": ("degraded", "math"),
    "table_tests": ("table",),
    "multi_column": ("multi_column",),
    "long_tiny_text": ("tiny",),
    "arxiv_math": ("math",),
}
_OLMOCR_CATEGORIES: dict[str, Category] = {"table_tests": "table", "arxiv_math": "en_latex"}
_PAGE_SUFFIXES = (".pdf", ".png", ".jpg", ".jpeg")


def _fail(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{display_path(path)}: {where}: {problem}")


def _read(path: Path) -> str:
    try:
        return read_text(path)
    except UserFileError as exc:
        raise ConfigError(str(exc)) from None


def load_olmocr_bench(path: str | Path, *, password: str | None = None) -> Suite:
    """An olmOCR-bench JSONL file as a suite, one document per PDF."""
    p = Path(path).expanduser()
    stem = p.stem
    tags = ["Latn", "eng", *_OLMOCR_CATEGORY_TAGS.get(stem, ())]
    skipped: Counter[str] = Counter()
    by_pdf: dict[str, list[PageTest]] = {}
    for n, line in enumerate(_read(p).splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(p, where, f"not JSON ({exc.msg})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("pdf"), str) or not raw["pdf"]:
            raise _fail(p, where, 'a test is an object with "pdf", "page", "type"')
        reason = _olmocr_skip(raw)
        if reason:
            skipped[reason] += 1
            continue
        data: dict[str, Any] = {
            "kind": _OLMOCR_KINDS[raw["type"]],
            "page": raw.get("page", 1),
            "max_diffs": raw.get("max_diffs", 0),
            "tags": tags,
            "id": str(raw.get("id", "")),
        }
        if raw["type"] in ("present", "absent"):
            data["text"] = raw.get("text")
        elif raw["type"] == "order":
            data["before"], data["after"] = raw.get("before"), raw.get("after")
        else:
            data["cell"] = raw.get("cell")
            data.update({k: raw[k] for k in _OLMOCR_TABLE_KEYS if raw.get(k)})
        try:
            test = parse_test(data, where)
        except PageTestError:
            skipped["invalid"] += 1
            continue
        by_pdf.setdefault(raw["pdf"], []).append(test)
    specs = []
    for pdf, tests in by_pdf.items():
        doc = p.parent / "pdfs" / pdf
        if not doc.exists() and (p.parent / pdf).exists():
            doc = p.parent / pdf
        pages = ",".join(str(x) for x in sorted({t.page for t in tests}))
        specs.append(
            DocumentSpec(
                path=doc,
                name=pdf,
                category=_OLMOCR_CATEGORIES.get(stem, "other"),
                pages=parse_page_spec(pages),
                tests=tuple(tests),
                password=password,
            )
        )
    if not specs:
        raise _fail(p, "tests", "no test ocrtui can run")
    return Suite(stem, p, tuple(specs), dict(sorted(skipped.items())))


def _olmocr_skip(raw: Mapping[str, Any]) -> str | None:
    kind = raw.get("type")
    if kind not in _OLMOCR_KINDS:
        return f"type {kind}"
    if raw.get("checked") == "rejected":
        return "rejected"
    if raw.get("first_n") or raw.get("last_n"):
        return "first_n/last_n"
    if raw.get("case_sensitive") is False:
        return "case insensitive"
    return None


def load_omni_parse_bench(folder: str | Path, *, password: str | None = None) -> Suite:
    """An Omni Parse Bench dataset folder as a suite, one document per page."""
    root = Path(folder).expanduser()
    golds = sorted((root / "gold").glob("*.json"))
    if not golds:
        raise _fail(root, "gold", "no gold/<page_id>.json files (not an Omni Parse Bench folder)")
    skipped: Counter[str] = Counter()
    specs = []
    for gold in golds:
        page_id = gold.stem
        try:
            doc = json.loads(_read(gold))
        except json.JSONDecodeError as exc:
            raise _fail(gold, "tests", f"not JSON ({exc.msg})") from None
        raw_tests = doc.get("tests") if isinstance(doc, dict) else None
        if not isinstance(raw_tests, list):
            raise _fail(gold, "tests", 'a gold file is {"tests": [...]}')
        tests: list[PageTest] = []
        for i, raw in enumerate(raw_tests):
            where = f"tests[{i}]"
            if not isinstance(raw, dict):
                raise _fail(gold, where, "must be an object")
            data, reason = _omni_test(raw)
            if reason:
                skipped[reason] += 1
                continue
            try:
                tests.append(parse_test(data, where))
            except PageTestError:
                skipped["invalid"] += 1
        if not tests:
            continue
        page = next(
            (root / "pages" / f"{page_id}{s}" for s in _PAGE_SUFFIXES
             if (root / "pages" / f"{page_id}{s}").exists()),
            root / "pages" / f"{page_id}.pdf",
        )  # fmt: skip
        specs.append(DocumentSpec(path=page, name=page_id, tests=tuple(tests), password=password))
    if not specs:
        raise _fail(root, "gold", "no test ocrtui can run")
    return Suite(root.name, root, tuple(specs), dict(sorted(skipped.items())))


def _text_arg(arg: Any) -> tuple[str, int] | None:
    if isinstance(arg, dict) and set(arg) - {"place"} == {"text", "max_diffs"}:
        return arg["text"], arg["max_diffs"]
    return None


def _omni_test(raw: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    kind = raw.get("test_type")
    args: Mapping[str, Any] = raw["args"] if isinstance(raw.get("args"), dict) else {}
    settings: Mapping[str, Any] = raw["settings"] if isinstance(raw.get("settings"), dict) else {}
    tags = [t for t in raw.get("tags", []) if isinstance(t, str) and check_tag(t)]
    data: dict[str, Any] = {"kind": kind, "tags": tags, "id": str(raw.get("id", ""))}
    if kind not in ("present", "order", "repeat", "table_cell"):
        return data, f"test_type {kind}"
    if kind == "table_cell" and set(args) - {"cell", *_OLMOCR_TABLE_KEYS}:
        return data, "table_cell over headings, sections or row groups"
    texts = {role: _text_arg(a) for role, a in args.items()}
    if any(t is None for t in texts.values()):
        return data, f"{kind} with number or LaTeX args"
    diffs = {t[1] for t in texts.values() if t is not None}
    data["max_diffs"] = max(diffs, default=0)
    strings = {role: t[0] for role, t in texts.items() if t is not None}
    if kind in ("present", "repeat"):
        data["text"] = strings.get("content")
        if kind == "repeat":
            data["count"] = settings.get("expected_count")
    else:
        data.update(strings)
    return data, None
