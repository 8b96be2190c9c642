"""Each rendered page fitted to its server before it is sent, and the predictions checked
against what the servers reported.

:func:`fit_rendered` is the runner's one hook: for a model whose processor ocrtui knows
(``vllm/image_tokens.py``) a page whose image tokens exceed the server's encoder cache, or
whose prompt plus ``max_tokens`` exceeds its ``max_model_len`` (``/v1/models``' value, else
the config's, else the architecture's default), is resized to the largest size that fits
or refused with the reason; it is never sent to fail with a 400. The prediction goes into
the page's result (``predicted_prompt_tokens``, ``resized``).

:func:`check_prompt_tokens` compares ``predicted_prompt_tokens`` with the ``prompt_tokens``
the server reported (usage), per page: what the GPU bench checks the 2 % goal with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ocrtui.compare.client import ModelTarget
from ocrtui.compare.profiles import prompt_for
from ocrtui.compare.render import ImageFormat, RenderedPage, RenderPool
from ocrtui.compare.store import PageResult
from ocrtui.published import architecture_for
from ocrtui.vllm.image_tokens import Limits, PageFit, encoder_cache_tokens, fit_page, processor_for

PROMPT_TOKENS_GOAL = 0.02  # the largest relative error of a prediction the bench accepts


@dataclass(frozen=True)
class FittedPage:
    """A page ready to send (``image``), or not to be sent (``fit.refused``); ``fit`` is
    None for a model whose processor ocrtui does not know (sent as rendered)."""

    image: RenderedPage
    fit: PageFit | None


def limits_for(target: ModelTarget) -> Limits | None:
    """What ``target``'s server takes, or None when its processor is unknown."""
    config = target.config
    proc = processor_for(config.model)
    if proc is None:
        return None
    arch = architecture_for(config.model)
    max_len = target.max_model_len or config.max_model_len
    if max_len is None and arch is not None:
        max_len = arch.text.max_position_embeddings
    return Limits(encoder_cache_tokens(config, proc), max_len, config.effective_max_tokens())


async def fit_rendered(
    target: ModelTarget, image: RenderedPage, pool: RenderPool, fmt: ImageFormat
) -> FittedPage:
    """The page as it is, resized to fit (in the render pool), or refused."""
    proc = processor_for(target.config.model)
    limits = limits_for(target)
    if proc is None or limits is None:
        return FittedPage(image, None)
    fit = fit_page(proc, prompt_for(target.config), limits, image.width, image.height)
    if fit.resized_from is not None and fit.refused is None:
        image = await pool.resize(image, fit.width, fit.height, fmt)
    return FittedPage(image, fit)


@dataclass(frozen=True)
class TokenCheck:
    """One page's predicted prompt tokens against the server's count."""

    doc: str
    page: int
    model: str
    predicted: int
    reported: int

    @property
    def error(self) -> float:
        """Relative error of the prediction, against the reported count."""
        return abs(self.predicted - self.reported) / max(1, self.reported)

    @property
    def within_goal(self) -> bool:
        return self.error <= PROMPT_TOKENS_GOAL


def check_prompt_tokens(results: Iterable[PageResult]) -> list[TokenCheck]:
    """Every answered page that has both a prediction and the server's count."""
    return [
        TokenCheck(r.doc, r.page, r.model, r.predicted_prompt_tokens, r.prompt_tokens)
        for r in results
        if r.ok and r.predicted_prompt_tokens is not None and r.prompt_tokens is not None
    ]
