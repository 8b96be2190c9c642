import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from ocrtui.compare.variants import VARIANTS, degrade, parse_variants
from ocrtui.errors import InputError


def _page() -> Image.Image:
    # 10 pt text at 200 DPI is about 28 px high.
    im = Image.new("RGB", (600, 800), "white")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=28)
    for y in range(30, 760, 40):
        draw.text((30, y), "Lorem ipsum 4,500.00 dolor", fill="black", font=font)
    return im


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_is_deterministic_per_seed_and_keeps_the_size(variant) -> None:
    page = _page()
    a = degrade(page, variant, seed=7)
    assert a.size == page.size and a.mode == "RGB"
    assert a.tobytes() == degrade(page, variant, seed=7).tobytes()
    if variant == "clean":
        assert a.tobytes() == page.tobytes()
        return
    assert a.tobytes() != page.tobytes()
    assert a.tobytes() != degrade(page, variant, seed=8).tobytes()


def test_degrading_leaves_the_input_alone() -> None:
    page = _page()
    before = page.tobytes()
    for v in VARIANTS:
        degrade(page, v, seed=1)
    assert page.tobytes() == before


def test_degraded_pages_are_still_pages() -> None:
    # Mostly white with dark text left: a variant must degrade, not destroy.
    page = _page()
    for v in VARIANTS:
        grey = np.asarray(degrade(page, v, seed=3).convert("L"), dtype=np.float32)
        assert 150 < grey.mean() < 255, v
        assert grey.min() < 120, v


def test_parse_variants() -> None:
    assert parse_variants("clean,scan, Blur,clean") == ("clean", "scan", "blur")
    with pytest.raises(InputError, match="unknown 'sepia'"):
        parse_variants("clean,sepia")
    with pytest.raises(InputError, match="an empty name"):
        parse_variants("clean,,blur")
