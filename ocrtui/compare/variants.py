"""Degraded variants of a rendered page: the same page as a scan, skewed, blurred, JPEG'd or
at low resolution, so the models can be ranked on clean and degraded copies alike (rankings
flip between them).

:func:`degrade` is pure and deterministic per seed: the same image, variant and seed give
the same pixels; each variant draws from its own stream (the seed mixed with its name), so
adding a variant never changes another's. Pillow and numpy only: augraphy 8.2.6's print/scan
pipeline pulls in a second OpenCV (opencv-python beside opencv-python-headless), numba,
scikit-learn and scikit-image, and its default pipeline took 5-18 s an A4 page at 200 DPI
on this project's 2-core machine (3.7 s to import), against 0.1-0.9 s a variant here.

- ``clean``: the page as rendered;
- ``scan``: a photocopy: grey, contrast and brightness off, a slight tilt (under 1°),
  sensor noise and a soft focus;
- ``skew``: rotated 1.5° to 4° either way, white filling the corners;
- ``blur``: Gaussian blur of radius 1.2 to 2 px;
- ``jpeg``: re-encoded at JPEG quality 12 to 25;
- ``lowres``: down to 40 % to 50 % of its size and back up (a 200 DPI page read at 80-100 DPI).
"""

from __future__ import annotations

import io
import random
import zlib
from typing import TYPE_CHECKING, Literal, get_args

from ocrtui.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

Variant = Literal["clean", "scan", "skew", "blur", "jpeg", "lowres"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)


def parse_variants(spec: str) -> tuple[Variant, ...]:
    """``--variants clean,scan,skew`` as the variants, in order, each once."""
    out: list[Variant] = []
    for raw in spec.split(","):
        name = raw.strip().lower()
        if not name:
            raise InputError(f"--variants {spec!r}: an empty name (use {','.join(VARIANTS)})")
        variant = next((v for v in VARIANTS if v == name), None)
        if variant is None:
            raise InputError(f"--variants: unknown {name!r} (use {', '.join(VARIANTS)})")
        if variant not in out:
            out.append(variant)
    return tuple(out)


def _rng(variant: Variant, seed: int) -> random.Random:
    return random.Random(zlib.crc32(variant.encode()) ^ (seed & 0xFFFFFFFF) ^ (seed >> 32))


def degrade(image: Image.Image, variant: Variant, seed: int = 0) -> Image.Image:
    """The page as ``variant`` (see the module docstring); RGB in, RGB out, same size."""
    # Imported here: the CLI parses --variants through this module, the render workers
    # alone degrade pages.
    from PIL import Image, ImageFilter

    page = image.convert("RGB")
    if variant == "clean":
        return page
    rng = _rng(variant, seed)
    if variant == "skew":
        angle = rng.uniform(1.5, 4.0) * rng.choice((-1, 1))
        return page.rotate(angle, Image.Resampling.BICUBIC, fillcolor="white")
    if variant == "blur":
        return page.filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 2.0)))
    if variant == "jpeg":
        buf = io.BytesIO()
        page.save(buf, "JPEG", quality=rng.randint(12, 25))
        buf.seek(0)
        with Image.open(buf) as decoded:
            return decoded.convert("RGB")
    if variant == "lowres":
        scale = rng.uniform(0.4, 0.5)
        small = page.resize(
            (max(1, round(page.width * scale)), max(1, round(page.height * scale))),
            Image.Resampling.BILINEAR,
        )
        return small.resize(page.size, Image.Resampling.BILINEAR)
    return _scan(page, rng)


def _scan(page: Image.Image, rng: random.Random) -> Image.Image:
    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter

    grey = page.convert("L")
    grey = ImageEnhance.Contrast(grey).enhance(rng.uniform(1.2, 1.5))
    grey = ImageEnhance.Brightness(grey).enhance(rng.uniform(0.9, 1.05))
    grey = grey.rotate(rng.uniform(-0.8, 0.8), Image.Resampling.BILINEAR, fillcolor=255)
    noise = np.random.default_rng(rng.getrandbits(64)).normal(
        0.0, rng.uniform(8, 14), grey.size[::-1]
    )
    pixels = np.clip(np.asarray(grey, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    noisy = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.8)))
    return noisy.convert("RGB")
