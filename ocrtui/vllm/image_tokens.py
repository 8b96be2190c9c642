"""The tokens a page costs a model, predicted before it is sent, and the size that fits.

The processor parameters are published data (``published.IMAGE_PROCESSORS``); the rules
are the ones vLLM 0.26.0 counts a single image's placeholder tokens with:

* ``smart_resize`` (GLM-OCR): transformers' ``smart_resize``
  (``models/glm4v/image_processing_glm4v.py``; ``glm46v``'s is the same) called as vLLM's
  ``glm4_1v.py`` ``_get_vision_info`` calls it for one image: the frame count raised to
  ``temporal_patch_size``, sides rounded to multiples of ``patch_size * merge_size``, the
  area over the frames kept within ``[min_pixels, max_pixels]``; tokens = grid_h * grid_w /
  merge_size^2 (one temporal step). Python's ``round`` (half to even) as there.
* ``pixtral`` (LightOnOCR-2): ``pixtral.py`` ``PixtralHFEncoderInfo.get_patch_grid_size``:
  scaled down (floor) to fit ``longest_edge``, then one token per ``patch_size *
  merge_size`` cell, rounded up; vLLM's ``lightonocr.py`` drops the break/end tokens.

vLLM refuses a request whose image has more tokens than its encoder cache (``The decoder
prompt contains a(n) image item with N embedding tokens, which exceeds the pre-allocated
encoder cache size M``) and one whose prompt leaves no room for an output token in
``max_model_len`` (``v1/engine/input_processor.py``); a prompt that leaves less than
``max_tokens`` gets a capped output (``entrypoints/serve/utils/api_utils.py``
``get_max_tokens``). The cache holds ``max(max_num_batched_tokens, the most tokens one
image can have)`` (``v1/core/encoder_cache_manager.py`` ``compute_mm_encoder_budget``),
where that most is counted on the size ``get_image_size_with_most_features`` gives: a
square, which is not the worst shape (GLM-OCR: a 867x6771 page makes 6132 tokens, the
square 6084). Without
``--max-num-batched-tokens`` this module takes the per-image most alone: vLLM's default
batch is 2048 tokens on GPUs under 70 GiB (an A40), below it.

:func:`fit_page` is the one decision: send as is, send resized to the largest size that
fits (sides scaled together) so that the whole ``max_tokens`` fits where a size does, or
refuse it, only where vLLM would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatch

from ocrtui.config import ModelConfig
from ocrtui.published import IMAGE_PROCESSORS, ImageProcessor
from ocrtui.vllm.flags import serve_options

# transformers' smart_resize raises past this aspect ratio; vLLM then answers 400.
MAX_ASPECT = 200
# vLLM's get_image_size_with_most_features asks for a 9999999-pixel square.
_HUGE = 9999999
# Each step of the search for a size that fits scales both sides by this much.
_SHRINK = 0.98


class ImageRefused(ValueError):
    """The processor cannot take this image at all (its aspect ratio)."""


def processor_for(model_id: str) -> ImageProcessor | None:
    """The published processor of a vLLM model id, or None when ocrtui knows none."""
    low = model_id.lower()
    for proc in IMAGE_PROCESSORS:
        if any(fnmatch(low, pattern.lower()) for pattern in proc.models):
            return proc
    return None


def image_tokens(proc: ImageProcessor, width: int, height: int) -> int:
    """The placeholder tokens vLLM puts in the prompt for one ``width`` x ``height`` image."""
    if proc.rule == "smart_resize":
        h, w = _smart_resize(proc, height, width)
        grid = (h // proc.patch_size) * (w // proc.patch_size)
        return grid // (proc.merge_size**2)
    cols, rows = _pixtral_grid(proc, width, height)
    return cols * rows


def max_image_tokens(proc: ImageProcessor) -> int:
    """The tokens of vLLM's ``get_image_size_with_most_features`` image: what it sizes the
    encoder cache and its memory profiling with."""
    if proc.rule == "smart_resize":
        return image_tokens(proc, _HUGE, _HUGE)
    return image_tokens(proc, proc.longest_edge, proc.longest_edge)


def encoder_cache_tokens(model: ModelConfig, proc: ImageProcessor) -> int:
    """The encoder cache of ``model``'s server, in tokens: the most one image can have, or
    ``--max-num-batched-tokens`` when its extra_args set more."""
    batched = serve_options(model.extra_args).get("--max-num-batched-tokens")
    most = max_image_tokens(proc)
    if isinstance(batched, str) and batched.isdigit():
        return max(int(batched), most)
    return most


def text_tokens(proc: ImageProcessor, prompt: str | None) -> int | None:
    """The prompt's tokens besides the image's, for a prompt vLLM was measured with."""
    if proc.text_tokens is None:
        return None
    return proc.text_tokens.value.get(prompt)


def text_tokens_bound(proc: ImageProcessor, prompt: str | None) -> int:
    """At least the prompt's tokens besides the image's: the measured count, else the
    largest measured one plus the prompt's UTF-8 bytes (a byte-level BPE token covers at
    least one byte)."""
    known = text_tokens(proc, prompt)
    if known is not None:
        return known
    measured = max(proc.text_tokens.value.values(), default=0) if proc.text_tokens else 0
    return measured + len((prompt or "").encode())


@dataclass(frozen=True)
class PageFit:
    """What to send for one page: its size, its predicted tokens, and whether it was
    resized to fit (``resized_from``) or refused (``refused``: why, in one line)."""

    width: int
    height: int
    image_tokens: int
    prompt_tokens: int | None  # None: the prompt's text tokens were never measured
    resized_from: tuple[int, int] | None = None
    refused: str | None = None

    @property
    def resized(self) -> str | None:
        """``"WxH -> WxH"`` when the page was resized to fit, else None."""
        if self.resized_from is None:
            return None
        w, h = self.resized_from
        return f"{w}x{h} -> {self.width}x{self.height}"


@dataclass(frozen=True)
class Limits:
    """What one server takes: its encoder cache, its ``max_model_len`` (None: unknown) and
    the ``max_tokens`` each request asks for."""

    encoder_cache: int
    max_model_len: int | None
    max_tokens: int


def fit_page(
    proc: ImageProcessor, prompt: str | None, limits: Limits, width: int, height: int
) -> PageFit:
    """What to send for one page.

    vLLM answers 400 when the image has more tokens than its encoder cache or the prompt
    leaves no room for one output token; when the prompt leaves less than ``max_tokens``,
    it answers but caps the output (``finish_reason`` ``length`` where the page needed
    more). So: the page as it is when the prompt and the whole ``max_tokens`` fit; else
    the largest size (both sides scaled alike) at which they fit; else, the page as it is
    when vLLM takes it (``max_tokens`` capped to ``max_model_len`` leaves no size room:
    the output gets what the prompt leaves); else the largest size vLLM takes; else refused.
    """
    known_text = text_tokens(proc, prompt)
    text = text_tokens_bound(proc, prompt)
    cache = limits.encoder_cache
    taken, whole = cache, cache  # image tokens vLLM takes; with room for all max_tokens
    if limits.max_model_len is not None:
        taken = min(cache, limits.max_model_len - 1 - text)
        whole = min(cache, limits.max_model_len - limits.max_tokens - text)

    def sent(w: int, h: int, tokens: int, resized_from: tuple[int, int] | None) -> PageFit:
        prompt_tokens = None if known_text is None else tokens + known_text
        return PageFit(w, h, tokens, prompt_tokens, resized_from)

    try:
        tokens = image_tokens(proc, width, height)
    except ImageRefused as exc:
        return PageFit(width, height, 0, None, refused=f"{width}x{height} page: {exc}")
    if tokens <= whole:
        return sent(width, height, tokens, None)
    smaller = _shrink(proc, width, height, tokens, whole)
    if smaller is not None:
        return sent(*smaller, (width, height))
    if tokens <= taken:
        return sent(width, height, tokens, None)
    smaller = _shrink(proc, width, height, tokens, taken)
    if smaller is not None:
        return sent(*smaller, (width, height))
    if taken == cache:
        why = f"the server's encoder cache of {cache}"
    else:
        why = (
            f"the {max(taken, 0)} that max_model_len {limits.max_model_len} leaves beside "
            f"{text} prompt text tokens and one output token"
        )
    return PageFit(
        width,
        height,
        tokens,
        None if known_text is None else tokens + known_text,
        refused=(
            f"{width}x{height} page makes {tokens} image tokens, more than {why}, and no "
            "smaller size fits"
        ),
    )


def _shrink(
    proc: ImageProcessor, width: int, height: int, tokens: int, budget: int
) -> tuple[int, int, int] | None:
    """(width, height, tokens) of the largest size, both sides scaled alike, with at most
    ``budget`` image tokens; None when none has."""
    if budget < 1:
        return None
    scale = math.sqrt(budget / tokens)
    while True:
        w, h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
        try:
            fewer = image_tokens(proc, w, h)
        except ImageRefused:
            return None  # a side rounded to 1 px: no smaller size will do
        if fewer <= budget:
            return w, h, fewer
        if w == 1 and h == 1:
            return None
        scale *= _SHRINK


def _smart_resize(proc: ImageProcessor, height: int, width: int) -> tuple[int, int]:
    factor = proc.patch_size * proc.merge_size
    frames = proc.temporal_patch_size  # one image, its frame count raised to the temporal patch
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ImageRefused(f"aspect ratio above {MAX_ASPECT}, which the processor refuses")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if frames * h_bar * w_bar > proc.max_pixels:
        beta = math.sqrt(frames * height * width / proc.max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif frames * h_bar * w_bar < proc.min_pixels:
        beta = math.sqrt(proc.min_pixels / (frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _pixtral_grid(proc: ImageProcessor, width: int, height: int) -> tuple[int, int]:
    cell = proc.patch_size * proc.merge_size
    ratio = max(width / proc.longest_edge, height / proc.longest_edge)
    if ratio > 1:
        width, height = math.floor(width / ratio), math.floor(height / ratio)
    return (width - 1) // cell + 1, (height - 1) // cell + 1
