"""The dashboard with [[services]] and [pod.provider]: a service card per service, `r`
restarts the selected service; the header shows the provider's power state; a pod that SSH
cannot reach and the provider calls stopped is offered a start (Cancel default)."""

from __future__ import annotations

import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button

from ocrtui.config import Config, parse_config
from ocrtui.control import Controller
from ocrtui.pod.provider import ProviderState
from ocrtui.status import ServiceStatus
from ocrtui.tui.app import OcrtuiApp
from ocrtui.tui.run_view import RunView
from ocrtui.tui.screens.compare import CompareScreen
from ocrtui.tui.screens.dialogs import ConfirmDialog
from ocrtui.tui.source import ReplaySource
from ocrtui.tui.widgets.header import PodHeader
from ocrtui.tui.widgets.service_card import ServiceCard
from tests.plugins import recorded
from tests.plugins.tui_app import SIZE, until

OCR_API = ServiceStatus(
    "ocr-api", 8007, "crashed", None, hint="RuntimeError: vLLM at :8000 refused",
    last_lines=("Traceback (most recent call last):", "RuntimeError: vLLM at :8000 refused"),
)  # fmt: skip
PDF_API = ServiceStatus("pdf-api", 8006, "ready", 4242, uptime_s=75.0, pids=(4242,))


def config(tmp_path: Path, **pod: Any) -> Config:
    data = recorded.config().model_dump(exclude_none=True, mode="python")
    data["pod"].update(pod)
    data["ui"]["screenshot_dir"] = str(tmp_path / "shots")
    data["ui"]["theme_dir"] = str(tmp_path / "themes")
    data["services"] = [
        {"name": "ocr-api", "command": ["python3", "-m", "ocr_server"], "port": 8007},
        {"name": "pdf-api", "command": ["python3", "-m", "pdf_server"], "port": 8006},
    ]
    return parse_config(data, "test")


def text(widget: Any) -> str:
    return str(widget.render())


def cancel_focused(app: OcrtuiApp) -> bool:
    """A confirmation is up and mounted, Cancel (the default) focused."""
    focused = app.focused
    return isinstance(app.screen, ConfirmDialog) and focused is not None and focused.id == "cancel"


async def ready(app: OcrtuiApp, pilot: Pilot[Any]) -> None:
    await pilot.pause()
    app.dashboard.debounce_s = 0.0
    await app.dashboard.tick()
    await pilot.pause()


async def test_service_cards_and_restart_with_r(tmp_path: Path) -> None:
    snap = replace(recorded.READY, services=(OCR_API, PDF_API))
    source = ReplaySource([snap])
    app = OcrtuiApp(config(tmp_path), source, state_path=tmp_path / "state.toml")
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        ocr = app.dashboard.query_one("#svc-0", ServiceCard)
        assert "CRASHED" in text(ocr) and ":8007" in text(ocr)
        assert "hint: RuntimeError: vLLM at :8000 refused" in text(ocr)
        pdf = app.dashboard.query_one("#svc-1", ServiceCard)
        assert "READY" in text(pdf) and "pid 4242" in text(pdf) and "up 1m15s" in text(pdf)

        await pilot.press("3")  # models 1-2, then the services
        assert ocr.has_class("-selected") and app.dashboard.selected_name == "ocr-api"
        assert not app.dashboard.check_action("stop", ())  # stop is the models'
        await pilot.press("r")  # crashed: at once
        await until(pilot, lambda: ("restart", "ocr-api") in source.calls)
        assert not isinstance(app.screen, ConfirmDialog)

        await pilot.press("tab")
        assert app.dashboard.selected_name == "pdf-api"
        await pilot.press("r")  # ready: behind a confirmation, Cancel focused
        await until(pilot, lambda: cancel_focused(app))
        await pilot.click("#confirm")
        await until(pilot, lambda: ("restart", "pdf-api") in source.calls)


async def test_header_shows_the_providers_power_state(tmp_path: Path) -> None:
    pod = replace(recorded.POD, power="running", power_detail="abc RUNNING")
    source = ReplaySource([replace(recorded.READY, pod=pod)])
    app = OcrtuiApp(config(tmp_path), source, state_path=tmp_path / "state.toml")
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        assert "power: running" in text(app.dashboard.query_one(PodHeader))


async def test_header_shows_the_price_and_the_idle_notice(tmp_path: Path) -> None:
    pod = replace(recorded.POD, power="running", price_per_hr=0.44, idle_notice="idle 31 min")
    source = ReplaySource([replace(recorded.READY, pod=pod)])
    app = OcrtuiApp(config(tmp_path), source, state_path=tmp_path / "state.toml")
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        shown = text(app.dashboard.query_one(PodHeader))
        assert "$0.44/h" in shown and "idle 31 min" in shown


async def test_replayed_lost_link_on_a_stopped_pod_offers_the_start(tmp_path: Path) -> None:
    pod = replace(recorded.LOST.pod, power="stopped")
    source = ReplaySource(
        [replace(recorded.LOST, pod=pod)], power=ProviderState("stopped", "abc EXITED")
    )
    app = OcrtuiApp(
        config(tmp_path, provider={"status_command": ["x"], "start_command": ["y"]}),
        source,
        state_path=tmp_path / "state.toml",
    )
    async with app.run_test(size=SIZE) as pilot:
        await ready(app, pilot)
        await until(pilot, lambda: cancel_focused(app))
        await pilot.press("enter")  # Cancel: nothing started, and not offered again
        await ready(app, pilot)
        assert app.screen is app.dashboard and ("start_pod", None) not in source.calls


def _script(path: Path, body: str) -> list[str]:
    path.write_text(body)
    return [sys.executable, str(path)]


async def test_unreachable_stopped_pod_says_so_and_starts_it(tmp_path: Path) -> None:
    """A real Controller: SSH to a closed port fails; the provider script says EXITED; the
    header says power: stopped; confirming runs the start command."""
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tmp_path / "state.txt"
    state.write_text("pod abc EXITED")
    status = _script(tmp_path / "status.py", f"print(open({str(state)!r}).read())")
    start = _script(tmp_path / "start.py", f"open({str(state)!r}, 'w').write('pod abc RUNNING')")
    (tmp_path / "empty_ssh_config").write_text("")
    cfg = config(
        tmp_path,
        kind="ssh",
        host="127.0.0.1",
        port=port,
        connect_timeout_s=3.0,
        ssh_config=str(tmp_path / "empty_ssh_config"),
        provider={"status_command": status, "start_command": start, "timeout_s": 20.0},
    )
    ctl = Controller(cfg)
    app = OcrtuiApp(cfg, ctl, state_path=tmp_path / "ui-state.toml")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: cancel_focused(app), timeout=20)
            assert app.source_error is not None  # the connect failed
            assert "abc EXITED" in text(app.screen.query_one("#body"))
            app.screen.query_one("#confirm", Button).press()
            await until(pilot, lambda: "RUNNING" in state.read_text(), timeout=20)
            await until(pilot, lambda: ctl.snapshot.pod.power == "running", timeout=20)
            await app.dashboard.tick()
            await until(
                pilot,
                lambda: "power: running" in text(app.dashboard.query_one(PodHeader)),
                timeout=10,
            )
    finally:
        await ctl.close()


async def test_compare_pane_of_an_api_arm_says_via_api(tmp_path: Path) -> None:
    app = OcrtuiApp(
        config(tmp_path), ReplaySource([recorded.READY]), state_path=tmp_path / "state.toml"
    )
    async with app.run_test(size=SIZE) as pilot:
        app.run_view = RunView(["glm-ocr", "ocr-api"], "api", frozenset({"ocr-api"}))
        app.show_comparison()
        await until(
            pilot,
            lambda: isinstance(app.screen, CompareScreen) and bool(app.screen.query("#pages")),
        )
        titles = [str(app.screen.query_one(f"#pane-{i}").border_title) for i in range(2)]
        assert titles == ["glm-ocr", "ocr-api (via API)"]
