"""vLLM's Prometheus ``/metrics``: the few numbers the model cards show.

Parsed with prometheus_client's reference text parser. Both the current
``vllm:kv_cache_usage_perc`` and the old ``vllm:gpu_cache_usage_perc`` (deprecated 0.9.2,
hidden in 0.11, gone later) are read, so old and new servers look the same. Counters become
rates only across two samples of the same server (a restart resets them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_PROMPT = "vllm:prompt_tokens_total"
_GENERATION = "vllm:generation_tokens_total"
_SUCCESS = "vllm:request_success_total"


@dataclass(frozen=True)
class VllmMetrics:
    """One scrape. Values are summed over engines (one per data-parallel rank)."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1, the fullest engine
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    success_by_reason: dict[str, float] = field(default_factory=dict)


def parse_metrics(text: str) -> VllmMetrics:
    """Read a ``/metrics`` body; raises ValueError when it is not Prometheus text."""
    sums: dict[str, float] = {}
    kv: float | None = None
    kv_name: str | None = None
    success: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name in _KV_USAGE:
                # A server exposing both reports the same value twice; prefer the current name.
                if kv_name is None or (kv_name != _KV_USAGE[0] and name == _KV_USAGE[0]):
                    kv_name, kv = name, sample.value
                elif name == kv_name:
                    kv = max(kv or 0.0, sample.value)
            elif name in (_RUNNING, _WAITING, _PROMPT, _GENERATION):
                sums[name] = sums.get(name, 0.0) + sample.value
            elif name == _SUCCESS:
                reason = sample.labels.get("finished_reason", "unknown")
                success[reason] = success.get(reason, 0.0) + sample.value
    return VllmMetrics(
        running=sums.get(_RUNNING),
        waiting=sums.get(_WAITING),
        kv_cache_usage=kv,
        prompt_tokens=sums.get(_PROMPT),
        generation_tokens=sums.get(_GENERATION),
        success_by_reason=success,
    )


@dataclass(frozen=True)
class TokenRates:
    prompt_per_s: float | None
    generation_per_s: float | None


def token_rates(
    previous: VllmMetrics | None, t_previous: float, current: VllmMetrics, t_current: float
) -> TokenRates:
    """Tokens per second between two scrapes; None where no rate can be known.

    A counter that went down means the server restarted in between: no rate for that pair.
    """
    dt = t_current - t_previous
    if previous is None or dt <= 0:
        return TokenRates(None, None)

    def rate(a: float | None, b: float | None) -> float | None:
        if a is None or b is None or b < a:
            return None
        return (b - a) / dt

    return TokenRates(
        rate(previous.prompt_tokens, current.prompt_tokens),
        rate(previous.generation_tokens, current.generation_tokens),
    )
