"""compare/progress.py: each arm's progress from a run's events."""

from __future__ import annotations

from ocrtui.compare.events import (
    PageDone,
    PageFailed,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunPaused,
)
from ocrtui.compare.progress import ArmProgress, ArmTally
from ocrtui.compare.results import PhaseStats
from ocrtui.compare.store import PageResult


def result(model: str, page: int, *, ok: bool = True, cer: float | None = None) -> PageResult:
    return PageResult(
        doc="d.pdf", page=page, model=model, ok=ok, error=None if ok else "HTTP 500",
        latency_s=1.0, prompt_tokens=10, completion_tokens=5, finish_reason="stop",
        text="x" if ok else None, cer=cer, category="paper",
    )  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pages_cer_and_rate_per_arm() -> None:
    clock = Clock()
    tally = ArmTally(clock)
    assert tally.apply(PhaseStarted("a", "documents", 4)) == ArmProgress("a", 0, 0, None, None)
    tally.apply(PhaseStarted("b", "documents", 4))
    clock.now += 2
    assert tally.apply(PageDone(result("a", 1, cer=0.125))) == ArmProgress("a", 1, 0, 0.125, 0.5)
    tally.apply(PageDone(result("b", 1, cer=0.5)))
    assert tally.apply(PageDone(result("a", 2))) == ArmProgress("a", 2, 0, 0.125, 1.0)  # no ref
    clock.now += 2
    assert tally.apply(PageDone(result("a", 3, cer=0.375))) == ArmProgress("a", 3, 0, 0.25, 0.75)
    assert tally.apply(PageFailed(result("a", 4, ok=False))) == ArmProgress("a", 3, 1, 0.25, 1.0)
    assert tally.apply(PageDone(result("b", 2, cer=0.25))) == ArmProgress("b", 2, 0, 0.375, 0.5)


def test_resumed_pages_count_but_not_in_the_rate() -> None:
    clock = Clock()
    tally = ArmTally(clock)
    tally.apply(PhaseStarted("a", "documents", 3))
    tally.apply(PageDone(result("a", 1, cer=0.25), resumed=True))
    clock.now += 4
    assert tally.apply(PageDone(result("a", 2, cer=0.75))) == ArmProgress("a", 2, 0, 0.5, 0.25)


def test_speed_phases_rate_then_their_own_figure() -> None:
    clock = Clock()
    tally = ArmTally(clock)
    tally.apply(PhaseStarted("a", "throughput", 10, concurrency=5))
    clock.now += 2
    assert tally.apply(PhaseProgress("a", "throughput", 3, 10, 5)) == ArmProgress(
        "a", 0, 0, None, 1.5
    )
    stats = PhaseStats(requests=10, ok=10, failed=0, concurrency=5, images_per_s=4.2)
    assert tally.apply(PhaseDone("a", "throughput", stats, concurrency=5)) == ArmProgress(
        "a", 0, 0, None, 4.2
    )


def test_other_events_change_nothing() -> None:
    assert ArmTally(Clock()).apply(RunPaused(None, "link down")) is None
