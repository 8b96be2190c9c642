"""Tests by tag: yes/no questions about one page's text, as olmOCR-bench and Omni Parse Bench
write accuracy, and their pass rates per kind and per tag.

Five kinds, each with ``max_diffs`` (Levenshtein edits allowed, after folding):

- ``present`` / ``absent``: the text is (is not) in the page;
- ``order``: ``before`` is found ahead of ``after``;
- ``table_cell``: some table has a cell matching ``cell`` whose neighbours (``up``,
  ``down``, ``left``, ``right``) and headings (``top_heading``: the topmost non-empty cell
  of its column, ``left_heading``: the leftmost of its row) match; tables are read by
  tables.py, so HTML and Markdown tables count alike and spans cover every slot they fill;
- ``repeat``: the text appears exactly ``count`` times as a whole run of words, no letter
  or digit touching either end (``max_diffs`` must be 0). Chinese has no spaces, so a run
  there ends at punctuation, a line break or a tag: 租金 inside 每月租金为 does not count.

Folding (both sides): NFKC, HTML tags as spaces (so HTML and Markdown answers read alike)
and entities unescaped, bold/italic markers removed, quotes and dashes unified, then every
space removed (Chinese has none and engines disagree on them), case kept. A critical
string of a suite document is a ``present`` test with ``max_diffs = 0``:
:func:`critical_tests`.

Tags slice the results and never decide a verdict: a script (ISO 15924, ``Hani``,
``Latn``), a language (ISO 639-3, ``zho``, ``eng``), a role (``header_footer``,
``caption``, ``heading``, ``footnote``, ``list``, ``code``, ``figure``), a structure
(``table``, ``math``, ``form``, ``multi_column``) or a rendering (``handwriting``,
``tiny``, ``rotated``, ``degraded``). A test given no script tag gets those of its strings
that ocrtui tells apart itself (``Hani``, ``Latn``; :func:`script_tags`). :func:`pass_rates`
is a pure function of a page's text and its tests: passed/total per kind and per tag,
summable over pages.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from fuzzysearch import find_near_matches
from rapidfuzz.distance import Levenshtein

from ocrtui.compare.results import PassCount, PassRates
from ocrtui.compare.tables import Table, parse_tables

TestKind = Literal["present", "absent", "order", "table_cell", "repeat"]
TEST_KINDS: tuple[str, ...] = get_args(TestKind)
Relation = Literal["up", "down", "left", "right", "top_heading", "left_heading"]
_RELATIONS: tuple[Relation, ...] = get_args(Relation)
RELATIONS: tuple[str, ...] = _RELATIONS
ROLE_TAGS = frozenset({"header_footer", "caption", "heading", "footnote", "list", "code", "figure"})
STRUCTURE_TAGS = frozenset({"table", "math", "form", "multi_column"})
RENDERING_TAGS = frozenset({"handwriting", "tiny", "rotated", "degraded"})
_SCRIPT = re.compile(r"[A-Z][a-z]{3}")  # ISO 15924
_LANGUAGE = re.compile(r"[a-z]{3}")  # ISO 639-3


class PageTestError(ValueError):
    """A test that cannot be used; the message names it and the problem."""


@dataclass(frozen=True)
class _Test:
    page: int = 1
    max_diffs: int = 0
    tags: frozenset[str] = frozenset()
    id: str = ""
    kind: ClassVar[TestKind]


@dataclass(frozen=True)
class Present(_Test):
    text: str = ""
    kind: ClassVar[TestKind] = "present"


@dataclass(frozen=True)
class Absent(_Test):
    text: str = ""
    kind: ClassVar[TestKind] = "absent"


@dataclass(frozen=True)
class Order(_Test):
    before: str = ""
    after: str = ""
    kind: ClassVar[TestKind] = "order"


@dataclass(frozen=True)
class TableCell(_Test):
    cell: str = ""
    relations: tuple[tuple[Relation, str], ...] = ()
    kind: ClassVar[TestKind] = "table_cell"


@dataclass(frozen=True)
class Repeat(_Test):
    text: str = ""
    count: int = 1
    kind: ClassVar[TestKind] = "repeat"


PageTest = Present | Absent | Order | TableCell | Repeat


def critical_tests(critical: Iterable[str], page: int = 1) -> tuple[Present, ...]:
    """A document's critical strings as the ``present`` tests they are."""
    return tuple(
        Present(page=page, text=c, tags=script_tags(c), id=f"critical:{c}") for c in critical
    )


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def script_tags(text: str) -> frozenset[str]:
    """The scripts among a text's letters that ocrtui tells apart itself: ``Hani`` (CJK
    ideographs) and ``Latn``; digits and punctuation have none."""
    return frozenset(
        tag for tag, pattern in (("Hani", _HAN), ("Latn", _LATIN)) if pattern.search(text)
    )


# Folding -----------------------------------------------------------------------------------

_TAG = re.compile(r"<[^<>\n]{1,200}>")
_EMPHASIS = re.compile(r"\*\*|__|(?<!\w)[*_]|[*_](?!\w)")
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'", "–": "-",
                         "—": "-", "‑": "-", "‒": "-", "−": "-", "µ": "μ"})  # fmt: skip
_SPACE = re.compile(r"\s+")


def _plain(text: str) -> str:
    """NFKC, HTML tags as spaces and entities unescaped, emphasis marks gone, quotes and
    dashes unified, whitespace runs as one space."""
    t = _TAG.sub(" ", unicodedata.normalize("NFKC", text))
    t = _EMPHASIS.sub("", html.unescape(t))
    return _SPACE.sub(" ", t.translate(_QUOTES))


def fold(text: str) -> str:
    """The form both a test's strings and a page's text are compared in (module docstring)."""
    return _SPACE.sub("", _plain(text))


def _count_runs(text: str, page: str) -> int:
    """How often ``text`` appears as a whole run of words (spaces between its characters
    allowed, no letter or digit touching either end), as Omni Parse Bench counts."""
    chars = [re.escape(c) for c in fold(text)]
    pattern = r"(?<![^\W_])" + r"\s*".join(chars) + r"(?![^\W_])"
    return len(re.findall(pattern, _plain(page)))


def _starts(needle: str, hay: str, max_diffs: int) -> list[int]:
    if not needle:
        return []
    if max_diffs == 0:
        return [m.start() for m in re.finditer(re.escape(needle), hay)]
    return [m.start for m in find_near_matches(needle, hay, max_l_dist=max_diffs)]


# Verdicts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    test: PageTest
    passed: bool
    why: str = ""  # empty when passed


def run_test(test: PageTest, text: str, tables: Sequence[Table] | None = None) -> Verdict:
    """One test on one page's text (``tables``: the page's parsed tables, when known)."""
    hay = fold(text)
    if isinstance(test, Present | Absent):
        found = bool(_starts(fold(test.text), hay, test.max_diffs))
        if isinstance(test, Present):
            return Verdict(test, found, "" if found else f"{test.text[:40]!r} not found")
        return Verdict(test, not found, f"{test.text[:40]!r} found" if found else "")
    if isinstance(test, Order):
        before = _starts(fold(test.before), hay, test.max_diffs)
        after = _starts(fold(test.after), hay, test.max_diffs)
        if not before or not after:
            missing = test.before if not before else test.after
            return Verdict(test, False, f"{missing[:40]!r} not found")
        ok = min(before) < max(after)
        return Verdict(
            test, ok, "" if ok else f"{test.before[:30]!r} not before {test.after[:30]!r}"
        )
    if isinstance(test, Repeat):
        n = _count_runs(test.text, text)
        ok = n == test.count
        return Verdict(
            test, ok, "" if ok else f"{test.text[:40]!r} appears {n}x, not {test.count}x"
        )
    return _table_cell(test, parse_tables(text) if tables is None else tables)


def _grid(table: Table) -> dict[tuple[int, int], str]:
    """Each (row, column) slot's folded cell text; a spanning cell fills every slot it covers."""
    slots: dict[tuple[int, int], str] = {}
    for r, row in enumerate(table.rows):
        c = 0
        for cell in row:
            while (r, c) in slots:
                c += 1
            text = fold("".join(t if len(t) == 1 else " " for t in cell.content))
            for dr in range(min(cell.rowspan, len(table.rows) - r)):
                for dc in range(cell.colspan):
                    slots[(r + dr, c + dc)] = text
            c += cell.colspan
    return slots


def _near(a: str, b: str, max_diffs: int) -> bool:
    return Levenshtein.distance(a, b, score_cutoff=max_diffs) <= max_diffs


def _neighbour(slots: dict[tuple[int, int], str], r: int, c: int, rel: Relation) -> str | None:
    me = slots[(r, c)]
    step = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
    if rel in step:
        dr, dc = step[rel]
        while (r + dr, c + dc) in slots and slots[(r + dr, c + dc)] == me:  # leave my span
            r, c = r + dr, c + dc
        return slots.get((r + dr, c + dc))
    line = (
        [slots[(i, c)] for i in range(r) if (i, c) in slots]
        if rel == "top_heading"
        else [slots[(r, j)] for j in range(c) if (r, j) in slots]
    )
    return next((t for t in line if t), None)


def _table_cell(test: TableCell, tables: Sequence[Table]) -> Verdict:
    want = fold(test.cell)
    near = False
    for table in tables:
        slots = _grid(table)
        for (r, c), text in slots.items():
            if not _near(text, want, test.max_diffs):
                continue
            near = True
            if all(
                (got := _neighbour(slots, r, c, rel)) is not None
                and _near(got, fold(expected), test.max_diffs)
                for rel, expected in test.relations
            ):
                return Verdict(test, True)
    if not tables:
        return Verdict(test, False, "no table")
    if not near:
        return Verdict(test, False, f"no cell {test.cell[:40]!r}")
    return Verdict(test, False, f"cell {test.cell[:40]!r} found, its neighbours differ")


# Pass rates --------------------------------------------------------------------------------


def pass_rates(text: str, tests: Iterable[PageTest]) -> PassRates:
    """Run every test on the page's text and count passes per kind and per tag."""
    tables: list[Table] | None = None
    kinds: dict[str, PassCount] = {}
    tags: dict[str, PassCount] = {}
    overall = PassCount()
    for test in tests:
        if isinstance(test, TableCell) and tables is None:
            tables = parse_tables(text)
        one = PassCount(int(run_test(test, text, tables).passed), 1)
        overall += one
        kinds[test.kind] = kinds.get(test.kind, PassCount()) + one
        for tag in test.tags:
            tags[tag] = tags.get(tag, PassCount()) + one
    return PassRates(overall, dict(sorted(kinds.items())), dict(sorted(tags.items())))


# Parsing -----------------------------------------------------------------------------------


def check_tag(tag: str) -> bool:
    return (
        tag in ROLE_TAGS
        or tag in STRUCTURE_TAGS
        or tag in RENDERING_TAGS
        or bool(_SCRIPT.fullmatch(tag) or _LANGUAGE.fullmatch(tag))
    )


_KEYS: dict[str, frozenset[str]] = {
    "present": frozenset({"text"}),
    "absent": frozenset({"text"}),
    "order": frozenset({"before", "after"}),
    "table_cell": frozenset({"cell", *RELATIONS}),
    "repeat": frozenset({"text", "count"}),
}
_COMMON = frozenset({"kind", "page", "max_diffs", "tags", "id"})


def parse_test(data: Mapping[str, object], where: str) -> PageTest:
    """One test from its table (a suite's ``[[documents.tests]]``), checked; problems raise
    PageTestError naming ``where`` and the key."""

    def fail(key: str, problem: str) -> PageTestError:
        return PageTestError(f"{where}.{key}: {problem}")

    kind = data.get("kind")
    if kind not in TEST_KINDS:
        raise fail("kind", f"{kind!r} is not one of {', '.join(TEST_KINDS)}")
    allowed = _COMMON | _KEYS[str(kind)]
    for key in data:
        if key not in allowed:
            raise fail(
                key, f"unknown key for a {kind} test (expected {', '.join(sorted(allowed))})"
            )
    strings: dict[str, str] = {}
    for key in _KEYS[str(kind)] - {"count"}:
        value = data.get(key)
        if value is None and key in RELATIONS:
            continue
        if not isinstance(value, str) or not fold(value):
            raise fail(key, "missing" if value is None else "must be a non-empty string")
        strings[key] = value
    page, max_diffs = data.get("page", 1), data.get("max_diffs", 0)
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise fail("page", "must be a page number from 1")
    if not isinstance(max_diffs, int) or isinstance(max_diffs, bool) or max_diffs < 0:
        raise fail("max_diffs", "must be a whole number from 0")
    shortest = min(len(fold(s)) for s in strings.values())
    if max_diffs >= shortest:
        raise fail("max_diffs", f"{max_diffs} edits would match anything {shortest} long")
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise fail("tags", "must be a list of strings")
    bad = [t for t in tags if not check_tag(t)]
    if bad:
        raise fail(
            "tags",
            f"unknown {bad[0]!r} (a script like Hani, a language like zho, or one of "
            f"{', '.join(sorted(ROLE_TAGS | STRUCTURE_TAGS | RENDERING_TAGS))})",
        )
    test_id = data.get("id", "")
    if not isinstance(test_id, str):
        raise fail("id", "must be a string")
    given = frozenset(tags)
    # A test with no script tag gets the scripts of its strings, so Chinese and English
    # tests can be scored apart without tagging each by hand.
    scripts = frozenset().union(*(script_tags(v) for v in strings.values()))
    frozen_tags = given if any(_SCRIPT.fullmatch(t) for t in given) else given | scripts
    if kind == "present":
        return Present(page, max_diffs, frozen_tags, test_id, text=strings["text"])
    if kind == "absent":
        return Absent(page, max_diffs, frozen_tags, test_id, text=strings["text"])
    if kind == "order":
        before, after = strings["before"], strings["after"]
        return Order(page, max_diffs, frozen_tags, test_id, before=before, after=after)
    if kind == "repeat":
        count = data.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise fail("count", "must be a whole number from 0")
        if max_diffs:
            raise fail("max_diffs", "a repeat test counts exact text: must be 0")
        return Repeat(page, max_diffs, frozen_tags, test_id, text=strings["text"], count=count)
    relations = tuple((r, strings[r]) for r in _RELATIONS if r in strings)
    return TableCell(
        page, max_diffs, frozen_tags, test_id, cell=strings["cell"], relations=relations
    )
