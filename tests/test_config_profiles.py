"""Profile keys in the config: max_tokens defaults to the profile's published value and may
not exceed an explicit max_model_len (vLLM answers 400 to every such request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrtui.config import Config, load_config
from ocrtui.errors import ConfigError

CONFIG = """
[pod]
kind = "local"

[[models]]
name = "glm"
model = "zai-org/GLM-OCR"
port = 8000
gpu_memory_utilization = 0.4
profile = "glm-ocr"
{extra}
"""


def load(tmp_path: Path, extra: str) -> Config:
    p = tmp_path / "ocrtui.toml"
    p.write_text(CONFIG.format(extra=extra))
    return load_config(p)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "max_model_len = 4096",
            "models[0]: max_tokens (the glm-ocr profile's default) 8192 is more than "
            "max_model_len 4096: vLLM would refuse every request; lower max_tokens or raise "
            "max_model_len",
        ),
        (
            "max_model_len = 8192\nmax_tokens = 9000",
            "models[0]: max_tokens 9000 is more than max_model_len 8192: vLLM would refuse "
            "every request; lower max_tokens or raise max_model_len",
        ),
    ],
)
def test_max_tokens_above_max_model_len_is_refused_at_load(
    tmp_path: Path, extra: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, extra)
    assert str(err.value) == f"{tmp_path / 'ocrtui.toml'}: {expected}"


@pytest.mark.parametrize(
    ("extra", "tokens"),
    [
        ("", 8192),  # the SDK's max_tokens
        ("max_model_len = 8192", 8192),
        ("max_model_len = 4096\nmax_tokens = 4096", 4096),
        ('profile = "lighton-ocr"', 4096),
    ],
)
def test_effective_max_tokens(tmp_path: Path, extra: str, tokens: int) -> None:
    text = CONFIG.replace('profile = "glm-ocr"\n', "") if "profile" in extra else CONFIG
    p = tmp_path / "ocrtui.toml"
    p.write_text(text.format(extra=extra))
    (m,) = load_config(p).models
    assert m.effective_max_tokens() == tokens
