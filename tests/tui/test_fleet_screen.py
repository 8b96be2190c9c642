"""The fleet screen (several pods): opened first, one panel per pod, ``enter`` into that pod's
dashboard, ``p`` to the next pod's, ``f`` back; operations reach the pod of their model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Button

from ocrtui.compare.arms import Placement
from ocrtui.config import Config, parse_config
from ocrtui.errors import PodUnreachable
from ocrtui.pod.provider import ProviderState
from ocrtui.status import ModelShare, OrphanStatus, ServiceStatus
from ocrtui.tui.app import OcrtuiApp
from ocrtui.tui.run_view import RunView
from ocrtui.tui.screens.dashboard import DashboardScreen
from ocrtui.tui.screens.dialogs import ConfirmDialog
from ocrtui.tui.screens.fleet import FleetScreen, PodPanel, comparison_here, pod_panel_content
from ocrtui.tui.source import PodSlot, ReplaySource
from ocrtui.tui.widgets.run_header import run_header_content
from ocrtui.tui.widgets.service_card import ServiceCard
from tests.plugins import recorded
from tests.plugins.tui_app import SIZE, until

MODELS = ["glm-ocr", "lighton-ocr"]

_GPU = recorded.CRASHED.gpus[0]
H100 = replace(
    recorded.CRASHED,
    pod=replace(
        recorded.POD, label="h100-pod", connection="reconnecting", connection_age_s=12.0, demo=False
    ),
    gpus=(replace(_GPU, models=(ModelShare("olm-ocr", 0, 23000),), other_mib=24560),),
    models=(replace(recorded.CRASHED.models[0], name="olm-ocr", port=8000),),
    orphans=(OrphanStatus(4188, "olm-ocr", 17450, 2100, "VLLM::EngineCore"),),
)


def h100_config(tmp_path: Path, **pod: Any) -> Config:
    return parse_config(
        {
            "pod": {"kind": "local", "name": "h100-pod", **pod},
            "models": [
                {
                    "name": "olm-ocr",
                    "model": "allenai/olmOCR-2-7B-1025",
                    "port": 8000,
                    "gpu_memory_utilization": 0.5,
                }
            ],
            "ui": {"theme_dir": str(tmp_path / "themes")},
        },
        "test",
    )


def two_pods(tmp_path: Path) -> tuple[OcrtuiApp, ReplaySource, ReplaySource]:
    a40 = ReplaySource([recorded.READY], logs={"glm-ocr": recorded.GLM_LOG})
    h100 = ReplaySource([H100])
    config = recorded.config(str(tmp_path / "shots"), theme_dir=str(tmp_path / "themes"))
    app = OcrtuiApp(
        config,
        a40,
        state_path=tmp_path / "state.toml",
        more_pods=[PodSlot(h100_config(tmp_path), h100)],
    )
    return app, a40, h100


async def _fleet_drawn(pilot: Pilot[int]) -> None:
    def fleet() -> FleetScreen | None:
        return next((s for s in pilot.app.screen_stack if isinstance(s, FleetScreen)), None)

    await until(pilot, lambda: fleet() is not None, what="the fleet screen")
    screen = fleet()
    assert screen is not None
    await screen.tick()
    await pilot.pause()


def test_fleet_screen(snap_compare, tmp_path: Path) -> None:
    app, _, _ = two_pods(tmp_path)
    assert snap_compare(app, terminal_size=SIZE, run_before=_fleet_drawn)


async def test_enter_opens_the_pod_p_goes_on_f_comes_back(tmp_path: Path) -> None:
    app, a40, h100 = two_pods(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet screen")
        panels = list(app.screen.query(PodPanel))
        assert len(panels) == 2
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert app.current == "h100-pod" and app.screen is app.dashboards["h100-pod"]
        assert app.source is h100
        await app.screen.tick()
        await pilot.press("r")  # olm-ocr crashed: restarted at once, on its own pod
        await until(pilot, lambda: ("restart", "olm-ocr") in h100.calls, what="the restart")
        assert a40.calls == []  # the other pod's source saw nothing
        await pilot.press("p")
        await until(pilot, lambda: app.screen is app.dashboards["demo-pod"], what="next pod")
        assert app.source is a40
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back")


async def test_one_pod_has_no_fleet_screen_and_no_pod_keys(tmp_path: Path) -> None:
    config = recorded.config(str(tmp_path / "shots"), theme_dir=str(tmp_path / "themes"))
    app = OcrtuiApp(config, ReplaySource([recorded.READY]), state_path=tmp_path / "s.toml")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        shown = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
        assert "next_pod" not in shown and "fleet" not in shown


def test_the_comparison_running_on_a_pod() -> None:
    run = RunView(["glm-ocr", "olm-ocr"], "sample suite")
    run.done["olm-ocr"] = 3
    run.set_pause("olm-ocr", "link down (pod h100-pod)")
    assert comparison_here(run, {"glm-ocr", "lighton-ocr"}) == (
        "glm-ocr 0 done, 0 failed · starting"
    )
    here = comparison_here(run, {"olm-ocr"})
    assert here == "olm-ocr 3 done, 0 failed · starting · paused: link down (pod h100-pod)"
    assert comparison_here(run, {"other"}) is None
    run.finish()
    assert comparison_here(run, {"olm-ocr"}) is None


def test_the_run_header_names_each_arms_pod_and_gpu() -> None:
    facts = recorded.run_facts()
    one = run_header_content(facts, recorded.READY, MODELS).plain
    assert "· pod " not in one  # one pod: its name leads the header, as ever
    placements = {
        "glm-ocr": Placement.of(recorded.READY, "glm-ocr"),
        "lighton-ocr": Placement("h100-pod", "GPU 0 NVIDIA H100 80GB HBM3"),
    }
    text = run_header_content(facts, recorded.READY, MODELS, placements, [H100]).plain
    first, glm, lighton = text.splitlines()[:3]
    assert "demo-pod" in first and "h100-pod" in first
    assert glm.endswith("· pod demo-pod, GPU 0 NVIDIA A40 (simulated)")
    assert lighton.endswith("· pod h100-pod, GPU 0 NVIDIA H100 80GB HBM3")


async def test_a_theme_change_repaints_every_pods_dashboard(tmp_path: Path) -> None:
    app, _, _ = two_pods(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet screen")
        app.show_pod("h100-pod")
        h100 = app.dashboards["h100-pod"]
        await until(pilot, lambda: h100._applied is not None, what="h100's dashboard drawn")
        await pilot.press("p")
        await until(pilot, lambda: app.screen is app.dashboards["demo-pod"], what="next pod")
        assert h100._applied is not None
        app.theme = "ocrtui-light"
        await pilot.pause()
        assert h100._applied is None  # repainted with the new theme when shown again


class Unreachable(ReplaySource):
    async def start(self) -> None:
        raise PodUnreachable("h100-pod: connection refused")


async def test_a_pod_that_cannot_connect_gets_its_own_start_offered(tmp_path: Path) -> None:
    """The fleet screen shows the first pod's name as current; the start offered when
    another pod's first connect fails is that pod's, through its provider and source."""
    a40 = ReplaySource([recorded.READY], power=ProviderState("running", "a40 RUNNING"))
    h100 = Unreachable([H100], power=ProviderState("stopped", "h100 EXITED"))
    provider = {"status_command": ["x"], "start_command": ["y"]}
    h100_cfg = h100_config(tmp_path, provider=provider)
    config = recorded.config(str(tmp_path / "shots"), theme_dir=str(tmp_path / "themes"))
    app = OcrtuiApp(
        config, a40, state_path=tmp_path / "s.toml", more_pods=[PodSlot(h100_cfg, h100)]
    )
    async with app.run_test(size=SIZE) as pilot:

        def offered() -> bool:
            focused = app.focused  # mounted, Cancel (the default) focused
            return isinstance(app.screen, ConfirmDialog) and getattr(focused, "id", "") == "cancel"

        await until(pilot, offered, what="the offer")
        assert app.current == "demo-pod"
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and dialog._title == "Pod h100-pod is stopped"
        dialog.query_one("#confirm", Button).press()
        await until(pilot, lambda: ("start_pod", None) in h100.calls, what="h100's start")
        assert a40.calls == []


def routed_config(tmp_path: Path) -> Config:
    replicas = [{"port": 8010 + i, "env": {"CUDA_VISIBLE_DEVICES": str(i)}} for i in range(2)]
    return parse_config(
        {
            "pod": {"kind": "local", "name": "h100-pod"},
            "models": [
                {
                    "name": "olm-ocr",
                    "model": "allenai/olmOCR-2-7B-1025",
                    "port": 8000,
                    "gpu_memory_utilization": 0.5,
                    "replicas": replicas,
                }
            ],
            "ui": {"theme_dir": str(tmp_path / "themes")},
        },
        "test",
    )


_REPLICA = replace(recorded.READY.models[0], port=8010, running=3, waiting=1)
ROUTED = replace(
    H100,
    gpus=(
        replace(
            _GPU,
            models=(ModelShare("olm-ocr-r0", 20000, 23000), ModelShare("olm-ocr-r1", 3000, 23000)),
            orphan_mib=0,
            other_mib=_GPU.used_mib - 23000,
        ),
    ),
    orphans=(),
    models=(
        replace(_REPLICA, name="olm-ocr-r0"),
        replace(
            _REPLICA,
            name="olm-ocr-r1",
            port=8011,
            state="starting",
            stage="loading weights",
            running=None,
            waiting=None,
        ),
    ),
    services=(ServiceStatus("olm-ocr-router", 8000, "ready", 4321),),
)


def test_a_routed_models_replicas_and_router_are_grouped_under_it(tmp_path: Path) -> None:
    routing = routed_config(tmp_path).routing()
    text = pod_panel_content(ROUTED, 1.0, None, routing).plain.splitlines()
    # The GPU line, then the group: no replica or router among the pod's other units.
    assert text[1].startswith("GPU 0 ")
    assert text[2:] == [
        "olm-ocr  router olm-ocr-router ready · 1/2 replicas ready",
        "├ olm-ocr-r0 ready  run 3 · wait 1",
        "└ olm-ocr-r1 starting (loading weights)  run - · wait -",
    ]
    # Before the first status round names them, the replicas and the router read "down".
    early = pod_panel_content(replace(ROUTED, models=(), services=()), 1.0, None, routing)
    assert early.plain.splitlines()[-3:] == [
        "olm-ocr  router olm-ocr-router down · 0/2 replicas ready",
        "├ olm-ocr-r0 down  run - · wait -",
        "└ olm-ocr-r1 down  run - · wait -",
    ]


def test_fleet_screen_with_replicas(snap_compare, tmp_path: Path) -> None:
    a40 = ReplaySource([recorded.READY], logs={"glm-ocr": recorded.GLM_LOG})
    config = recorded.config(str(tmp_path / "shots"), theme_dir=str(tmp_path / "themes"))
    app = OcrtuiApp(
        config,
        a40,
        state_path=tmp_path / "state.toml",
        more_pods=[PodSlot(routed_config(tmp_path), ReplaySource([ROUTED]))],
    )
    assert snap_compare(app, terminal_size=SIZE, run_before=_fleet_drawn)


async def test_the_routers_card_says_how_many_replicas_are_ready(tmp_path: Path) -> None:
    app = OcrtuiApp(routed_config(tmp_path), ReplaySource([ROUTED]), state_path=tmp_path / "s")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        router = app.screen.query_one("#svc-0", ServiceCard)
        assert router.service_name == "olm-ocr-router"
        await until(pilot, lambda: router._rendered is not None, what="the router's card")
        assert "routes olm-ocr: 1/2 replicas ready" in str(router.render())


def test_every_run_of_a_panels_text_starts_with_a_visible_character() -> None:
    """A screenshot draws each run of equally styled text as one SVG <text> at its cell; a
    viewer drops the spaces a run starts with, so padding must end the run before it (two
    models read "glm-ocr readylighton-ocr ready" in a PNG of the fleet screen). The header
    line is the dashboard's too (its badges' spaces are on their own background)."""
    content = pod_panel_content(recorded.READY, 1.0, None, ())
    plain = content.plain
    styles = [tuple(str(s.style) for s in content.spans if s.start <= i < s.end)
              for i in range(len(plain))]  # fmt: skip
    body = plain.index("\n") + 1
    runs, start = [], body
    for i in range(body, len(plain) + 1):
        if i == len(plain) or plain[i] == "\n" or (i > start and styles[i] != styles[i - 1]):
            runs.append(plain[start:i])
            start = i + 1 if i < len(plain) and plain[i] == "\n" else i
    assert len(runs) > 4 and not [r for r in runs if r.strip() and r[0].isspace()]
    assert "glm-ocr ready · lighton-ocr ready" in plain.splitlines()
