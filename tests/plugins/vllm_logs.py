"""The vllm layer's test data: text vLLM printed.

``tests/vllm/fixtures/`` holds real text printed by vLLM, copied verbatim from public sources
(provenance per file in fixtures/SOURCES.md), so parsers are tested against the real thing.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "vllm" / "fixtures"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_lines(name: str) -> list[str]:
    return fixture_text(name).splitlines()
