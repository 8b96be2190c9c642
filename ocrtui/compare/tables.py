"""Table structure: TEDS and TEDS-S (structure only) between a page's tables and its
reference's, as PubTabNet and OmniDocBench compute them.

TEDS = 1 - tree edit distance / the larger table's element count, on the HTML table trees
(``table`` → ``tr`` → ``td``), the distance by `apted` (APTED, the algorithm their code
uses). Renaming a node costs 1 when the tag, ``colspan`` or ``rowspan`` differ; two cells
that agree on those cost the normalised Levenshtein distance of their contents (the
characters of their text and the tags inside them, e.g. ``<br>``); inserting or deleting a
node costs 1. TEDS-S treats every cell's content as empty, so it scores rows, columns and
spans alone. A merged cell, a row break lost or a column shifted by one cell lowers TEDS even
when every character is read, which CER (scoring.py) cannot see.

Models answer with HTML tables or Markdown (GFM) tables; both become the same tree: the
page text goes through markdown-it-py's CommonMark parser with its table rule (raw HTML
passes through it unchanged), and every ``<table>`` in the result is read by lxml. The
cleanup follows OmniDocBench's ``normalized_html_table``: ``th`` is ``td``; ``thead``,
``tbody``, ``tfoot``, ``span``, ``sup``, ``sub``, ``div`` and ``p`` are unwrapped and
``colgroup`` dropped; attributes other than ``colspan``/``rowspan`` (alignment, style) are
ignored; text is NFKC'd and its whitespace runs become one space. Unlike OmniDocBench, a
cell's leading and trailing spaces are trimmed (Markdown never keeps them, HTML answers
often do).

A page's score pairs the reference's tables with the output's in reading order (the i-th
with the i-th); a reference table with no partner scores 0, and the page's figure is the
mean over the reference's tables. A pair too large to compare in reasonable time
(:data:`MAX_NODE_PAIRS`) is left out of the mean and counted as ``unscored``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import lxml.html
from apted import APTED, Config
from lxml import etree
from markdown_it import MarkdownIt
from rapidfuzz.distance import Levenshtein

_SPACE = re.compile(r"\s+")
_UNWRAP = ("thead", "tbody", "tfoot", "span", "sup", "sub", "div", "p")


@dataclass(frozen=True)
class Table:
    """A table's tree, ready to compare: ``rows`` of cells, and its element count (as
    OmniDocBench counts it: every element below ``<table>``, tags inside cells included)."""

    rows: tuple[tuple[Cell, ...], ...]
    elements: int


@dataclass(frozen=True)
class Cell:
    colspan: int
    rowspan: int
    content: tuple[str, ...]  # characters and inner tags (``<br>``), in order

    @property
    def text(self) -> str:
        """The cell's text to show: a ``<br>`` is a line break, other inner tags go."""
        return "".join(
            "\n" if t == "<br>" else "" if t.startswith("<") and len(t) > 1 else t
            for t in self.content
        )


@dataclass(frozen=True)
class TableScore:
    """One page's table scores against its reference: means over the reference's tables
    that were scored (None when none was)."""

    teds: float | None
    teds_structure: float | None
    tables: int  # tables in the reference
    found: int  # tables in the output
    unscored: int = 0  # pairs over MAX_NODE_PAIRS, left out of the means


# APTED's time grows with the product of the two trees' sizes: 110,000 node pairs (a 30x10
# table against another) take about 2 s here, 440,000 (60x10) about 7 s. Past this bound (a
# 120x10 table, or a runaway output of hundreds of rows) a pair is not scored.
MAX_NODE_PAIRS = 1_500_000


@cache
def _markdown() -> MarkdownIt:
    # CommonMark keeps raw HTML blocks as they are; the table rule adds GFM tables.
    return MarkdownIt("commonmark").enable("table")


def parse_tables(text: str) -> list[Table]:
    """Every top-level table in a page's text (Markdown, HTML or both), in reading order."""
    if "|" not in text and "<t" not in text.lower():
        return []
    rendered = _markdown().render(text)
    if "<table" not in rendered.lower():
        return []
    root = lxml.html.document_fromstring(f"<div>{rendered}</div>")
    return [
        _table(t)
        for t in root.iter("table")
        if not any(a.tag == "table" for a in t.iterancestors())
    ]


def _table(node: lxml.html.HtmlElement) -> Table:
    etree.strip_elements(node, "colgroup", etree.Comment, with_tail=False)
    etree.strip_tags(node, *_UNWRAP)
    for th in node.iter("th"):
        th.tag = "td"
    rows: list[tuple[Cell, ...]] = []
    for tr in node.iter("tr"):
        rows.append(tuple(_cell(td) for td in tr if td.tag == "td"))
    # Elements below <table> after the cleanup, as TEDS's normaliser counts them. A <td>
    # outside any <tr> or a stray element is counted but not in the tree, as in theirs.
    elements = sum(1 for _ in node.iterdescendants())
    return Table(tuple(rows), elements)


# HTML's own ceiling for colspan; a model's runaway span is no wider than that.
MAX_SPAN = 1000


def _span(td: lxml.html.HtmlElement, name: str) -> int:
    try:
        return min(MAX_SPAN, max(1, int(td.get(name, "1"))))
    except ValueError:
        return 1


def _cell(td: lxml.html.HtmlElement) -> Cell:
    tokens: list[str] = []

    def walk(node: lxml.html.HtmlElement, top: bool) -> None:
        if not top:
            tokens.append(f"<{node.tag}>")
        tokens.extend(_clean(node.text))
        for child in node:
            if isinstance(child.tag, str):
                walk(child, False)
            tokens.extend(_clean(child.tail))
        if not top:
            tokens.append(f"</{node.tag}>")

    walk(td, True)
    while tokens and tokens[0] == " ":
        tokens.pop(0)
    while tokens and tokens[-1] == " ":
        tokens.pop()
    return Cell(_span(td, "colspan"), _span(td, "rowspan"), tuple(tokens))


def _clean(text: str | None) -> list[str]:
    if not text:
        return []
    return list(_SPACE.sub(" ", unicodedata.normalize("NFKC", text)))


class _Node:
    __slots__ = ("cell", "children", "key", "tag", "text")

    def __init__(self, tag: str, cell: Cell | None, children: list[_Node], text: str = "") -> None:
        self.tag = tag
        self.cell = cell
        self.children = children
        self.text = text  # the cell's content as one string (see _as_text)
        self.key = (tag, cell.colspan, cell.rowspan) if cell else (tag, 0, 0)


class _Costs(Config):
    """OmniDocBench's costs; renames memoised, since APTED asks for the same pair many times
    (a 30x10 table: 690,000 calls for 110,000 pairs)."""

    def __init__(self, structure_only: bool) -> None:
        self.structure_only = structure_only
        self.memo: dict[tuple[int, int], float] = {}

    def rename(self, a: _Node, b: _Node) -> float:
        if a.key != b.key:
            return 1.0
        if self.structure_only or a.cell is None or a.text == b.text:
            return 0.0
        pair = (id(a), id(b))
        cost = self.memo.get(pair)
        if cost is None:
            cost = self.memo[pair] = float(Levenshtein.normalized_distance(a.text, b.text))
        return cost

    def children(self, node: _Node) -> list[_Node]:
        return node.children


def _as_text(content: tuple[str, ...], tags: dict[str, str]) -> str:
    """A cell's tokens as one string, each inner tag (``<br>``) one private-use character, so
    that Levenshtein counts a tag as one edit, as on the token list, but runs on a str."""
    return "".join(
        t if len(t) == 1 else tags.setdefault(t, chr(0xF0000 + len(tags))) for t in content
    )


def _tree(table: Table, tags: dict[str, str]) -> _Node:
    rows = [
        _Node("tr", None, [_Node("td", c, [], _as_text(c.content, tags)) for c in row])
        for row in table.rows
    ]
    return _Node("table", None, rows)


def teds(output: Table, reference: Table, *, structure_only: bool = False) -> float:
    """TEDS (or TEDS-S) of one table against its reference, from 0 to 1."""
    n = max(output.elements, reference.elements)
    if n == 0:
        return 1.0
    tags: dict[str, str] = {}
    trees = _tree(output, tags), _tree(reference, tags)
    distance = APTED(*trees, _Costs(structure_only)).compute_edit_distance()
    return max(0.0, 1.0 - float(distance) / n)


def score_tables(output: str, reference: str) -> TableScore | None:
    """TEDS and TEDS-S of a page's text against its reference; None when the reference
    has no table. A reference table with no partner in the output scores 0."""
    refs = parse_tables(reference)
    if not refs:
        return None
    outs = parse_tables(output)
    full: list[float] = []
    structure: list[float] = []
    unscored = 0
    for i, ref in enumerate(refs):
        out = outs[i] if i < len(outs) else None
        if out is None:
            full.append(0.0)
            structure.append(0.0)
        elif (out.elements + 1) * (ref.elements + 1) > MAX_NODE_PAIRS:
            unscored += 1
        else:
            full.append(teds(out, ref))
            structure.append(teds(out, ref, structure_only=True))
    if not full:
        return TableScore(None, None, len(refs), len(outs), unscored)
    return TableScore(
        sum(full) / len(full), sum(structure) / len(structure), len(refs), len(outs), unscored
    )
