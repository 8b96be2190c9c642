"""The vllm layer's test data: text vLLM printed.

``tests/vllm/fixtures/`` holds real text printed by vLLM, copied verbatim from public sources
(provenance per file in fixtures/SOURCES.md), so parsers are tested against the real thing.
"""

from __future__ import annotations

from pathlib import Path

from ocrtui.vllm.logfile import current_run
from ocrtui.vllm.stages import startup_stage

FIXTURES = Path(__file__).parents[1] / "vllm" / "fixtures"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_lines(name: str) -> list[str]:
    return fixture_text(name).splitlines()


def stages_seen(lines: list[str]) -> list[str]:
    """The startup stages a dashboard following this log line by line would have shown, in
    order, each once per stretch."""
    seen: list[str] = []
    for i in range(1, len(lines) + 1):
        run, _ = current_run(lines[:i])
        stage = startup_stage(run) if run else None
        if stage is not None and (not seen or seen[-1] != stage.name):
            seen.append(stage.name)
    return seen
