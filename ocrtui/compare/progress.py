"""Each arm's progress so far, tallied from a run's events: what the metrics endpoint serves
(``ocrtui_compare_*``, ocrtui/export.py) while a comparison runs.

:class:`ArmTally` takes every event a subscriber sees (``apply``) and answers the arm's
:class:`ArmProgress` when the event changed it. Its numbers:

- ``pages_done`` / ``pages_failed``: the documents phase's PageDone / PageFailed, pages
  finished by a resumed run included (they are in results.jsonl);
- ``cer``: the mean CER of the pages read so far that have a reference;
- ``images_per_s``: requests answered per second in the arm's current phase (a speed phase's
  PhaseProgress, the documents phase's pages sent by this run), from the phase's start as
  the tally saw it; a finished speed phase's own figure (``PhaseStats.images_per_s``) once
  it is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ocrtui.compare.events import (
    Event,
    PageDone,
    PageFailed,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
)
from ocrtui.compare.results import PhaseStats


@dataclass(frozen=True)
class ArmProgress:
    """One comparison arm so far."""

    arm: str
    pages_done: int
    pages_failed: int
    cer: float | None  # mean character error rate of the pages scored so far
    images_per_s: float | None


@dataclass
class _Arm:
    done: int = 0
    failed: int = 0
    cer_sum: float = 0.0
    cer_pages: int = 0
    phase_start: float | None = None
    phase_answered: int = 0  # requests answered in the current phase (documents: by this run)
    images_per_s: float | None = None

    def progress(self, arm: str) -> ArmProgress:
        cer = self.cer_sum / self.cer_pages if self.cer_pages else None
        return ArmProgress(arm, self.done, self.failed, cer, self.images_per_s)


@dataclass
class ArmTally:
    """Per-arm progress from the run's events (see the module docstring)."""

    clock: Callable[[], float] = time.monotonic
    _arms: dict[str, _Arm] = field(default_factory=dict)

    def apply(self, ev: Event) -> ArmProgress | None:
        """Take one event; the arm's new progress when the event changed it, else None."""
        if isinstance(ev, PhaseStarted):
            arm = self._arm(ev.model)
            arm.phase_start, arm.phase_answered = self.clock(), 0
        elif isinstance(ev, PhaseProgress):
            arm = self._arm(ev.model)
            arm.phase_answered = ev.done
            self._rate(arm)
        elif isinstance(ev, PhaseDone) and isinstance(ev.stats, PhaseStats):
            arm = self._arm(ev.model)
            if ev.stats.images_per_s is not None:
                arm.images_per_s = ev.stats.images_per_s
        elif isinstance(ev, PageDone | PageFailed):
            arm = self._arm(ev.model)
            if isinstance(ev, PageFailed):
                arm.failed += 1
            else:
                arm.done += 1
                if ev.result.cer is not None:
                    arm.cer_sum += ev.result.cer
                    arm.cer_pages += 1
            if not (isinstance(ev, PageDone) and ev.resumed):
                arm.phase_answered += 1
                self._rate(arm)
        else:
            return None
        return arm.progress(ev.model)

    def _arm(self, name: str) -> _Arm:
        return self._arms.setdefault(name, _Arm())

    def _rate(self, arm: _Arm) -> None:
        if arm.phase_start is None:
            return
        elapsed = self.clock() - arm.phase_start
        if elapsed > 0:
            arm.images_per_s = arm.phase_answered / elapsed
