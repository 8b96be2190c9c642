"""`vllm serve` argument parsing, with vLLM's own error messages, plus the simulator's flags.

vLLM's parser accepts ``--flag value``, ``--flag=value`` and underscores in flag names; it
exits 2 with its top-level usage and ``vllm: error: unrecognized arguments: ...`` on unknown
flags and with
``Value image=5 cannot be converted to <function loads at 0x...>.`` when a JSON flag is not
JSON. Flags vLLM accepts that change nothing here are accepted and ignored (listed in
docs/sim.md), so a real serve command from the config runs unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ocrtui.sim.version import VLLM_VERSION

ENGINES = ("rapidocr", "tesseract", "synthetic")
# vLLM 0.32's top-level usage, which it prints for unknown flags of any subcommand.
TOP_USAGE = (
    "usage: vllm [-h] [-v]\n"
    "            {chat,complete,serve,launch,bench,collect-env,download-kernels,preload,"
    "run-batch,snapshot}\n"
    "            ..."
)
API_KEY_ENV = "VLLM_API_KEY"
# What one draft position adds to a decode step, as a fraction of the step: MTP's draft
# layer is one transformer layer beside the model's (GLM-OCR: 1 beside 16).
SPEC_DRAFT_COST = 0.1


@dataclass(frozen=True)
class ServeArgs:
    model: str
    host: str = "0.0.0.0"  # vLLM listens on all interfaces unless told otherwise
    port: int = 8000
    served_model_name: str = ""
    served_aliases: tuple[str, ...] = ()  # --served-model-name's further names
    gpu_memory_utilization: float = 0.92  # vLLM 0.32's default
    max_num_seqs: int = 256
    max_model_len: int | None = None
    limit_mm_per_prompt: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None
    mm_processor_cache_gb: float = 4.0
    enable_prefix_caching: bool = True
    speculative_config: dict[str, Any] | None = None
    trust_remote_code: bool = False
    data_parallel_size: int = 1  # one EngineCore per rank, rank i on visible device i
    api_server_count: int | None = None  # None: vLLM's default, one per rank
    enable_sleep_mode: bool = False  # level 1/2 sleep gives the memory back (else pause only)
    # Simulator-only.
    engine: str = "rapidocr"
    sim_gpu: str | None = None
    startup_s: float = 4.0
    prefill_s: float = 0.36
    per_token_s: float = 0.002
    tokens_per_page: int = 400
    # Speculative decoding: draft position i (0-based) is accepted with this ** (i + 1).
    spec_acceptance: float = 0.7
    ocr_workers: int = 1
    vllm_version: str = VLLM_VERSION  # what GET /version reports
    non_default: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.served_model_name or self.model

    @property
    def names(self) -> tuple[str, ...]:
        """Every name requests may use: the served name first, then its aliases."""
        return (self.name, *self.served_aliases)

    @property
    def api_servers(self) -> int:
        """API server processes: vLLM's default is one per data-parallel rank."""
        return self.api_server_count or self.data_parallel_size

    @property
    def speculative_tokens(self) -> int:
        """Draft tokens a step proposes (``--speculative-config``); 0 without it."""
        spec = self.speculative_config or {}
        return int(spec.get("num_speculative_tokens") or 1) if spec else 0

    @property
    def tokens_per_step(self) -> float:
        """Tokens one decode step yields on average: its own and the accepted drafts."""
        return sum(self.spec_acceptance**i for i in range(self.speculative_tokens + 1))

    @property
    def decode_s_per_token(self) -> float:
        """The synthetic engine's decode time per token: a step costs ``per_token_s`` and
        SPEC_DRAFT_COST more per draft position, and yields ``tokens_per_step`` tokens."""
        step = self.per_token_s * (1 + SPEC_DRAFT_COST * self.speculative_tokens)
        return step / self.tokens_per_step

    @property
    def image_limit(self) -> int:
        limit = self.limit_mm_per_prompt.get("image", 999)
        # vLLM also takes {"image": {"count": N, "width": .., "height": ..}}.
        if isinstance(limit, dict):
            limit = limit.get("count", 999)
        return int(limit)


class _Parser(argparse.ArgumentParser):
    """argparse with vLLM's FlexibleArgumentParser habits (underscores mean dashes)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        fixed = []
        for arg in args or []:
            if arg.startswith("--"):
                flag, eq, value = arg.partition("=")
                arg = flag.replace("_", "-") + eq + value
            fixed.append(arg)
        return super().parse_known_args(fixed, namespace)


def _json_arg(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        # vLLM's exact wording (FlexibleArgumentParser type conversion).
        raise argparse.ArgumentTypeError(
            f"Value {value} cannot be converted to {json.loads}."
        ) from None


def _human_int(value: str) -> int:
    """vLLM takes ``--max-model-len 32k`` / ``1M`` as well as plain integers."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgG]?)", value.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"Value {value} cannot be converted to int.")
    scale = {"": 1, "k": 1000, "K": 1024, "m": 1000**2, "M": 1024**2, "g": 1000**3, "G": 1024**3}
    return int(float(m.group(1)) * scale[m.group(2)])


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vllm serve", usage="vllm serve [model_tag] [options]", allow_abbrev=False)
    p.add_argument("model_tag", nargs="?", help="the model (Hugging Face id or path)")
    p.add_argument("--model", help="the model, when not given positionally")
    p.add_argument("--host")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", nargs="+")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.92)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-model-len", type=_human_int)
    p.add_argument("--limit-mm-per-prompt", type=_json_arg, default={})
    p.add_argument("--api-key")
    p.add_argument("--mm-processor-cache-gb", type=float, default=4.0)
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--speculative-config", type=_json_arg)
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--enable-sleep-mode", action="store_true")
    # Accepted because the project's configs or vLLM's docs use them; no effect here.
    for flag in (
        "--dtype",
        "--allowed-local-media-path",
        "--generation-config",
        "--chat-template",
        "--kv-cache-dtype",
        "--uvicorn-log-level",
        "--load-format",
    ):
        p.add_argument(flag)
    for flag in ("--max-num-batched-tokens", "--seed", "--block-size"):
        p.add_argument(flag, type=int)
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--data-parallel-size", "-dp", type=int, default=1)
    p.add_argument("--api-server-count", "-asc", type=int)
    p.add_argument("--mm-processor-kwargs", type=_json_arg)
    for flag in (
        "--enforce-eager",
        "--enable-log-requests",
        "--disable-log-stats",
        "--disable-uvicorn-access-log",
    ):
        p.add_argument(flag, action="store_true")

    sim = p.add_argument_group("simulator (ocrtui sim-vllm only)")
    sim.add_argument("--engine", choices=ENGINES, default="rapidocr", help="what reads the page")
    sim.add_argument("--sim-gpu", metavar="DIR", help="simulated GPU dir (or $OCRTUI_SIM_GPU)")
    sim.add_argument(
        "--sim-startup-s",
        type=float,
        default=4.0,
        metavar="S",
        help="time spread over the startup stages (default 4)",
    )
    sim.add_argument(
        "--sim-prefill-s",
        type=float,
        default=0.36,
        metavar="S",
        help="synthetic engine: time to first token (default 0.36)",
    )
    sim.add_argument(
        "--sim-per-token-s",
        type=float,
        default=0.002,
        metavar="S",
        help="synthetic engine: decode time per token (default 0.002)",
    )
    sim.add_argument(
        "--sim-tokens-per-page",
        type=int,
        default=400,
        metavar="N",
        help="synthetic engine: tokens of text per image (default 400)",
    )
    sim.add_argument(
        "--sim-spec-acceptance",
        type=float,
        default=0.7,
        metavar="A",
        help="with --speculative-config: draft position i accepted with A**(i+1) (default 0.7)",
    )
    sim.add_argument(
        "--sim-ocr-workers",
        type=int,
        default=1,
        metavar="N",
        help="rapidocr/tesseract pages read at once (default 1)",
    )
    sim.add_argument(
        "--sim-vllm-version",
        default=VLLM_VERSION,
        metavar="V",
        help=f"the version GET /version reports (default {VLLM_VERSION}), e.g. a known-bad one",
    )
    return p


_SHOWN = (
    "host",
    "port",
    "served_model_name",
    "gpu_memory_utilization",
    "max_num_seqs",
    "max_model_len",
    "limit_mm_per_prompt",
    "mm_processor_cache_gb",
    "enable_prefix_caching",
    "speculative_config",
    "trust_remote_code",
    "data_parallel_size",
    "api_server_count",
    "enable_sleep_mode",
)


def parse_serve_args(argv: Sequence[str]) -> ServeArgs:
    """Parse what follows ``serve``; exits 2 with vLLM's usage error on bad input."""
    p = _parser()
    ns, unknown = p.parse_known_args(list(argv))
    if unknown:
        print(TOP_USAGE, file=sys.stderr)
        print(f"vllm: error: unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
        raise SystemExit(2)
    model = ns.model or ns.model_tag
    if not model:
        p.error("the following arguments are required: model_tag")
    if ns.tensor_parallel_size != 1:
        p.error("argument --tensor-parallel-size: the simulator runs one GPU (1 only)")
    if not 0 < ns.gpu_memory_utilization <= 1:
        p.error("argument --gpu-memory-utilization: must be in (0, 1]")
    for flag, value in (
        ("--max-num-seqs", ns.max_num_seqs),
        ("--data-parallel-size", ns.data_parallel_size),
        ("--api-server-count", ns.api_server_count),
        ("--max-model-len", ns.max_model_len),
        ("--sim-ocr-workers", ns.sim_ocr_workers),
        ("--sim-tokens-per-page", ns.sim_tokens_per_page),
    ):
        if value is not None and value < 1:
            p.error(f"argument {flag}: must be at least 1")
    if not 0 <= ns.sim_spec_acceptance <= 1:
        p.error("argument --sim-spec-acceptance: must be in [0, 1]")
    if not isinstance(ns.limit_mm_per_prompt, dict):
        p.error(f"argument --limit-mm-per-prompt: Value {ns.limit_mm_per_prompt} is not a dict")
    defaults = vars(p.parse_args([model]))
    non_default = {"model_tag": model, "model": model}
    for key in _SHOWN:
        if getattr(ns, key) != defaults[key]:
            non_default[key] = getattr(ns, key)
    api_key = ns.api_key or os.environ.get(API_KEY_ENV) or None
    if ns.api_key:
        non_default["api_key"] = "<redacted>"  # the key itself never reaches a log
    return ServeArgs(
        model=model,
        host=ns.host or "0.0.0.0",
        port=ns.port,
        served_model_name=(ns.served_model_name or [model])[0],
        served_aliases=tuple((ns.served_model_name or [model])[1:]),
        gpu_memory_utilization=ns.gpu_memory_utilization,
        max_num_seqs=ns.max_num_seqs,
        max_model_len=ns.max_model_len,
        limit_mm_per_prompt=ns.limit_mm_per_prompt,
        api_key=api_key,
        mm_processor_cache_gb=ns.mm_processor_cache_gb,
        enable_prefix_caching=ns.enable_prefix_caching,
        speculative_config=ns.speculative_config,
        trust_remote_code=ns.trust_remote_code,
        data_parallel_size=ns.data_parallel_size,
        api_server_count=ns.api_server_count,
        enable_sleep_mode=ns.enable_sleep_mode,
        engine=ns.engine,
        sim_gpu=ns.sim_gpu,
        startup_s=max(0.0, ns.sim_startup_s),
        prefill_s=max(0.0, ns.sim_prefill_s),
        per_token_s=max(0.0, ns.sim_per_token_s),
        tokens_per_page=ns.sim_tokens_per_page,
        spec_acceptance=ns.sim_spec_acceptance,
        ocr_workers=ns.sim_ocr_workers,
        vllm_version=ns.sim_vllm_version,
        non_default=non_default,
    )
