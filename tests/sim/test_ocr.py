"""Real CPU OCR behind the simulator: a generated page's text comes back."""

from __future__ import annotations

import re

import openai
import pytest
from rapidfuzz.distance import Levenshtein

from ocrtui.sim.engines import join_lines
from tests.plugins.ocr_pages import image_message, page_png
from tests.plugins.sim import SimServers

LINES = ["租赁合同 第一条 甲方：张三", "Rent: 12,000.00 per month", "ID 110101199003071234"]


def _similarity(got: str, want: str) -> float:
    """1 - CER with all whitespace removed (engines disagree on spaces)."""
    a, b = re.sub(r"\s+", "", got), re.sub(r"\s+", "", want)
    return 1 - Levenshtein.distance(a, b) / max(len(a), len(b), 1)


@pytest.mark.parametrize(
    ("engine", "model", "floor"),
    [
        # Loading rapidocr and its first page take about 10 s on a 2-core machine.
        pytest.param("rapidocr", "zai-org/GLM-OCR", 0.9, marks=pytest.mark.slow),
        # tesseract's chi_sim data misreads some CJK punctuation; digits and English are exact.
        ("tesseract", "lightonai/LightOnOCR-2-1B", 0.85),
    ],
)
def test_real_text_comes_back(
    sim_servers: SimServers, engine: str, model: str, floor: float
) -> None:
    server = sim_servers.start(
        model, "--served-model-name", engine, "--engine", engine, "--max-model-len", "8192"
    )
    client = openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120
    )
    png = page_png(LINES, size=(1000, 300))
    r = client.chat.completions.create(model=engine, messages=image_message(png), max_tokens=512)
    text = r.choices[0].message.content or ""
    assert _similarity(text, "\n".join(LINES)) >= floor, text
    assert "110101199003071234" in text
    assert len(text.splitlines()) == 3, text
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens > 10


def test_boxes_on_one_visual_line_join_left_to_right() -> None:
    def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]

    items = [
        (box(300, 12, 400, 40), "right"),
        (box(10, 10, 200, 42), "left"),
        (box(10, 80, 200, 110), "next line"),
    ]
    assert join_lines(items) == "left right\nnext line"
