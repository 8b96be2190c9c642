"""Config lookup and validation: every problem is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrtui.config import find_config, load_config
from ocrtui.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

GOOD = """
[pod]
kind = "local"

[[models]]
name = "a"
model = "org/a"
port = 8000
gpu_memory_utilization = 0.4

[[models]]
name = "b"
model = "org/b"
port = 8001
gpu_memory_utilization = 0.55
start_order = 0
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ocrtui.toml"
    p.write_text(text)
    return p


def test_example_config_reproduces_the_seed_pod() -> None:
    cfg = load_config(REPO / "ocrtui.example.toml")
    glm, lighton = cfg.ordered_models()
    assert (glm.name, glm.model, glm.port, glm.gpu_memory_utilization, glm.max_num_seqs) == (
        "glm-ocr",
        "zai-org/GLM-OCR",
        8000,
        0.40,
        16,
    )
    assert (lighton.name, lighton.model, lighton.port, lighton.gpu_memory_utilization) == (
        "lighton-ocr",
        "lightonai/LightOnOCR-2-1B",
        8001,
        0.55,
    )
    for m in (glm, lighton):
        assert m.env == {"PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"}
        assert m.log_file
    assert cfg.pod.kind == "ssh" and cfg.pod.host.endswith(".invalid")


def test_start_order_then_file_order(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert [m.name for m in cfg.ordered_models()] == ["b", "a"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("port = 8000", "port = 8000\nbogus = 1"), "models[0].bogus: unknown key"),
        (("port = 8000", 'port = "8000"'), "models[0].port: Input should be a valid integer"),
        (("= 0.4", "= 1.5"), "models[0].gpu_memory_utilization: must be in (0, 1], got 1.5"),
        (("= 0.4", "= 0"), "models[0].gpu_memory_utilization: must be in (0, 1], got 0"),
        (("port = 8001", "port = 8000"), "models[1].port 8000 duplicates models[0].port"),
        (('name = "b"', 'name = "a"'), "models[1].name 'a' duplicates models[0].name"),
        (('kind = "local"', 'kind = "ssh"'), "pod: Value error, kind = 'ssh' needs 'host'"),
        (('kind = "local"', 'kind = "ftp"'), "pod.kind: Input should be 'ssh' or 'local'"),
        (("[pod]", "[pods]"), "pods: unknown key (and 1 more)"),
    ],
)
def test_invalid_config_names_file_and_key(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, GOOD.replace(*edit, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected.replace("Value error, ", "") in message
    assert "\n" not in message


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[pod\nkind = 1")
    with pytest.raises(ConfigError, match=r"invalid TOML"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OCRTUI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_config(None) is None
    user = tmp_path / "xdg" / "ocrtui" / "ocrtui.toml"
    user.parent.mkdir(parents=True)
    user.write_text(GOOD)
    assert find_config(None) == user
    local = write(tmp_path, GOOD)
    assert find_config(None) == local
    monkeypatch.setenv("OCRTUI_CONFIG", "/env.toml")
    assert find_config(None) == Path("/env.toml")
    assert find_config("/explicit.toml") == Path("/explicit.toml")
