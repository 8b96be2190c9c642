"""The metrics endpoint's address rules and its OpenMetrics answer (ocrtui/export.py); the
series read back by a real Prometheus: tests/control/test_export_prometheus.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from ocrtui.cli import main
from ocrtui.config import ExportConfig, Fleet, ListenAddress, parse_listen
from ocrtui.errors import ConfigError
from ocrtui.export import MetricsExporter
from ocrtui.status import ModelStatus, PodStatus, Snapshot
from tests.plugins.sim import free_port

pytestmark = pytest.mark.timeout(30)
MODEL = '[[models]]\nname = "m"\nmodel = "x"\nport = 8000\ngpu_memory_utilization = 0.5\n'


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:9464", "127.0.0.1", 9464), ("[::1]:0", "::1", 0), ("localhost:1", "localhost", 1)],
)
def test_loopback_addresses_are_accepted(text: str, host: str, port: int) -> None:
    assert parse_listen(text, allow_remote=False) == ListenAddress(host, port)


@pytest.mark.parametrize("text", ["0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464", "pod.example:9"])
def test_a_non_loopback_address_needs_allow_remote(text: str) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        parse_listen(text, allow_remote=False)
    assert parse_listen(text, allow_remote=True).port > 0


@pytest.mark.parametrize("text", ["9464", ":9464", "127.0.0.1:", "127.0.0.1:x", "h:70000"])
def test_a_malformed_address_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_listen(text, allow_remote=True)


def test_export_command_refuses_a_public_address_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ocrtui.toml"
    config.write_text('[pod]\nhost = "unreachable.invalid"\n' + MODEL)
    assert main(["--config", str(config), "export", "--listen", "0.0.0.0:9464"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


def test_the_dashboard_setting_is_checked_at_load(tmp_path: Path) -> None:
    from ocrtui.config import load_config

    config = tmp_path / "ocrtui.toml"
    base = '[pod]\nkind = "local"\n' + MODEL
    config.write_text(base + '[export]\nlisten = "0.0.0.0:9464"\n')
    with pytest.raises(ConfigError, match=r"export.*not a loopback address"):
        load_config(config)
    config.write_text(base + '[export]\nlisten = "0.0.0.0:9464"\nallow_remote = true\n')
    assert load_config(config).export.address == ListenAddress("0.0.0.0", 9464)


async def test_openmetrics_to_a_scraper_that_asks_for_it() -> None:
    snap = Snapshot(
        PodStatus("p", "connected", 1.0, 0.5, simulated_gpu=True, demo=False, price_per_hr=0.44),
        gpus=(),
        processes=(),
        models=(
            ModelStatus("glm", 8000, "starting", None, restarts=2),
            ModelStatus("lit", 8001, "ready", 7, sleep_level=1, given_back_mib=1024),
        ),
    )
    exp = MetricsExporter(lambda: snap)
    bound = exp.serve(ListenAddress("127.0.0.1", 0))
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.get(
                bound.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
    finally:
        await exp.close()
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    assert 'ocrtui_model_state{model="glm",ocrtui_model_state="starting"} 1.0' in r.text
    assert 'ocrtui_model_state{model="glm",ocrtui_model_state="ready"} 0.0' in r.text
    assert 'ocrtui_model_restarts_total{model="glm"} 2.0' in r.text
    assert 'ocrtui_model_sleep_level{model="glm"} -1.0' in r.text
    assert 'ocrtui_model_sleep_level{model="lit"} 1.0' in r.text
    assert 'ocrtui_model_given_back_bytes{model="lit"} 1.073741824e+09' in r.text  # 1 GiB
    assert 'ocrtui_model_given_back_bytes{model="glm"}' not in r.text
    assert "ocrtui_pod_connected 1.0" in r.text and "ocrtui_pod_price_per_hour 0.44" in r.text
    assert "ocrtui_pod_idle_seconds" not in r.text  # not known: not made up


async def test_export_command_serves_until_sigterm(tmp_path: Path) -> None:
    """`ocrtui --demo export` as the operator runs it: the bound URL first, the demo pod's
    models in the series, a clean exit 0 on SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ocrtui",
        "--demo",
        "export",
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.startswith("serving metrics at http://127.0.0.1:"), line
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.get(line.split(" at ")[1].strip())
        assert 'ocrtui_model_state{model="demo-rapidocr",ocrtui_model_state="down"} 1.0' in r.text
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_dashboard_serves_the_endpoint_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[export] listen``: served from before the dashboard's first frame until it quits."""
    from ocrtui.sim.demo import demo_config
    from ocrtui.tui import app as tui_app

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    port = free_port()
    config = demo_config().model_copy(update={"export": ExportConfig(listen=f"127.0.0.1:{port}")})
    seen: list[str] = []

    async def run_async(self: object) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            seen.append((await client.get(f"http://127.0.0.1:{port}/metrics")).text)

    monkeypatch.setattr(tui_app.OcrtuiApp, "run_async", run_async)
    assert tui_app.run_dashboard(Fleet((config,)), readonly=True, demo=True) == 0
    assert 'ocrtui_model_state{model="demo-rapidocr",ocrtui_model_state="down"} 1.0' in seen[0]
    with pytest.raises(httpx.ConnectError):  # closed with the dashboard
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
