"""The Textual app and the entry points the CLI dispatches to (the dashboard, `ocrtui compare`
on a terminal, the headless screenshot).

The app owns the pod source (the Controller, or a replay in tests), every worker that does
slow work (connecting, lifecycle operations, log tails, the comparison run) and the single
place that turns a worker's error into a notification. Screens only render and ask.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.worker import Worker, WorkerFailed, WorkerState

from ocrtui.config import ApiArmConfig, Config, Fleet
from ocrtui.export import MetricsExporter
from ocrtui.tui.messages import LogTail, OperationProgress
from ocrtui.tui.run_view import RunView
from ocrtui.tui.screens.compare import CompareScreen
from ocrtui.tui.screens.dashboard import DashboardScreen
from ocrtui.tui.screens.dialogs import DIALOG_CSS, ConfirmDialog
from ocrtui.tui.screens.fleet import FleetScreen
from ocrtui.tui.source import PodSlot, PodSource
from ocrtui.tui.themes import (
    BUILTIN_THEME_DIR,
    default_state_path,
    load_themes,
    read_state,
    remember_theme,
    theme_to_use,
    user_theme_dir,
)
from ocrtui.tui.widgets.format import visible
from ocrtui.tui.widgets.page_pane import PagePane
from ocrtui.tui.widgets.run_header import RunFacts
from ocrtui.tui.widgets.run_plots import RunPlot
from ocrtui.watchdog import Watchdog, WatchdogEvent

if TYPE_CHECKING:
    from ocrtui.compare.launch import CompareRequest, RunSetup
    from ocrtui.compare.runner import CompareRun

FALLBACK_THEME = "ocrtui-dark"
LOG_LINES = 200


class OcrtuiApp(App[int]):
    TITLE = "ocrtui"
    CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f8,ctrl+s", "save_screenshot", "Screenshot", id="app.screenshot"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        config: Config,
        source: PodSource,
        *,
        readonly: bool = False,
        start_servers: bool = False,
        state_path: Path | None = None,
        compare: RunSetup | None = None,
        more_pods: Sequence[PodSlot] = (),
    ) -> None:
        """``config`` and ``source``: the (first) pod; ``more_pods``: the others of a
        ``[[pods]]`` config, which opens on the fleet screen. ``metrics``, set before the app
        runs: the ``[export]`` endpoint over every pod, a comparison's progress fed to it."""
        super().__init__()
        self.metrics: MetricsExporter | None = None
        self.pods = {p.name: p for p in (PodSlot(config, source), *more_pods)}
        self.fleet = Fleet(tuple(p.config for p in self.pods.values()))
        self.current = next(iter(self.pods))  # the pod whose dashboard is, or was last, shown
        self.readonly = readonly
        self.start_servers = start_servers
        self.state_path = state_path or default_state_path()
        self.dashboards = {name: DashboardScreen(pod) for name, pod in self.pods.items()}
        self.run_view: RunView | None = None
        self.compare_run: CompareRun | None = None
        self.compare_error: BaseException | None = None  # the comparison could not start
        self._initial_compare = compare  # `ocrtui compare` on a terminal: opened on its run
        self._connecting: dict[str, Worker[None]] = {}
        self.source_error: BaseException | None = None  # connecting failed (a pod's first)
        self._power_offered: set[str] = set()  # pods whose start was offered in this outage
        self._theme_ready = False
        self._state_lock = threading.Lock()
        # Off until `w` (dashboard.watchdog), one per pod; `ocrtui watch` is the headless one.
        self.watchdogs = {
            name: Watchdog(pod.source, config.watchdog, on_event=self._watchdog_event)
            for name, pod in self.pods.items()
        }

    @property
    def config(self) -> Config:
        """The current pod's config (its [ui], [compare] ... are every pod's)."""
        return self.pods[self.current].config

    @property
    def source(self) -> PodSource:
        return self.pods[self.current].source

    @property
    def dashboard(self) -> DashboardScreen:
        return self.dashboards[self.current]

    @property
    def watchdog(self) -> Watchdog:
        return self.watchdogs[self.current]

    def pod_of(self, name: str) -> PodSlot:
        """The pod of a model, service or API arm (names are unique across the fleet)."""
        return self.pods[self.fleet.owner(name).pod.label]

    def show_pod(self, name: str) -> None:
        """That pod's dashboard, in place of the dashboard shown (or above the fleet)."""
        self.current = name
        if isinstance(self.screen, DashboardScreen):
            self.switch_screen(f"pod:{name}")
        else:
            self.push_screen(f"pod:{name}")

    def show_fleet(self) -> None:
        while not isinstance(self.screen, FleetScreen) and len(self.screen_stack) > 2:
            self.pop_screen()

    # -- start-up ------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._load_themes()
        if self.config.ui.keymap:
            self.set_keymap(dict(self.config.ui.keymap))
        for name, dashboard in self.dashboards.items():
            self.install_screen(dashboard, f"pod:{name}")
        if self.fleet.several:
            self.push_screen(FleetScreen())
        else:
            self.push_screen(self.dashboard)
        for name in self.pods:
            self._connecting[name] = self._connect(name)
        if self._initial_compare is not None:
            self.start_comparison(self._initial_compare)

    def _load_themes(self) -> None:
        loaded = load_themes(BUILTIN_THEME_DIR, user_theme_dir(self.config.ui.theme_dir))
        for theme in loaded.themes:
            self.register_theme(theme)
        for warning in loaded.warnings:
            self.notify(warning, title="Theme ignored", severity="warning", timeout=10)
        wanted = theme_to_use(read_state(self.state_path), self.config.ui.theme)
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self.notify(f"theme {wanted!r} not found; using {FALLBACK_THEME}", severity="warning")
            self.theme = FALLBACK_THEME
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self._theme_ready = True

    def _theme_changed(self, _theme: object) -> None:
        if not self._theme_ready:
            return
        for dashboard in self.dashboards.values():
            dashboard.restyle()
        self._remember_theme()

    @work(thread=True, group="ui-state", exit_on_error=False, description="theme")
    def _remember_theme(self) -> None:
        try:
            # Remembered in a state file of our own: the user's config is never rewritten.
            # One writer at a time, each writing the theme current then: the last one wins.
            with self._state_lock:
                remember_theme(self.state_path, self.theme, self.config.ui.theme)
        except OSError as exc:
            self.call_from_thread(
                self.notify, f"cannot remember the theme: {exc}", severity="warning"
            )

    def _connect(self, pod: str) -> Worker[None]:
        slot = self.pods[pod]

        async def connect() -> None:
            await slot.source.start()
            if self.start_servers and not self.readonly:
                try:
                    await slot.source.up(self._progress)
                finally:
                    for name in [m.name for m in slot.config.models + slot.config.services]:
                        self.dashboards[pod].post_message(OperationProgress(name, None))

        return self.run_worker(
            connect(),
            name=f"connecting to {pod}",
            group=f"source:{pod}",
            exclusive=True,
            exit_on_error=False,
            description="connecting",
        )

    async def _connected(self, names: Iterable[str]) -> None:
        """Until the pods of these models or API arms are connected (their URLs; the demo's
        servers); a failure to connect is raised."""
        for pod in {self.pod_of(n).name for n in names}:
            try:
                await self._connecting[pod].wait()
            except WorkerFailed as exc:
                raise exc.error from None

    # -- lifecycle operations (each in its own worker, one per model at a time) ---------

    def _progress(self, model: str, step: str) -> None:
        self.dashboards[self.pod_of(model).name].post_message(OperationProgress(model, step))

    @work(group="watchdog", exclusive=True, exit_on_error=False, description="watchdog")
    async def toggle_watchdog(self) -> None:
        if self.watchdog.running:
            await self.watchdog.close()
            self.notify("off", title="Watchdog")
        else:
            self.watchdog.start()
            self.notify(f"on; events in {self.config.watchdog.events_path}", title="Watchdog")

    def _watchdog_event(self, event: WatchdogEvent) -> None:
        gave_up = event.outcome.startswith("gave up")
        line = f"{event.time} {event.model} {event.why}: {event.outcome}"
        self.dashboards[self.pod_of(event.model).name].show_watchdog_event(line)
        self.notify(
            line,
            title="Watchdog",
            severity="error" if gave_up else "information",
            timeout=30 if gave_up else 10,
        )

    def restart_model(self, name: str) -> None:
        source = self.pod_of(name).source
        self._operation(name, "restart", lambda: source.restart(name, self._progress))

    def stop_model(self, name: str) -> None:
        source = self.pod_of(name).source
        self._operation(name, "stop", lambda: source.stop_model(name, self._progress))

    def sleep_model(self, name: str) -> None:
        self._operation(name, "sleep", lambda: self.source.sleep(name, 1, self._progress))

    def wake_model(self, name: str) -> None:
        self._operation(name, "wake", lambda: self.source.wake(name))

    def _operation(self, name: str, verb: str, call: Callable[[], Any]) -> None:
        async def run() -> None:
            self._progress(name, f"{verb}: begun")
            try:
                await call()
            finally:
                self._progress_done(name)
            self.notify(f"{name}: {verb} done", title=verb.capitalize())

        self.run_worker(
            run(),
            name=f"{verb} {name}",
            group=f"lifecycle:{name}",
            exclusive=True,
            exit_on_error=False,
        )

    def _progress_done(self, name: str) -> None:
        self.dashboards[self.pod_of(name).name].post_message(OperationProgress(name, None))

    @work(group="orphans", exclusive=True, exit_on_error=False, description="kill orphans")
    async def kill_orphans(self) -> None:
        killed = await self.source.kill_orphans()
        freed = sum(mib for _, mib in killed) / 1024
        pids = ", ".join(str(pid) for pid, _ in killed) or "none"
        self.notify(f"killed {pids}; {freed:.1f} GiB freed", title="Orphans")

    @work(group="log", exclusive=True, exit_on_error=False, description="log tail")
    async def fetch_log(self, name: str) -> None:
        lines = await self.pod_of(name).source.log_tail(name, LOG_LINES)
        self.dashboards[self.pod_of(name).name].post_message(LogTail(name, lines))

    # -- the pod's power ([pod.provider]) ----------------------------------------------------

    def note_link(self, pod: str, connection: str, power: str | None) -> None:
        """From each applied snapshot of ``pod``: a link that keeps failing on a pod the
        provider calls stopped gets the start offered (once per outage)."""
        if connection == "connected":
            self._power_offered.discard(pod)
        elif connection in ("lost", "reconnecting") and power == "stopped":
            self.offer_pod_start(pod)

    def offer_pod_start(self, pod: str) -> None:
        self.run_worker(
            self._offer_pod_start(pod),
            name=f"pod power {pod}",
            group=f"power:{pod}",
            exclusive=True,
            exit_on_error=False,
        )

    async def _offer_pod_start(self, pod: str) -> None:
        """The SSH link failed: ask the provider; when it says stopped, say so and offer the
        start (a confirmation, Cancel default) instead of retrying silently."""
        slot = self.pods[pod]
        provider = slot.config.pod.provider
        if pod in self._power_offered or provider is None:
            return
        state = await slot.source.power_state()
        if state is None or state.state != "stopped" or pod in self._power_offered:
            return
        self._power_offered.add(pod)
        if self.readonly or provider.start_command is None:
            why = "read-only" if self.readonly else "no start_command in [pod.provider]"
            self.notify(
                f"{visible(state.detail)} ({why})",
                title=f"Pod {pod} is stopped",
                timeout=30,
                markup=False,
            )
            return
        body = (
            f"The provider says the pod is stopped ({visible(state.detail)}), so SSH cannot reach "
            "it.\n\nStart it with [pod.provider] start_command?"
        )

        def done(confirmed: bool | None) -> None:
            if confirmed:
                self.start_pod(pod)

        # Plain text, not markup: the detail is the provider's.
        self.push_screen(ConfirmDialog(f"Pod {pod} is stopped", Content(body), "Start pod"), done)

    def start_pod(self, pod: str) -> None:
        self.run_worker(
            self._start_pod(pod),
            name=f"start pod {pod}",
            group=f"power:{pod}",
            exclusive=True,
            exit_on_error=False,
        )

    async def _start_pod(self, pod: str) -> None:
        state = await self.pods[pod].source.start_pod()
        hint = f"\n{visible(state.hint)}" if state.hint else ""
        self.notify(
            f"{state.state} ({visible(state.detail)}){hint}", title=f"Pod {pod}", markup=False
        )
        failed = self._connecting[pod].state is WorkerState.ERROR
        if failed and state.state == "running":
            self.source_error = None
            self._connecting[pod] = self._connect(pod)  # the first connect had failed: again

    # -- the one place worker errors reach the operator ------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is not WorkerState.ERROR:
            return
        worker = event.worker
        group = worker.group or ""
        if group.startswith("source:"):
            self.source_error = self.source_error or worker.error
            self.offer_pod_start(group.removeprefix("source:"))
        if worker.group == "log":
            return  # a failed tail repeats every tick; the header already shows the link state
        error = worker.error
        message = str(error) or type(error).__name__
        hint = getattr(error, "hint", None)
        if hint:
            message = f"{message}\nhint: {hint}"
        # An error's text may hold a server's body or the provider's output: plain, visible.
        self.notify(
            visible(message),
            markup=False,
            title=f"{worker.name or worker.description} failed",
            severity="error",
            timeout=30,
        )

    # -- comparison (the run lives here, so leaving its screen does not stop it) ----------

    @property
    def comparison_running(self) -> bool:
        return self.run_view is not None and not self.run_view.finished

    def launch_comparison(self, request: CompareRequest) -> None:
        """The launcher's choices: resolved off the loop (files, the sample suite), then
        started; a problem becomes a notification."""
        self._resolve_comparison(request)

    @work(group="compare-resolve", exclusive=True, exit_on_error=False, description="comparison")
    async def _resolve_comparison(self, request: CompareRequest) -> None:
        from ocrtui.compare.launch import resolve

        setup = await asyncio.to_thread(resolve, self.fleet.arms_config(), request)
        self.start_comparison(setup)

    def start_comparison(self, setup: RunSetup) -> None:
        """Start a resolved run (from the launcher, or `ocrtui compare` on a terminal)."""
        if not self.comparison_running:
            apis = frozenset(m.name for m in setup.models if isinstance(m, ApiArmConfig))
            self.run_view = RunView([m.name for m in setup.models], setup.label, apis)
            self.run_view.facts = RunFacts.of(setup)
            self._compare(setup, self.run_view)
            self._probe_versions(self.run_view)
            self._run_changed()
        self.show_comparison()

    @work(group="compare", exclusive=True, exit_on_error=False, description="comparison")
    async def _compare(self, setup: RunSetup, view: RunView) -> None:
        from ocrtui.tui.comparing import follow, launch

        run = None
        try:
            # The model URLs (and, for the demo, the servers) come from connecting.
            await self._connected(m.name for m in setup.models)
            run = self.compare_run = await launch(self, setup, view)
            await follow(run, view, self.metrics)
        except asyncio.CancelledError:
            if run is not None:
                run.cancel()  # the app is closing: results so far are on disk (--resume)
            raise
        except Exception as exc:
            self.compare_error = exc
            view.finish(str(exc) or type(exc).__name__)
            raise
        finally:
            self._run_changed()

    def _run_changed(self) -> None:
        """A run began or ended: each pod's dashboard's `c` and `v` say so."""
        for dashboard in self.dashboards.values():
            dashboard.refresh_bindings()

    @work(group="compare-versions", exclusive=True, exit_on_error=False, description="versions")
    async def _probe_versions(self, view: RunView) -> None:
        """Each server's /version for the comparison header ("vLLM ?" until it answers)."""
        from ocrtui.tui.comparing import probe_versions

        try:  # the model URLs come from connecting
            await self._connected(view.models)
        except Exception:
            return  # connecting's own notification says why; the header says "vLLM ?"
        await probe_versions(self, view)

    def open_report(self, path: Path) -> None:
        """Show report.html's path; hand it to `xdg-open` when there is one (detached)."""
        self._open_report(path)

    @work(thread=True, group="open-report", exit_on_error=False, description="report.html")
    def _open_report(self, path: Path) -> None:
        if not path.is_file():
            self.call_from_thread(
                self.notify, f"{path} (written when the run ends)", title="No report.html yet"
            )
            return
        opener = shutil.which("xdg-open")
        if opener is not None:
            # A new session, output discarded: the browser outlives neither the
            # dashboard's terminal nor its screen.
            subprocess.Popen(
                [opener, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        note = "opened with xdg-open" if opener else "no xdg-open here: open it yourself"
        self.call_from_thread(self.notify, f"{path}\n{note}", title="report.html")

    def show_comparison(self) -> None:
        if self.run_view is None or isinstance(self.screen, CompareScreen):
            return
        self.push_screen(CompareScreen(self.run_view))

    # -- screenshots, palette, quit --------------------------------------------------------

    def action_save_screenshot(self) -> None:
        # Rendered here (it reads the screen), written by a thread (off the loop).
        self._write_screenshot(self.export_screenshot(), datetime.now())

    @work(thread=True, group="screenshot", exit_on_error=False, description="screenshot")
    def _write_screenshot(self, svg: str, when: datetime) -> None:
        folder = Path(self.config.ui.screenshot_dir).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stamp = when.strftime("%Y%m%d-%H%M%S-%f")[:-3]
            name, n = f"ocrtui-{stamp}.svg", 1
            while (folder / name).exists():  # two in the same millisecond
                n += 1
                name = f"ocrtui-{stamp}-{n}.svg"
            path = folder / name
            path.write_text(svg, encoding="utf-8")
        except OSError as exc:
            self.call_from_thread(self.notify, f"screenshot not saved: {exc}", severity="error")
            return
        self.call_from_thread(self.notify, str(path.resolve()), title="Screenshot saved")

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            # Textual's own screenshot goes to ~/Downloads; ours honours [ui] screenshot_dir.
            if command.title != "Screenshot":
                yield command
        yield SystemCommand(
            "Save screenshot (SVG)",
            f"into {self.config.ui.screenshot_dir}",
            self.action_save_screenshot,
        )

    async def action_quit(self) -> None:
        """Leave the dashboard; the model servers run on (they are detached on the pod)."""
        self.exit(0)


def _controller(config: Config, demo: bool) -> PodSource:
    from ocrtui.control import Controller

    return Controller(config, demo=demo)


def fleet_app(fleet: Fleet, *, demo: bool, **kw: Any) -> OcrtuiApp:
    """The app over one Controller per pod (each its own link, agent and reconnect)."""
    first, *others = fleet.pods
    more = [PodSlot(c, _controller(c, demo)) for c in others]
    return OcrtuiApp(first, _controller(first, demo), more_pods=more, **kw)


async def _close(app: OcrtuiApp) -> None:
    await asyncio.gather(*(dog.close() for dog in app.watchdogs.values()))
    await asyncio.gather(*(pod.source.close() for pod in app.pods.values()))


def _serve_metrics(app: OcrtuiApp) -> MetricsExporter:
    """The ``[export] listen`` endpoint (a section every pod shares) over every pod's
    snapshots, while the app runs."""
    slots = list(app.pods.values())
    exporter = MetricsExporter([slot.source for slot in slots])
    if slots[0].config.export.address is not None:
        exporter.serve(slots[0].config.export.address)
    return exporter


def run_dashboard(fleet: Fleet, *, readonly: bool, demo: bool) -> int:
    async def main() -> int:
        app = fleet_app(fleet, demo=demo, readonly=readonly, start_servers=demo)
        exporter = app.metrics = _serve_metrics(app)
        try:
            await app.run_async()
        finally:
            await exporter.close()
            await _close(app)
        return app.return_code or 0

    return asyncio.run(main())


def run_comparison_dashboard(fleet: Fleet, setup: RunSetup, *, demo: bool) -> int:
    """`ocrtui compare` on a terminal: the dashboard, opened on this run's comparison screen.

    After the operator quits, the exit status is the one the headless run would give:
    0 all done, 1 failed pages or documents (or quit before the end), 2 input error,
    3 pod unreachable.
    """

    async def main() -> int:
        app = comparison_app(fleet, setup, demo=demo)
        exporter = app.metrics = _serve_metrics(app)
        try:
            await app.run_async()
            return await comparison_exit_code(app)
        finally:
            await exporter.close()
            await _close(app)

    return asyncio.run(main())


def comparison_app(fleet: Fleet, setup: RunSetup, *, demo: bool) -> OcrtuiApp:
    return fleet_app(fleet, demo=demo, start_servers=demo, compare=setup)


async def comparison_exit_code(app: OcrtuiApp) -> int:
    """Once the app has exited: stop its run if unfinished (summary written), its status."""
    if app.compare_run is not None:
        app.compare_run.cancel()  # no-op when it is done
        return (await app.compare_run.wait()).exit_code
    error = app.source_error or app.compare_error
    return int(getattr(error, "exit_code", 1))


SCREENSHOT_SIZE = (150, 46)
COMPARE_SCREENSHOT_SIZE = (160, 48)  # wide enough for the page pane (PAGE_PANE_MIN_COLUMNS)
READY_TIMEOUT_S = 240.0
COMPARE_PAGES = 2  # pages each model has streamed before the comparison screenshot


def save_screenshot_headless(fleet: Fleet, path: str, *, compare: bool) -> int:
    """`ocrtui demo --screenshot FILE.svg [--compare]`: the real dashboard, headless.

    Waits (bounded) until every model is ready and, with ``compare``, until each model has
    streamed a few pages of the sample suite into its pane; the SVG is written either way,
    and the exit status says whether it shows what was asked for.
    """

    if fleet.pods[0].ui.page_graphics == "auto":
        # An SVG has no Kitty or Sixel images, and headless is no terminal: half-blocks.
        ui = fleet.pods[0].ui.model_copy(update={"page_graphics": "halfblock"})
        fleet = Fleet(tuple(c.model_copy(update={"ui": ui}) for c in fleet.pods), fleet.listed)

    async def main() -> int:
        app = fleet_app(fleet, demo=True, start_servers=True)
        size = COMPARE_SCREENSHOT_SIZE if compare else SCREENSHOT_SIZE
        try:
            async with app.run_test(size=size) as pilot:
                problem = await _prepare_screenshot(app, pilot, compare)
                if not compare and isinstance(app.screen, DashboardScreen | FleetScreen):
                    await app.screen.tick()
                await pilot.pause()
                svg = app.export_screenshot()
        finally:
            await _close(app)
        await asyncio.to_thread(_write_text, path, svg)
        print(path)
        if problem is None:
            return 0
        print(f"ocrtui: {problem}", file=sys.stderr)
        return getattr(app.source_error, "exit_code", 1)

    return asyncio.run(main())


async def _prepare_screenshot(app: OcrtuiApp, pilot: Any, compare: bool) -> str | None:
    """Bring the app to the state to capture; a description of what fell short, or None."""
    names = {m.name for pod in app.pods.values() for m in pod.config.models}

    def ready() -> bool:
        models = [m for pod in app.pods.values() for m in pod.source.snapshot.models]
        return {m.name for m in models if m.state == "ready"} >= names

    if not await _poll(pilot, READY_TIMEOUT_S, lambda: ready() or app.source_error is not None):
        return "models not ready in time; the screenshot shows them as they are"
    if app.source_error is not None:
        return f"cannot reach the pod: {app.source_error}"
    if not compare:
        return None
    from ocrtui.compare.launch import CompareRequest, resolve

    request = CompareRequest()
    app.start_comparison(await asyncio.to_thread(resolve, app.fleet.arms_config(), request))
    run = app.run_view
    assert run is not None

    def streamed() -> bool:
        return run.finished or all(run.done[n] + run.failed[n] >= COMPARE_PAGES for n in names)

    if not await _poll(pilot, READY_TIMEOUT_S, streamed) or run.error:
        return f"the comparison did not stream: {run.error or 'timeout'}"
    screen = app.screen
    if isinstance(screen, CompareScreen):
        pane = screen.query_one(PagePane)
        plots = list(screen.query(RunPlot))

        def painted() -> bool:
            return not screen.repaint_pending and pane.shown is not None

        await _poll(pilot, 5.0, lambda: painted() and not any(p.pending for p in plots))
    return None


def _write_text(path: str, text: str) -> None:
    Path(path).expanduser().write_text(text, encoding="utf-8")


async def _poll(pilot: Any, timeout: float, done: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        await pilot.pause(0.2)
    return True
