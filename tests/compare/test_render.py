import io
from pathlib import Path

import pytest
from PIL import Image

from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import render_page_sync, rendered_size
from tests.plugins.compare_inputs import MakePdf
from tests.plugins.processes import pid_alive

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


@pytest.mark.faults
async def test_a_killed_worker_fails_no_page(make_pdf: MakePdf) -> None:
    """kill -9 of one render worker mid-run: the pool is replaced and every page renders."""
    import asyncio
    import os
    import signal

    from ocrtui.compare.documents import DocumentSpec
    from ocrtui.compare.render import RenderPool

    pdf = make_pdf("many.pdf", [f"page {i}" for i in range(24)])
    pool = RenderPool(2)
    try:
        doc = await pool.inspect(DocumentSpec(path=pdf, name="many"))
        renders = [
            asyncio.ensure_future(pool.render(doc, p, TARGETS["lighton-ocr"], "jpeg"))
            for p in doc.pages
        ]
        await asyncio.wait(renders, return_when=asyncio.FIRST_COMPLETED)
        victim = next(iter(pool._pool._processes))  # a worker pid
        os.kill(victim, signal.SIGKILL)
        results = await asyncio.gather(*renders, return_exceptions=True)
    finally:
        pool.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert failed == []
    assert len(results) == 24


async def test_only_a_call_that_kills_its_worker_twice_fails(make_pdf: MakePdf) -> None:
    import asyncio
    import os
    from concurrent.futures.process import BrokenProcessPool

    import pytest

    from ocrtui.compare.documents import DocumentSpec
    from ocrtui.compare.render import RenderPool

    pdf = make_pdf("four.pdf", ["a", "b", "c", "d"])
    pool = RenderPool(2)
    try:
        doc = await pool.inspect(DocumentSpec(path=pdf, name="four"))
        poison = asyncio.ensure_future(pool._call(os._exit, 3))
        pages = [pool.render(doc, p, TARGETS["lighton-ocr"], "jpeg") for p in doc.pages]
        rendered = await asyncio.gather(*pages)
        with pytest.raises(BrokenProcessPool):
            await poison
        after = await pool.render(doc, 1, TARGETS["lighton-ocr"], "jpeg")
    finally:
        pool.close()
    assert [r.mime for r in rendered] == ["image/jpeg"] * 4
    assert after.width == 1089


POOL_THEN_WAIT = """
import asyncio, sys
from pathlib import Path
from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import RenderPool


async def main() -> None:
    pool = RenderPool(2)
    doc = await pool.inspect(DocumentSpec(path=Path(sys.argv[1]), name="a4"))
    await asyncio.gather(*(pool.render(doc, 1, TARGETS["lighton-ocr"], "jpeg") for _ in range(4)))
    print("ready", flush=True)
    await asyncio.Event().wait()  # until killed


asyncio.run(main())
"""


def _descendants(pid: int) -> set[int]:
    from pathlib import Path

    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


@pytest.mark.faults
def test_kill_9_of_the_run_leaves_no_render_process(make_pdf: MakePdf) -> None:
    """Forkserver, workers and resource tracker all end within 5 s of kill -9 of the run."""
    import subprocess
    import sys
    import time

    pdf = make_pdf("a4.pdf", ["text"])
    proc = subprocess.Popen(
        [sys.executable, "-c", POOL_THEN_WAIT, str(pdf)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        helpers = _descendants(proc.pid)
        assert len(helpers) >= 4  # resource tracker, forkserver, two workers
    finally:
        proc.kill()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    left = {p for p in helpers if pid_alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition with a deadline
        left = {p for p in helpers if pid_alive(p)}
    for p in left:  # leave nothing behind even when the assertion fails
        with __import__("contextlib").suppress(OSError):
            __import__("os").kill(p, 9)
    assert left == set()
