"""Documents to compare: PDFs, images and folders, opened and checked one by one.

A document that cannot be used (missing, unreadable, corrupt, encrypted without the right
password, pages out of range, unsupported type) becomes a per-document error; the run
goes on with the others. :func:`inspect_document` touches PDFium, which is not thread-safe,
so it runs in the render process pool (see render.py), never on the event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from ocrtui.compare.pages import ALL_PAGES, PageRangeError, PageSpec
from ocrtui.userfiles import (
    DEFAULT_LIMITS,
    MB,
    FileLimits,
    UserFileError,
    check_file,
    check_pixels,
    display_path,
    read_text,
)

if TYPE_CHECKING:
    from ocrtui.compare.page_tests import PageTest
    from ocrtui.compare.variants import Variant

Category = Literal["zh_contract", "en_latex", "table", "id_card", "handwriting", "other"]
CATEGORIES: tuple[str, ...] = get_args(Category)
TEXT_LAYER = "text-layer"
PDF_SUFFIXES = frozenset({".pdf"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
SUPPORTED_SUFFIXES = PDF_SUFFIXES | IMAGE_SUFFIXES


class DocumentError(Exception):
    """One document cannot be used; the message says why in user terms."""


@dataclass(frozen=True)
class DocumentSpec:
    """What the user asked for; nothing is opened yet."""

    path: Path
    name: str
    category: Category = "other"
    pages: PageSpec = ALL_PAGES
    # "text-layer", a path pattern with {page} (relative to the suite), or None: sidecars
    # next to the document (X.p3.md / X.p3.txt, or X.md / X.txt for one-page documents).
    reference: str | None = None
    critical: tuple[str, ...] = ()
    # Yes/no tests on its pages (page_tests.py), each naming its page.
    tests: tuple[PageTest, ...] = ()
    # Never written to any run file.
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Suite:
    """A named list of documents: a suite file (suite.py) or a benchmark's (bench_suites.py)."""

    name: str
    path: Path
    documents: tuple[DocumentSpec, ...]
    # Tests the file has that ocrtui has no kind for (bench_suites.py), by reason -> count.
    skipped: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Document:
    """An opened, checked document: which pages to run and their references."""

    spec: DocumentSpec
    kind: Literal["pdf", "image"]
    page_count: int
    pages: tuple[int, ...]
    references: dict[int, str]
    # A degraded copy (variants.py): its pages are rendered, then degraded; its name is
    # NAME@VARIANT, so its results are apart from the clean document's.
    variant: Variant = "clean"

    @property
    def name(self) -> str:
        return self.spec.name if self.variant == "clean" else f"{self.spec.name}@{self.variant}"


def expand_inputs(
    paths: list[str],
    *,
    pages: PageSpec = ALL_PAGES,
    reference: str | None = None,
    password: str | None = None,
    base: Path | None = None,
) -> list[DocumentSpec]:
    """Files as given, folders as their supported files in sorted order.

    Names are the paths as given (stable across ``--resume``); relative paths are read from
    ``base`` when set (the directory the run was started in). Problems with a path are not
    raised here: they surface per document when it is inspected.
    """
    specs: list[DocumentSpec] = []
    for raw in paths:
        given = Path(raw).expanduser()
        full = given if base is None or given.is_absolute() else base / given
        files = [(given, full)]
        if full.is_dir():
            with contextlib.suppress(OSError):  # reported as unreadable when inspected
                files = sorted(
                    (given / c.name, c)
                    for c in full.iterdir()
                    if c.is_file() and c.suffix.lower() in SUPPORTED_SUFFIXES
                )
        for name, f in files:
            specs.append(
                DocumentSpec(
                    path=f,
                    name=display_path(name),
                    pages=pages,
                    reference=reference,
                    password=password,
                )
            )
    return unique_names(specs)


def unique_names(specs: list[DocumentSpec]) -> list[DocumentSpec]:
    seen: dict[str, int] = {}
    out = []
    for s in specs:
        n = seen.get(s.name, 0) + 1
        seen[s.name] = n
        if n > 1:
            s = DocumentSpec(**{**s.__dict__, "name": f"{s.name}#{n}"})
        out.append(s)
    return out


def inspect_document(spec: DocumentSpec, limits: FileLimits = DEFAULT_LIMITS) -> Document:
    """Open the document, select its pages and load references. Raises DocumentError."""
    path = spec.path
    shown = display_path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise DocumentError(f"{shown}: is a folder with no supported files")
    if suffix not in SUPPORTED_SUFFIXES:
        kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise DocumentError(f"{shown}: unsupported file type {suffix or '(none)'} (use {kinds})")
    try:
        size = check_file(path, max_bytes=limits.max_file_bytes, limit_key="compare.max_file_mb")
        # Readable by us (permissions), without reading: never blocks, the file is regular.
        with path.open("rb"):
            pass
    except UserFileError as exc:
        raise DocumentError(str(exc)) from None
    except OSError as exc:
        raise DocumentError(f"{shown}: cannot read: {exc.strerror}") from None
    if size == 0:
        raise DocumentError(f"{shown}: empty file")
    if suffix in PDF_SUFFIXES:
        kind: Literal["pdf", "image"] = "pdf"
        count, text_layer = _inspect_pdf(spec, want_text=spec.reference == TEXT_LAYER)
    else:
        kind = "image"
        count, text_layer = _inspect_image(path, limits), {}
        if spec.reference == TEXT_LAYER:
            raise DocumentError(f"{shown}: reference 'text-layer' needs a PDF, not an image")
    try:
        pages = tuple(spec.pages.select(count))
    except PageRangeError as exc:
        raise DocumentError(f"{shown}: {exc}") from None
    beyond = sorted({t.page for t in spec.tests if t.page > count})
    if beyond:
        raise DocumentError(
            f"{shown}: tests for page(s) {_pages_text(beyond)} but it has {count} page(s)"
        )
    if spec.reference == TEXT_LAYER:
        refs = {p: text_layer[p] for p in pages}
        empty = [p for p in pages if not refs[p].strip()]
        if empty:
            raise DocumentError(
                f"{shown}: reference 'text-layer' but page(s) {_pages_text(empty)} have no text "
                "layer (a scan?); give sidecar references instead"
            )
    else:
        try:
            refs = _sidecar_references(spec, pages, count)
        except UserFileError as exc:
            raise DocumentError(f"{shown}: {exc}") from None
    return Document(spec, kind, count, pages, refs)


def _pages_text(pages: list[int]) -> str:
    return ",".join(str(p) for p in pages[:10]) + ("…" if len(pages) > 10 else "")


def _inspect_pdf(spec: DocumentSpec, *, want_text: bool) -> tuple[int, dict[int, str]]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(spec.path), password=spec.password)
    except pdfium.PdfiumError as exc:
        msg = str(exc)
        if "password" in msg.lower():
            hint = "wrong password" if spec.password else "encrypted: give --password"
            raise DocumentError(f"{display_path(spec.path)}: {hint}") from None
        reason = msg.rstrip(".")
        raise DocumentError(f"{display_path(spec.path)}: not a readable PDF ({reason})") from None
    try:
        count = len(pdf)
        texts: dict[int, str] = {}
        if want_text:
            for i in range(count):
                page = pdf[i]
                tp = page.get_textpage()
                texts[i + 1] = tp.get_text_range().replace("\r\n", "\n")
                tp.close()
                page.close()
        return count, texts
    finally:
        pdf.close()


def _inspect_image(path: Path, limits: FileLimits) -> int:
    from PIL import Image, UnidentifiedImageError

    shown = display_path(path)
    try:
        with Image.open(path) as im:
            check_pixels(shown, 1, im.size, limits)
            im.verify()
        with Image.open(path) as im:
            count = int(getattr(im, "n_frames", 1))
            for i in range(1, count):  # headers only: every frame of a TIFF has its own size
                im.seek(i)
                check_pixels(shown, i + 1, im.size, limits)
            return count
    except UserFileError as exc:
        raise DocumentError(str(exc)) from None
    except Image.DecompressionBombError:  # Pillow's own check: twice its MAX_IMAGE_PIXELS
        raise DocumentError(
            f"{shown}: image over the {limits.max_page_pixels / MB:.0f} Mpx limit "
            "(compare.max_page_mpx)"
        ) from None
    except UnidentifiedImageError:
        raise DocumentError(f"{shown}: not a readable image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DocumentError(f"{shown}: damaged image ({exc})") from None


def _sidecar_references(spec: DocumentSpec, pages: tuple[int, ...], count: int) -> dict[int, str]:
    """Raises UserFileError (naming the reference file) for one that cannot be read."""
    refs: dict[int, str] = {}
    for p in pages:
        if spec.reference is not None:
            try:
                refs[p] = read_text(Path(spec.reference.replace("{page}", str(p))))
            except UserFileError as exc:
                raise UserFileError(f"reference for page {p}: {exc}") from None
            continue
        stem = spec.path.with_suffix("")
        candidates = [Path(f"{stem}.p{p}{ext}") for ext in (".md", ".txt")]
        if count == 1:
            candidates += [Path(f"{stem}{ext}") for ext in (".md", ".txt")]
        for c in candidates:
            if c.exists():
                try:
                    refs[p] = read_text(c)
                except UserFileError as exc:
                    raise UserFileError(f"reference: {exc}") from None
                break
    return refs
