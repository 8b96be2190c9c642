"""Streamed timings summarised with vllm bench serve's percentiles and names."""

from __future__ import annotations

import pytest

from ocrtui.compare.client import StreamTimings
from ocrtui.compare.stream_stats import StreamTally, percentile, stream_summary


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        # numpy.percentile's default (linear) on the same values
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 90, 3.7),
        ([1.0, 2.0, 3.0, 4.0], 99, 3.97),
        ([5.0], 99, 5.0),
        ([0.0, 10.0], 0, 0.0),
        ([0.0, 10.0], 100, 10.0),
    ],
)
def test_percentile_is_numpys_linear(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == pytest.approx(expected)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_pools_like_vllm_bench_serve() -> None:
    pages = [
        StreamTimings(ttft=0.1, itl=(0.01, 0.03), e2el=0.14, output_tokens=3),
        StreamTimings(ttft=0.3, itl=(0.02,), e2el=0.32, output_tokens=2),
        StreamTimings(ttft=0.2, itl=(), e2el=0.2, output_tokens=1),  # no TPOT
    ]
    s = stream_summary(pages)
    assert (s.pages, s.output_tokens) == (3, 6)
    assert s.ttft is not None and s.ttft.median == pytest.approx(0.2)
    assert s.itl is not None and s.itl.count == 3 and s.itl.mean == pytest.approx(0.02)
    assert s.tpot is not None and s.tpot.count == 2
    assert s.tpot.mean == pytest.approx((0.02 + 0.02) / 2)
    out = s.to_json()
    assert out["median_ttft_ms"] == pytest.approx(200)
    assert out["p99_e2el_ms"] == pytest.approx(317.6)  # numpy.percentile([.14, .2, .32], 99)
    assert {"mean_itl_ms", "p50_itl_ms", "p90_itl_ms", "p99_itl_ms", "mean_tpot_ms"} <= set(out)


def test_summary_of_no_streamed_page_has_no_metrics() -> None:
    assert stream_summary([]).to_json() == {"pages": 0, "output_tokens": 0}


def test_a_tally_past_its_itl_bound_keeps_a_sample_with_the_exact_count_and_mean() -> None:
    # 200 pages of 100 gaps each: 1 ms, ..., 100 ms; only 500 of the 20,000 gaps are kept.
    page = StreamTimings(ttft=0.5, itl=tuple(i / 1000 for i in range(1, 101)), e2el=5.55,
                         output_tokens=101)  # fmt: skip
    tally = StreamTally(itl_kept=500)
    for _ in range(200):
        tally.add(page)
    assert len(tally._itl) == 500  # bounded
    s = tally.summary()
    assert s.itl is not None and s.itl.count == 20_000
    assert s.itl.mean == pytest.approx(0.0505)
    assert s.itl.median == pytest.approx(0.0505, abs=0.01)  # an estimate from the sample
    assert s.pages == 200 and s.ttft is not None and s.ttft.count == 200
    # Within the bound, the tally is exact: the same summary as the pages at once.
    small = StreamTally(itl_kept=500)
    small.add(page)
    assert small.summary() == stream_summary([page])
