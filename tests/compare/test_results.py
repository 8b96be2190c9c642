"""The typed results: summary.json and phases.jsonl keep their keys (images/s is
``images_per_s`` in the types, ``imgs_per_s`` / ``request_throughput`` in the files), and
summaries older versions wrote still read."""

from __future__ import annotations

from ocrtui.compare.results import (
    Agreement,
    CategoryStats,
    DocumentSummary,
    ModelSummary,
    PhaseStats,
    RunInfo,
    Summary,
    SweepPoint,
    WorstPage,
    stats_from_json,
)


def test_a_phase_writes_the_keys_phases_jsonl_always_had() -> None:
    warm = PhaseStats(3, 3, 0, wall_s=1.5, latency_p50_s=0.5, latency_p95_s=0.6)
    assert "imgs_per_s" not in warm.to_json() and "concurrency" not in warm.to_json()
    level = PhaseStats(8, 8, 0, wall_s=2.0, latency_p50_s=0.5, concurrency=4, images_per_s=4.0)
    assert level.to_json()["imgs_per_s"] == 4.0 and level.to_json()["concurrency"] == 4
    failed = PhaseStats(2, 0, 2, first_error="HTTP 500", wall_s=0.1, concurrency=2)
    assert "latency_p50_s" not in failed.to_json() and failed.to_json()["imgs_per_s"] is None
    for st in (warm, level, failed):
        assert stats_from_json("throughput@4", st.to_json()) == st


def test_a_summary_round_trips_through_its_json() -> None:
    level = PhaseStats(
        8, 8, 0, wall_s=2.0, latency_p50_s=0.5, latency_p95_s=0.9, concurrency=4, images_per_s=4.0
    )
    point = SweepPoint.of(level, 4)
    summary = Summary(
        RunInfo("runs/x", ("a", "b"), "sequential", 5, 3, 8, (1, 4), 2.0, "jpeg"),
        {
            "a": ModelSummary(
                throughput_images_per_s=3.0,
                throughput_concurrency=5,
                by_category={"table": CategoryStats(2, 0.1, 0.05, None)},
                speed={"throughput@4": PhaseStats(8, 8, 0, concurrency=4, images_per_s=4.0)},
                sweep=(SweepPoint(1, 1.0, 0.4, 0.5, 8, 0, 8.0), point),
            ),
            "b": ModelSummary(kind="api", error="HTTP 401"),
        },
        {"d": DocumentSummary("d.pdf", "table", (1, 2), True, None, {"a": 1.5, "b": None})},
        Agreement(("a", "b"), 0, None),
        (WorstPage("d", 2, "a", 0.2, ("repetition",), ("-x", "+y")),),
    )
    data = summary.to_json()
    a = data["models"]["a"]  # type: ignore[index]
    assert a["throughput_imgs_per_s"] == 3.0 and a["throughput_c5_imgs_per_s"] == 3.0
    assert data["sweep"]["a"][1] == {  # type: ignore[index]
        "concurrency": 4, "images_per_s": 4.0, "p50": 0.5, "p95": 0.9,
        "request_throughput": 4.0, "median_e2el_ms": 500.0, "p95_e2el_ms": 900.0,
        "completed": 8, "failed": 0, "duration": 2.0,
    }  # fmt: skip
    assert Summary.from_json(data) == summary


def test_a_summary_from_before_the_sweep_still_reads() -> None:
    old = {
        "run": {"dir": "r", "concurrency": 5},
        "models": {
            "m": {
                "pages_ok": 1, "pages_failed": 0, "by_category": {"other": {"pages": 1}},
                "throughput_c5_imgs_per_s": 6.0,
                "sweep": [{"concurrency": 5, "images_per_s": 6.0, "p50": 1.0, "p95": 2.0}],
            }
        },
    }  # fmt: skip
    summary = Summary.from_json(old)
    m = summary.models["m"]
    assert m.throughput_images_per_s == 6.0 and m.sweep[0].p95_s == 2.0
    assert m.by_category["other"] == CategoryStats(pages=1)
    assert summary.run.models == ("m",) and summary.documents == {} and summary.agreement is None
