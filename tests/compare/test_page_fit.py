"""Pages fitted to their server before they are sent: resized or refused, never sent to
fail; the prediction recorded beside the server's count."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

from ocrtui.compare.client import ModelTarget
from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.events import Event, PageFailed
from ocrtui.compare.page_fit import TokenCheck, check_prompt_tokens
from ocrtui.compare.runner import RunPlan, start_run
from ocrtui.compare.store import PageResult, RunRecord, RunStore
from ocrtui.config import CompareConfig
from ocrtui.vllm.image_tokens import image_tokens, processor_for
from tests.plugins.compare_inputs import MakePdf, model
from tests.plugins.fake_chat_server import completion, fake_vllm

SETTINGS = CompareConfig(concurrency=1, retries=0)
GLM = processor_for("zai-org/GLM-OCR")


def _glm(url: str, max_model_len: int | None) -> ModelTarget:
    config = model("glm-ocr", "glm-ocr", model="zai-org/GLM-OCR")
    return ModelTarget(config, url, max_model_len)


def _sent_size(payload: dict[str, Any]) -> tuple[int, int]:
    url = payload["messages"][0]["content"][0]["image_url"]["url"]
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
        return im.size


def _counted(payload: dict[str, Any], n: int) -> tuple[int, dict[str, Any]]:
    """A server that counts prompt tokens as vLLM does for GLM-OCR."""
    assert GLM is not None
    status, body = completion(f"page text {n}")
    body["usage"]["prompt_tokens"] = image_tokens(GLM, *_sent_size(payload)) + 13
    return status, body


async def _run(plan: RunPlan, run_dir: Path) -> tuple[list[Event], list[dict[str, Any]]]:
    run = start_run(plan, RunStore.create(run_dir, RunRecord()))
    events = [ev async for ev in run.subscribe()]
    text = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    return events, [json.loads(line) for line in text.splitlines()]


async def test_a_page_over_max_model_len_is_sent_resized(make_pdf: MakePdf, tmp_path: Path) -> None:
    assert GLM is not None
    # An A4 page at 200 DPI is 1654x2339: 4956 image tokens, more than the 3795 that
    # max_model_len 12000 leaves beside max_tokens 8192 and the prompt's 13.
    spec = DocumentSpec(path=make_pdf("a4.pdf", ["one page"]), name="a4")
    with fake_vllm(_counted) as fake:
        plan = RunPlan((spec,), (_glm(fake.url, 12000),), SETTINGS, speed_phases=False)
        _, rows = await _run(plan, tmp_path / "run")
    (sent,) = [_sent_size(p) for p in fake.requests]
    (row,) = rows
    assert row["ok"] and row["resized"] == f"1654x2339 -> {sent[0]}x{sent[1]}"
    assert row["predicted_prompt_tokens"] == image_tokens(GLM, *sent) + 13 <= 12000 - 8192
    (check,) = check_prompt_tokens([PageResult.from_json(row)])
    assert check.error == 0 and check.within_goal


async def test_a_page_that_cannot_fit_is_refused_unsent(make_pdf: MakePdf, tmp_path: Path) -> None:
    spec = DocumentSpec(path=make_pdf("a4.pdf", ["one page"]), name="a4")
    with fake_vllm(_counted) as fake:
        plan = RunPlan((spec,), (_glm(fake.url, 14),), SETTINGS, speed_phases=False)
        events, rows = await _run(plan, tmp_path / "run")
    assert fake.requests == []
    (failed,) = [e for e in events if isinstance(e, PageFailed)]
    assert failed.reason == (
        "not sent: 1654x2339 page makes 4956 image tokens, more than the 0 that max_model_len "
        "14 leaves beside 13 prompt text tokens and one output token, and no smaller size fits"
    )
    assert rows[0]["predicted_prompt_tokens"] == 4956 + 13 and rows[0]["resized"] is None


async def test_a_page_that_fits_is_sent_as_rendered(make_pdf: MakePdf, tmp_path: Path) -> None:
    spec = DocumentSpec(path=make_pdf("a4.pdf", ["one page"]), name="a4")
    with fake_vllm(_counted) as fake:
        plan = RunPlan((spec,), (_glm(fake.url, 24576),), SETTINGS, speed_phases=False)
        _, rows = await _run(plan, tmp_path / "run")
    assert [_sent_size(p) for p in fake.requests] == [(1654, 2339)]
    assert rows[0]["resized"] is None and rows[0]["predicted_prompt_tokens"] == 4969
    assert rows[0]["prompt_tokens"] == 4969


def test_token_checks_measure_the_relative_error() -> None:
    def result(predicted: int | None, reported: int | None, ok: bool = True) -> PageResult:
        return PageResult(
            doc="d", page=1, model="m", ok=ok, error=None, latency_s=1.0,
            prompt_tokens=reported, completion_tokens=1, finish_reason="stop", text="",
            cer=None, category="other", predicted_prompt_tokens=predicted,
        )  # fmt: skip

    checks = check_prompt_tokens(
        [result(4693, 4693), result(1000, 1030), result(None, 10), result(5, None)]
    )
    assert checks == [TokenCheck("d", 1, "m", 4693, 4693), TokenCheck("d", 1, "m", 1000, 1030)]
    assert [c.within_goal for c in checks] == [True, False]
    assert round(checks[1].error, 4) == 0.0291
