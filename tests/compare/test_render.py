import io
from pathlib import Path

from PIL import Image

from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import render_page_sync, rendered_size
from tests.compare.conftest import MakePdf

A4_200DPI = (1654, 2339)


def test_pdf_sizes_per_profile(make_pdf: MakePdf) -> None:
    pdf = make_pdf("a4.pdf", ["text"])
    assert rendered_size(pdf, 1, TARGETS["glm-ocr"]) == A4_200DPI
    assert rendered_size(pdf, 1, TARGETS["lighton-ocr"]) == (1089, 1540)
    w, h = rendered_size(pdf, 1, TARGETS["generic"])
    assert h == 2048 and abs(w - 1448) <= 1


def test_glm_cap_applies_to_large_pages(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF(format="A3")  # 200 DPI would be 2339 x 3307: under the cap
    pdf.add_page()
    pdf.add_page(format=(1000, 1000))  # mm: 7874 px at 200 DPI, capped to 3500
    path = tmp_path / "big.pdf"
    pdf.output(str(path))
    w, h = rendered_size(path, 1, TARGETS["glm-ocr"])
    assert (w, abs(h - 3307) <= 1) == (2339, True)
    assert rendered_size(path, 2, TARGETS["glm-ocr"]) == (3500, 3500)


def test_images_are_only_scaled_down(tmp_path: Path) -> None:
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (3080, 1000), "white").save(big)
    Image.new("RGB", (800, 500), "white").save(small)
    assert rendered_size(big, 1, TARGETS["lighton-ocr"], kind="image") == (1540, 500)
    assert rendered_size(small, 1, TARGETS["lighton-ocr"], kind="image") == (800, 500)
    assert rendered_size(big, 1, TARGETS["glm-ocr"], kind="image") == (3080, 1000)


def test_jpeg_by_default_png_on_request(make_pdf: MakePdf) -> None:
    pdf = make_pdf("a4.pdf", ["text"])
    jpeg = render_page_sync(str(pdf), "pdf", None, 1, TARGETS["lighton-ocr"], "jpeg")
    png = render_page_sync(str(pdf), "pdf", None, 1, TARGETS["lighton-ocr"], "png")
    assert jpeg.mime == "image/jpeg" and jpeg.data[:3] == b"\xff\xd8\xff"
    assert png.mime == "image/png" and png.data[:4] == b"\x89PNG"
    assert Image.open(io.BytesIO(jpeg.data)).size == (1089, 1540)


POOL_UNDER_CAPTURED_STDERR = """
import asyncio, io, sys
from pathlib import Path
from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import RenderPool


class Captured(io.StringIO):  # what Textual puts in sys.stderr while an app runs
    def fileno(self) -> int:
        return -1


async def main() -> None:
    sys.stderr = Captured()
    pool = RenderPool(1)
    try:
        doc = await pool.inspect(DocumentSpec(path=Path(sys.argv[1]), name="a4"))
        page = await pool.render(doc, 1, TARGETS["lighton-ocr"], "jpeg")
    finally:
        pool.close()
    print(page.width, page.height)


try:
    asyncio.run(main())
finally:
    sys.stderr = sys.__stderr__  # so that a traceback reaches the test
"""


def test_pool_starts_under_a_captured_stderr(make_pdf: MakePdf) -> None:
    """A fresh process (the resource tracker is per process) whose stderr has no fd."""
    import subprocess
    import sys

    pdf = make_pdf("a4.pdf", ["text"])
    out = subprocess.run(
        [sys.executable, "-c", POOL_UNDER_CAPTURED_STDERR, str(pdf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1089", "1540"]
