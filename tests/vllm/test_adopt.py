"""A `vllm serve` argv parsed back into a [[models]] block (ocrtui/vllm/adopt.py)."""

from __future__ import annotations

import tomllib

import pytest

from ocrtui.vllm.adopt import model_block, model_fields, redacted


def test_flags_with_equals_and_missing_defaults_are_parsed_and_said() -> None:
    argv = ["vllm", "serve", "--model=org/m", "--port=9001", "--enforce-eager", "--api-key=k1"]
    fields, comments = model_fields(argv)
    assert fields == {
        "name": "org/m",
        "model": "org/m",
        "port": 9001,
        "gpu_memory_utilization": 0.9,
        "max_num_seqs": 256,
        "api_key_env": "VLLM_API_KEY",
        "extra_args": ["--enforce-eager"],
    }
    assert any("max_num_seqs" in c for c in comments)
    block = model_block(argv)
    assert "k1" not in block and tomllib.loads(block)["models"][0]["port"] == 9001


def test_the_api_key_is_hidden_in_the_argv_shown() -> None:
    assert redacted(["serve", "m", "--api-key", "k1", "--api-key=k2"]) == [
        "serve", "m", "--api-key", "***", "--api-key=***",
    ]  # fmt: skip


def test_a_command_line_that_is_not_vllm_serve_is_refused_without_its_key() -> None:
    with pytest.raises(ValueError, match="not a `vllm serve`") as err:
        model_fields(["VLLM::APIServer", "--api-key", "k1"])
    assert "k1" not in str(err.value)
