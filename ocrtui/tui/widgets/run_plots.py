"""Terminal plots of a comparison (plotext, through textual-plotext): each model's latency
over its pages, and throughput against concurrency.

Throughput points come from the throughput phases' PhaseDone stats (a point per model at
the concurrency it ran; the runner has no concurrency sweep yet, whose points would join).
A plot redraws only when its data changed; the comparison screen asks at most once a
second, so a fast stream of pages costs one plotext render per second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from textual.color import Color
from textual_plotext import PlotextPlot

from ocrtui.tui.widgets.gpu_panel import model_styles

LATENCY_POINTS = 300  # the last pages per model; older ones are in results.jsonl

Series = dict[str, list[tuple[float, float]]]


def throughput_points(speed: Mapping[tuple[str, str], Mapping[str, Any]]) -> Series:
    """(concurrency, images/s) per model from the throughput phases' PhaseDone stats."""
    out: Series = {}
    for (model, phase), stats in speed.items():
        conc, ips = stats.get("concurrency"), stats.get("imgs_per_s")
        if phase == "throughput" and isinstance(conc, int) and isinstance(ips, int | float):
            out.setdefault(model, []).append((float(conc), float(ips)))
    return {m: sorted(p) for m, p in out.items()}


class RunPlot(PlotextPlot):
    DEFAULT_CSS = """
    RunPlot { height: 1fr; width: 1fr; }
    """

    def __init__(self, title: str, xlabel: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.xlabel = xlabel
        self.series: Series | None = None
        self.draws = 0  # how often the plot was rebuilt (tests, benchmarks)

    def _rgb(self, style: str) -> tuple[int, int, int]:
        value = self.app.theme_variables.get(style.removeprefix("$"), "white")
        r, g, b = Color.parse(value).rgb
        return (r, g, b)

    def show(self, series: Series, models: Sequence[str], empty: str) -> None:
        if series == self.series:
            return
        self.series = series
        self.draws += 1
        plt = self.plt
        plt.clear_data()
        plt.title(self.title if series else f"{self.title}: {empty}")
        plt.xlabel(self.xlabel)
        styles = model_styles(models)
        for m in models:
            points = series.get(m)
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            color = self._rgb(styles[m])
            if len(points) == 1:
                plt.scatter(list(xs), list(ys), label=m, color=color, marker="●")
            else:
                plt.plot(list(xs), list(ys), label=m, color=color, marker="braille")
        self.refresh()


def latency_series(latencies: Mapping[str, Sequence[float]]) -> Series:
    out: Series = {}
    for m, values in latencies.items():
        tail = list(values)[-LATENCY_POINTS:]
        start = len(values) - len(tail) + 1
        out[m] = [(float(start + i), v) for i, v in enumerate(tail)]
    return {m: p for m, p in out.items() if p}
