"""vLLM's Prometheus ``/metrics``: the numbers the model cards show, and a phase's counters.

Parsed with prometheus_client's reference text parser. Both the current
``vllm:kv_cache_usage_perc`` and the old ``vllm:gpu_cache_usage_perc`` (deprecated 0.9.2,
hidden in 0.11, gone later) are read, so old and new servers look the same;
``vllm:engine_sleep_state`` says whether (and at which level) a server sleeps. Counters become
rates only across two samples of the same server (a restart resets them).

:func:`phase_counters` turns the scrapes before, during and after a phase of a comparison
into :class:`PhaseCounters`: speculative decoding's acceptance (overall and per draft
position; the ``vllm:spec_decode_*`` counters exist only on a server started with
``--speculative-config``), preemptions, queue time, the KV cache's peak, prefix- and
multimodal-cache hits and requests by finish reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_PROMPT = "vllm:prompt_tokens_total"
_GENERATION = "vllm:generation_tokens_total"
_SUCCESS = "vllm:request_success_total"
# Counters summed over engines into VllmMetrics.counters, by the names vLLM exposes.
_COUNTERS = (
    "vllm:num_preemptions_total",
    "vllm:request_queue_time_seconds_sum",
    "vllm:request_queue_time_seconds_count",
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
    "vllm:mm_cache_hits_total",
    "vllm:mm_cache_queries_total",
    "vllm:spec_decode_num_drafts_total",
    "vllm:spec_decode_num_draft_tokens_total",
    "vllm:spec_decode_num_accepted_tokens_total",
)
K = TypeVar("K")
_ACCEPTED_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
_SLEEP_STATE = "vllm:engine_sleep_state"  # labels sleep_state: awake, weights_offloaded, ...


@dataclass(frozen=True)
class VllmMetrics:
    """One scrape. Values are summed over engines (one per data-parallel rank)."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1, the fullest engine
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    success_by_reason: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)  # _COUNTERS present, by name
    accepted_per_pos: dict[int, float] = field(default_factory=dict)  # draft position: count
    # vllm:engine_sleep_state: None awake (or no such gauge), else the level it sleeps at
    # (0 paused only, 1 weights offloaded, 2 all discarded); any engine asleep counts.
    sleep_level: int | None = None


def parse_metrics(text: str) -> VllmMetrics:
    """Read a ``/metrics`` body; raises ValueError when it is not Prometheus text."""
    sums: dict[str, float] = {}
    kv: float | None = None
    kv_name: str | None = None
    success: dict[str, float] = {}
    counters: dict[str, float] = {}
    per_pos: dict[int, float] = {}
    sleep: dict[str, float] = {}
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
            elif name in _COUNTERS:
                counters[name] = counters.get(name, 0.0) + sample.value
            elif name == _ACCEPTED_PER_POS:
                pos = int(sample.labels.get("position", "0"))
                per_pos[pos] = per_pos.get(pos, 0.0) + sample.value
            elif name == _SLEEP_STATE:
                state = sample.labels.get("sleep_state", "")
                # awake: the least over engines; the levels: the most.
                pick = min if state == "awake" else max
                sleep[state] = pick(sleep.get(state, sample.value), sample.value)
    return VllmMetrics(
        running=sums.get(_RUNNING),
        waiting=sums.get(_WAITING),
        kv_cache_usage=kv,
        prompt_tokens=sums.get(_PROMPT),
        generation_tokens=sums.get(_GENERATION),
        success_by_reason=success,
        counters=counters,
        accepted_per_pos=per_pos,
        sleep_level=_sleep_level(sleep),
    )


def _sleep_level(state: Mapping[str, float]) -> int | None:
    if state.get("awake", 1.0) >= 1.0:
        return None
    if state.get("discard_all", 0.0) >= 1.0:
        return 2
    return 1 if state.get("weights_offloaded", 0.0) >= 1.0 else 0


@dataclass(frozen=True)
class TokenRates:
    prompt_per_s: float | None
    generation_per_s: float | None
    # Accepted / proposed draft tokens between the two scrapes; None without speculative
    # decoding or without drafts in between.
    spec_decode_acceptance: float | None = None


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

    def delta(name: str) -> float | None:
        a, b = previous.counters.get(name), current.counters.get(name)
        return None if a is None or b is None or b < a else b - a

    return TokenRates(
        rate(previous.prompt_tokens, current.prompt_tokens),
        rate(previous.generation_tokens, current.generation_tokens),
        _ratio(
            delta("vllm:spec_decode_num_accepted_tokens_total"),
            delta("vllm:spec_decode_num_draft_tokens_total"),
        ),
    )


@dataclass(frozen=True)
class PhaseCounters:
    """What the server counted during one phase of a comparison (deltas of its counters).

    A field is None where the server does not expose the series (no speculative decoding,
    an old vLLM) or where it restarted during the phase (``restarted``: a counter went down,
    so no delta is known).
    """

    restarted: bool
    spec_decode_drafts: float | None
    spec_decode_draft_tokens: float | None
    spec_decode_accepted_tokens: float | None
    spec_decode_accepted_per_pos: tuple[float, ...] | None  # accepted tokens, position 0..k-1
    preemptions: float | None
    queue_time_s_sum: float | None
    queue_time_requests: float | None
    kv_cache_usage_peak: float | None  # 0..1, the highest scrape of the phase
    prefix_cache_hits: float | None
    prefix_cache_queries: float | None
    mm_cache_hits: float | None
    mm_cache_queries: float | None
    finished_by_reason: dict[str, float]  # request_success_total's finished_reason label

    @property
    def spec_decode_acceptance(self) -> float | None:
        """Accepted draft tokens / draft tokens (vLLM's "Draft acceptance rate")."""
        return _ratio(self.spec_decode_accepted_tokens, self.spec_decode_draft_tokens)

    @property
    def spec_decode_acceptance_per_pos(self) -> tuple[float, ...] | None:
        """Per draft position: accepted / drafts (vLLM's "Per-position acceptance rate")."""
        drafts, per_pos = self.spec_decode_drafts, self.spec_decode_accepted_per_pos
        if not drafts or per_pos is None:
            return None
        return tuple(a / drafts for a in per_pos)

    @property
    def spec_decode_mean_acceptance_length(self) -> float | None:
        """1 + accepted / drafts: tokens a step yields (vLLM's "Mean acceptance length")."""
        rate = _ratio(self.spec_decode_accepted_tokens, self.spec_decode_drafts)
        return None if rate is None else 1 + rate

    @property
    def queue_time_mean_s(self) -> float | None:
        return _ratio(self.queue_time_s_sum, self.queue_time_requests)

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        return _ratio(self.prefix_cache_hits, self.prefix_cache_queries)

    @property
    def mm_cache_hit_rate(self) -> float | None:
        return _ratio(self.mm_cache_hits, self.mm_cache_queries)

    def to_json(self) -> dict[str, object]:
        """The summary.json form: the counts and the rates derived from them."""
        per_pos = self.spec_decode_accepted_per_pos
        rates = self.spec_decode_acceptance_per_pos
        return {
            "restarted": self.restarted,
            "spec_decode": {
                "drafts": self.spec_decode_drafts,
                "draft_tokens": self.spec_decode_draft_tokens,
                "accepted_tokens": self.spec_decode_accepted_tokens,
                "accepted_per_pos": None if per_pos is None else list(per_pos),
                "acceptance": self.spec_decode_acceptance,
                "acceptance_per_pos": None if rates is None else list(rates),
                "mean_acceptance_length": self.spec_decode_mean_acceptance_length,
            },
            "preemptions": self.preemptions,
            "queue_time": {
                "sum_s": self.queue_time_s_sum,
                "requests": self.queue_time_requests,
                "mean_s": self.queue_time_mean_s,
            },
            "kv_cache_usage_peak": self.kv_cache_usage_peak,
            "prefix_cache": {
                "hits": self.prefix_cache_hits,
                "queries": self.prefix_cache_queries,
                "hit_rate": self.prefix_cache_hit_rate,
            },
            "mm_cache": {
                "hits": self.mm_cache_hits,
                "queries": self.mm_cache_queries,
                "hit_rate": self.mm_cache_hit_rate,
            },
            "finished_by_reason": dict(self.finished_by_reason),
        }


def _went_down(before: Mapping[K, float], after: Mapping[K, float]) -> bool:
    return any(after[k] < before[k] for k in before.keys() & after.keys())


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def phase_counters(
    before: VllmMetrics, during: Sequence[VllmMetrics], after: VllmMetrics
) -> PhaseCounters:
    """The phase's counters from the scrapes taken before, during and after it."""
    gen = (before.generation_tokens, after.generation_tokens)
    restarted = (
        _went_down(before.counters, after.counters)
        or _went_down(before.success_by_reason, after.success_by_reason)
        or _went_down(before.accepted_per_pos, after.accepted_per_pos)
        or (gen[0] is not None and gen[1] is not None and gen[1] < gen[0])
    )

    def delta(name: str) -> float | None:
        if restarted or name not in after.counters:
            return None
        return after.counters[name] - before.counters.get(name, 0.0)

    per_pos: tuple[float, ...] | None = None
    if after.accepted_per_pos and not restarted:
        per_pos = tuple(
            after.accepted_per_pos.get(p, 0.0) - before.accepted_per_pos.get(p, 0.0)
            for p in range(max(after.accepted_per_pos) + 1)
        )
    finished = {} if restarted else {
        reason: n - before.success_by_reason.get(reason, 0.0)
        for reason, n in after.success_by_reason.items()
    }  # fmt: skip
    usage = [m.kv_cache_usage for m in (before, *during, after) if m.kv_cache_usage is not None]
    return PhaseCounters(
        restarted=restarted,
        spec_decode_drafts=delta("vllm:spec_decode_num_drafts_total"),
        spec_decode_draft_tokens=delta("vllm:spec_decode_num_draft_tokens_total"),
        spec_decode_accepted_tokens=delta("vllm:spec_decode_num_accepted_tokens_total"),
        spec_decode_accepted_per_pos=per_pos,
        preemptions=delta("vllm:num_preemptions_total"),
        queue_time_s_sum=delta("vllm:request_queue_time_seconds_sum"),
        queue_time_requests=delta("vllm:request_queue_time_seconds_count"),
        kv_cache_usage_peak=max(usage) if usage else None,
        prefix_cache_hits=delta("vllm:prefix_cache_hits_total"),
        prefix_cache_queries=delta("vllm:prefix_cache_queries_total"),
        mm_cache_hits=delta("vllm:mm_cache_hits_total"),
        mm_cache_queries=delta("vllm:mm_cache_queries_total"),
        finished_by_reason=finished,
    )
