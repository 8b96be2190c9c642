"""Formulas: OmniDocBench's normalised LaTeX edit distance, per display formula.

A page's formula regions are its display math, found by pylatexenc's LaTeX parser (not a
regex): ``$$…$$``, ``\\[…\\]`` and the math environments (``equation``, ``align``,
``gather``, ``multline``, ``eqnarray``, starred or not). Inline math (``$x$``) stays part of
the text and its CER (scoring.py), as OmniDocBench scores it.

Each formula is normalised by OmniDocBench's ``normalized_formula`` rules, applied in its
order so that the figures agree with its own: the outer ``$`` and a ``\\[…\\]`` wrapper go;
``\\tag{…}``, ``\\hspace{…}``, ``\\begin{…}``/``\\end{…}`` and ``\\arraycolsep…}`` go; font
commands (``\\mathrm``, ``\\mathbf``, ``\\text``, ``\\boldsymbol``…, their argument's braces
kept), ``\\left``/``\\right``, ``\\displaystyle``, spacing commands and every space are
deleted as substrings; the result is lowercased. The distance is Levenshtein over the longer
normalised string, from 0 (same) to 1.

Each reference formula is paired with the output formula nearest to it (display or inline:
a model may set a display formula inline), one to one, nearest pairs first (OmniDocBench
pairs them by an optimal assignment; with a handful of formulas a page the greedy pairing
almost always agrees); a reference formula left without a partner scores 1. A page's
figure is the mean over its reference's formulas.

CDM (Character Detection Matching, UniMERNet's metric and OmniDocBench's headline formula
score) renders both formulas with LaTeX and matches the drawn characters; no installable
package computes it, so ocrtui does not report it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pylatexenc.latexwalker import (
    LatexEnvironmentNode,
    LatexGroupNode,
    LatexMathNode,
    LatexNode,
    LatexWalker,
)
from rapidfuzz.distance import Levenshtein

_MATH_ENVIRONMENTS = frozenset(
    f"{name}{star}"
    for name in ("equation", "align", "gather", "multline", "eqnarray", "displaymath", "math")
    for star in ("", "*")
)
_BRACKETED = re.compile(r"\\\[(.+?)(?<!\\)\\\]", re.S)
_DROP_PATTERNS = (
    re.compile(r"\\tag\{.*?\}"),
    re.compile(r"\\hspace\{.*?\}"),
    re.compile(r"\\begin\{.*?\}"),
    re.compile(r"\\end\{.*?\}"),
    re.compile(r"\\arraycolsep.*?\}"),
)
# Deleted as plain substrings, in this order (OmniDocBench's list: "\mathbf" goes before
# "\mathbfcal" and "\text" before "\textbf" would not, so the order is part of the metric).
_DROP_SUBSTRINGS = (
    r"\mathbf", r"\mathrm", r"\mathnormal", r"\mathit", r"\mathbb", r"\mathcal", r"\mathscr",
    r"\mathfrak", r"\mathsf", r"\mathtt", r"\textbf", r"\text", r"\boldmath", r"\boldsymbol",
    r"\operatorname", r"\bm", r"\symbfit", r"\mathbfcal", r"\symbf", r"\scriptscriptstyle",
    r"\notag", r"\setlength", r"\coloneqq", r"\space", r"\thickspace", r"\thinspace",
    r"\medspace", r"\nobreakspace", r"\negmedspace", r"\quad", r"\qquad", r"\enspace",
    r"\substackw", " ", "$$", r"\left", r"\right", r"\displaystyle",
)  # fmt: skip


@dataclass(frozen=True)
class FormulaScore:
    """One page's formulas against its reference."""

    distance: float  # mean normalised edit distance over the reference's formulas, 0 to 1
    formulas: int  # display formulas in the reference
    found: int  # formulas in the output, inline ones included


def formula_regions(text: str, *, inline: bool = False) -> list[str]:
    """The display formulas of a page's text (Markdown with LaTeX), as written, in order;
    with ``inline``, its inline math (``$…$``, ``\\(…\\)``) too."""
    if not any(m in text for m in ("$", "\\[", "\\begin", "\\(")):
        return []
    nodes, _, _ = LatexWalker(text, tolerant_parsing=True).get_latex_nodes()
    out: list[str] = []
    _collect(nodes or [], out, inline)
    return out


def _collect(nodes: list[LatexNode], out: list[str], inline: bool) -> None:
    for node in nodes:
        math = isinstance(node, LatexMathNode) and (inline or node.displaytype == "display")
        if math or (
            isinstance(node, LatexEnvironmentNode) and node.environmentname in _MATH_ENVIRONMENTS
        ):
            out.append(node.latex_verbatim())
        elif isinstance(node, LatexGroupNode | LatexEnvironmentNode):
            _collect(node.nodelist or [], out, inline)


def normalize_formula(latex: str) -> str:
    """OmniDocBench's comparable form of one formula (see the module docstring)."""
    text = latex.strip().strip("$").strip("\n")
    bracketed = _BRACKETED.search(text)
    if bracketed:
        text = bracketed.group(1).strip()
    for pattern in _DROP_PATTERNS:
        text = pattern.sub("", text)
    text = text.strip(".")
    for s in _DROP_SUBSTRINGS:
        text = text.replace(s, "")
    return text.lower()


def formula_distance(output: str, reference: str) -> float:
    """Normalised edit distance of one formula against its reference, 0 to 1."""
    a, b = normalize_formula(output), normalize_formula(reference)
    if not a and not b:
        return 0.0
    return float(Levenshtein.normalized_distance(a, b))


def score_formulas(output: str, reference: str) -> FormulaScore | None:
    """The page's formula distance; None when the reference has no display formula."""
    refs = [normalize_formula(f) for f in formula_regions(reference)]
    if not refs:
        return None
    # A model may set a display formula inline: any of its math may be the partner.
    outs = [normalize_formula(f) for f in formula_regions(output, inline=True)]
    pairs = sorted(
        (float(Levenshtein.normalized_distance(o, r)), i, j)
        for i, r in enumerate(refs)
        for j, o in enumerate(outs)
    )
    best: dict[int, float] = {}
    used: set[int] = set()
    for d, i, j in pairs:
        if i not in best and j not in used:
            best[i] = d
            used.add(j)
    total = sum(best.get(i, 1.0) for i in range(len(refs)))
    return FormulaScore(total / len(refs), len(refs), len(outs))
