"""Rendering cost per profile and format, and how much of it the pool hides.

    .venv/bin/python bench/compare_render.py [--pages 20] [--workers 2]

Figures: ms/page to render+encode in-process for each profile, JPEG (what requests carry)
against PNG [ratio <= 1]; pages/s through RenderPool with W workers against rendering
in-process one page at a time [ratio >= 1.5], with the time until the first page.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import cast

import jsonl
from fpdf import FPDF

from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import ImageFormat, RenderPool, render_page_sync
from ocrtui.compare.sample_suite import CJK_FONT, CONTRACT_PAGES


def make_pdf(path: Path, pages: int) -> None:
    pdf = FPDF(format="A4")
    pdf.add_font("wqy", fname=str(CJK_FONT), collection_font_number=0)
    pdf.set_font("wqy", size=11)
    text = "\n".join(CONTRACT_PAGES[0] + CONTRACT_PAGES[1])
    for _ in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 7, text * 2)
    pdf.output(str(path))


async def pooled(path: Path, pages: int, workers: int) -> tuple[float, float]:
    pool = RenderPool(workers)
    try:
        doc = await pool.inspect(DocumentSpec(path=path, name="bench"))
        start = time.perf_counter()
        tasks = [
            asyncio.create_task(pool.render(doc, p, TARGETS["glm-ocr"], "jpeg"))
            for p in range(1, pages + 1)
        ]
        await tasks[0]
        first = time.perf_counter() - start
        await asyncio.gather(*tasks)
        return first, time.perf_counter() - start
    finally:
        pool.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    serial_rate = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pdf"
        make_pdf(path, args.pages)
        for profile, target in TARGETS.items():
            ms: dict[str, float] = {}
            kib: dict[str, int] = {}
            for fmt in ("jpeg", "png"):
                fmt = cast(ImageFormat, fmt)
                n = min(args.pages, 5)
                start = time.perf_counter()
                for p in range(1, n + 1):
                    r = render_page_sync(str(path), "pdf", None, p, target, fmt)
                ms[fmt] = (time.perf_counter() - start) / n * 1000
                kib[fmt] = len(r.data) // 1024
            # JPEG is what requests carry; PNG (lossless) is the baseline it must beat
            jsonl.emit(f"render_{profile}_jpeg_vs_png", ms["jpeg"], ms["png"], 1.0, "ms/page",
                       False, size=f"{r.width}x{r.height}", kib_jpeg=kib["jpeg"],
                       kib_png=kib["png"])  # fmt: skip
            if profile == "glm-ocr":
                serial_rate = 1000 / ms["jpeg"]
        first, total = asyncio.run(pooled(path, args.pages, args.workers))
        # the pool (what the runner uses) against rendering in-process one page at a time
        jsonl.emit(f"render_pool_{args.pages}_pages", args.pages / total, serial_rate, 1.5,
                   "pages/s", True, workers=args.workers, first_page_s=round(first, 3),
                   profile="glm-ocr", format="jpeg")  # fmt: skip


if __name__ == "__main__":
    main()
