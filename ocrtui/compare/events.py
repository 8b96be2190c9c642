"""The typed events a comparison run emits, in order, to every subscriber.

Per run: RunStarted, then DocumentReady/DocumentFailed for each document, then per model
the speed phases (PhaseStarted, PhaseProgress…, PhaseDone for cold, warm, throughput),
then the documents phase (PhaseStarted, PageStarted/PageDone/PageFailed per page, DocumentDone
per document, PhaseDone), and last RunDone. Pages of the two models interleave.
A subscriber that joins late replays a compact history (history.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["cold", "warm", "throughput", "documents"]
SPEED_PHASES: tuple[Phase, ...] = ("cold", "warm", "throughput")


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_dir: str
    models: tuple[str, ...]
    documents: tuple[str, ...]


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


@dataclass(frozen=True, slots=True)
class PhaseProgress:
    model: str
    phase: Phase
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class PhaseDone:
    model: str
    phase: Phase
    stats: dict[str, Any]
    skipped: bool = False  # already done in the run being resumed


@dataclass(frozen=True, slots=True)
class PageStarted:
    model: str
    doc: str
    page: int


@dataclass(frozen=True, slots=True)
class PageDone:
    model: str
    doc: str
    page: int
    text: str | None  # None in a replayed history beyond its last texts (see history.py)
    latency_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    cer: float | None
    flags: tuple[str, ...] = ()
    resumed: bool = False  # finished by the run being resumed, not sent again


@dataclass(frozen=True, slots=True)
class PageFailed:
    model: str
    doc: str
    page: int
    reason: str


@dataclass(frozen=True, slots=True)
class DocumentDone:
    model: str
    doc: str
    pages_ok: int
    pages_failed: int
    elapsed_s: float
    pages_per_s: float | None  # None when resumed pages make the timing partial


@dataclass(frozen=True, slots=True)
class RunDone:
    summary: dict[str, Any] = field(repr=False)
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
    | PageDone
    | PageFailed
    | DocumentDone
    | RunDone
)
