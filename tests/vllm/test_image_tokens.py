"""Image tokens predicted from the processors' rules, against what vLLM 0.26.0's own
processors counted for the same sizes, and the resize that makes a page fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrtui.config import ModelConfig
from ocrtui.published import GLM_TEXT_PROMPT
from ocrtui.vllm.image_tokens import (
    Limits,
    encoder_cache_tokens,
    fit_page,
    image_tokens,
    max_image_tokens,
    processor_for,
)

GLM = processor_for("zai-org/GLM-OCR")
LIGHTON = processor_for("lightonai/LightOnOCR-2-1B")
FIXTURES = Path(__file__).parent / "fixtures/seed_models"
BOUNDED = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def _model(model_id: str, *extra: str) -> ModelConfig:
    return ModelConfig(
        name="m", model=model_id, port=8000, gpu_memory_utilization=0.4, extra_args=extra
    )


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((1694, 2192), 4680),  # 200 DPI Letter: grid 1x156x120
        ((2550, 3300), 6052),
        ((2705, 3500), 6052),
        ((3500, 3500), 6084),
        ((1000, 1000), 1296),
        ((867, 6771), 6132),  # the tall page of vLLM #34040
    ],
)
def test_glm_ocr_image_tokens_are_vllms(size: tuple[int, int], tokens: int) -> None:
    assert GLM is not None
    assert image_tokens(GLM, *size) == tokens


def test_lighton_image_tokens_drop_the_break_tokens() -> None:
    assert LIGHTON is not None
    assert image_tokens(LIGHTON, 1191, 1540) == 55 * 43 == 2365


def test_prompt_tokens_add_the_templates_text() -> None:
    assert GLM is not None and LIGHTON is not None
    roomy = Limits(encoder_cache=100_000, max_model_len=None, max_tokens=0)
    assert fit_page(GLM, GLM_TEXT_PROMPT, roomy, 1694, 2192).prompt_tokens == 4693
    assert fit_page(LIGHTON, None, roomy, 1191, 1540).prompt_tokens == 2377
    # A prompt vLLM was never measured with has no prediction.
    assert fit_page(GLM, "Table Recognition:", roomy, 1694, 2192).prompt_tokens is None


def test_the_encoder_cache_is_the_largest_square_unless_the_batch_is_larger() -> None:
    assert GLM is not None and LIGHTON is not None
    assert max_image_tokens(GLM) == 6084
    assert max_image_tokens(LIGHTON) == 3025
    assert encoder_cache_tokens(_model("zai-org/GLM-OCR"), GLM) == 6084
    flagged = _model("zai-org/GLM-OCR", "--max-num-batched-tokens", "8192")
    assert encoder_cache_tokens(flagged, GLM) == 8192


def test_a_page_over_the_encoder_cache_is_resized_to_fit() -> None:
    assert GLM is not None
    fit = fit_page(GLM, GLM_TEXT_PROMPT, Limits(6084, 24576, 8192), 867, 6771)
    assert fit.refused is None and fit.resized_from == (867, 6771)
    assert fit.image_tokens <= 6084 and fit.image_tokens == image_tokens(GLM, fit.width, fit.height)
    assert fit.resized == f"867x6771 -> {fit.width}x{fit.height}"
    assert fit.prompt_tokens == fit.image_tokens + 13
    # The page that fits is sent as it is.
    same = fit_page(GLM, GLM_TEXT_PROMPT, Limits(6084, 24576, 8192), 1694, 2192)
    assert (same.width, same.height, same.resized) == (1694, 2192, None)


def test_a_page_is_resized_to_leave_room_for_max_tokens() -> None:
    assert GLM is not None
    fit = fit_page(GLM, GLM_TEXT_PROMPT, Limits(6084, 8192, 4096), 2550, 3300)
    assert fit.resized_from is not None and fit.prompt_tokens is not None
    assert fit.prompt_tokens + 4096 <= 8192


def test_with_max_tokens_capped_to_max_model_len_a_page_goes_as_it_is() -> None:
    """No size leaves room for the whole max_tokens; vLLM caps the output, so the page is
    sent unchanged rather than shrunk to nothing."""
    assert GLM is not None
    fit = fit_page(GLM, GLM_TEXT_PROMPT, Limits(6084, 8192, 8192), 1694, 2192)
    assert (fit.width, fit.height, fit.resized, fit.refused) == (1694, 2192, None, None)
    # Only what vLLM refuses (no room for one output token) is resized for that.
    short = fit_page(GLM, GLM_TEXT_PROMPT, Limits(6084, 4000, 4000), 1694, 2192)
    assert short.prompt_tokens is not None and short.prompt_tokens < 4000 < 4693
    assert short.resized == f"1694x2192 -> {short.width}x{short.height}"


def test_a_page_that_no_size_fits_is_refused() -> None:
    assert GLM is not None
    full = fit_page(GLM, GLM_TEXT_PROMPT, Limits(6084, 14, 14), 1694, 2192)
    assert full.refused == (
        "1694x2192 page makes 4680 image tokens, more than the 0 that max_model_len 14 leaves "
        "beside 13 prompt text tokens and one output token, and no smaller size fits"
    )
    thin = fit_page(GLM, GLM_TEXT_PROMPT, Limits(6084, 24576, 8192), 10, 4000)
    assert thin.refused == "10x4000 page: aspect ratio above 200, which the processor refuses"


@BOUNDED
@given(
    which=st.sampled_from(["glm", "lighton"]),
    width=st.integers(1, 12000),
    height=st.integers(1, 12000),
    cache=st.integers(1, 9000),
    max_model_len=st.one_of(st.none(), st.integers(1, 30000)),
    max_tokens=st.integers(0, 9000),
)
def test_a_page_is_sent_only_when_it_fits(
    which: str,
    width: int,
    height: int,
    cache: int,
    max_model_len: int | None,
    max_tokens: int,
) -> None:
    assert GLM is not None and LIGHTON is not None
    p = GLM if which == "glm" else LIGHTON
    prompt = GLM_TEXT_PROMPT if p is GLM else None
    fit = fit_page(p, prompt, Limits(cache, max_model_len, max_tokens), width, height)
    if fit.refused is not None:
        return
    assert fit.image_tokens == image_tokens(p, fit.width, fit.height) <= cache
    assert fit.prompt_tokens is not None
    if max_model_len is not None:
        assert fit.prompt_tokens < max_model_len  # room for one output token at least
    if fit.resized_from is None:
        assert (fit.width, fit.height) == (width, height)
    else:
        assert fit.resized_from == (width, height)
        assert fit.width <= width and fit.height <= height


def test_the_processor_table_holds_the_published_files() -> None:
    assert GLM is not None and LIGHTON is not None
    glm = json.loads((FIXTURES / "GLM-OCR/preprocessor_config.json").read_text())
    assert (GLM.min_pixels, GLM.max_pixels) == (
        glm["size"]["shortest_edge"],
        glm["size"]["longest_edge"],
    )
    assert (GLM.patch_size, GLM.temporal_patch_size, GLM.merge_size) == (
        glm["patch_size"],
        glm["temporal_patch_size"],
        glm["merge_size"],
    )
    lighton = json.loads((FIXTURES / "LightOnOCR-2-1B/preprocessor_config.json").read_text())
    processor = json.loads((FIXTURES / "LightOnOCR-2-1B/processor_config.json").read_text())
    config = json.loads((FIXTURES / "LightOnOCR-2-1B/config.json").read_text())
    # vLLM sizes LightOnOCR images by the vision config's image_size, the processor by
    # longest_edge: the same 1540.
    assert LIGHTON.longest_edge == lighton["size"]["longest_edge"]
    assert LIGHTON.longest_edge == config["vision_config"]["image_size"]
    assert (LIGHTON.patch_size, LIGHTON.merge_size) == (
        lighton["patch_size"],
        processor["spatial_merge_size"],
    )
