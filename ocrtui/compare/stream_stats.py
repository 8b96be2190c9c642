"""Streamed pages' timings summarised as ``vllm bench serve`` summarises them.

:func:`percentile` is numpy's default (linear interpolation between the closest ranks),
which ``vllm bench serve`` uses (``np.percentile`` in vLLM's ``benchmarks/serve.py``), so
ocrtui's and its figures for the same requests agree. :func:`stream_summary` pools what
it does: TTFT, TPOT (pages of two tokens or more) and end-to-end latency one value a page,
ITL every gap of every page; :meth:`StreamSummary.to_json` names them as its result file
does (``mean_ttft_ms``, ``median_ttft_ms``, ``p99_itl_ms`` ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ocrtui.compare.client import StreamTimings

PERCENTILES = (50, 90, 99)


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


def stream_summary(timings: Iterable[StreamTimings]) -> StreamSummary:
    """Summarise the timings of an arm's streamed pages (the outcomes' ``timings``)."""
    pages = list(timings)
    return StreamSummary(
        pages=len(pages),
        output_tokens=sum(t.output_tokens or 0 for t in pages),
        ttft=Distribution.of(t.ttft for t in pages),
        tpot=Distribution.of(t.tpot for t in pages if t.tpot is not None),
        itl=Distribution.of(gap for t in pages for gap in t.itl),
        e2el=Distribution.of(t.e2el for t in pages),
    )
