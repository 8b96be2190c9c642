"""Where a starting vLLM server is, read from the tail of its log.

vLLM prints a fixed sequence of lines while it starts (its ``v1/worker`` and
``v1/core/kv_cache_utils.py`` log them; real logs in tests/vllm/fixtures/: real_v0_26_h200_*
and real_v0_32_cpu_* are our own runs). Each marker names the step that is running *after*
it was printed; the latest marker in the tail wins. Before the first marker (None) the API
server is importing vLLM. Colour codes and carriage-return progress bars are stripped first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# (stage, pattern), in startup order. Built from real logs: vLLM 0.9-0.25 on GPUs
# (tests/vllm/fixtures), 0.26 on an H200 and 0.32 on CPU (its real_v0_* files).
_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (stage, re.compile(pattern))
    for stage, pattern in (
        # The API server parsed its arguments and resolves the model config (CPU: ~7 s).
        ("API server configuring", r"non-default args:|\bversion \d+\.\d+\S*$"),
        # Config resolved; the EngineCore is spawned next and imports torch and vLLM before
        # its first line (H200: ~18 s of silence).
        ("engine core spawned", r"Resolved architecture:|Using max model len \d+"),
        ("initializing engine", r"Initializing a V\d LLM engine"),
        ("loading weights", r"Starting to load model|Loading model from scratch"),
        ("loading weights", r"Loading safetensors checkpoint shards"),
        ("model loading", r"Loading weights took"),
        ("profiling", r"Model loading took|torch\.compile t(akes|ook)|Dynamo bytecode"),
        # GPU without --enforce-eager: vLLM compiles the model (H200, 0.26: 14 s cold,
        # 1.6 s from its cache) before profiling.
        ("torch.compile", r"for vLLM's torch\.compile|Compiling a graph for compile range"),
        # CPU build: the torch.compile warm-up is the longest step (26 s cold, 2-4 s cached).
        ("torch.compile warm-up", r"Warming up model for the compilation"),
        ("profiling", r"(?i:profiling)|saved AOT compiled function"),
        (
            "KV cache",
            r"Available KV cache memory|[GC]PU KV cache size|# cpu blocks|Warming up done"
            r"|GiB for KV cache on node",
        ),
        ("KV cache", r"Maximum concurrency for"),
        ("graph capture", r"Capturing CUDA graphs?"),
        ("init engine", r"Graph capturing finished"),
        # vLLM >= 0.26 prints its memory summary, then warms the model up (17 s on the first
        # start on an H200, 2.5 s later) before "init engine ... took".
        ("warming up", r"Free memory on device .*on startup\. Desired GPU memory utilization is"),
        ("starting API server", r"init engine \(profile"),
        ("starting API server", r"Starting vLLM (API )?server|Available routes are"),
        ("starting API server", r"Waiting for application startup"),
        ("API server up", r"Application startup complete"),
    )
)
STAGES: tuple[str, ...] = tuple(dict.fromkeys(stage for stage, _ in _MARKERS))

# Tracebacks name functions such as profile_run or load_model: never stage markers.
_NOT_A_MARKER = re.compile(r"\bERROR\b|Traceback|File \"")
_SHARDS = re.compile(r"Loading safetensors checkpoint shards:\s*(\d+)% Completed")
_KV_GIB = re.compile(
    r"Available KV cache memory: (-?[\d.]+) GiB|\(([\d.]+)/[\d.]+\) GiB for KV cache"
)


def strip_ansi(line: str) -> str:
    """Colour codes removed; of a carriage-return progress bar only the last frame is kept."""
    line = _ANSI.sub("", line)
    if "\r" in line:
        frames = [f for f in line.split("\r") if f.strip()]
        line = frames[-1] if frames else ""
    return line


@dataclass(frozen=True)
class Stage:
    name: str
    detail: str | None = None

    def __str__(self) -> str:
        return f"{self.name} {self.detail}" if self.detail else self.name


def startup_stage(lines: Iterable[str]) -> Stage | None:
    """The step a starting server is in, or None when the tail shows no marker yet (the API
    server is still importing vLLM: on a GPU host ~20 s without a line)."""
    cleaned = [strip_ansi(line) for line in lines]
    for line in reversed(cleaned):
        if _NOT_A_MARKER.search(line):
            continue
        for name, pattern in reversed(_MARKERS):
            if pattern.search(line):
                return Stage(name, _detail(name, line))
    return None


def _detail(name: str, line: str) -> str | None:
    if name == "loading weights" and (m := _SHARDS.search(line)):
        return f"{m.group(1)}%"
    if name == "KV cache" and (m := _KV_GIB.search(line)):
        return f"{m.group(1) or m.group(2)} GiB"
    return None
