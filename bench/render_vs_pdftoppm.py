"""Pages/s of ocrtui's render+encode (RenderPool) vs ``pdftoppm -r 200 -jpeg``, same real PDF.

    .venv/bin/python bench/render_vs_pdftoppm.py [--pdf FILE] [--pages 20 100] [--workers 2]

The PDF is ctex's manual (175 pages of Chinese text, tables and code), shipped by Debian's
``texlive-lang-chinese`` at /usr/share/doc/texlive-doc/latex/ctex/ctex.pdf; without it (or
``--pdf``) every line is a skip naming the package. ``pdftoppm`` comes from poppler-utils
(in ./dev's Debian list). Figures:

- render_pages_N: pages/s rendering the first N pages at the GLM-OCR profile (200 DPI,
  JPEG) through RenderPool with W workers (the runner's default 2), baseline one
  ``pdftoppm -r 200 -jpeg -f 1 -l N`` (what a user scripting it would run) [ratio >= 1.5];
- render_first_page: seconds from creating the pool (a run's start) to the first page
  rendered, i.e. when the first request can leave [ours <= 0.5 s]; baseline pdftoppm's
  wall time for page 1 alone.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jsonl

from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import RenderPool

CTEX = Path("/usr/share/doc/texlive-doc/latex/ctex/ctex.pdf")
PACKAGE = "texlive-lang-chinese"


async def pool_pages(pdf: Path, pages: int, workers: int) -> tuple[float, float]:
    """(seconds to the first page from pool creation, seconds for all pages)."""
    start = time.perf_counter()
    pool = RenderPool(workers)
    try:
        doc = await pool.inspect(DocumentSpec(path=pdf, name="ctex"))
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


def pdftoppm(exe: str, pdf: Path, pages: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        argv = [exe, "-r", "200", "-jpeg", "-f", "1", "-l", str(pages), str(pdf), f"{tmp}/p"]
        subprocess.run(argv, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdf", type=Path, default=CTEX)
    ap.add_argument("--pages", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    names = [f"render_pages_{n}" for n in args.pages] + ["render_first_page"]
    exe = shutil.which("pdftoppm")
    reason = None
    if not args.pdf.is_file():
        reason = f"{args.pdf} missing: apt-get install {PACKAGE} (or pass --pdf)"
    elif exe is None:
        reason = "pdftoppm missing: apt-get install poppler-utils (./dev setup)"
    if reason:
        for n in names:
            jsonl.skip(n, reason)
        return 0
    assert exe is not None
    extra = {"pdf": args.pdf.name, "workers": args.workers, "dpi": 200, "format": "jpeg"}
    for n in args.pages:
        base = n / pdftoppm(exe, args.pdf, n)
        _, wall = asyncio.run(pool_pages(args.pdf, n, args.workers))
        jsonl.emit(f"render_pages_{n}", n / wall, base, 1.5, "pages/s", True, **extra)
    first, _ = asyncio.run(pool_pages(args.pdf, 1, args.workers))
    jsonl.emit("render_first_page", first, pdftoppm(exe, args.pdf, 1), 0.5, "s", False,
               goal_on="ours", **extra)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
