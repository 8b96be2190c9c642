"""/metrics parsing against real vLLM exposition text, old and new metric names."""

from __future__ import annotations

import pytest

from ocrtui.vllm.metrics import VllmMetrics, parse_metrics, token_rates
from tests.plugins.vllm_logs import FIXTURES, fixture_text

METRICS_FIXTURES = sorted(p.name for p in FIXTURES.glob("metrics_*.txt"))


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


def test_no_rate_without_history_or_after_a_counter_reset() -> None:
    b = VllmMetrics(prompt_tokens=300.0, generation_tokens=1500.0)
    assert token_rates(None, 0.0, b, 1.0).prompt_per_s is None
    reset = VllmMetrics(prompt_tokens=5.0, generation_tokens=2000.0)
    r = token_rates(b, 1.0, reset, 2.0)
    assert r.prompt_per_s is None
    assert r.generation_per_s == 500.0
