"""Arm labels and records from a model's config and its server's argv (pure)."""

from __future__ import annotations

import json

from ocrtui.compare.arms import arm_label, arm_record, redacted
from ocrtui.config import CompareConfig
from tests.plugins.compare_inputs import model

GLM = model("glm", "glm-ocr", model="zai-org/GLM-OCR")
LIGHTON = model("lighton", "lighton-ocr", model="lightonai/LightOnOCR-2-1B")
SERVE = ["vllm", "serve", "zai-org/GLM-OCR", "--port", "8000"]


def test_glm_label_says_model_only_and_names_mtp() -> None:
    mtp = [
        *SERVE,
        "--speculative-config",
        json.dumps({"method": "mtp", "num_speculative_tokens": 1}),
    ]
    assert arm_label(GLM, mtp, "0.30.0") == (
        "GLM-OCR · model only, full page, no layout · MTP 1 · vLLM 0.30.0"
    )
    assert arm_label(GLM, [*mtp, "--enforce-eager"], None).endswith("· MTP 1, eager")
    piecewise = ["--compilation-config", '{"cudagraph_mode": "PIECEWISE"}']
    assert arm_label(GLM, [*mtp, *piecewise], None).endswith("· MTP 1, piecewise graphs")
    assert arm_label(GLM, SERVE, None) == "GLM-OCR · model only, full page, no layout · no MTP"
    assert arm_label(GLM, None, None).endswith("· serve flags unknown")


def test_lighton_label_names_missing_card_flags() -> None:
    card = [*SERVE, "--limit-mm-per-prompt", '{"image": 1}', "--mm-processor-cache-gb", "0",
            "--no-enable-prefix-caching"]  # fmt: skip
    assert arm_label(LIGHTON, card, None) == (
        "LightOnOCR-2 · full page, image only · the card's serve flags"
    )
    assert arm_label(LIGHTON, SERVE, None).endswith(
        "· without --limit-mm-per-prompt --mm-processor-cache-gb --no-enable-prefix-caching"
    )
    tuned = LIGHTON.model_copy(update={"max_tokens": 2048})
    assert "· max_tokens 2048 ·" in arm_label(tuned, card, None)


def test_an_api_key_in_the_servers_argv_never_reaches_the_record() -> None:
    argv = [*SERVE, "--api-key", "sk-secret", "--api_key=sk-other", "--port", "1"]
    assert redacted(argv) == [*SERVE, "--api-key", "<redacted>", "--api_key=<redacted>",
                              "--port", "1"]  # fmt: skip


def test_without_a_probe_the_record_says_what_is_unknown() -> None:
    record = arm_record(GLM, CompareConfig(image_format="png"), None)
    assert record.serve_argv is None and (record.versions.error or "").startswith("not probed")
    assert record.profile.max_tokens == 8192 and record.profile.image_format == "png"
    assert record.to_json()["serve_argv"] is None
    keys = [a.key for a in record.advisories]
    assert keys == ["versions-unknown", "image-format"]
