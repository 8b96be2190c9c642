"""Key paths against a live demo-style pod: simulated GPU, two simulated vLLM servers
(synthetic engine) started by the Controller, reached through LocalPod."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from ocrtui.config import Fleet, ListenAddress
from ocrtui.control import Controller
from ocrtui.export import MetricsExporter
from ocrtui.status import Snapshot
from ocrtui.tui.app import (
    OcrtuiApp,
    comparison_app,
    comparison_exit_code,
    save_screenshot_headless,
)
from ocrtui.tui.messages import OperationProgress
from ocrtui.tui.screens.compare import ComparePane, CompareScreen
from ocrtui.tui.screens.dialogs import ConfirmDialog, LauncherDialog
from tests.plugins.livepod import two_model_config
from tests.plugins.scrape import arm_series, scrape
from tests.plugins.sim_pod import SimPod
from tests.plugins.tui_app import until

SIZE = (140, 44)
pytestmark = pytest.mark.slow  # each starts two simulated servers: 6-20 s


class Live:
    def __init__(self, app: OcrtuiApp, ctl: Controller, pilot: Pilot[Any]) -> None:
        self.app, self.ctl, self.pilot = app, ctl, pilot
        self.glm, self.lighton = (m.name for m in app.config.models)
        self.steps: list[tuple[str, str | None]] = []

    async def until(self, cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        def explain() -> str:
            models = [(m.name, m.state, m.hint, m.pid) for m in self.ctl.snapshot.models]
            return f"{what or cond}; models now {models}; {self.agent_view()}"

        await until(self.pilot, cond, timeout, explain)

    def agent_view(self) -> str:
        """What the agent's newest sample says of the models' ports and vLLM processes."""
        view = self.ctl.monitor.view
        sample = view.sample
        if sample is None:
            return f"no agent sample (error {view.error!r})"
        procs = [(v.pid, v.kind, v.state, v.served, v.port, v.ppid, v.pgid) for v in sample.vllm]
        return (
            f"agent sample seq {sample.seq}, {view.data_age_s} s old, stale {view.stale}, "
            f"error {view.error!r}; ports {sample.ports}; vllm {procs}; "
            f"orphans {[(o.pid, o.model) for o in view.orphans]}"
        )

    def model(self, name: str) -> Any:
        m = self.ctl.snapshot.model(name)
        assert m is not None
        return m

    async def all_ready(self) -> None:
        await self.until(
            lambda: all(self.model(n).state == "ready" for n in (self.glm, self.lighton)),
            60,
            "both models ready",
        )
        # The up progress has ended and the dashboard shows the live snapshot.
        await self.until(lambda: not self.app.dashboard.operations, 10, "start-up progress")
        await self.app.dashboard.tick()
        self.app.dashboard.debounce_s = 0.0


@pytest.fixture
async def live(sim_pod: SimPod, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    controllers: list[Controller] = []
    config = two_model_config(sim_pod)  # one config: the ports are chosen here

    def make(readonly: bool = False) -> tuple[OcrtuiApp, Controller]:
        ctl = Controller(config)
        controllers.append(ctl)
        app = OcrtuiApp(config, ctl, readonly=readonly, start_servers=True,
                        state_path=tmp_path / "state.toml")  # fmt: skip
        return app, ctl

    yield make
    for ctl in controllers:
        await ctl.close()


def steps_hook(steps: list[tuple[str, str | None]]) -> Callable[[Any], None]:
    def hook(message: Any) -> None:
        if isinstance(message, OperationProgress):
            steps.append((message.model, message.step))

    return hook


async def test_restart_brings_back_a_sigkilled_model(live: Callable[..., Any]) -> None:
    app, ctl = live()
    steps: list[tuple[str, str | None]] = []
    async with app.run_test(size=SIZE, message_hook=steps_hook(steps)) as pilot:
        t = Live(app, ctl, pilot)
        await t.all_ready()
        old_pid = t.model(t.glm).pid
        os.kill(old_pid, signal.SIGKILL)  # its EngineCore lives on, holding VRAM
        await t.until(lambda: t.model(t.glm).state in ("crashed", "down"), 20, "crash seen")
        await t.app.dashboard.tick()
        steps.clear()
        await pilot.press("r")  # crashed: no confirmation
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmDialog)
        await t.until(lambda: any(s and "VRAM" in s for _, s in steps), 30, "waiting for VRAM")
        await t.until(
            lambda: t.model(t.glm).state == "ready" and t.model(t.glm).pid != old_pid,
            60, "glm-ocr ready again",
        )  # fmt: skip
        await t.until(lambda: (t.glm, None) in steps, 10, "restart finished")
        assert not any(p.model and p.model.startswith("orphan:") for p in ctl.snapshot.processes)


async def test_ready_model_restart_cancel_then_confirm(live: Callable[..., Any]) -> None:
    app, ctl = live()
    async with app.run_test(size=SIZE) as pilot:
        t = Live(app, ctl, pilot)
        await t.all_ready()
        await pilot.press("2")
        old_pid = t.model(t.lighton).pid
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")  # Cancel is the default
        await pilot.pause()
        assert app.screen is app.dashboard
        await pilot.press("r")
        await pilot.pause()
        await pilot.click("#confirm")
        await t.until(
            lambda: t.model(t.lighton).pid not in (None, old_pid)
            and t.model(t.lighton).state == "ready",
            60, "lighton-ocr restarted",
        )  # fmt: skip
        assert t.model(t.glm).state == "ready"


async def test_readonly_offers_no_pod_actions(live: Callable[..., Any]) -> None:
    ready, ctl0 = live()
    async with ready.run_test(size=SIZE) as pilot:  # start the servers once
        await Live(ready, ctl0, pilot).all_ready()
    app, ctl = live(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        t = Live(app, ctl, pilot)
        await t.until(
            lambda: all(t.model(n).state == "ready" and t.model(n).pid for n in (t.glm, t.lighton)),
            30,
            "ready, with the server pids known",
        )
        await app.dashboard.tick()
        pids = {n: t.model(n).pid for n in (t.glm, t.lighton)}
        shown = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
        assert not {"restart", "stop", "kill_orphans"} & shown
        for key in ("r", "s", "k"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app.dashboard
        assert {n: t.model(n).pid for n in (t.glm, t.lighton)} == pids


async def test_kill_orphans_frees_the_leaked_vram(live: Callable[..., Any]) -> None:
    app, ctl = live()
    async with app.run_test(size=SIZE) as pilot:
        t = Live(app, ctl, pilot)
        await t.all_ready()

        def orphans(snap: Snapshot) -> list[int]:
            return [p.pid for p in snap.processes if p.model == f"orphan:{t.glm}"]

        os.kill(t.model(t.glm).pid, signal.SIGKILL)
        await t.until(lambda: bool(orphans(ctl.snapshot)), 20, "the orphaned EngineCore")
        leaked = orphans(ctl.snapshot)
        await t.until(lambda: app.dashboard.check_action("kill_orphans", ()) is True, 10)
        await pilot.press("k")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        body = str(dialog.query_one("#body").render())
        assert all(str(pid) in body for pid in leaked) and "GiB" in body
        await pilot.click("#confirm")
        await t.until(lambda: not orphans(ctl.snapshot), 20, "orphans gone")


async def test_comparison_streams_into_both_panes_and_is_rejoined(
    live: Callable[..., Any],
) -> None:
    app, ctl = live()
    async with app.run_test(size=SIZE) as pilot:
        t = Live(app, ctl, pilot)
        await t.all_ready()
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, LauncherDialog)
        await pilot.click("#start")  # the sample suite, config concurrency and schedule
        await t.until(lambda: isinstance(app.screen, CompareScreen), 10, "comparison screen")
        screen = app.screen
        assert isinstance(screen, CompareScreen)

        def pane(s: CompareScreen, i: int) -> str:
            return "\n".join(s.query_one(f"#pane-{i}", ComparePane).lines)

        def partial(i: int) -> bool:
            """The pane's stream box shows text of a page the model has not finished."""
            view, box = app.run_view, screen.query_one(f"#stream-{i}", Static)
            assert view is not None
            in_flight = view.streamed(view.models[i])
            lines = str(box.render()).splitlines() if box.display else []
            if not in_flight or len(lines) < 2:
                return False
            key, so_far = in_flight[-1]
            row = view.rows.get(key)
            return (row is None or view.models[i] not in row.outcomes) and lines[1] in so_far

        await t.until(lambda: partial(0) or partial(1), 90, "a page streaming into a pane")
        await t.until(lambda: bool(pane(screen, 0) and pane(screen, 1)), 90, "text in both panes")
        await pilot.press("escape")  # leave while it runs
        await pilot.pause()
        assert app.screen is app.dashboard and app.run_view is not None
        seen = len(app.run_view.rows)
        await t.until(lambda: len(app.run_view.rows) > seen or app.run_view.finished, 90)
        await pilot.press("v")
        await pilot.pause()
        rejoined = app.screen
        assert isinstance(rejoined, CompareScreen) and rejoined is not screen
        assert pane(rejoined, 0) and pane(rejoined, 1)
        # The run goes on meanwhile: a page may land between the screen's first fill and here.
        await t.until(
            lambda: rejoined.query_one("#pages", DataTable).row_count == len(app.run_view.rows),
            60,
            "the rejoined table to hold every row so far",
        )
        await t.until(lambda: app.run_view.finished, 120, "the run to finish")
        assert app.run_view.error is None
        assert app.run_view.out_dir
        results = Path(app.run_view.out_dir, "results.jsonl").read_bytes()  # noqa: ASYNC240
        assert results.count(b"\n") == sum(len(row.outcomes) for row in app.run_view.rows.values())


def test_headless_screenshot_through_a_comparison(sim_pod: SimPod, tmp_path: Path) -> None:
    """`ocrtui demo --screenshot F --compare`, on this test's pod instead of the demo's."""
    config = two_model_config(sim_pod)
    out = tmp_path / "shot.svg"
    assert save_screenshot_headless(Fleet((config,)), str(out), compare=True) == 0
    svg = out.read_text()
    for m in config.models:
        assert m.name in svg
    assert "p.1" in svg and "pages/s" in svg  # page headers in the panes, live summary


async def test_compare_command_opens_on_its_run_and_exits_with_its_status(
    sim_pod: SimPod, tmp_path: Path
) -> None:
    """`ocrtui compare DOC` on a terminal: the comparison screen from the start, streaming
    into both panes (the servers come up first), and the run's exit status after quitting;
    the [export] endpoint serves each arm's pages done, failed and images/s."""
    from PIL import Image, ImageDraw

    from ocrtui.cli import _parser
    from ocrtui.compare.cli import request_from_args
    from ocrtui.compare.launch import resolve

    config = two_model_config(sim_pod)
    doc = tmp_path / "note.png"
    image = Image.new("RGB", (600, 200), "white")
    ImageDraw.Draw(image).text((20, 80), "Invoice 2026-11-26 total 8,500", fill="black")
    image.save(doc)
    args = _parser().parse_args(["compare", str(doc), "--out", str(tmp_path / "run")])
    setup = resolve(config, request_from_args(args))
    app = comparison_app(Fleet((config,)), setup, demo=True)
    exporter = app.metrics = MetricsExporter([app.source])
    bound = exporter.serve(ListenAddress("127.0.0.1", 0))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, CompareScreen)
            assert app.run_view is not None and app.run_view.label == str(doc)
            t = Live(app, app.source, pilot)  # type: ignore[arg-type]
            view = app.run_view

            def pane(i: int) -> str:
                return "\n".join(screen.query_one(f"#pane-{i}", ComparePane).lines)

            await t.until(lambda: view.finished, 120, "the run to finish")
            await t.until(lambda: not screen.repaint_pending, 5, "the last repaint")
            assert view.error is None, view.error
            assert "note.png p.1" in pane(0) and "note.png p.1" in pane(1)
            assert app.screen is screen
            samples = await scrape(bound)
            for m in config.models:
                series = arm_series(samples, m.name)
                assert series["ocrtui_compare_pages_done_total"] == 1, series
                assert series["ocrtui_compare_pages_failed_total"] == 0
                # The image has no reference: no CER to serve.
                assert "ocrtui_compare_cer" not in series
                assert series["ocrtui_compare_images_per_second"] > 0
            await pilot.press("q")
        assert await comparison_exit_code(app) == 0
        assert (tmp_path / "run" / "summary.json").is_file()
    finally:
        await exporter.close()
        await app.source.close()
