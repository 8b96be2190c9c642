"""The plots of report.html, drawn with matplotlib into SVG.

Matplotlib's object API (a ``Figure`` saved as SVG) needs no GUI backend and leaves
pyplot's global state alone, so a report can be written from any thread. Texts stay text
in the SVG (``svg.fonttype = "none"``: small files, CJK names drawn by the browser's fonts);
the salt and the missing date make the same data give the same bytes.

Each function takes plain numbers and returns the SVG, or None when there is nothing to
draw (the report then says why).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

SIZE_IN = (6.4, 3.2)


def _svg(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ocrtui"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def latency_plot(
    latencies: Mapping[str, Sequence[float]], marks: Mapping[str, Sequence[float]]
) -> bytes | None:
    """A box per model of its latencies (seconds), with ``marks`` (e.g. warm p50/p95) as
    diamonds beside it."""
    names = [n for n, v in latencies.items() if v]
    if not names:
        return None
    fig = Figure(figsize=SIZE_IN)
    ax = fig.subplots()
    ax.boxplot([list(latencies[n]) for n in names], orientation="horizontal", tick_labels=names)
    for i, n in enumerate(names, start=1):
        xs = list(marks.get(n) or ())
        if xs:
            ax.plot(xs, [i + 0.3] * len(xs), "D", color="tab:red", markersize=4)
    ax.set_xlabel("seconds")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def throughput_plot(points: Mapping[str, Sequence[tuple[int, float]]]) -> bytes | None:
    """Images/s against concurrency, one line per model."""
    names = [n for n, v in points.items() if v]
    if not names:
        return None
    fig = Figure(figsize=SIZE_IN)
    ax = fig.subplots()
    for n in names:
        pts = sorted(points[n])
        ax.plot([c for c, _ in pts], [v for _, v in pts], "o-", label=n)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("images / s")
    ax.set_xlim(0, max(c for n in names for c, _ in points[n]) + 1)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    return _svg(fig)


def cer_plot(cer: Mapping[str, Mapping[str, float]]) -> bytes | None:
    """CER by category: bars grouped by category, one per model (``cer[model][category]``)."""
    names = [n for n, v in cer.items() if v]
    categories = sorted({c for n in names for c in cer[n]})
    if not categories:
        return None
    fig = Figure(figsize=SIZE_IN)
    ax = fig.subplots()
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        xs = [k + i * width for k in range(len(categories))]
        ax.bar(xs, [cer[n].get(c, float("nan")) * 100 for c in categories], width, label=n)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(categories))], categories)
    ax.set_ylabel("CER %  (lower is better)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _svg(fig)


def pareto_plot(
    points: Mapping[str, Sequence[tuple[float, float, int]]], front: Sequence[tuple[float, float]]
) -> bytes | None:
    """Median latency against images/s, one line per flag set through its concurrency
    levels (``points[arm]``: images/s, seconds, concurrency), the Pareto front (``front``)
    ringed and joined."""
    names = [n for n, v in points.items() if v]
    if not names:
        return None
    fig = Figure(figsize=SIZE_IN)
    ax = fig.subplots()
    for n in names:
        pts = sorted(points[n], key=lambda p: p[2])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=n, markersize=4)
        for x, y, c in pts:
            ax.annotate(f"c{c}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if front:
        edge = sorted(front)
        ax.plot([p[0] for p in edge], [p[1] for p in edge], "--", color="black", linewidth=1,
                 label="Pareto front")  # fmt: skip
        ax.plot([p[0] for p in edge], [p[1] for p in edge], "o", markersize=11,
                markerfacecolor="none", markeredgecolor="black")  # fmt: skip
    ax.set_xlabel("images / s  (higher is better)")
    ax.set_ylabel("median latency, s  (lower is better)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _svg(fig)
