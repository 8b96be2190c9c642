"""What the simulator pretends each model is: memory numbers, context length, image tokens.

For the two seed models the KV cache per token and the default context are the published
architecture's (``ocrtui.published.ARCHITECTURES``, the facts ``ocrtui.vllm.memory``
predicts from) and GLM-OCR's weights are vLLM 0.26.0's own ``Model loading took`` line from
a start of its real architecture; activations and CUDA graphs are chosen, not measured:

| model | weights | activation peak | CUDA graphs | KV per token | default max_model_len |
|---|---|---|---|---|---|
| GLM-OCR (0.9B) | 2.28 GiB (measured) | 0.55 GiB | 0.1 GiB | 64 KiB | 131072 |
| LightOnOCR-2 (1B) | 2.44 GiB | 0.55 GiB | 0.1 GiB | 112 KiB | 16384 |
| anything else | 1.0 GiB | 0.5 GiB | 0.2 GiB | 64 KiB | 8192 |

64 KiB per token is GLM-OCR's 16 layers x 8 KV heads x 128 head dim x (K, V) x 2 bytes
(the MTP layer's KV, one more layer with ``--speculative-config mtp``, is not simulated).
With its default context GLM-OCR needs 2.28 + 0.55 + 0.1 + 8.0 = 10.9 GiB, so on the A40
(44.99 GiB) utilization 0.25 starts and 0.24 and below fail with vLLM's KV-cache error (the
seed's "too little memory failed KV-cache allocation"); with the example config's
``max_model_len`` 24576 it needs 4.4 GiB (0.10).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ocrtui.published import TextTower, architecture_for

GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class ModelNumbers:
    key: str
    architecture: str
    weights_gib: float
    activation_gib: float
    cuda_graph_gib: float
    kv_bytes_per_token: int
    default_max_model_len: int
    # Images are resized so that the longest side is at most this many pixels (None: no cap).
    longest_side_px: int | None
    image_row_break: bool

    def image_tokens(self, width: int, height: int) -> int:
        """Image tokens after the processor's resize: one per 28x28 pixels (patch 14, merge 2)."""
        if self.longest_side_px and max(width, height) > self.longest_side_px:
            scale = self.longest_side_px / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        cols, rows = math.ceil(width / 28), math.ceil(height / 28)
        return rows * (cols + 1 if self.image_row_break else cols)


def _published(model_id: str) -> TextTower:
    arch = architecture_for(model_id)
    assert arch is not None, model_id
    return arch.text


_GLM_TEXT = _published("zai-org/GLM-OCR")
_LIGHTON_TEXT = _published("lightonai/LightOnOCR-2-1B")
GLM_OCR = ModelNumbers(
    "glm-ocr",
    "GlmOcrForConditionalGeneration",
    2.28,
    0.55,
    0.1,
    _GLM_TEXT.kv_bytes_per_token(mtp=False),
    _GLM_TEXT.max_position_embeddings,
    None,
    False,
)
LIGHTON_OCR = ModelNumbers(
    "lighton-ocr",
    "LightOnOCRForConditionalGeneration",
    2.44,
    0.55,
    0.1,
    _LIGHTON_TEXT.kv_bytes_per_token(mtp=False),
    _LIGHTON_TEXT.max_position_embeddings,
    1540,
    True,
)
GENERIC = ModelNumbers(
    "generic", "TransformersMultiModalForCausalLM", 1.0, 0.5, 0.2, 64 * 1024, 8192, None, False
)


def numbers_for(model: str) -> ModelNumbers:
    """Pick the numbers from the model id (``zai-org/GLM-OCR``, ``lightonai/LightOnOCR-2-1B``)."""
    flat = re.sub(r"[^a-z0-9]", "", model.lower())
    if "glmocr" in flat:
        return GLM_OCR
    if "lightonocr" in flat:
        return LIGHTON_OCR
    return GENERIC


_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f"
_TOKEN = re.compile(rf"\s*(?:[{_CJK}]|[^\s{_CJK}]{{1,4}})|\s+")


def tokenize(text: str) -> list[str]:
    """Split text into token-sized pieces whose concatenation is the text.

    Roughly what a BPE tokenizer does to OCR output: one token per CJK character, about four
    characters per token elsewhere. Used for usage counts, max_tokens truncation and
    streaming.
    """
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))
