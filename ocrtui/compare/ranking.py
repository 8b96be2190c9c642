"""Worst first: the one order of a run's pages, for report.md's worst pages (summary.json's
``worst_pages``) and report.html's page sections and index.

A page's arms' results are ranked: pages an arm failed (or has no result for) first, then by
the highest CER any arm got (without a reference: the agreement CER between the first two
arms, tally.agreement_count), then by the number of flags, then in run order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class Scored(Protocol):
    """What the ranking reads of one arm's result on a page (store.PageResult has it)."""

    @property
    def ok(self) -> bool: ...
    @property
    def cer(self) -> float | None: ...
    @property
    def flags(self) -> tuple[str, ...]: ...


RankKey = tuple[bool, float, int, tuple[int, int]]


def worst_first(
    cells: Mapping[str, Scored],
    models: Sequence[str],
    agreement: float | None,
    order: tuple[int, int],
) -> RankKey:
    """The sort key of one page (ascending: the worst first). ``order``: its place in the
    run (document, page)."""
    failed = any(m not in cells or not cells[m].ok for m in models)
    cers = [c.cer for c in cells.values() if c.cer is not None]
    worst = max(cers) if cers else agreement
    flags = sum(len(c.flags) for c in cells.values())
    return (not failed, -(worst if worst is not None else -1.0), -flags, order)


def worst_arm(cells: Mapping[str, Scored]) -> str | None:
    """The arm with the highest CER above 0 on the page (a diff worth showing), if any."""
    scored = [(c.cer, m) for m, c in cells.items() if c.ok and c.cer is not None and c.cer > 0]
    return max(scored)[1] if scored else None
