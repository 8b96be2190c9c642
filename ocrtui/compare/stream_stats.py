"""Streamed pages' timings summarised as ``vllm bench serve`` summarises them.

:func:`percentile` is numpy's default (linear interpolation between the closest ranks),
which ``vllm bench serve`` uses (``np.percentile`` in vLLM's ``benchmarks/serve.py``), so
ocrtui's and its figures for the same requests agree. :func:`stream_summary` pools what
it does: TTFT, TPOT (pages of two tokens or more) and end-to-end latency one value a page,
ITL every gap of every page; :meth:`StreamSummary.to_json` names them as its result file
does (``mean_ttft_ms``, ``median_ttft_ms``, ``p99_itl_ms`` ...).

:class:`StreamTally` takes a phase's pages as they finish in bounded memory (the runner's
documents phase may read thousands of pages of thousands of tokens): three numbers a page,
and the inter-token gaps up to ``ITL_KEPT`` (8 bytes each); past that a uniform sample of
``ITL_KEPT`` of them (reservoir sampling, seeded), so ITL's percentiles are exact up to
``ITL_KEPT`` gaps and estimates beyond, its count and mean always exact.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ocrtui.compare.client import StreamTimings

PERCENTILES = (50, 90, 99)
ITL_KEPT = 1_000_000  # inter-token gaps a StreamTally keeps (8 MB); a sample of them beyond


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0..100) of ``values``, interpolated linearly like numpy's.

    ``values`` must be sorted and not empty.
    """
    if not values:
        raise ValueError("percentile of no values")
    rank = (len(values) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    """Mean, median and :data:`PERCENTILES` of one metric, in seconds."""

    count: int
    mean: float
    median: float
    percentiles: tuple[tuple[int, float], ...]  # (pct, value) for each of PERCENTILES

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution | None:
        ordered = sorted(values)
        if not ordered:
            return None
        return cls(
            len(ordered),
            math.fsum(ordered) / len(ordered),
            percentile(ordered, 50),
            tuple((p, percentile(ordered, p)) for p in PERCENTILES),
        )


@dataclass(frozen=True)
class StreamSummary:
    """One arm's streamed pages: the distributions ``vllm bench serve`` reports."""

    pages: int
    output_tokens: int  # the pages' usage counts (pages without one count nothing)
    ttft: Distribution | None
    tpot: Distribution | None
    itl: Distribution | None
    e2el: Distribution | None

    def to_json(self) -> dict[str, float | int]:
        """``vllm bench serve``'s result keys, in milliseconds; a metric with no values
        (no page of two tokens for TPOT, say) is left out."""
        out: dict[str, float | int] = {"pages": self.pages, "output_tokens": self.output_tokens}
        for name, dist in (
            ("ttft", self.ttft),
            ("tpot", self.tpot),
            ("itl", self.itl),
            ("e2el", self.e2el),
        ):
            if dist is None:
                continue
            out[f"mean_{name}_ms"] = dist.mean * 1000
            out[f"median_{name}_ms"] = dist.median * 1000
            for p, value in dist.percentiles:
                out[f"p{p}_{name}_ms"] = value * 1000
        return out


class StreamTally:
    """A phase's streamed pages, added as they finish; :meth:`summary` at any time."""

    def __init__(self, itl_kept: int = ITL_KEPT) -> None:
        self.pages = 0
        self.output_tokens = 0
        self._ttft = array("d")
        self._tpot = array("d")
        self._e2el = array("d")
        self._itl = array("d")  # every gap, or a uniform sample of itl_kept of them
        self._itl_kept = itl_kept
        self._itl_seen = 0
        self._itl_sum = 0.0
        self._rng = random.Random(0)

    def add(self, t: StreamTimings) -> None:
        self.pages += 1
        self.output_tokens += t.output_tokens or 0
        self._ttft.append(t.ttft)
        self._e2el.append(t.e2el)
        if t.tpot is not None:
            self._tpot.append(t.tpot)
        for gap in t.itl:
            self._itl_seen += 1
            self._itl_sum += gap
            if len(self._itl) < self._itl_kept:
                self._itl.append(gap)
            elif (slot := self._rng.randrange(self._itl_seen)) < self._itl_kept:
                self._itl[slot] = gap  # Algorithm R: each gap kept with equal chance

    def summary(self) -> StreamSummary:
        itl = Distribution.of(self._itl)
        if itl is not None and self._itl_seen > len(self._itl):
            itl = replace(itl, count=self._itl_seen, mean=self._itl_sum / self._itl_seen)
        return StreamSummary(
            pages=self.pages,
            output_tokens=self.output_tokens,
            ttft=Distribution.of(self._ttft),
            tpot=Distribution.of(self._tpot),
            itl=itl,
            e2el=Distribution.of(self._e2el),
        )


def stream_summary(timings: Iterable[StreamTimings]) -> StreamSummary:
    """Summarise the timings of an arm's streamed pages (the outcomes' ``timings``)."""
    tally = StreamTally()
    for t in timings:
        tally.add(t)
    return tally.summary()
