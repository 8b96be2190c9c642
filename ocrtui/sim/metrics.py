"""``/metrics`` with vLLM 0.32's families, labels (engine, model_name), help texts and buckets.

Every family real vLLM 0.32 exports is here (the fidelity check compares them), including
prometheus-fastapi-instrumentator's ``http_*``; those the simulator has nothing to count
for (prefix and multimodal caches, preemptions, FLOPs estimates) stay at zero. The
speculative-decoding counters a server started with ``--speculative-config`` adds move at
the simulator's expected acceptance (``SimMetrics.decoded``).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)

from ocrtui.sim.args import ServeArgs

__all__ = ["CONTENT_TYPE", "HttpMetrics", "SimMetrics"]

_TTFT = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
_ITL = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
_LATENCY = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
_ITERATION_TOKENS: tuple[float, ...] = (1.0, *(2.0**k for k in range(3, 15)))
_PARAMS_N = (1.0, 2.0, 5.0, 10.0, 20.0)
_PREEMPTIONS = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)
_HTTP_HIGHR: tuple[float, ...] = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0)
_HTTP_HIGHR += (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 7.5, 10.0, 30.0, 60.0)
_HTTP = (0.1, 0.5, 1.0)
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")
_CACHE_CONFIG_FIXED = {
    "_block_size_resolved": "True",
    "cache_dtype": "auto",
    "cache_hit_alignment_tokens": "None",
    "enable_mamba_shared_prefix_checkpoint": "False",
    "hash_block_size": "None",
    "is_attention_free": "False",
    "kv_cache_dtype_skip_layers": "[]",
    "kv_cache_layout": "None",
    "kv_offloading_backend": "native",
    "kv_offloading_size": "None",
    "kv_sharing_fast_prefill": "False",
    "mamba_block_size": "None",
    "mamba_cache_dtype": "auto",
    "mamba_cache_mode": "none",
    "mamba_page_size_padded": "None",
    "mamba_ssm_cache_dtype": "float32",
    "num_cpu_blocks": "None",
    "num_gpu_blocks_override": "None",
    "prefix_cache_retention_interval": "0",
    "prefix_caching_hash_algo": "sha256",
    "prefix_match_unit": "None",
    "replayssm_buffer_len": "16",
    "skip_page_size_padded": "None",
    "sliding_window": "None",
    "swa_bounded_replay": "True",
    "use_kda_recoverssm": "False",
    "use_replayssm": "False",
    "user_specified_block_size": "False",
}
# prometheus-fastapi-instrumentator as vLLM sets it up: these handlers are not counted.
HTTP_EXCLUDED = frozenset({"/metrics", "/health", "/load", "/ping", "/version"})


def one_two_five_buckets(limit: int) -> tuple[float, ...]:
    """vLLM's token-count buckets: 1, 2, 5, 10, 20, 50, ... up to ``limit``."""
    out: list[float] = []
    exponent = 0
    while True:
        for m in (1, 2, 5):
            value = m * 10**exponent
            if value > limit:
                return tuple(out)
            out.append(float(value))
        exponent += 1


class SimMetrics:
    def __init__(
        self, args: ServeArgs, num_gpu_blocks: int, max_model_len: int, block_size: int
    ) -> None:
        # A private registry with the same process/python families as vLLM's default one.
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        names = ["engine", "model_name"]
        values = {"model_name": args.name, "engine": "0"}
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, names, registry=r).labels(**values)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, names, registry=r).labels(**values)

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, names, buckets=buckets, registry=r).labels(**values)

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        )
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        )
        self.kv_usage = gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        )
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        )
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            ["engine", "finished_reason", "model_name"],
            registry=r,
        )
        self.success = {
            reason: success.labels(finished_reason=reason, **values) for reason in FINISH_REASONS
        }
        tokens = one_two_five_buckets(max_model_len)
        self.request_prompt_tokens = hist(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens
        )
        self.request_generation_tokens = hist(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", tokens
        )
        self.ttft = hist(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            _TTFT,
        )
        self.itl = hist(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", _ITL
        )
        self.e2e = hist(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            _LATENCY,
        )
        self.queue_time = hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            _LATENCY,
        )
        self.prefill_time = hist(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            _LATENCY,
        )
        self.decode_time = hist(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            _LATENCY,
        )
        self._zero_families(names, values, tokens)
        self._spec_decode_families(args, names, values)
        self.inference_time = hist(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            _LATENCY,
        )
        config = {
            **_CACHE_CONFIG_FIXED,
            "block_size": str(block_size),
            "effective_attention_block_size": str(block_size),
            "enable_prefix_caching": str(args.enable_prefix_caching),
            "engine": "0",
            "gpu_memory_utilization": str(args.gpu_memory_utilization),
            "kv_cache_max_concurrency": str(num_gpu_blocks * block_size / max_model_len),
            "kv_cache_size_tokens": str(num_gpu_blocks * block_size),
            "kv_cache_memory_bytes": "None",
            "num_gpu_blocks": str(num_gpu_blocks),
        }
        info = Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            sorted(config),
            registry=r,
        )
        info.labels(**config).set(1)
        self.http = HttpMetrics(r)

    def _spec_decode_families(
        self, args: ServeArgs, names: list[str], values: dict[str, str]
    ) -> None:
        """vLLM 0.32's speculative-decoding counters (vllm/v1/spec_decode/metrics.py), which
        a server has only with ``--speculative-config`` (one per-position series for each
        speculative token); :meth:`decoded` moves them."""
        self._spec_args = args
        self._spec: list[Counter] = []
        self._accepted_per_pos: list[Counter] = []
        if not args.speculative_tokens:
            return
        r = self.registry
        for name, doc in (
            ("vllm:spec_decode_num_drafts", "Number of spec decoding drafts."),
            ("vllm:spec_decode_num_draft_tokens", "Number of draft tokens."),
            ("vllm:spec_decode_num_accepted_tokens", "Number of accepted tokens."),
        ):
            self._spec.append(Counter(name, doc, names, registry=r).labels(**values))
        per_pos = Counter(
            "vllm:spec_decode_num_accepted_tokens_per_pos",
            "Accepted tokens per draft position.",
            [*names, "position"],
            registry=r,
        )
        self._accepted_per_pos = [
            per_pos.labels(position=str(pos), **values) for pos in range(args.speculative_tokens)
        ]

    def decoded(self, tokens: int) -> None:
        """``tokens`` generated by decode steps: the generation counter, and with speculative
        decoding the drafts those steps made and accepted, at the simulator's expected
        rates (``ServeArgs.tokens_per_step``; fractional counts, as a mean)."""
        self.generation_tokens.inc(tokens)
        if not self._spec:
            return
        a = self._spec_args
        steps = tokens / a.tokens_per_step
        drafts, draft_tokens, accepted = self._spec
        drafts.inc(steps)
        draft_tokens.inc(steps * a.speculative_tokens)
        accepted.inc(tokens - steps)
        for pos, counter in enumerate(self._accepted_per_pos):
            counter.inc(steps * a.spec_acceptance ** (pos + 1))

    def _zero_families(
        self, names: list[str], values: dict[str, str], tokens: tuple[float, ...]
    ) -> None:
        """vLLM's families that the simulator exports but never moves (or sets once)."""
        r = self.registry
        for name, doc in (
            (
                "vllm:estimated_flops_per_gpu",
                "Estimated number of floating point operations per GPU (for Model Flops "
                "Utilization calculations).",
            ),
            (
                "vllm:estimated_read_bytes_per_gpu",
                "Estimated number of bytes read from memory per GPU (for Model Flops "
                "Utilization calculations).",
            ),
            (
                "vllm:estimated_write_bytes_per_gpu",
                "Estimated number of bytes written to memory per GPU (for Model Flops "
                "Utilization calculations).",
            ),
            (
                "vllm:prefix_cache_queries",
                "Prefix cache queries, in terms of number of queried tokens.",
            ),
            ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."),
            (
                "vllm:external_prefix_cache_queries",
                "External prefix cache queries from KV connector cross-instance cache sharing, "
                "in terms of number of queried tokens.",
            ),
            (
                "vllm:external_prefix_cache_hits",
                "External prefix cache hits from KV connector cross-instance cache sharing, in "
                "terms of number of cached tokens.",
            ),
            (
                "vllm:mm_cache_queries",
                "Multi-modal cache queries, in terms of number of queried items.",
            ),
            ("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."),
            ("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external)."),
        ):
            Counter(name, doc, names, registry=r).labels(**values)
        waiting = Gauge(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for "
            "scheduling capacity; 'deferred' = deferred by transient constraints (LoRA budget, "
            "KV transfer, blocked status). Sum of all reasons equals vllm:num_requests_waiting.",
            [*names, "reason"],
            registry=r,
        )
        self.waiting_capacity = waiting.labels(reason="capacity", **values)
        waiting.labels(reason="deferred", **values)
        sleep = Gauge(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is "
            "awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep "
            "level 2.",
            [*names, "sleep_state"],
            registry=r,
        )
        self.sleep_state = {
            state: sleep.labels(sleep_state=state, **values)
            for state in ("awake", "weights_offloaded", "discard_all")
        }
        self.record_sleep_state(None)
        by_source = Counter(
            "vllm:prompt_tokens_by_source",
            "Number of prompt tokens by source.",
            [*names, "source"],
            registry=r,
        )
        self.prompt_tokens_computed = by_source.labels(source="local_compute", **values)
        for source in ("local_cache_hit", "external_kv_transfer"):
            by_source.labels(source=source, **values)
        cached = Counter(
            "vllm:prompt_tokens_cached_by_source",
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), "
            "host (offloaded to DRAM), disk, p2p (transferred from another vLLM instance) or "
            "external_unspecified. Counted at admission; sums to vllm:prefix_cache_hits + "
            "vllm:external_prefix_cache_hits.",
            [*names, "source"],
            registry=r,
        )
        for source in ("device", "host", "p2p", "disk", "external_unspecified"):
            cached.labels(source=source, **values)
        rejections = Counter(
            "vllm:admission_rejections",
            "Number of admission attempts rejected by a queue limit, by reason.",
            ["model_name", "reason"],
            registry=r,
        )
        for reason in ("max_num_queued_reqs", "max_num_queued_tokens"):
            rejections.labels(model_name=values["model_name"], reason=reason)
        for name, doc, buckets in (
            (
                "vllm:iteration_tokens_total",
                "Histogram of number of tokens per engine_step.",
                _ITERATION_TOKENS,
            ),
            (
                "vllm:request_max_num_generation_tokens",
                "Histogram of maximum number of requested generation tokens.",
                tokens,
            ),
            ("vllm:request_params_n", "Histogram of the n request parameter.", _PARAMS_N),
            (
                "vllm:request_params_max_tokens",
                "Histogram of the max_tokens request parameter.",
                tokens,
            ),
            (
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                _ITL,
            ),
            (
                "vllm:request_num_preemptions",
                "Histogram of the number of times a request was preempted.",
                _PREEMPTIONS,
            ),
            (
                "vllm:request_prefill_kv_computed_tokens",
                "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
                tokens,
            ),
        ):
            Histogram(name, doc, names, buckets=buckets, registry=r).labels(**values)

    def record_sleep_state(self, level: int | None) -> None:
        """``vllm:engine_sleep_state`` as vLLM's logger sets it: awake 1 (``None``), or awake 0
        with weights_offloaded 1 for level 1, discard_all 1 for level 2 (level 0: neither)."""
        self.sleep_state["awake"].set(1 if level is None else 0)
        self.sleep_state["weights_offloaded"].set(1 if level == 1 else 0)
        self.sleep_state["discard_all"].set(1 if level == 2 else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpMetrics:
    """prometheus-fastapi-instrumentator's families, with vLLM's settings."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "http_requests",
            "Total number of requests by method, status and handler.",
            ["handler", "method", "status"],
            registry=r,
        )
        self.request_size = Summary(
            "http_request_size_bytes",
            "Content length of incoming requests by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ",
            ["handler"],
            registry=r,
        )
        self.response_size = Summary(
            "http_response_size_bytes",
            "Content length of outgoing responses by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ",
            ["handler"],
            registry=r,
        )
        self.highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. Made for more accurate "
            "percentile calculations. ",
            buckets=_HTTP_HIGHR,
            registry=r,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler. Made to be only used if aggregation by "
            "handler is important. ",
            ["handler", "method"],
            buckets=_HTTP,
            registry=r,
        )

    def observe(
        self, handler: str, method: str, status: int, in_bytes: int, out_bytes: int, took: float
    ) -> None:
        if handler in HTTP_EXCLUDED:
            return
        self.requests.labels(handler=handler, method=method, status=f"{status // 100}xx").inc()
        self.request_size.labels(handler=handler).observe(in_bytes)
        self.response_size.labels(handler=handler).observe(out_bytes)
        self.highr.observe(took)
        self.duration.labels(handler=handler, method=method).observe(took)
