"""The one record of this session's launches and stops (ocrtui/monitor/launches.py)."""

from __future__ import annotations

from ocrtui.monitor.launches import UNLISTED_TRUST_S, Launches


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make() -> tuple[Launches, list[int], Clock]:
    nvml = {1}
    changes: list[int] = []
    clock = Clock()
    launches = Launches(lambda: frozenset(nvml), lambda: changes.append(1), clock)
    return launches, changes, clock


def test_a_launch_is_recorded_once_for_attribution_and_the_watcher() -> None:
    launches, changes, clock = make()
    launches.begin("m")
    assert launches.launching("m") and launches.pid("m") is None
    assert launches.unlisted("m", None) == (True, None)  # its pid is not back yet
    launches.started("m", 42)
    assert launches.pid("m") == 42 and launches.unlisted("m", None) == (True, 42)
    clock.t += UNLISTED_TRUST_S + 1
    assert launches.unlisted("m", None) == (False, None)  # trusted for a while only
    assert launches.end("m") and not launches.launching("m")
    (record,) = launches.records
    assert (record.model, record.before, record.after, record.server_pid) == (
        "m",
        frozenset({1}),
        frozenset({1}),
        42,
    )
    assert len(changes) == 3  # every change is attributed at once


def test_a_stop_ends_the_claim_on_the_pid_but_keeps_it_for_leftovers() -> None:
    launches, _, _ = make()
    launches.begin("m")
    launches.started("m", 42)
    launches.end("m")
    with launches.stopping("m"):
        assert launches.is_stopping("m") and launches.pid("m") == 42
    assert not launches.is_stopping("m")
    launches.stopped("m")
    assert launches.pid("m") is None
    (record,) = launches.records
    assert record.server_pid == 42 and record.launched_pid is None


def test_an_end_without_a_launch_claims_nothing() -> None:
    launches, changes, _ = make()
    assert not launches.end("m") and launches.records == () and not changes
