"""Where a starting vLLM server is, read from the tail of its log.

vLLM prints a fixed sequence of lines while it starts (research/vllm_and_models.md §2,
real logs in fixtures/vllm/). Each marker names the step that is running *after* it was
printed; the latest marker in the tail wins. Colour codes and carriage-return progress bars
are stripped first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# (stage, pattern), in startup order.
_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (stage, re.compile(pattern))
    for stage, pattern in (
        ("initializing engine", r"Initializing a V\d LLM engine"),
        ("loading weights", r"Starting to load model|Loading model from scratch"),
        ("loading weights", r"Loading safetensors checkpoint shards"),
        ("model loading", r"Loading weights took"),
        ("profiling", r"Model loading took|torch\.compile t(akes|ook)|Dynamo bytecode"),
        ("profiling", r"(?i:profiling)"),
        ("KV cache", r"Available KV cache memory|GPU KV cache size|# cpu blocks"),
        ("KV cache", r"Maximum concurrency for"),
        ("graph capture", r"Capturing CUDA graphs?"),
        ("init engine", r"Graph capturing finished"),
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
_KV_GIB = re.compile(r"Available KV cache memory: (-?[\d.]+) GiB")


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
    """The step a starting server is in, or None when the tail shows no marker yet."""
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
        return f"{m.group(1)} GiB"
    return None
