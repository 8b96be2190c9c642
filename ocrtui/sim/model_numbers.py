"""What the simulator pretends each model is: memory numbers, context length, image tokens.

The memory numbers are chosen so the seed's facts reproduce on a 46068 MiB A40, not measured:

| model | weights | activation peak | CUDA graphs | KV per token | default max_model_len |
|---|---|---|---|---|---|
| GLM-OCR (0.9B) | 2.2 GiB (vLLM's own log, fixtures) | 0.8 GiB | 0.3 GiB | 112 KiB | 131072 |
| LightOnOCR-2 (1B) | 2.0 GiB | 1.0 GiB | 0.3 GiB | 112 KiB | 16384 |
| anything else | 1.0 GiB | 0.5 GiB | 0.2 GiB | 64 KiB | 8192 |

112 KiB per token is 28 layers x 8 KV heads x 128 head dim x (K, V) x 2 bytes. With the
default context GLM-OCR needs 2.2 + 0.8 + 0.3 + 14.0 = 17.3 GiB, so utilization 0.39 of an
A40 (17.5 GiB) works, 0.40 (the seed's value) works with room, 0.38 and below fail with
vLLM's KV-cache error, and 0.35 reports an estimated maximum model length of about 116k.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

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


GLM_OCR = ModelNumbers(
    "glm-ocr", "GlmOcrForConditionalGeneration", 2.2, 0.8, 0.3, 112 * 1024, 131072, None, False
)
LIGHTON_OCR = ModelNumbers(
    "lighton-ocr",
    "LightOnOCRForConditionalGeneration",
    2.0,
    1.0,
    0.3,
    112 * 1024,
    16384,
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
