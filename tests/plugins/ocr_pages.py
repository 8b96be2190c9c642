"""Page images and chat messages for the simulator's OCR tests."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"


def page_png(lines: list[str] | None = None, size: tuple[int, int] = (600, 300)) -> bytes:
    """A white page with the given lines of text (CJK-capable font)."""
    img = Image.new("RGB", size, "white")
    if lines:
        draw = ImageDraw.Draw(img)
        font = ImageFont.truetype(FONT, 36)
        for i, line in enumerate(lines):
            draw.text((40, 40 + 80 * i), line, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_message(*pngs: bytes, text: str | None = "Text Recognition:") -> list[Any]:
    content: list[dict[str, object]] = [
        {"type": "image_url", "image_url": {"url": data_url(p)}} for p in pngs
    ]
    if text:
        content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]
