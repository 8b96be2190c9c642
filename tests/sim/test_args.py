"""`vllm serve` flags: accepted as vLLM accepts them, rejected with vLLM's words and exit 2."""

from __future__ import annotations

import re

import pytest

from ocrtui.sim.args import parse_serve_args
from ocrtui.sim.cli import main


def test_project_flags_parse() -> None:
    args = parse_serve_args(
        [
            "zai-org/GLM-OCR",
            "--port",
            "8000",
            "--served-model-name",
            "glm-ocr",
            "--gpu-memory-utilization",
            "0.40",
            "--max-num-seqs",
            "16",
            "--max-model-len",
            "16K",
            "--limit-mm-per-prompt",
            '{"image": 1}',
            "--mm-processor-cache-gb",
            "0",
            "--no-enable-prefix-caching",
            "--trust-remote-code",
            "--speculative-config",
            '{"method": "mtp", "num_speculative_tokens": 1}',
        ]
    )
    assert (args.model, args.name, args.port) == ("zai-org/GLM-OCR", "glm-ocr", 8000)
    assert (args.gpu_memory_utilization, args.max_num_seqs) == (0.40, 16)
    assert args.max_model_len == 16384
    assert args.image_limit == 1
    assert args.mm_processor_cache_gb == 0
    assert args.enable_prefix_caching is False and args.trust_remote_code is True
    assert args.speculative_config == {"method": "mtp", "num_speculative_tokens": 1}


def test_equals_form_underscores_and_model_flag() -> None:
    args = parse_serve_args(["--model=lightonai/LightOnOCR-2-1B", "--max_num_seqs=4"])
    assert args.model == "lightonai/LightOnOCR-2-1B" and args.max_num_seqs == 4
    assert args.name == "lightonai/LightOnOCR-2-1B"


def test_new_limit_form_with_count() -> None:
    args = parse_serve_args(["m", "--limit-mm-per-prompt", '{"image": {"count": 2}}'])
    assert args.image_limit == 2


def test_api_key_from_env_and_never_in_non_default_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "env-secret")
    assert parse_serve_args(["m"]).api_key == "env-secret"
    args = parse_serve_args(["m", "--api-key", "flag-secret"])
    assert args.api_key == "flag-secret"
    assert "flag-secret" not in repr(args.non_default)
    assert "env-secret" not in repr(args.non_default)


def test_unknown_arguments_rejected_like_vllm(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "m", "--attention-backend", "FLASHINFER", "--enable-metrics"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("usage: vllm [-h] [-v]\n")
    assert (
        "vllm: error: unrecognized arguments: --attention-backend FLASHINFER --enable-metrics"
        in err
    )


def test_old_limit_mm_format_rejected_like_vllm(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "m", "--limit-mm-per-prompt", "image=10"])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(
        r"vllm serve: error: argument --limit-mm-per-prompt: Value image=10 cannot "
        r"be converted to <function loads at 0x[0-9a-f]+>\.",
        err,
    ), err


@pytest.mark.parametrize(
    "argv",
    [
        ["m", "--gpu-memory-utilization", "1.5"],
        ["m", "--max-num-seqs", "0"],
        ["m", "--engine", "paddle"],
        [],
    ],
)
def test_bad_values_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", *argv]) == 2
    assert "vllm serve: error:" in capsys.readouterr().err


def test_other_subcommands_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat"]) == 2
    assert "invalid choice: 'chat'" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert "ocrtui.sim" in capsys.readouterr().out
