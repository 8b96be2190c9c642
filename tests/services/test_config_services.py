"""[[services]], [[api_arms]] and [pod.provider]: validation and the start order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ocrtui.config import load_config, parse_config, start_order
from ocrtui.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def cfg(
    services: list[dict[str, Any]] = (),  # type: ignore[assignment]
    models: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Any:
    models = models or [
        {"name": "glm", "model": "o/g", "port": 8000, "gpu_memory_utilization": 0.4},
        {"name": "lighton", "model": "o/l", "port": 8001, "gpu_memory_utilization": 0.5},
    ]
    data = {"pod": {"kind": "local"}, "models": models, "services": list(services), **extra}
    return parse_config(data, "t.toml")


def svc(name: str, port: int, *after: str, **keys: Any) -> dict[str, Any]:
    return {"name": name, "command": ["srv", name], "port": port, "after": list(after), **keys}


def test_start_order_waves_models_chain_and_services_after() -> None:
    c = cfg(
        [
            svc("ocr-api", 8007, "glm", "lighton"),
            svc("pdf-api", 8006, "glm", "lighton"),
            svc("sidecar", 9000),
            svc("front", 9001, "ocr-api"),
        ]
    )
    assert start_order(c) == [["glm", "sidecar"], ["lighton"], ["ocr-api", "pdf-api"], ["front"]]


def test_start_order_honours_model_start_order() -> None:
    models = [
        {"name": "a", "model": "o/a", "port": 1, "gpu_memory_utilization": 0.4, "start_order": 2},
        {"name": "b", "model": "o/b", "port": 2, "gpu_memory_utilization": 0.4, "start_order": 1},
    ]
    assert start_order(cfg([svc("s", 3, "a")], models=models)) == [["b"], ["a"], ["s"]]


@pytest.mark.parametrize(
    ("services", "message"),
    [
        (
            [svc("a", 9000, "b"), svc("b", 9001, "a")],
            "services: 'a' and 'b' wait for each other (after: a -> b -> a)",
        ),
        ([svc("a", 9000, "a")], "services: 'a' waits for itself (after = ['a'])"),
        (
            [svc("x", 9002, "a"), svc("a", 9000, "b"), svc("b", 9001, "c"), svc("c", 9003, "a")],
            "services: 'a' and 'b' wait for each other (after: a -> b -> c -> a)",
        ),
        ([svc("glm", 9000)], "services[0].name 'glm' duplicates models[0].name"),
        ([svc("a", 9000), svc("a", 9001)], "services[1].name 'a' duplicates services[0].name"),
        ([svc("a", 8001)], "services[0].port 8001 duplicates models[1].port"),
        ([svc("a", 9000), svc("b", 9000)], "services[1].port 9000 duplicates services[0].port"),
        (
            [svc("a", 9000, "nope")],
            "services[0].after: no model or service named 'nope' (configured: glm, lighton, a)",
        ),
        ([svc("a", 9000, ready_path="ready")], "must start with '/', got 'ready'"),
    ],
)
def test_service_errors_are_one_line_naming_both(
    services: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(services)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert err.value.exit_code == 2


def test_empty_command_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"services\[0\]\.command"):
        cfg([{"name": "a", "command": [], "port": 9000}])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"A;B": "1"}, r"services\[0\]\.env: 'A;B' is not a variable name"),
        ({"A": "x\ny"}, r"services\[0\]\.env: A: the value must be one line"),
    ],
)
def test_service_env_names_and_values_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg([svc("a", 9000, env=env)])


def arm(**keys: Any) -> dict[str, Any]:
    return {"name": "api", "port": 8007, "path": "/api/ocr", "text_path": "pages[*].text", **keys}


@pytest.mark.parametrize(
    ("arm_keys", "message"),
    [
        (
            {"service": "s"},
            "needs exactly one of 'service', 'port' or 'url' (got service and port)",
        ),
        ({"port": None}, "needs exactly one of 'service', 'port' or 'url'"),
        ({"port": None, "url": "pod.example.net:22167"}, "url must start with http://"),
        ({"path": "api/ocr"}, "path must start with '/'"),
        (
            {"text_path": "pages[x].text"},
            "api_arms[0]: text_path 'pages[x].text': '[x]' is not [*], [] or [N]",
        ),
        ({"page_path": ".page"}, "page_path '.page': '' does not start with a key name"),
        ({"name": "glm"}, "api_arms[0].name 'glm' duplicates models[0].name"),
        ({"port": None, "service": "nope"}, "api_arms[0].service: no service named 'nope'"),
    ],
)
def test_api_arm_errors(arm_keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg([svc("s", 9000)], api_arms=[arm(**arm_keys)])
    assert message in str(err.value)


def test_provider_errors() -> None:
    with pytest.raises(ConfigError, match="state_regex '\\(': missing"):
        cfg(pod={"kind": "local", "provider": {"status_command": ["x"], "state_regex": "("}})
    with pytest.raises(ConfigError, match=r"pod\.provider\.status_command"):
        cfg(pod={"kind": "local", "provider": {"status_command": []}})


def test_example_config_has_the_notes_four_servers_and_two_api_arms() -> None:
    c = load_config(REPO / "ocrtui.example.toml")
    assert start_order(c) == [["glm-ocr"], ["lighton-ocr"], ["ocr-api", "pdf-api"]]
    ocr, pdf = c.services
    assert ocr.command[:3] == ("python3", "-m", "web_demo.server.ocr_server")
    assert ocr.port == 8007 and ocr.env["OCR_MODEL_NAME"] == "glm-ocr"
    assert pdf.command[:3] == ("python3", "-m", "web_demo.server.pdf_server") and pdf.port == 8006
    assert [(a.name, a.service, a.path) for a in c.api_arms] == [
        ("glm-ocr-api", "ocr-api", "/api/ocr/document"),
        ("lighton-pdf-api", "pdf-api", "/api/parse"),
    ]
    assert c.pod.provider is not None
    assert c.pod.provider.status_command[-2:] == ("--action", "status")


def test_a_crash_hint_is_the_traceback_that_ends_the_log_not_one_survived() -> None:
    from ocrtui.services import service_hint

    survived = [
        "serving on 9000",
        "Traceback (most recent call last):",
        '  File "app.py", line 30, in do_GET',
        '    self.wfile.write(b"ok")',
        "BrokenPipeError: [Errno 32] Broken pipe",
        '127.0.0.1 - - "GET /ready HTTP/1.1" 200 -',
    ]
    assert service_hint(survived, 9000) == '127.0.0.1 - - "GET /ready HTTP/1.1" 200 -'
    fatal = [
        *survived,
        "Traceback (most recent call last):",
        '  File "app.py", line 9, in main',
        "    raise RuntimeError('required file x is missing')",
        "RuntimeError: required file x is missing",
        "",
    ]
    assert service_hint(fatal, 9000) == "RuntimeError: required file x is missing"
