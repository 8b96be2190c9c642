"""The page pane: the rendered page the models received, beside their outputs.

The image is the exact file the runner kept under ``RUN_DIR/pages/``
(:mod:`ocrtui.compare.page_files`). Finding, decoding and scaling it are blocking, so they
run in a thread worker that posts the result back, then decodes the neighbouring pages
ahead; the decoded pages live in a :class:`PageImages` LRU of ``CACHED_PAGES`` (the page on
screen and its two neighbours), each scaled to the pane's pixel size, so memory stays
bounded whatever the run's size.

Terminal graphics are textual-image's: ``auto`` picks Sixel or Kitty's graphics protocol
when the terminal answers their queries at start (textual-image asks once, at import,
before Textual owns the terminal), half-blocks on other terminals, and Unicode blocks when
there is no terminal at all (half-blocks are drawn in the loader thread, the others by
textual-image's widgets when they render). ``[ui] page_graphics`` forces one;
:meth:`PagePane.cycle_graphics` switches at run time. The models return text only, with no
boxes, so a diff line cannot be located on the page: the pane says so rather than guessing.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image as PILImage
from rich.console import Console
from rich.segment import Segments
from textual import work
from textual.app import ComposeResult
from textual.containers import Center
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import get_current_worker
from textual_image.renderable.halfcell import Image as HalfcellRenderable
from textual_image.widget import HalfcellImage, Image, SixelImage, TGPImage

from ocrtui.compare.page_files import kept_images
from ocrtui.tui.widgets.format import visible

Graphics = Literal["auto", "kitty", "sixel", "halfblock"]
GRAPHICS: tuple[Graphics, ...] = ("auto", "kitty", "sixel", "halfblock")
_IMAGE_WIDGET: dict[Graphics, Callable[..., Widget]] = {
    "auto": Image,
    "kitty": TGPImage,
    "sixel": SixelImage,
    "halfblock": HalfcellImage,
}
CACHED_PAGES = 3
# Pixels per cell the scaled image aims at: enough for Sixel/Kitty on common fonts, and
# half-blocks (1x2 per cell) downscale from it cheaply.
CELL_PX = (10, 20)
DEFAULT_CELLS = (60, 40)
NO_LINE_POSITIONS = "no line positions: the models return text only"


class PageImages:
    """Decoded, scaled pages: the last ``size`` asked for. Thread-safe (loaders are threads)."""

    def __init__(self, size: int = CACHED_PAGES) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._images: OrderedDict[tuple[Path, tuple[int, int]], PILImage.Image] = OrderedDict()

    def __len__(self) -> int:
        return len(self._images)

    def get(self, path: Path, box: tuple[int, int]) -> PILImage.Image:
        """The page at ``path`` fitted into ``box`` pixels. Blocking: decodes on a miss."""
        key = (path, box)
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        image = decode(path, box)
        with self._lock:
            self._images[key] = image
            while len(self._images) > self.size:
                self._images.popitem(last=False)
        return image

    def clear(self) -> None:
        with self._lock:
            self._images.clear()


@dataclass(frozen=True)
class HalfBlocks:
    segments: Segments
    size: tuple[int, int]  # cells


def draw_halfblocks(image: PILImage.Image, cells: tuple[int, int]) -> HalfBlocks:
    """textual-image's half-block rendering, done ahead (it costs tens of ms per page on a
    busy CPU, one Rich style per cell): the loop only pastes the segments."""
    cols, rows = cells
    fitted = image.copy()
    fitted.thumbnail((cols, rows * 2))  # a half-block pixel is about square
    size = (fitted.width, -(-fitted.height // 2))
    console = Console(width=cols, height=rows, color_system="truecolor", file=io.StringIO())
    options = console.options.update(width=size[0], height=size[1])
    return HalfBlocks(Segments(console.render(HalfcellRenderable(fitted, *size), options)), size)


def decode(path: Path, box: tuple[int, int]) -> PILImage.Image:
    with PILImage.open(path) as im:
        im.draft("RGB", box)  # JPEG: decode at a reduced scale when that is enough
        out = im.convert("RGB")
    out.thumbnail(box)
    return out


class PagePane(Widget):
    """Shows one page of the run; :meth:`show_page` asks, a thread loads."""

    DEFAULT_CSS = """
    PagePane { border: round $panel-lighten-2; width: 1fr; height: 1fr; }
    PagePane #page-note { color: $text-muted; width: 1fr; }
    PagePane Center { height: 1fr; }
    PagePane Center > * { width: auto; height: 1fr; }
    """

    class Loaded(Message):
        def __init__(
            self,
            key: str,
            image: PILImage.Image | None,
            note: str,
            drawn: HalfBlocks | None = None,
        ) -> None:
            super().__init__()
            self.key = key
            self.image = image
            self.note = note
            self.drawn = drawn

    def __init__(self, graphics: Graphics = "auto", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.graphics: Graphics = graphics
        self.images = PageImages()
        self.key: str | None = None  # the page asked for, "doc#page"
        self.shown: str | None = None  # the page on screen
        self._where: tuple[Path, str, int] | None = None
        self._neighbours: tuple[tuple[str, int], ...] = ()
        self._image: PILImage.Image | None = None
        self._drawn: HalfBlocks | None = None
        self.border_title = "page"
        self.border_subtitle = NO_LINE_POSITIONS

    def compose(self) -> ComposeResult:
        yield Static("No page yet.", id="page-note")
        # Hidden while empty: an empty container renders its own name ("Center#page-frame").
        frame = Center(id="page-frame")
        frame.display = False
        yield frame

    def show_page(
        self, run_dir: Path, doc: str, page: int, neighbours: Sequence[tuple[str, int]] = ()
    ) -> None:
        """Load the page (off the loop) unless it is the one asked for already; then the
        neighbours (doc, page), so that moving to one shows it at once."""
        key = f"{doc}#{page}"
        if key == self.key:
            return
        self.key = key
        self._where = (run_dir, doc, page)
        self._neighbours = tuple(neighbours)[: CACHED_PAGES - 1]
        self.border_title = Content(visible(f"page · {doc} p.{page}"))  # not markup
        self.reload()

    def reload(self) -> None:
        if self._where is None or not self.display:
            return
        w, h = self.content_size
        if not w or not h:  # not laid out yet: a guess, rescaled on the first resize
            w, h = DEFAULT_CELLS
        cells = (w, max(1, h - 1))  # the note takes a line
        self._load(*self._where, cells, self.graphics, self._neighbours)

    @work(thread=True, exclusive=True, group="page-image", exit_on_error=False)
    def _load(
        self,
        run_dir: Path,
        doc: str,
        page: int,
        cells: tuple[int, int],
        graphics: Graphics,
        neighbours: tuple[tuple[str, int], ...],
    ) -> None:
        box = (cells[0] * CELL_PX[0], cells[1] * CELL_PX[1])
        self._load_shown(run_dir, doc, page, box, cells if graphics == "halfblock" else None)
        for n_doc, n_page in neighbours:
            if get_current_worker().is_cancelled:
                return  # another page was asked for
            paths = kept_images(run_dir, n_doc).get(n_page)
            if paths:
                with contextlib.suppress(OSError):
                    self.images.get(paths[0], box)

    def _load_shown(
        self,
        run_dir: Path,
        doc: str,
        page: int,
        box: tuple[int, int],
        halfblock_cells: tuple[int, int] | None,
    ) -> None:
        key = f"{doc}#{page}"
        paths = kept_images(run_dir, doc).get(page)
        if not paths:
            self.post_message(self.Loaded(key, None, f"No kept image for {doc} p.{page} yet."))
            return
        try:
            image = self.images.get(paths[0], box)
        except OSError as exc:
            self.post_message(self.Loaded(key, None, f"{paths[0].name}: {exc}"))
            return
        note = f"{paths[0].name} · {image.width}×{image.height} px"
        if len(paths) > 1:
            note += f" · 1 of {len(paths)} targets"
        drawn = None if halfblock_cells is None else draw_halfblocks(image, halfblock_cells)
        self.post_message(self.Loaded(key, image, note, drawn))

    async def on_page_pane_loaded(self, message: PagePane.Loaded) -> None:
        message.stop()
        if message.key != self.key:
            return  # an older request finished after a newer one was made
        self.shown = message.key
        self._image = message.image
        self._drawn = message.drawn
        # Plain text (Content, not markup): file names and errors come from outside.
        self.query_one("#page-note", Static).update(Content(visible(message.note)))
        await self._mount_image()

    async def _mount_image(self) -> None:
        frame = self.query_one("#page-frame", Center)
        await frame.remove_children()  # before mounting: the new one has the same id
        if self.graphics == "halfblock" and self._drawn is not None:
            drawn = Static(self._drawn.segments, id="page-image")
            drawn.styles.width, drawn.styles.height = self._drawn.size
            await frame.mount(drawn)
        elif self._image is not None:
            await frame.mount(_IMAGE_WIDGET[self.graphics](self._image, id="page-image"))
        frame.display = bool(frame.children)

    def cycle_graphics(self) -> Graphics:
        self.graphics = GRAPHICS[(GRAPHICS.index(self.graphics) + 1) % len(GRAPHICS)]
        if self.graphics == "halfblock" and self._drawn is None:
            self.reload()  # drawn in the loader thread
        else:
            self.call_later(self._mount_image)
        return self.graphics

    def on_resize(self) -> None:
        if self.shown is not None and self.shown == self.key:
            self.reload()  # rescaled for the new size (the cache keys on it)
