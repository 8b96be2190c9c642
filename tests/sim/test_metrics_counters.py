"""The simulator's /metrics has the series the phase counters read, by vLLM's names."""

from __future__ import annotations

import json

import pytest

from ocrtui.sim.args import parse_serve_args
from ocrtui.sim.metrics import SimMetrics
from ocrtui.vllm.metrics import parse_metrics, phase_counters
from tests.plugins.vllm_logs import fixture_text


def sim_metrics(*flags: str) -> str:
    args = parse_serve_args(["zai-org/GLM-OCR", "--served-model-name", "glm-ocr", *flags])
    return SimMetrics(args, 1000, 8192, 16).render().decode()


def test_phase_counter_series_are_those_of_real_vllm() -> None:
    real = parse_metrics(fixture_text("phase_metrics_v0_32_cpu_after.txt"))
    ours = parse_metrics(sim_metrics())
    assert set(ours.counters) == set(real.counters)
    assert set(ours.success_by_reason) == set(real.success_by_reason)
    assert ours.accepted_per_pos == real.accepted_per_pos == {}


def test_speculative_config_adds_vllm_s_spec_decode_counters() -> None:
    spec = json.dumps({"method": "mtp", "num_speculative_tokens": 3})
    m = parse_metrics(sim_metrics("--speculative-config", spec))
    assert {
        "vllm:spec_decode_num_drafts_total",
        "vllm:spec_decode_num_draft_tokens_total",
        "vllm:spec_decode_num_accepted_tokens_total",
    } <= set(m.counters)
    assert m.accepted_per_pos == {0: 0.0, 1: 0.0, 2: 0.0}
    c = phase_counters(m, [], m)
    assert c.spec_decode_drafts == 0.0 and c.spec_decode_accepted_per_pos == (0.0, 0.0, 0.0)
    assert c.spec_decode_acceptance is None  # nothing drafted: no rate


def test_speculative_decoding_moves_the_counters_at_the_simulated_acceptance() -> None:
    spec = json.dumps({"method": "mtp", "num_speculative_tokens": 3})
    args = parse_serve_args(
        ["zai-org/GLM-OCR", "--speculative-config", spec, "--sim-spec-acceptance", "0.5"]
    )
    sim = SimMetrics(args, 1000, 8192, 16)
    before = parse_metrics(sim.render().decode())
    sim.decoded(150)  # 1 + 0.5 + 0.25 + 0.125 = 1.875 tokens a step: 80 steps
    c = phase_counters(before, [], parse_metrics(sim.render().decode()))
    assert c.spec_decode_drafts == pytest.approx(80)
    assert c.spec_decode_accepted_per_pos == pytest.approx((40, 20, 10))
    assert c.spec_decode_acceptance == pytest.approx(70 / 240)  # accepted / drafted tokens


def test_more_speculative_tokens_decode_faster_at_this_acceptance() -> None:
    def per_token(*flags: str) -> float:
        args = parse_serve_args(["zai-org/GLM-OCR", "--sim-per-token-s", "0.01", *flags])
        return args.decode_s_per_token

    def mtp(k: int) -> tuple[str, str]:
        return "--speculative-config", json.dumps({"method": "mtp", "num_speculative_tokens": k})

    assert per_token() == 0.01
    assert per_token(*mtp(1)) == pytest.approx(0.01 * 1.1 / 1.7)
    assert per_token(*mtp(3)) < per_token(*mtp(1)) < per_token()
    # Drafts that are never accepted only cost: MTP is then slower than no MTP.
    assert per_token(*mtp(3), "--sim-spec-acceptance", "0") > per_token()
