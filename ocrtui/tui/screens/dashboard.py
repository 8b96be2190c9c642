"""The dashboard of one pod (``PodSlot``: its config and source): pod header, one panel
per GPU, one card per model and per ``[[services]]``
entry (below the models'), the watchdog's latest actions (once it acted), the selected
one's log. Selection (tab, 1-9) runs over models then services; ``r`` restarts the selected
one either way, ``s`` and the GPU figures are the models'.

A timer applies the source's latest snapshot at ``[ui] refresh_s``; it skips the tick while
another screen or a dialog is on top (Dolphie's rule: never repaint under a modal), and it
touches only widgets whose data changed. Keys call the app's operations, which run in
workers; their progress comes back as :class:`OperationProgress` messages. With several
pods, ``p`` shows the next pod's dashboard and ``f`` the fleet screen (screens/fleet.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from ocrtui.status import ModelStatus, OrphanStatus, ServiceStatus, Snapshot
from ocrtui.tui.messages import LogTail, OperationProgress
from ocrtui.tui.screens.dialogs import ConfirmDialog, HelpScreen, LauncherDialog, TextDialog
from ocrtui.tui.source import PodSlot
from ocrtui.tui.widgets.format import gib, visible
from ocrtui.tui.widgets.gpu_panel import GpuPanel, model_styles
from ocrtui.tui.widgets.header import PodHeader
from ocrtui.tui.widgets.log_pane import LogPane
from ocrtui.tui.widgets.model_card import ModelCard
from ocrtui.tui.widgets.service_card import ServiceCard, replicas_ready

if TYPE_CHECKING:
    from ocrtui.compare.launch import CompareRequest
    from ocrtui.tui.app import OcrtuiApp

DEBOUNCE_S = 0.3  # destructive keys: a second press inside this window is a bounce
WATCHDOG_EVENTS_SHOWN = 3  # the panel above the log: the watchdog's latest actions
POD_ACTIONS = {"restart", "stop", "sleep_wake", "kill_orphans", "toggle_watchdog"}


class DashboardScreen(Screen[None]):
    DEFAULT_CSS = """
    DashboardScreen { layout: vertical; }
    #gpus { height: auto; }
    #cards { height: auto; }
    #services { height: auto; }
    #watchdog-events { height: auto; max-height: 4; padding: 0 1; display: none; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab,right", "select_next", "Next model", id="dashboard.next_model"),
        Binding(
            "shift+tab,left", "select_prev", "Prev model", show=False, id="dashboard.prev_model"
        ),
        *[
            Binding(str(i), f"select({i - 1})", f"Model {i}", show=False, id=f"dashboard.model_{i}")
            for i in range(1, 10)
        ],
        Binding("r", "restart", "Restart", id="dashboard.restart"),
        Binding("s", "stop", "Stop", id="dashboard.stop"),
        Binding("z", "sleep_wake", "Sleep/wake", id="dashboard.sleep"),
        Binding("k", "kill_orphans", "Kill orphans", id="dashboard.kill_orphans"),
        Binding("w", "toggle_watchdog", "Watchdog", id="dashboard.watchdog"),
        Binding("a", "adopt", "Adopt", show=False, id="dashboard.adopt"),
        Binding("l", "toggle_log", "Log", id="dashboard.log"),
        Binding("c", "compare", "Compare", id="dashboard.compare"),
        Binding("v", "view_run", "View run", id="dashboard.view_run"),
        Binding("p", "next_pod", "Next pod", id="dashboard.next_pod"),
        Binding("f", "fleet", "Fleet", id="dashboard.fleet"),
        Binding("question_mark", "help", "Help", id="dashboard.help"),
    ]

    def __init__(self, pod: PodSlot) -> None:
        super().__init__()
        self.pod = pod
        self.selected = 0
        self.operations: dict[str, str] = {}
        self._applied: Snapshot | None = None
        self._sampled: Snapshot | None = None  # the last snapshot the sparklines took a sample of
        self._panels: dict[int, GpuPanel] = {}
        self._last_press: dict[str, float] = {}
        self.debounce_s = DEBOUNCE_S
        self._applicable: frozenset[str] = frozenset()
        self._tick_lock = asyncio.Lock()  # a tick awaits mounts; ticks must not interleave
        self._watchdog_events: deque[str] = deque(maxlen=WATCHDOG_EVENTS_SHOWN)

    @property
    def ocr_app(self) -> OcrtuiApp:
        return cast("OcrtuiApp", self.app)

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.pod.config.models]

    @property
    def service_names(self) -> list[str]:
        return [s.name for s in self.pod.config.services]

    @property
    def target_names(self) -> list[str]:
        """What selection runs over: the models, then the services."""
        return self.model_names + self.service_names

    @property
    def selected_name(self) -> str:
        return self.target_names[self.selected]

    def _card(self, index: int) -> ModelCard | ServiceCard:
        models = len(self.model_names)
        if index < models:
            return self.query_one(f"#card-{index}", ModelCard)
        return self.query_one(f"#svc-{index - models}", ServiceCard)

    def compose(self) -> ComposeResult:
        styles = model_styles(self.model_names)
        yield PodHeader()
        yield Vertical(id="gpus")
        with Horizontal(id="cards"):
            for i, name in enumerate(self.model_names):
                yield ModelCard(name, styles[name], id=f"card-{i}")
        if self.service_names:
            with Horizontal(id="services"):
                for j, name in enumerate(self.service_names):
                    yield ServiceCard(name, id=f"svc-{j}")
        yield Static(id="watchdog-events")
        yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self._select(0)
        self.set_interval(self.pod.config.ui.refresh_s, self.tick)
        self.call_after_refresh(self.tick)

    # -- refresh -------------------------------------------------------------------------

    async def tick(self) -> None:
        if self.app.screen is not self or self._tick_lock.locked():
            return  # paused under a dialog or another screen, or the last tick still runs
        async with self._tick_lock:
            snap = self.pod.source.snapshot
            if snap is not self._applied:
                await self.apply(snap)
        if self.query_one(LogPane).display:
            self.ocr_app.fetch_log(self.selected_name)

    async def apply(self, snap: Snapshot) -> None:
        self._applied = snap
        fresh, self._sampled = snap is not self._sampled, snap
        for gpu in snap.gpus:
            if gpu.index not in self._panels:
                panel = GpuPanel(gpu.index)
                self._panels[gpu.index] = panel
                await self.query_one("#gpus").mount(panel)
        styles = model_styles(self.model_names)
        by_name = {m.name: m for m in snap.models}
        with self.app.batch_update():
            self.query_one(PodHeader).show(snap.pod, self.pod.config.pod.agent_interval_s)
            for gpu in snap.gpus:
                self._panels[gpu.index].show(gpu, snap.processes, styles, fresh=fresh)
            for i, name in enumerate(self.model_names):
                m = by_name.get(name)
                if m is not None:
                    self.query_one(f"#card-{i}", ModelCard).show(m, self.operations.get(name))
            services = {s.name: s for s in snap.services}
            routers = {r.router: r for r in self.pod.config.routing()}
            for j, name in enumerate(self.service_names):
                if (svc := services.get(name)) is not None:
                    r = routers.get(name)
                    routes = None if r is None else (r.model, replicas_ready(r, snap.models))
                    card = self.query_one(f"#svc-{j}", ServiceCard)
                    card.show(svc, self.operations.get(name), routes)
        self.ocr_app.note_link(self.pod.name, snap.pod.connection, snap.pod.power)
        applicable = frozenset(a for a in POD_ACTIONS if self._applies(a))
        if applicable != self._applicable:
            self._applicable = applicable
            self.refresh_bindings()

    def restyle(self) -> None:
        for panel in self._panels.values():
            panel.restyle()
        self._applied = None

    # -- selection and bindings ----------------------------------------------------------

    def _select(self, index: int) -> None:
        names = self.target_names
        self.selected = index % len(names)
        for i in range(len(names)):
            self._card(i).set_class(i == self.selected, "-selected")
        self.query_one(LogPane).show_model(names[self.selected])
        self._applicable = frozenset()
        if self._applied is not None:
            self._applicable = frozenset(a for a in POD_ACTIONS if self._applies(a))
        self.refresh_bindings()

    def action_select_next(self) -> None:
        self._select(self.selected + 1)

    def action_select_prev(self) -> None:
        self._select(self.selected - 1)

    def action_select(self, index: int) -> None:
        if index < len(self.target_names):
            self._select(index)

    def _model(self) -> ModelStatus | None:
        """The selected model's status (None when a service is selected)."""
        return self.pod.source.snapshot.model(self.selected_name)

    def _service(self) -> ServiceStatus | None:
        return self.pod.source.snapshot.service(self.selected_name)

    def _orphans(self) -> list[OrphanStatus]:
        return list(self.pod.source.snapshot.orphans)

    def _applies(self, action: str) -> bool:
        if action in POD_ACTIONS and self.ocr_app.readonly:
            return False
        name = self.selected_name
        model = self._model()
        if action == "restart":
            return name not in self.operations
        if action == "stop":
            return name not in self.operations and model is not None and model.state != "down"
        if action == "sleep_wake":
            return (
                name not in self.operations
                and model is not None
                and (model.sleeping or model.state == "ready")
            )
        if action == "kill_orphans":
            return bool(self._orphans())
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in POD_ACTIONS:
            return self._applies(action)
        if action == "select":
            return bool(parameters) and cast(int, parameters[0]) < len(self.target_names)
        if action in ("select_next", "select_prev"):
            return len(self.target_names) > 1
        if action == "compare":
            return not self.ocr_app.comparison_running
        if action == "view_run":
            return self.ocr_app.run_view is not None
        if action in ("next_pod", "fleet"):
            return self.ocr_app.fleet.several
        return True

    def _bounced(self, action: str) -> bool:
        now = time.monotonic()
        last = self._last_press.get(action, 0.0)
        self._last_press[action] = now
        return now - last < self.debounce_s

    # -- pod actions ---------------------------------------------------------------------

    def action_restart(self) -> None:
        if self._bounced("restart") or not self._applies("restart"):
            return
        name = self.selected_name
        current: ModelStatus | ServiceStatus | None = self._model() or self._service()
        if current is None or current.state in ("down", "crashed", "unhealthy"):
            self.ocr_app.restart_model(name)
            return
        if isinstance(current, ServiceStatus):
            effect = "Restart stops its whole process tree and starts it again; requests in "
            effect += "flight fail."
        else:
            effect = "Restart stops its whole process tree, clears leftovers, waits for the "
            effect += "VRAM to be freed and starts it again; requests in flight fail."
        body = Content.assemble(
            (name, "bold"), f" is {current.state} and serving on :{current.port}.\n\n", effect
        )

        def done(confirmed: bool | None) -> None:
            if confirmed:
                self.ocr_app.restart_model(name)

        self.app.push_screen(ConfirmDialog(f"Restart {name}?", body, "Restart"), done)

    def action_stop(self) -> None:
        if self._bounced("stop") or not self._applies("stop"):
            return
        name = self.selected_name
        body = Content.assemble(
            "Stop ",
            (name, "bold"),
            "? Its process tree is terminated and its VRAM freed; `r` starts it again.",
        )

        def done(confirmed: bool | None) -> None:
            if confirmed:
                self.ocr_app.stop_model(name)

        self.app.push_screen(ConfirmDialog(f"Stop {name}?", body, "Stop"), done)

    def action_sleep_wake(self) -> None:
        """A sleeping model wakes at once; a ready one sleeps behind a confirmation (its
        requests in flight are aborted)."""
        if self._bounced("sleep_wake") or not self._applies("sleep_wake"):
            return
        name, model = self.selected_name, self._model()
        assert model is not None
        if model.sleeping:
            self.ocr_app.wake_model(name)
            return
        body = Content.assemble(
            (name, "bold"),
            f" gives its GPU memory back ({gib(model.used_mib)} GiB held now; vLLM's sleep "
            "level 1: weights to host memory, KV cache freed) until `z` wakes it. Requests in "
            "flight are aborted; new ones wait for the wake-up.",
        )

        def done(confirmed: bool | None) -> None:
            if confirmed:
                self.ocr_app.sleep_model(name)

        self.app.push_screen(ConfirmDialog(f"Sleep {name}?", body, "Sleep"), done)

    def action_kill_orphans(self) -> None:
        if self._bounced("kill_orphans") or not self._applies("kill_orphans"):
            return
        orphans = self._orphans()
        lines = "\n".join(
            f"  pid {o.pid:>8}  {o.model:<14} {gib(o.used_mib or 0):>6} GiB VRAM"
            f"  {gib(o.rss_mib or 0):>6} GiB RAM  {visible(o.title[:40])}"
            for o in orphans
        )
        total = gib(sum(o.used_mib or 0 for o in orphans))
        body = (
            "These vLLM processes belong to no running model server:"
            f"\n\n{lines}\n\nKill them (SIGKILL) to free {total} GiB of VRAM?"
        )

        def done(confirmed: bool | None) -> None:
            if confirmed:
                self.ocr_app.kill_orphans()

        # Plain text, not markup: the titles are the pod's.
        dialog = ConfirmDialog("Kill orphaned processes?", Content(body), "Kill")
        self.app.push_screen(dialog, done)

    # -- views ---------------------------------------------------------------------------

    def show_watchdog_event(self, line: str) -> None:
        """One more line in the watchdog panel (shown from its first event on)."""
        self._watchdog_events.append(line)
        panel = self.query_one("#watchdog-events", Static)
        panel.update(Content(visible("\n".join(self._watchdog_events))))
        panel.display = True

    def action_toggle_watchdog(self) -> None:
        if self._applies("toggle_watchdog"):
            self.ocr_app.toggle_watchdog()

    def action_adopt(self) -> None:
        found = self.pod.source.strangers()
        text = "\n".join(s.block() for s in found) or (
            "No vLLM server on the pod that the config does not name."
        )
        title = "Servers no [[models]] names: paste a block into the config to adopt it"
        self.app.push_screen(TextDialog(title, text))

    def action_toggle_log(self) -> None:
        log = self.query_one(LogPane)
        if self.maximized is log:
            self.minimize()
        else:
            self.maximize(log, container=False)

    def action_compare(self) -> None:
        def done(request: CompareRequest | None) -> None:
            if request is not None:
                self.ocr_app.launch_comparison(request)

        self.app.push_screen(LauncherDialog(self.ocr_app.fleet.arms_config()), done)

    def action_view_run(self) -> None:
        self.ocr_app.show_comparison()

    def action_next_pod(self) -> None:
        names = self.ocr_app.fleet.names
        self.ocr_app.show_pod(names[(names.index(self.pod.name) + 1) % len(names)])

    def action_fleet(self) -> None:
        self.ocr_app.show_fleet()

    def action_help(self) -> None:
        rows = [(self.app.get_key_display(b), b.description) for b in self.active_bindings_rows()]
        self.app.push_screen(HelpScreen(rows, self.ocr_app.readonly))

    def active_bindings_rows(self) -> list[Binding]:
        return [
            active.binding
            for active in self.active_bindings.values()
            if active.enabled and active.binding.description
        ]

    # -- messages from the app's workers -------------------------------------------------

    @on(OperationProgress)
    def _progress(self, msg: OperationProgress) -> None:
        if msg.step is None:
            self.operations.pop(msg.model, None)
        else:
            self.operations[msg.model] = msg.step
        self._applied = None  # repaint the card with the new step on the next tick
        self.refresh_bindings()
        if self.app.screen is self:
            self.call_later(self.tick)

    @on(LogTail)
    def _log(self, msg: LogTail) -> None:
        self.query_one(LogPane).feed(msg.model, msg.lines)
