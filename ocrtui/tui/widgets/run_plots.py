"""Terminal plots of a comparison (plotext, through textual-plotext): each model's latency
over its pages, and throughput against concurrency.

Throughput points come from the throughput phases' PhaseDone stats (a point per model at
the concurrency it ran; the runner has no concurrency sweep yet, whose points would join).
A plot redraws only when its data (or its size) changed, and plotext builds it in a thread
worker: a build costs ~10-100 ms (more on a busy CPU), too long for the loop. The comparison
screen asks at most once a second. textual-plotext supplies the theme (the app's colours).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.text import Text
from textual import work
from textual.app import RenderResult
from textual.color import Color
from textual.message import Message
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from ocrtui.compare.results import PhaseStats
from ocrtui.tui.widgets.gpu_panel import model_styles

LATENCY_POINTS = 300  # the last pages per model; older ones are in results.jsonl

Series = dict[str, list[tuple[float, float]]]


def throughput_points(speed: Mapping[tuple[str, str], PhaseStats]) -> Series:
    """(concurrency, images/s) per model from the throughput phases' PhaseDone stats."""
    out: Series = {}
    for (model, phase), stats in speed.items():
        conc, ips = stats.concurrency, stats.images_per_s
        if phase == "throughput" and conc is not None and ips is not None:
            out.setdefault(model, []).append((float(conc), ips))
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
        self._models: tuple[str, ...] = ()
        self._empty = ""
        self._drawn: Text | None = None
        self._drawn_series: Series | None = None

    def _rgb(self, style: str) -> tuple[int, int, int]:
        value = self.app.theme_variables.get(style.removeprefix("$"), "white")
        r, g, b = Color.parse(value).rgb
        return (r, g, b)

    def show(self, series: Series, models: Sequence[str], empty: str) -> None:
        if series == self.series:
            return
        self.series = series
        self._models = tuple(models)
        self._empty = empty
        self._redraw()

    def on_resize(self) -> None:
        if self.series is not None:
            self._redraw()

    def _redraw(self) -> None:
        if self.series is None or not self.size.area:
            return
        self.draws += 1
        styles = model_styles(self._models)
        colors = {m: self._rgb(styles[m]) for m in self._models}
        theme = self._get_plotext_theme_name(self.app.theme)
        self._build(self.series, self._models, colors, theme, (self.size.width, self.size.height))

    @work(thread=True, exclusive=True, group="plot", exit_on_error=False)
    def _build(
        self,
        series: Series,
        models: tuple[str, ...],
        colors: dict[str, tuple[int, int, int]],
        theme: str,
        size: tuple[int, int],
    ) -> None:
        plt = Plot()  # one per build: a superseded build may still be running
        plt.title(self.title if series else f"{self.title}: {self._empty}")
        plt.xlabel(self.xlabel)
        for m in models:
            points = series.get(m)
            if not points:
                continue
            xs, ys = (list(v) for v in zip(*points, strict=True))
            if len(points) == 1:
                plt.scatter(xs, ys, label=m, color=colors[m], marker="●")
            else:
                plt.plot(xs, ys, label=m, color=colors[m], marker="braille")
        xs_all = [x for m in models for x, _ in series.get(m, ())]
        if xs_all and all(float(x).is_integer() for x in xs_all):
            # Page numbers and concurrencies: plotext would tick 1.50, 2.50 between them.
            ticks = sorted({int(x) for x in xs_all})
            if len(ticks) > 6:
                step = math.ceil((ticks[-1] - ticks[0] + 1) / 6)
                ticks = list(range(ticks[0], ticks[-1] + 1, step))
            plt.xticks([float(t) for t in ticks], [str(t) for t in ticks])
        plt.plotsize(*size)
        plt._set_size(*size)  # as textual-plotext's render does (its issue #5)
        plt.theme(theme)
        self.post_message(self.Built(series, Text.from_ansi(plt.build())))

    class Built(Message):
        def __init__(self, series: Series, text: Text) -> None:
            super().__init__()
            self.series = series
            self.text = text

    def on_run_plot_built(self, message: RunPlot.Built) -> None:
        message.stop()
        if message.series is self.series:  # not superseded meanwhile
            self._drawn = message.text
            self._drawn_series = message.series
            self.refresh()

    @property
    def pending(self) -> bool:
        """Data shown to the plot and not drawn yet (a build in flight)."""
        return self.series is not None and self._drawn_series is not self.series

    def render(self) -> RenderResult:
        return self._drawn or ""


def latency_series(latencies: Mapping[str, Sequence[float]]) -> Series:
    out: Series = {}
    for m, values in latencies.items():
        tail = list(values)[-LATENCY_POINTS:]
        start = len(values) - len(tail) + 1
        out[m] = [(float(start + i), v) for i, v in enumerate(tail)]
    return {m: p for m, p in out.items() if p}
