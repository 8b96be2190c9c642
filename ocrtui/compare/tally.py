"""Per-page scores kept while a run goes on, so the summary needs no page texts.

Each result is scored when it arrives (edit counts against the page's reference, which of
the document's critical strings its text holds, and what CER cannot see:
scoring.score_structure's tables, formulas and the page's tests). :func:`score_page` is
blocking (TEDS on a large table takes seconds): the runner calls it in a thread.

Agreement between the first two models on pages without a reference needs both texts: the
first one is held only until its pair arrives or either model fails the page.
:func:`agreement_count` is that comparison, also used by report.html on texts read back
from results.jsonl.

A critical string counts as found when one page's text holds it (after NFKC and whitespace
removal), so a string split across two pages is not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ocrtui.compare.documents import Document
from ocrtui.compare.scoring import (
    EditCount,
    StructureScore,
    critical_found,
    edit_count,
    score_structure,
)
from ocrtui.compare.store import PageResult


@dataclass(frozen=True, slots=True)
class PageScore:
    strict: EditCount | None  # None: the page has no reference
    lenient: EditCount | None
    critical: frozenset[int]  # indices into the document's critical strings found here
    structure: StructureScore


def score_page(doc: Document, page: int, text: str) -> PageScore:
    """The scores of one successful page's text (blocking: see the module docstring)."""
    ref = doc.references.get(page)
    found = frozenset(i for i, c in enumerate(doc.spec.critical) if critical_found(text, c))
    structure = score_structure(text, ref, [t for t in doc.spec.tests if t.page == page])
    if ref is None:
        return PageScore(None, None, found, structure)
    return PageScore(edit_count(text, ref), edit_count(text, ref, lenient=True), found, structure)


def agreement_count(first: str, second: str) -> EditCount:
    """The edit count between the first two arms' texts of one page (no reference)."""
    return edit_count(first, second)


class Tally:
    def __init__(self, models: Sequence[str]) -> None:
        self.pair = (models[0], models[1]) if len(models) >= 2 else None
        self.scores: dict[tuple[str, int, str], PageScore] = {}
        # (doc, page) of pages without reference -> edit count between the pair's texts
        self.agreement: dict[tuple[str, int], EditCount] = {}
        self._pending: dict[tuple[str, int], tuple[str, str]] = {}  # -> (model, text)
        self._closed: set[tuple[str, int]] = set()  # one of the pair failed the page

    @property
    def pending(self) -> dict[tuple[str, int], tuple[str, str]]:
        """Texts held until their pair arrives (read-only view for tests and benches)."""
        return self._pending

    def add(self, doc: Document, result: PageResult, score: PageScore | None = None) -> None:
        """Record one result, with its text (``score`` when the caller already computed it)."""
        text = result.text or ""
        if result.ok:
            self.scores[result.key] = score or score_page(doc, result.page, text)
        if self.pair is None or result.model not in self.pair or result.page in doc.references:
            return
        pk = (result.doc, result.page)
        if pk in self._closed:
            return
        first = self._pending.pop(pk, None)
        if not result.ok:
            self._closed.add(pk)
        elif first is None:
            self._pending[pk] = (result.model, text)
        elif first[0] != result.model:
            texts = {first[0]: first[1], result.model: text}
            self.agreement[pk] = agreement_count(texts[self.pair[0]], texts[self.pair[1]])
        else:  # the same model again (a result stored twice): keep the newer text
            self._pending[pk] = (result.model, text)
