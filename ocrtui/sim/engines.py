"""OCR engines behind the simulator; they run in the EngineCore process, in worker threads.

``rapidocr``: PP-OCR ONNX models shipped inside the rapidocr wheel (offline).
``tesseract``: the tesseract binary with ``chi_sim+eng``; OMP_THREAD_LIMIT=1, without which
one A4 page took 21-32 s instead of 2 s on the project's 2-core box (OpenMP threads fighting
over the cores; tesseract's FAQ advises OMP_THREAD_LIMIT=1 when running several at once).
``synthetic``: deterministic text derived from the image bytes; its timing is modelled by
the EngineCore scheduler (prefill + per-token decode), not here.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import threading
from typing import Protocol

from ocrtui.sim.model_numbers import tokenize


class OcrEngine(Protocol):
    name: str

    def recognize(self, image: bytes) -> str:
        """Plain text lines of the page (blocking; called from a worker thread)."""
        ...


class RapidOcrEngine:
    name = "rapidocr"

    def __init__(self) -> None:
        self._local = threading.local()
        self._new()  # load the models now, before the server reports ready

    def _new(self) -> object:
        from rapidocr import RapidOCR

        # One instance per thread: the pipeline object keeps per-call state.
        self._local.ocr = RapidOCR(params={"Global.log_level": "warning"})
        return self._local.ocr

    def recognize(self, image: bytes) -> str:
        ocr = getattr(self._local, "ocr", None) or self._new()
        result = ocr(image)  # type: ignore[operator]
        if result.boxes is None or result.txts is None:
            return ""
        return join_lines(list(zip(result.boxes.tolist(), result.txts, strict=True)))


def join_lines(items: list[tuple[list[list[float]], str]]) -> str:
    """Boxes on the same visual line (overlapping vertical centres) join with a space."""
    rows: list[tuple[float, float, list[tuple[float, str]]]] = []
    for box, text in sorted(items, key=lambda it: min(p[1] for p in it[0])):
        top = min(p[1] for p in box)
        bottom = max(p[1] for p in box)
        centre, half = (top + bottom) / 2, (bottom - top) / 2
        left = min(p[0] for p in box)
        if rows and abs(rows[-1][0] - centre) <= max(rows[-1][1], half) * 0.6:
            rows[-1][2].append((left, text))
        else:
            rows.append((centre, half, [(left, text)]))
    return "\n".join(" ".join(t for _, t in sorted(parts)) for _, _, parts in rows)


class TesseractEngine:
    name = "tesseract"
    langs = "chi_sim+eng"

    def __init__(self) -> None:
        exe = shutil.which("tesseract")
        if exe is None:
            raise RuntimeError(
                "tesseract is not installed (apt-get install tesseract-ocr "
                "tesseract-ocr-chi-sim tesseract-ocr-eng)"
            )
        self.exe = exe
        self.env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        listed = subprocess.run(
            [exe, "--list-langs"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
            check=False,
        )
        have = set(listed.stdout.split())
        missing = [lang for lang in self.langs.split("+") if lang not in have]
        if missing:
            raise RuntimeError(
                f"tesseract has no language data for {', '.join(missing)} "
                "(apt-get install tesseract-ocr-chi-sim tesseract-ocr-eng)"
            )

    def recognize(self, image: bytes) -> str:
        done = subprocess.run(
            [self.exe, "stdin", "stdout", "-l", self.langs],
            input=image,
            capture_output=True,
            env=self.env,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"tesseract failed: {done.stderr.decode(errors='replace')[-300:]}")
        lines = [line.rstrip() for line in done.stdout.decode(errors="replace").splitlines()]
        return "\n".join(line for line in lines if line.strip())


_WORDS = (
    "the",
    "page",
    "text",
    "of",
    "and",
    "model",
    "OCR",
    "data",
    "2026",
    "No.",
    "$x^2$",
    "table",
    "sum",
    "rate",
    "(1)",
    "form",
)
_HANZI = "合同租赁甲方乙方第一条款金额日期地址姓名身份证号码签字盖章年月日元整"


class SyntheticEngine:
    name = "synthetic"

    def __init__(self, tokens_per_page: int) -> None:
        self.tokens_per_page = tokens_per_page

    def recognize(self, image: bytes) -> str:
        rng = random.Random(hashlib.sha256(image).digest())
        parts: list[str] = []
        for i in range(self.tokens_per_page):
            if i and i % 12 == 0:
                parts.append("\n")
            if rng.random() < 0.4:
                parts.append(rng.choice(_HANZI))
            else:
                parts.append(("" if not parts or parts[-1] == "\n" else " ") + rng.choice(_WORDS))
        return "".join(tokenize("".join(parts))[: self.tokens_per_page])


def make_engine(name: str, tokens_per_page: int) -> OcrEngine:
    if name == "rapidocr":
        return RapidOcrEngine()
    if name == "tesseract":
        return TesseractEngine()
    return SyntheticEngine(tokens_per_page)
