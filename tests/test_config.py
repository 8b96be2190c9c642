"""Config lookup and validation: every problem is one line naming the file and the key."""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrtui.config import Config, Routing, find_config, load_config
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
        (("[pod]", "[pods]"), "pods: expected [[pods]] tables, one per pod (one pod: [pod])"),
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


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ('{ "A;B" = "1" }', "models[0].env: 'A;B' is not a variable name"),
        ('{ "1A" = "1" }', "models[0].env: '1A' is not a variable name"),
        ('{ A = "one\\ntwo" }', "models[0].env: A: the value must be one line"),
        ('{ A = "x\\u0000" }', "models[0].env: A: the value must be one line"),
    ],
)
def test_env_entries_are_checked_at_load(tmp_path: Path, env: str, key: str) -> None:
    text = GOOD.replace("port = 8000\n", f"port = 8000\nenv = {env}\n", 1)
    with pytest.raises(ConfigError, match=re.escape(key)) as err:
        load_config(write(tmp_path, text))
    assert "\n" not in str(err.value) and err.value.exit_code == 2


def test_served_name_with_a_slash_gets_a_flat_log_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.replace('name = "a"', 'name = "org/model"', 1)))
    m = cfg.model("org/model")
    assert m.log_path("/work/") == "/work/vllm_org_model.log"
    assert m.log_dir("/work") == "/work"


def test_served_name_with_a_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.name: must be one line"):
        load_config(write(tmp_path, GOOD.replace('name = "a"', 'name = "a\\nb"', 1)))


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("max_restarts = 0", r"watchdog\.max_restarts"),
        ("window_min = -1", r"watchdog\.window_min"),
        ("unhealthy_after_s = 0", r"watchdog\.unhealthy_after_s"),
        ("restart_every = 1", r"watchdog\.restart_every"),
    ],
)
def test_a_wrong_watchdog_setting_names_its_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, f"{GOOD}\n[watchdog]\n{line}\n"))


def test_config_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "ocrtui.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"ocrtui\.toml: is a FIFO"):
        load_config(fifo)


# Any TOML document: a table of keys (from the schema and not) to values of any shape.
_KEYS = st.sampled_from(
    ["pod", "models", "compare", "ui", "kind", "host", "port", "name", "model", "env",
     "gpu_memory_utilization", "theme", "keymap", "extra_args", "concurrency", "x"]
)  # fmt: skip
_SCALARS = st.text(max_size=8) | st.integers() | st.floats(allow_nan=False) | st.booleans()
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(_KEYS | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
_SECTIONS = st.sampled_from(["pod", "compare", "ui", "models"])
# The valid GOOD config with one key of one section set to any value (near misses).
_NEAR_MISSES = st.builds(
    lambda section, key, value: _with(tomllib.loads(GOOD), section, key, value),
    _SECTIONS,
    _KEYS,
    _VALUES,
)


def _with(data: dict[str, Any], section: str, key: str, value: object) -> dict[str, Any]:
    target = data["models"][0] if section == "models" else data.setdefault(section, {})
    target[key] = value
    return data


_DOCS = (
    _NEAR_MISSES
    | st.dictionaries(_KEYS, _VALUES, max_size=5)
    | st.builds(
        lambda models, extra: {"pod": {"kind": "local"}, "models": models, **extra},
        st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), max_size=3),
        st.dictionaries(_KEYS, _VALUES, max_size=2),
    )
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(_DOCS)
def test_any_toml_document_is_a_config_or_one_config_error(data: dict[str, object]) -> None:
    try:
        text = tomli_w.dumps(data)
    except (TypeError, ValueError):  # not representable as TOML (e.g. mixed arrays)
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ocrtui.toml"
        path.write_text(text, encoding="utf-8")
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)
            assert str(exc).startswith(f"{path}: ")
        else:
            assert isinstance(cfg, Config)


@pytest.mark.parametrize("log_file", ["/var/log/", " "])
def test_log_file_must_name_a_file(tmp_path: Path, log_file: str) -> None:
    text = GOOD.replace("port = 8000\n", f'port = 8000\nlog_file = "{log_file}"\n', 1)
    with pytest.raises(ConfigError, match=r"models\[0\]\.log_file: must name a file"):
        load_config(write(tmp_path, text))


ROUTED = """
[pod]
kind = "local"

[[models]]
name = "glm"
model = "zai-org/GLM-OCR"
port = 8000
gpu_memory_utilization = 0.4
env = { A = "1" }
replicas = [
  { port = 8010, env = { CUDA_VISIBLE_DEVICES = "0" } },
  { port = 8011, env = { CUDA_VISIBLE_DEVICES = "1" } },
]
"""


def test_replicas_become_models_behind_a_generated_router_service(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ROUTED))
    assert [(m.name, m.port, m.env, m.served_aliases) for m in cfg.models] == [
        ("glm-r0", 8010, {"A": "1", "CUDA_VISIBLE_DEVICES": "0"}, ("glm",)),
        ("glm-r1", 8011, {"A": "1", "CUDA_VISIBLE_DEVICES": "1"}, ("glm",)),
    ]
    (router,) = cfg.services
    assert (router.name, router.port, router.after, router.ready_path) == (
        "glm-router",
        8000,
        ("glm-r0", "glm-r1"),
        "/health",
    )
    assert router.command == (
        "vllm-router", "--host", "127.0.0.1", "--port", "8000",
        "--worker-urls", "http://127.0.0.1:8010", "http://127.0.0.1:8011",
    )  # fmt: skip
    # The model itself is the comparison arm on the router's port, never launched.
    assert [(m.name, m.port) for m in cfg.routed] == [("glm", 8000)]
    assert [m.name for m in cfg.replicas_of("glm")] == ["glm-r0", "glm-r1"]
    assert cfg.replicas_of("glm-r0") == ()
    assert cfg.routing() == (Routing("glm", ("glm-r0", "glm-r1"), "glm-router"),)


def test_a_named_router_service_gets_the_workers_appended(tmp_path: Path) -> None:
    text = ROUTED.replace("port = 8000\n", 'port = 8000\nrouter_service = "lb"\n', 1)
    text += '\n[[services]]\nname = "lb"\ncommand = ["my-router", "--port", "8000"]\nport = 8000\n'
    (lb,) = load_config(write(tmp_path, text)).services
    assert lb.command == (
        "my-router", "--port", "8000",
        "--worker-urls", "http://127.0.0.1:8010", "http://127.0.0.1:8011",
    )  # fmt: skip
    assert lb.after == ("glm-r0", "glm-r1")
    assert load_config(write(tmp_path, text)).routing()[0].router == "lb"
    wrong = text.replace('router_service = "lb"', 'router_service = "nope"')
    with pytest.raises(ConfigError, match="router_service: no service named 'nope'"):
        load_config(write(tmp_path, wrong))
