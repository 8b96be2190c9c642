"""Page rasterization in a process pool (PDFium is not thread-safe).

Each model profile has its own target size (see profiles.py). Workers keep the last few
PDFs open so a document is not re-parsed for every page. Pages are encoded as JPEG by
default: PNG costs 10-40x more to encode for no gain in OCR accuracy at these sizes.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import functools
import io
import multiprocessing
import os
import sys
import zlib
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any, Literal, TypeVar

from ocrtui.compare.documents import Document, DocumentError, DocumentSpec, inspect_document
from ocrtui.compare.lifeline import die_with
from ocrtui.compare.variants import Variant, degrade
from ocrtui.userfiles import DEFAULT_LIMITS, FileLimits, apply_pixel_limit, display_path

ImageFormat = Literal["jpeg", "png"]
JPEG_QUALITY = 90
POINTS_PER_INCH = 72.0
_T = TypeVar("_T")


class RenderError(Exception):
    """One page could not be rasterized."""


@dataclass(frozen=True)
class RenderTarget:
    """Either a DPI with a cap on the longest side, or a fixed longest side."""

    dpi: float | None = None
    max_side: int | None = None
    longest_side: int | None = None

    def scale_for(self, width: float, height: float, *, native_dpi: float) -> float:
        """Scale factor from the source size (points for PDFs, pixels for images)."""
        longest = max(width, height)
        if self.longest_side is not None:
            scale = self.longest_side / longest
        else:
            scale = (self.dpi or native_dpi) / native_dpi
        if self.max_side is not None and longest * scale > self.max_side:
            scale = self.max_side / longest
        return scale


@dataclass(frozen=True)
class RenderedPage:
    data: bytes
    mime: str
    width: int
    height: int

    @functools.cached_property
    def data_url(self) -> str:
        """The page as a base64 data URL, encoded once however often it is sent (the
        throughput phase sends the same few pages hundreds of times)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


# Worker side --------------------------------------------------------------------------------

_OPEN: OrderedDict[tuple[str, str | None], Any] = OrderedDict()
_OPEN_MAX = 4


def _pdf(path: str, password: str | None) -> Any:
    import pypdfium2 as pdfium

    key = (path, password)
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    doc = pdfium.PdfDocument(path, password=password)
    if not _OPEN:
        # pypdfium2 warns about documents still open at exit; atexit runs last-registered
        # first, so registering after pypdfium2's own hook closes them before it looks.
        atexit.unregister(close_cached_documents)
        atexit.register(close_cached_documents)
    _OPEN[key] = doc
    while len(_OPEN) > _OPEN_MAX:
        _OPEN.popitem(last=False)[1].close()
    return doc


def close_cached_documents() -> None:
    while _OPEN:
        _OPEN.popitem()[1].close()


def _encode(image: Any, fmt: ImageFormat) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), "image/jpeg"


def render_page_sync(
    path: str,
    kind: str,
    password: str | None,
    page: int,
    target: RenderTarget,
    fmt: ImageFormat,
    variant: Variant = "clean",
    seed: int = 0,
) -> RenderedPage:
    """Rasterize one 1-based page, degraded as ``variant`` (variants.py, deterministic per
    ``seed``). Runs in a pool worker."""
    try:
        if kind == "pdf":
            pdf_page = _pdf(path, password)[page - 1]
            w, h = pdf_page.get_size()
            scale = target.scale_for(w, h, native_dpi=POINTS_PER_INCH)
            # RGB byte order from PDFium: no channel swap when Pillow takes the bitmap
            # (about a fifth of a page's render+encode time).
            image = pdf_page.render(scale=scale, rev_byteorder=True).to_pil()
            pdf_page.close()
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.seek(page - 1)
                frame = im.convert("RGB")
            scale = min(1.0, target.scale_for(*frame.size, native_dpi=200.0))
            if target.longest_side is None and target.max_side is None:
                scale = 1.0
            image = frame
            if scale < 1.0:
                size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
                image = frame.resize(size, Image.Resampling.LANCZOS)
        if variant != "clean":
            image = degrade(image, variant, seed)
        data, mime = _encode(image, fmt)
        return RenderedPage(data, mime, image.width, image.height)
    except Exception as exc:  # the message travels back to one page's failure
        raise RenderError(f"page {page}: cannot render: {exc}") from None


def resize_page_sync(page: RenderedPage, width: int, height: int, fmt: ImageFormat) -> RenderedPage:
    """A rendered page scaled to ``width`` x ``height`` (a page that does not fit its
    server, vllm/image_tokens.py). Runs in a pool worker."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(page.data)) as im:
            image = im.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
        data, mime = _encode(image, fmt)
        return RenderedPage(data, mime, image.width, image.height)
    except Exception as exc:  # the message travels back to one page's failure
        raise RenderError(f"cannot resize to {width}x{height}: {exc}") from None


def _inspect(spec: DocumentSpec, limits: FileLimits) -> Document:
    return inspect_document(spec, limits)


def _worker_start(run_pid: int, limits: FileLimits) -> None:
    die_with(run_pid)  # a worker's parent is the forkserver: tie it to the run itself
    apply_pixel_limit(limits)


# Event-loop side ----------------------------------------------------------------------------


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (the forkserver's) with the real stderr.

    The tracker hands ``sys.stderr.fileno()`` to its child; an app that captures stderr
    (Textual's stand-in says ``fileno() == -1``) makes that spawn fail with "bad value(s)
    in fds_to_keep". Once started, the tracker is reused by every later pool.
    """
    captured, sys.stderr = sys.stderr, sys.__stderr__
    try:
        resource_tracker.ensure_running()
    finally:
        sys.stderr = captured


def _discard(pool: ProcessPoolExecutor) -> None:
    """Give up a broken pool, ending every worker it still has.

    CPython 3.11 marks a pool broken without the lock ``submit`` holds, so a worker that a
    submit was spawning just then escapes the pool's own terminate, and the pool's manager
    thread waits for it forever (interpreter exit hangs on that thread). Submits run on
    this thread, so by now every spawned worker is in ``_processes``.
    """
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.kill()


class RenderPool:
    """Async front of the worker processes; one per run.

    A worker that dies (OOM killer, a PDFium crash, ``kill -9``) breaks the whole
    ProcessPoolExecutor: every call in flight and every later one would fail. So a broken
    pool is replaced at once, and each call it took down runs again, alone, in a one-worker
    quarantine pool: a page that kills that worker too is the culprit and fails by itself;
    the others never see the crash.
    """

    def __init__(self, workers: int, limits: FileLimits = DEFAULT_LIMITS) -> None:
        _start_resource_tracker()
        # forkserver: workers fork from a clean server that preloaded PDFium and Pillow,
        # never from this process with its event loop and threads.
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["ocrtui.compare.render", "pypdfium2", "PIL.Image"])
        self._workers = workers
        self._limits = limits
        self._pool = self._new_pool(workers)
        self._quarantine: ProcessPoolExecutor | None = None
        self._quarantine_lock = asyncio.Lock()

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=self._ctx,
            initializer=_worker_start,
            initargs=(os.getpid(), self._limits),
        )

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run in the pool; raises BrokenProcessPool only when the call killed its worker
        while running alone."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            if self._pool is pool:  # the first call to notice replaces it for everyone
                _discard(pool)
                self._pool = self._new_pool(self._workers)
        async with self._quarantine_lock:
            if self._quarantine is None:
                self._quarantine = self._new_pool(1)
            try:
                return await loop.run_in_executor(self._quarantine, fn, *args)
            except BrokenProcessPool:
                _discard(self._quarantine)
                self._quarantine = None
                raise

    async def inspect(self, spec: DocumentSpec) -> Document:
        try:
            return await self._call(_inspect, spec, self._limits)
        except BrokenProcessPool:
            raise DocumentError(
                f"{display_path(spec.path)}: the render worker crashed opening it (twice)"
            ) from None

    async def render(
        self, doc: Document, page: int, target: RenderTarget, fmt: ImageFormat
    ) -> RenderedPage:
        try:
            return await self._call(
                render_page_sync,
                str(doc.spec.path),
                doc.kind,
                doc.spec.password,
                page,
                target,
                fmt,
                doc.variant,
                # One seed per document page: every model gets the same degraded pixels.
                zlib.crc32(f"{doc.spec.name}#{page}".encode()),
            )
        except BrokenProcessPool:
            raise RenderError(f"page {page}: the render worker crashed (twice)") from None

    async def resize(
        self, page: RenderedPage, width: int, height: int, fmt: ImageFormat
    ) -> RenderedPage:
        try:
            return await self._call(resize_page_sync, page, width, height, fmt)
        except BrokenProcessPool:
            raise RenderError(f"resizing to {width}x{height}: the worker crashed (twice)") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._quarantine is not None:
            self._quarantine.shutdown(wait=False, cancel_futures=True)


def rendered_size(
    path: Path, page: int, target: RenderTarget, kind: str = "pdf"
) -> tuple[int, int]:
    """Size a page would have, rendering in this process (tests and benchmarks)."""
    r = render_page_sync(str(path), kind, None, page, target, "jpeg")
    return r.width, r.height
