"""The run directory's page files: every page image exactly as the models received it, and
every page's reference text, so the run directory alone can show a page (report.html).

    pages/<doc>/<page>-<target>.jpg   the rendered bytes sent to the models (.png with
                                      compare.image_format = "png"), once per document,
                                      page and render target
    pages/<doc>/<page>.ref.txt        the page's reference text, when it has one

``<doc>`` is the document name made safe for any file system (ASCII letters, digits and
``._-``, at most 40 characters) plus 8 hex digits of the name's SHA-1, so two names never
share a folder; ``<target>`` names the render target (``dpi200-max3500``, ``side1540``).
A file is written once (to a temporary name, then renamed), so two models sharing a target
and a killed run never leave a torn file. Blocking: call these off the event loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from ocrtui.compare.render import RenderedPage, RenderTarget

PAGES_DIR = "pages"
REFERENCE_SUFFIX = ".ref.txt"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png"}


def doc_slug(name: str) -> str:
    """A folder name for a document name: readable, safe anywhere, unique per name."""
    readable = _UNSAFE.sub("_", name).strip("._")[:40] or "doc"
    return f"{readable}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


def target_slug(target: RenderTarget) -> str:
    parts = []
    if target.dpi is not None:
        parts.append(f"dpi{target.dpi:g}")
    if target.max_side is not None:
        parts.append(f"max{target.max_side}")
    if target.longest_side is not None:
        parts.append(f"side{target.longest_side}")
    return "-".join(parts) or "native"


def doc_dir(run_dir: Path, doc: str) -> Path:
    return run_dir / PAGES_DIR / doc_slug(doc)


def _write_once(path: Path, data: bytes) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_page_image(
    run_dir: Path, doc: str, page: int, target: RenderTarget, image: RenderedPage
) -> Path:
    """Keep a rendered page (the bytes a model is sent); a no-op when it is already kept."""
    ext = _EXTENSIONS.get(image.mime, ".img")
    path = doc_dir(run_dir, doc) / f"{page}-{target_slug(target)}{ext}"
    _write_once(path, image.data)
    return path


def save_references(run_dir: Path, doc: str, references: dict[int, str]) -> None:
    """Keep a document's reference texts (``Document.references``)."""
    for page, text in references.items():
        _write_once(doc_dir(run_dir, doc) / f"{page}{REFERENCE_SUFFIX}", text.encode("utf-8"))


def kept_images(run_dir: Path, doc: str) -> dict[int, list[Path]]:
    """A document's kept images by page, one per render target, smallest file first."""
    out: dict[int, list[Path]] = {}
    try:
        files = list(doc_dir(run_dir, doc).iterdir())
    except FileNotFoundError:
        return out
    for f in files:
        page, dash, _ = f.name.partition("-")
        if dash and page.isdigit() and f.suffix in (".jpg", ".png"):
            out.setdefault(int(page), []).append(f)
    for found in out.values():
        found.sort(key=lambda f: (f.stat().st_size, f.name))
    return out


def read_reference(run_dir: Path, doc: str, page: int) -> str | None:
    try:
        return (doc_dir(run_dir, doc) / f"{page}{REFERENCE_SUFFIX}").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
