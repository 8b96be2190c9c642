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
from ocrtui.sim.gpu import SimGpu
from ocrtui.status import GpuStatus, ModelStatus, PodStatus, Snapshot
from tests.plugins.scrape import FixedSource, scrape
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
    exp = MetricsExporter([FixedSource(snap)])
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


def pod_snapshot(label: str, model: str, used_mib: int) -> Snapshot:
    gpu = GpuStatus(0, "GPU-0", "A40", 46068, used_mib, 46068 - used_mib, None, None, None, True)
    return Snapshot(
        PodStatus(label, "connected", 1.0, 0.5, simulated_gpu=True, demo=False),
        gpus=(gpu,),
        processes=(),
        models=(ModelStatus(model, 8000, "ready", 7, restarts=1),),
    )


async def test_several_pods_each_series_labelled_with_its_pod() -> None:
    """One exporter over two pods: every pod's series, each with a ``pod`` label (the same
    GPU index and port on both pods stay apart); the comparison's stay per arm."""
    exp = MetricsExporter(
        [
            FixedSource(pod_snapshot("a40", "glm", 1024)),
            FixedSource(pod_snapshot("h100", "lit", 2048)),
        ]
    )
    bound = exp.serve(ListenAddress("127.0.0.1", 0))
    try:
        samples = await scrape(bound)
    finally:
        await exp.close()
    assert samples[("ocrtui_pod_connected", (("pod", "a40"),))] == 1
    assert samples[("ocrtui_pod_connected", (("pod", "h100"),))] == 1
    used = "ocrtui_gpu_memory_used_bytes"
    assert samples[(used, (("gpu", "0"), ("pod", "a40")))] == 1024 * 1024 * 1024
    assert samples[(used, (("gpu", "0"), ("pod", "h100")))] == 2048 * 1024 * 1024
    state = "ocrtui_model_state"
    assert samples[(state, (("model", "glm"), (state, "ready"), ("pod", "a40")))] == 1
    assert samples[(state, (("model", "lit"), (state, "ready"), ("pod", "h100")))] == 1
    restarts = "ocrtui_model_restarts_total"
    assert samples[(restarts, (("model", "lit"), ("pod", "h100")))] == 1
    assert samples[("ocrtui_orphans_killed_total", (("pod", "h100"),))] == 0
    unlabelled = [key for key in samples if not any(k == "pod" for k, _ in key[1])]
    assert unlabelled == []  # no comparison runs: every series is a pod's


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


async def test_export_command_serves_every_pod_or_the_one_named(tmp_path: Path) -> None:
    """`ocrtui export` over a [[pods]] config: both pods' series, labelled with their pod;
    with ``--pod NAME`` that pod's alone, as one pod's series always were."""
    pods: dict[str, str] = {}
    for k, name in enumerate(("a40", "h100")):
        gpu = SimGpu.create(tmp_path / f"gpu-{name}")
        work = tmp_path / f"work-{name}"
        work.mkdir()
        pods[name] = (f'[[pods]]\nname = "{name}"\nkind = "local"\nworkdir = "{work}"\n'
                 f'sim_gpu = "{gpu.path}"\n[[pods.models]]\nname = "m-{name}"\nmodel = "x"\n'
                 f"port = {free_port()}\ngpu_memory_utilization = 0.{k + 4}\n")  # fmt: skip
    config = tmp_path / "ocrtui.toml"
    config.write_text("".join(pods.values()))

    async def served(*pod: str, code: int = 0) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ocrtui", "--config", str(config), *pod, "export",
            "--listen", "127.0.0.1:0", stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line.startswith("serving metrics at "), line
            async with httpx.AsyncClient(timeout=5) as client:
                text = (await client.get(line.split(" at ")[1].strip())).text
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == code
            return text
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    both = await served()
    down = 'ocrtui_model_state{model="m-%s",ocrtui_model_state="down",pod="%s"} 1.0'
    assert down % ("a40", "a40") in both and down % ("h100", "h100") in both
    one = await served("--pod", "h100")
    assert 'ocrtui_model_state{model="m-h100",ocrtui_model_state="down"} 1.0' in one
    assert "m-a40" not in one and 'pod="' not in one
    # A pod that cannot be reached is left out (exit 3 at the end, as every headless command
    # gives); the one left keeps its pod label, as its series are a fleet's.
    gone = '[[pods]]\nname = "gone"\nhost = "unreachable.invalid"\n[[pods.models]]\n'
    config.write_text(
        pods["h100"]
        + gone
        + 'name = "m-gone"\nmodel = "x"\nport = 1\ngpu_memory_utilization = 0.4\n'
    )
    rest = await served(code=3)
    assert down % ("h100", "h100") in rest and 'pod="gone"' not in rest


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


def test_the_dashboard_of_several_pods_serves_every_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[export] listen`` of a [[pods]] dashboard: every pod's models, each with its pod."""
    from ocrtui.sim.demo import demo_pods
    from ocrtui.tui import app as tui_app

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    port = free_port()
    first, second = demo_pods(2)
    first = first.model_copy(update={"export": ExportConfig(listen=f"127.0.0.1:{port}")})
    seen: list[str] = []

    async def run_async(self: object) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            seen.append((await client.get(f"http://127.0.0.1:{port}/metrics")).text)

    monkeypatch.setattr(tui_app.OcrtuiApp, "run_async", run_async)
    fleet = Fleet((first, second), listed=True)
    assert tui_app.run_dashboard(fleet, readonly=True, demo=True) == 0
    for pod in fleet.pods:
        (model,) = pod.models
        line = 'ocrtui_model_state{model="%s",ocrtui_model_state="down",pod="%s"} 1.0'
        assert line % (model.name, pod.pod.label) in seen[0]
