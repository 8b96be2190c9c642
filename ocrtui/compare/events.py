"""The typed events a comparison run emits, in order, to every subscriber.

Per run: RunStarted, then DocumentReady/DocumentFailed for each document, then per model
the speed phases (PhaseStarted, PhaseProgress…, PhaseDone for cold, warm, and throughput
once per concurrency level, ascending: ``concurrency`` says which), then the documents
phase (PhaseStarted, PageStarted, PageDelta… as a streamed page's text arrives,
PageDone/PageFailed per page, DocumentDone per document, PhaseDone), and last RunDone. Pages
of the two models interleave. PageDelta is live only: a subscriber hears those sent while it
listens, and no history keeps them (history.py).
At any point: RunPaused/RunResumed (the link or a model's server went away and came back;
requests wait meanwhile) and ModelStopped (a model's every request would fail: no more are
sent to it).
A subscriber that joins late replays a compact history (history.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ocrtui.compare.results import PhaseMeasures, Stats, Summary
from ocrtui.compare.store import PageResult

Phase = Literal["cold", "warm", "throughput", "documents"]
SPEED_PHASES: tuple[Phase, ...] = ("cold", "warm", "throughput")


def phase_key(phase: Phase, concurrency: int | None) -> str:
    """The name a phase is stored under (phases.jsonl, summary ``speed``): ``throughput@32``
    for a throughput level, the phase itself otherwise."""
    return f"{phase}@{concurrency}" if phase == "throughput" and concurrency else phase


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_dir: str
    models: tuple[str, ...]
    documents: tuple[str, ...]
    arms: tuple[str, ...] = ()  # each model's arm label (compare/arms.py), in models' order


@dataclass(frozen=True, slots=True)
class DocumentReady:
    doc: str
    category: str
    pages: tuple[int, ...]
    has_reference: bool


@dataclass(frozen=True, slots=True)
class DocumentFailed:
    doc: str
    error: str


@dataclass(frozen=True, slots=True)
class PhaseStarted:
    model: str
    phase: Phase
    total: int  # requests (speed phases) or pages (documents) this phase will send
    concurrency: int | None = None  # the throughput phase's level (one event set per level)


@dataclass(frozen=True, slots=True)
class PhaseProgress:
    model: str
    phase: Phase
    done: int
    total: int
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class PhaseDone:
    model: str
    phase: Phase
    stats: Stats  # PhaseStats for a speed phase, DocumentStats for the documents phase
    skipped: bool = False  # already done in the run being resumed
    concurrency: int | None = None
    measures: PhaseMeasures | None = None  # a vLLM arm's streamed timings and server counters


@dataclass(frozen=True, slots=True)
class PageStarted:
    model: str
    doc: str
    page: int


@dataclass(frozen=True, slots=True)
class PageDelta:
    """A piece of a page's text as the model streams it (live only, never replayed); the
    page's text is PageDone's, not these pieces joined."""

    model: str
    doc: str
    page: int
    text: str


@dataclass(frozen=True, slots=True)
class PageDone:
    """A page one model read: ``result.ok`` is True; ``result.text`` is None in a replayed
    history beyond its last texts (see history.py)."""

    result: PageResult
    resumed: bool = False  # finished by the run being resumed, not sent again

    @property
    def model(self) -> str:
        return self.result.model

    @property
    def doc(self) -> str:
        return self.result.doc

    @property
    def page(self) -> int:
        return self.result.page


@dataclass(frozen=True, slots=True)
class PageFailed:
    """A page one model failed: ``result.ok`` is False, ``result.error`` says why."""

    result: PageResult

    @property
    def model(self) -> str:
        return self.result.model

    @property
    def doc(self) -> str:
        return self.result.doc

    @property
    def page(self) -> int:
        return self.result.page

    @property
    def reason(self) -> str:
        return self.result.error or "failed"


@dataclass(frozen=True, slots=True)
class DocumentDone:
    model: str
    doc: str
    pages_ok: int
    pages_failed: int
    elapsed_s: float
    pages_per_s: float | None  # over the pages this run sent; None when none was read


@dataclass(frozen=True, slots=True)
class RunPaused:
    """Requests wait: ``model`` None is the pod link (every model), else that model's
    server; sent again with a new reason when it changes (e.g. crashed -> restarting)."""

    model: str | None
    reason: str  # "link down", "crashed", "unhealthy", "crashed; restarting (attempt 1 of 3)"


@dataclass(frozen=True, slots=True)
class RunResumed:
    model: str | None
    paused_s: float


@dataclass(frozen=True, slots=True)
class ModelStopped:
    """No more requests go to ``model``: ``reason`` is the error each would get."""

    model: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunDone:
    summary: Summary | None = field(repr=False)  # None: it could not be written
    exit_code: int
    cancelled: bool = False
    error: str | None = None  # set when the run itself broke (not a page or document)


Event = (
    RunStarted
    | DocumentReady
    | DocumentFailed
    | PhaseStarted
    | PhaseProgress
    | PhaseDone
    | PageStarted
    | PageDelta
    | PageDone
    | PageFailed
    | DocumentDone
    | RunPaused
    | RunResumed
    | ModelStopped
    | RunDone
)
