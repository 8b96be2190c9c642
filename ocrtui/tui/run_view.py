"""A comparison run as the dashboard holds it: owned by the app, not by a screen, so it keeps
running while the operator looks at the dashboard and can be rejoined.

It keeps bounded state: the page table rows, each model's last page texts (for the panes
and the diff), the text of its pages in flight as they stream (dropped when the page is
done: its result has the text), each phase's streamed timings and server counters, and the
latencies for the live summary. The comparison screen subscribes to
:class:`PageUpdate`s; a screen mounted later replays the held state first.
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ocrtui.compare.history import REPLAY_TEXTS
from ocrtui.compare.results import PhaseMeasures, PhaseStats
from ocrtui.compare.store import PageResult
from ocrtui.tui.widgets.run_header import RunFacts

# Page texts kept per model for the diff (older ones live in results.jsonl): no more than a
# run replays, so a view built from a replayed history holds only real texts.
TEXT_PAGES = REPLAY_TEXTS
LATENCIES = 5000


@dataclass
class PageRow:
    doc: str
    page: int
    outcomes: dict[str, PageResult] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.doc}#{self.page}"


@dataclass(frozen=True)
class PageUpdate:
    row: PageRow
    outcome: PageResult


Listener = Callable[[PageUpdate | None], None]  # None: summary/state changed only


class RunView:
    def __init__(
        self, models: list[str], label: str, api_arms: frozenset[str] = frozenset()
    ) -> None:
        self.models = models
        self.label = label
        self.api_arms = api_arms  # the arms that are document APIs ([[api_arms]])
        self.rows: OrderedDict[str, PageRow] = OrderedDict()
        self._texts: dict[str, OrderedDict[str, PageResult]] = {m: OrderedDict() for m in models}
        self._latencies: dict[str, deque[float]] = {m: deque(maxlen=LATENCIES) for m in models}
        self.done: dict[str, int] = dict.fromkeys(models, 0)
        self.failed: dict[str, int] = dict.fromkeys(models, 0)
        self.expected_pages: int | None = None  # per model, when the runner knows it
        self.phase = "starting"  # what the run is doing now, e.g. "glm-ocr warm 3/10"
        self.speed: dict[tuple[str, str], PhaseStats] = {}  # (model, phase) -> stats
        self.measures: dict[tuple[str, str], PhaseMeasures] = {}  # (model, phase_key) -> ...
        # model -> doc#page -> the pieces streamed so far, for its pages in flight (joined
        # when shown: appending to one string would copy the page at every token)
        self.streaming: dict[str, OrderedDict[str, list[str]]] = {m: OrderedDict() for m in models}
        self.arms: dict[str, str] = {}  # model -> arm label (what it runs as: compare/arms.py)
        self.notes: list[str] = []  # per-document errors, stopped models
        self.pauses: dict[str | None, str] = {}  # None: the link; a model: its server
        self.finished = False
        self.error: str | None = None
        self.out_dir: str | None = None
        self.references: OrderedDict[str, str] = OrderedDict()  # doc#page -> reference text
        self.facts: RunFacts | None = None  # what the screen's header names (models, settings)
        self.started = time.monotonic()
        self.ended: float | None = None
        self._listeners: list[Listener] = []

    def title(self, model: str) -> str:
        """How a pane names an arm: an API arm is marked "(via API)"."""
        return f"{model} (via API)" if model in self.api_arms else model

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, update: PageUpdate | None) -> None:
        for listener in list(self._listeners):
            listener(update)

    def add_delta(self, model: str, doc: str, page: int, text: str) -> None:
        """A piece of a page's text as the model streams it (a screen repaints at most once
        per its flush interval however fast these come)."""
        pages = self.streaming.setdefault(model, OrderedDict())
        key = f"{doc}#{page}"
        pages.setdefault(key, []).append(text)
        self._notify(None)

    def streamed(self, model: str) -> list[tuple[str, str]]:
        """The model's pages in flight, oldest first: (doc#page, its text so far)."""
        return [(k, "".join(v)) for k, v in self.streaming.get(model, {}).items()]

    def add(self, outcome: PageResult) -> None:
        key = f"{outcome.doc}#{outcome.page}"
        if (in_flight := self.streaming.get(outcome.model)) is not None:
            in_flight.pop(key, None)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = PageRow(outcome.doc, outcome.page)
        # Rows keep the numbers for every page; full texts only for the last TEXT_PAGES.
        row.outcomes[outcome.model] = outcome.without_text()
        texts = self._texts.setdefault(outcome.model, OrderedDict())
        if outcome.text is not None:  # None: a replayed page older than the run's texts
            texts[key] = outcome
        else:
            texts.pop(key, None)
        while len(texts) > TEXT_PAGES:
            texts.popitem(last=False)
        if outcome.ok:
            self.done[outcome.model] = self.done.get(outcome.model, 0) + 1
            if outcome.latency_s is not None:
                self._latencies.setdefault(outcome.model, deque(maxlen=LATENCIES)).append(
                    outcome.latency_s
                )
        else:
            self.failed[outcome.model] = self.failed.get(outcome.model, 0) + 1
        self._notify(PageUpdate(row, outcome))

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self._notify(None)

    def set_pause(self, model: str | None, reason: str | None) -> None:
        if reason is None:
            self.pauses.pop(model, None)
        else:
            self.pauses[model] = reason
        self._notify(None)

    def pause_text(self) -> str | None:
        """'paused: link down' / 'paused: glm-ocr crashed', or None while nothing waits."""
        if not self.pauses:
            return None
        return "paused: " + ", ".join(
            why if who is None else f"{who} {why}" for who, why in self.pauses.items()
        )

    def finish(self, error: str | None = None) -> None:
        self.finished = True
        self.pauses.clear()
        for in_flight in self.streaming.values():  # a cancelled run's pages never finish
            in_flight.clear()
        self.error = error
        self.ended = time.monotonic()
        self.phase = error or "done"
        self._notify(None)

    def set_reference(self, doc: str, page: int, text: str) -> None:
        self.references[f"{doc}#{page}"] = text
        while len(self.references) > TEXT_PAGES:
            self.references.popitem(last=False)

    def text(self, key: str, model: str) -> PageResult | None:
        """The model's result for the page with its text, while the view holds it."""
        texts = self._texts.get(model)
        return texts.get(key) if texts is not None else None

    def latencies(self, model: str) -> Sequence[float]:
        """The model's page latencies in arrival order (the last LATENCIES)."""
        return self._latencies.get(model, ())

    def p50(self, model: str) -> float | None:
        lat = self._latencies.get(model)
        return statistics.median(lat) if lat else None

    def images_per_s(self, model: str) -> float | None:
        """Throughput-phase images/s, once that phase has run."""
        stats = self.speed.get((model, "throughput"))
        return stats.images_per_s if stats is not None else None

    def summary(self) -> dict[str, float | int | None]:
        elapsed = max(1e-6, (self.ended or time.monotonic()) - self.started)
        results = sum(self.done.values()) + sum(self.failed.values())
        pages = len(self.rows)
        return {
            "pages": pages,
            "results": results,
            "elapsed_s": elapsed,
            "pages_per_s": pages / elapsed,
        }
