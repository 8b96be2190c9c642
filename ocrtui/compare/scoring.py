"""Text normalization, CER, critical strings and sanity flags.

CER follows OmniDocBench: Levenshtein distance divided by the longer of the two normalized
strings, per page; the corpus figure is Σ edits / Σ max lengths (not a mean of page CERs).

Normalization (both sides, in this order):
1. NFKC (full-width to half-width, ``²``→``2``, ``ᵢ``→``i``, ``（``→``(``).
2. HTML: ``<br>`` and block tags become breaks, other tags go, entities are unescaped.
3. Markdown: code fences, heading/quote/bullet markers, ``**``/``__``/backticks, image and
   link syntax (their text stays), table pipes and separator rows.
4. LaTeX: math delimiters (``$``, ``\\(``, ``\\[``) dropped; common macros become the
   Unicode symbol they print (``\\alpha``→α, ``\\sum``→∑, ``\\leq``→≤, ``\\frac{a}{b}``→a/b);
   layout macros (``\\left``, ``\\mathrm``, ``\\text``…), braces, ``^`` and ``_`` dropped.
5. Quotes and dashes unified (“”→", ‘’→', –—−→-).
6. All whitespace removed (Chinese has none and engines disagree on spaces).

*Strict* keeps punctuation; *lenient* also drops every character that is not a letter,
digit or CJK character (Unicode ``\\w``), like OmniDocBench's ``clean_string``.

CER cannot see structure (the normalisation deletes table pipes and cell tags), so a page
also gets a :class:`StructureScore` (:func:`score_structure`): TEDS/TEDS-S of its tables
(tables.py), the normalised edit distance of its display formulas (formulas.py) and the
pass rates of its tests (page_tests.py).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rapidfuzz.distance import Levenshtein

if TYPE_CHECKING:
    from ocrtui.compare.formulas import FormulaScore
    from ocrtui.compare.page_tests import PageTest
    from ocrtui.compare.results import PassRates
    from ocrtui.compare.tables import TableScore

_FENCE = re.compile(r"^\s*(```|~~~).*$", re.M)
_BLOCK_TAG = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d)\s*/?\s*>", re.I)
_CELL_TAG = re.compile(r"<\s*/?\s*t[dh][^>]*>", re.I)
_TAG = re.compile(r"<[^>\n]{1,200}>")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_LINE_MARK = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+)", re.M)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$", re.M)
_EMPHASIS = re.compile(r"\*\*|__|`")
_MATH_DELIM = re.compile(r"\$\$?|\\[()\[\]]")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_DROP_MACRO = re.compile(
    r"\\(left|right|big|Big|bigg|Bigg|mathrm|mathbf|mathit|mathcal|mathbb|boldsymbol|"
    r"text|textbf|textit|operatorname|displaystyle|limits|quad|qquad)\b"
)
_SPACING = re.compile(r"\\[,;:! ]")
_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ",
    "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "varphi": "φ", "chi": "χ",
    "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ",
    "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω", "sum": "∑", "prod": "∏", "int": "∫",
    "infty": "∞", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥", "neq": "≠", "ne": "≠",
    "approx": "≈", "times": "×", "cdot": "·", "pm": "±", "to": "→", "rightarrow": "→",
    "leftarrow": "←", "partial": "∂", "nabla": "∇", "sqrt": "√", "in": "∈", "mid": "|",
    "log": "log", "exp": "exp", "max": "max", "min": "min", "sin": "sin", "cos": "cos",
    "ldots": "...", "cdots": "...", "prime": "'",
}  # fmt: skip
_MACRO = re.compile(r"\\([A-Za-z]+)")
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "–": "-", "—": "-",
                         "−": "-"})  # fmt: skip
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")
_WORD = re.compile(r"[^\W_]")


def _latex(text: str) -> str:
    text = _MATH_DELIM.sub("", text)
    for _ in range(3):  # nested \frac, innermost first
        text = _FRAC.sub(r"\1/\2", text)
    text = _DROP_MACRO.sub("", text)
    text = _SPACING.sub("", text)
    text = _MACRO.sub(lambda m: _SYMBOLS.get(m.group(1), m.group(0)), text)
    return re.sub(r"[{}^_]", "", text)


# Passes until nothing changes; real text settles in two, crafted text may need more.
_MAX_PASSES = 8


def normalize(text: str, *, lenient: bool = False) -> str:
    """The comparable form of a page's text (see the module docstring), repeated until it
    is stable (an unescaped ``&lt;td&gt;`` is a tag, ``\\mid`` a pipe), so that
    ``normalize(normalize(t)) == normalize(t)``."""
    for _ in range(_MAX_PASSES):
        once = _normalize_once(text, lenient)
        if once == text:
            break
        text = once
    return text


def _normalize_once(text: str, lenient: bool) -> str:
    t = unicodedata.normalize("NFKC", text)
    t = _BLOCK_TAG.sub("\n", t)
    t = _CELL_TAG.sub(" ", t)
    t = _TAG.sub("", t)
    t = html.unescape(t)
    t = _FENCE.sub("", t)
    t = _IMAGE.sub(r"\1", t)
    t = _LINK.sub(r"\1", t)
    t = _TABLE_RULE.sub("", t)
    t = _LINE_MARK.sub("", t)
    t = t.replace("|", " ")
    t = _EMPHASIS.sub("", t)
    t = _latex(t)
    t = t.translate(_QUOTES)
    t = _SPACE.sub("", t)
    if lenient:
        t = _NOT_WORD.sub("", t)
    return t


@dataclass(frozen=True)
class EditCount:
    """Edits and the normalizer (max length) behind one CER, so corpora can be summed."""

    edits: int
    length: int

    @property
    def cer(self) -> float:
        return self.edits / self.length if self.length else 0.0


def edit_count(hypothesis: str, reference: str, *, lenient: bool = False) -> EditCount:
    h = normalize(hypothesis, lenient=lenient)
    r = normalize(reference, lenient=lenient)
    return EditCount(Levenshtein.distance(h, r), max(len(h), len(r)))


def cer(hypothesis: str, reference: str, *, lenient: bool = False) -> float:
    return edit_count(hypothesis, reference, lenient=lenient).cer


def corpus_cer(counts: Iterable[EditCount]) -> float | None:
    """Σ edits / Σ max lengths; None when there is nothing to score."""
    edits = length = 0
    n = 0
    for c in counts:
        edits += c.edits
        length += c.length
        n += 1
    if n == 0:
        return None
    return edits / length if length else 0.0


@dataclass(frozen=True)
class StructureScore:
    """What CER cannot see on one page; None where the page has nothing of that kind."""

    tables: TableScore | None  # the reference has no table, or there is no reference
    formulas: FormulaScore | None  # the reference has no display formula, or none
    tests: PassRates | None  # the page has no tests


def score_structure(
    text: str, reference: str | None, tests: Sequence[PageTest] = ()
) -> StructureScore:
    """Tables, formulas and tests of one page's text. CPU-bound and blocking (TEDS on a
    30x10 table takes about 2 s on two cores): callers on the event loop run it in a thread."""
    # Imported here: their parsers (lxml, markdown-it, pylatexenc, apted) cost 0.3 s, and
    # most importers of this module (the report, the dashboard) never score structure.
    from ocrtui.compare.formulas import score_formulas
    from ocrtui.compare.page_tests import pass_rates
    from ocrtui.compare.tables import score_tables

    return StructureScore(
        None if reference is None else score_tables(text, reference),
        None if reference is None else score_formulas(text, reference),
        pass_rates(text, tests) if tests else None,
    )


DiffKind = Literal["same", "missing", "extra"]


def diff_segments(hypothesis: str, reference: str) -> list[tuple[DiffKind, str]]:
    """Character diff of an output against its reference, in reading order: ``same`` text,
    ``missing`` (in the reference, not in the output) and ``extra`` (output only); a
    replacement gives its missing part first. Raw texts, so a reader sees what was sent."""
    out: list[tuple[DiffKind, str]] = []
    for op in Levenshtein.opcodes(hypothesis, reference):
        if op.tag == "equal":
            out.append(("same", reference[op.dest_start : op.dest_end]))
            continue
        if op.tag in ("replace", "insert"):
            out.append(("missing", reference[op.dest_start : op.dest_end]))
        if op.tag in ("replace", "delete"):
            out.append(("extra", hypothesis[op.src_start : op.src_end]))
    return out


def critical_found(text: str, critical: str) -> bool:
    """Verbatim after NFKC and whitespace removal only: one wrong digit fails."""
    squash = lambda s: _SPACE.sub("", unicodedata.normalize("NFKC", s))  # noqa: E731
    return squash(critical) in squash(text)


# Flags -------------------------------------------------------------------------------------

FLAG_EMPTY = "empty"
FLAG_REPETITION = "repetition"
FLAG_TRUNCATED = "truncated"
FLAG_BOILERPLATE = "blank_boilerplate"
FLAG_LENGTH_RATIO = "length_ratio"

_BOILERPLATE = re.compile(
    r"there is no (text|content)|no (text|content) (in|on) (the|this) (provided )?(image|page)|"
    r"(image|page) (is|appears to be) (blank|empty)",
    re.I,
)
# A chunk of 1-80 characters repeated back to back: at least 8 times and 80 characters in all.
_LOOP = re.compile(r"(.{1,80}?)\1{7,}", re.S)
LOOP_MIN_CHARS = 80
LENGTH_RATIO_RANGE = (0.5, 2.0)
LENGTH_RATIO_MIN_REF = 20


def has_repetition_loop(text: str) -> bool:
    """A chunk with a letter, digit or CJK character repeated back to back, after markup is
    stripped: empty table rows and dot leaders are layout, not a decoding loop."""
    return any(
        len(m.group(0)) >= LOOP_MIN_CHARS and _WORD.search(m.group(1))
        for m in _LOOP.finditer(normalize(text))
    )


def flags_for(text: str, finish_reason: str | None, reference: str | None) -> list[str]:
    """Sanity flags for one page's output."""
    out: list[str] = []
    norm = normalize(text)
    if not norm:
        out.append(FLAG_EMPTY)
    if has_repetition_loop(text):
        out.append(FLAG_REPETITION)
    if finish_reason == "length":
        out.append(FLAG_TRUNCATED)
    if _BOILERPLATE.search(text):
        out.append(FLAG_BOILERPLATE)
    if reference is not None and norm:
        ref_len = len(normalize(reference))
        if ref_len >= LENGTH_RATIO_MIN_REF:
            ratio = len(norm) / ref_len
            if not LENGTH_RATIO_RANGE[0] <= ratio <= LENGTH_RATIO_RANGE[1]:
                out.append(FLAG_LENGTH_RATIO)
    return out
