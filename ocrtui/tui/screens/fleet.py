"""The fleet screen: every pod of a ``[[pods]]`` config, one panel each, opened first when
there are several. A panel shows the pod's link and power, each GPU with its memory by owner
(models, orphans, other), each model's and service's state, the orphans, and the comparison
running on that pod (its arms there, the run's phase). A routed model's replicas and router
are grouped on a line of their own: the router's state, how many replicas are ready, and
each replica's state and load (running and waiting requests, as its card has them).
``enter`` (or the pod's number) opens that pod's dashboard; ``p`` there goes on to the next
pod, ``f`` back here.

Like the dashboard, a timer applies each pod's latest snapshot at ``[ui] refresh_s``, only
while this screen is on top, and a panel is redrawn only when its pod's snapshot changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from ocrtui.config import Routing
from ocrtui.status import ModelStatus, Snapshot
from ocrtui.tui.run_view import RunView
from ocrtui.tui.widgets.format import gib, visible
from ocrtui.tui.widgets.header import header_content
from ocrtui.tui.widgets.service_card import replicas_ready

if TYPE_CHECKING:
    from ocrtui.tui.app import OcrtuiApp

_STATE_STYLE = {
    "ready": "$success",
    "starting": "$warning",
    "unhealthy": "$warning bold",
    "crashed": "$error bold",
    "down": "$text-muted",
}


def pod_panel_content(
    snap: Snapshot, refresh_s: float, comparison: str | None, routing: tuple[Routing, ...]
) -> Content:
    """One pod: its header line, a line per GPU (memory by owner), its models and services
    (those of each routed model in ``routing`` grouped under it), its orphans, and the
    comparison running there (``comparison``; None: none)."""
    parts: list[str | tuple[str, str] | Content] = [header_content(snap.pod, refresh_s)]
    for g in snap.gpus:
        owners = [f"{visible(m.name)} {gib(m.used_mib)}" for m in g.models if m.used_mib]
        if g.orphan_mib:
            owners.append(f"orphans {gib(g.orphan_mib)}")
        if g.other_mib:
            owners.append(f"other {gib(g.other_mib)}")
        if g.unattributed_mib:
            owners.append(f"unattributed {gib(g.unattributed_mib)}")
        parts += [
            "\n",
            f"GPU {g.index} {visible(g.name)}  {gib(g.used_mib)}/{gib(g.total_mib)} GiB  ",
            (" · ".join(owners), "$text-muted") if owners else "",
        ]
    if not snap.gpus:
        parts += ["\n", ("GPU: no agent sample yet", "$text-muted")]
    grouped = {n for r in routing for n in (*r.replicas, r.router)}
    units: list[str | tuple[str, str]] = []
    states = [(m.name, m.state, m.stage) for m in snap.models if m.name not in grouped]
    services = [(s.name, s.state, None) for s in snap.services if s.name not in grouped]
    entries = [*states, *services]
    for i, (name, state, stage) in enumerate(entries):
        text, style = _state(state, stage)
        more = i < len(entries) - 1
        # "glm-ocr ready · lighton-ocr ready": the separator's space trails the state before
        # it, so every span starts with a visible character (see _routed_lines).
        units += [f"{visible(name)} ", (f"{text} " if more else text, style)]
        if more:
            units.append("· ")
    if units:
        parts += ["\n", *units]
    for r in routing:
        parts += ["\n", *_routed_lines(r, snap)]
    if snap.orphans:
        held = sum(o.used_mib or 0 for o in snap.orphans)
        parts += ["\n", (f"orphans: {len(snap.orphans)} ({gib(held)} GiB)", "$error bold")]
    if comparison is not None:
        parts += ["\n", ("comparison: ", "bold"), visible(comparison)]
    return Content.assemble(*parts)


def _state(state: str, stage: str | None) -> tuple[str, str]:
    return (f"{state} ({visible(stage)})" if stage else state, _STATE_STYLE[state])


def _routed_lines(r: Routing, snap: Snapshot) -> list[str | tuple[str, str]]:
    """``glm-ocr  router glm-ocr-router ready · 1/2 replicas ready``, then a line per
    replica with its state and load; a name the snapshot lacks yet is shown ``down``. Each
    span starts with a visible character (the padding trails the span before), which SVG
    viewers need to place text."""
    models = {m.name: m for m in snap.models}
    router = next((s for s in snap.services if s.name == r.router), None)
    replicas = [models.get(n) or ModelStatus(n, 0, "down", None) for n in r.replicas]
    state, style = _state("down" if router is None else router.state, None)
    ready, ready_style = replicas_ready(r, snap.models)
    lines: list[str | tuple[str, str]] = [
        (f"{visible(r.model)}  ", "bold"),
        f"router {visible(r.router)} ",
        (f"{state} ", style),
        (f"· {ready}", ready_style),
    ]
    for i, m in enumerate(replicas):
        state, style = _state(m.state, m.stage)
        run = "-" if m.running is None else str(m.running)
        wait = "-" if m.waiting is None else str(m.waiting)
        branch = "└" if i == len(replicas) - 1 else "├"
        lines += ["\n", f"{branch} {visible(m.name)} ", (f"{state}  ", style)]
        lines.append((f"run {run} · wait {wait}", "$text-muted"))
    return lines


def comparison_here(run: RunView | None, models: set[str]) -> str | None:
    """The comparison's part on one pod: its arms there, their pages, the run's phase."""
    if run is None or run.finished:
        return None
    arms = [m for m in run.models if m in models]
    if not arms:
        return None
    pages = " · ".join(f"{m} {run.done[m]} done, {run.failed[m]} failed" for m in arms)
    paused = [run.pauses[m] for m in arms if m in run.pauses]
    note = f" · paused: {paused[0]}" if paused else ""
    return f"{pages} · {run.phase}{note}"


class PodPanel(Static):
    DEFAULT_CSS = """
    PodPanel { height: auto; border: round $panel-lighten-2; padding: 0 1; margin: 0 0 1 0; }
    PodPanel.-selected { border: round $accent; }
    """


class FleetScreen(Screen[None]):
    DEFAULT_CSS = """
    FleetScreen { layout: vertical; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,tab", "select(1)", "Next pod", id="fleet.next_pod"),
        Binding("up,shift+tab", "select(-1)", "Prev pod", show=False, id="fleet.prev_pod"),
        Binding("enter", "open", "Open pod", id="fleet.open"),
        *[
            Binding(str(i), f"open({i - 1})", f"Pod {i}", show=False, id=f"fleet.pod_{i}")
            for i in range(1, 10)
        ],
        Binding("v", "view_run", "View run", id="fleet.view_run"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected = 0
        self._applied: dict[str, tuple[Snapshot, str | None]] = {}

    @property
    def ocr_app(self) -> OcrtuiApp:
        return cast("OcrtuiApp", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            for i, _name in enumerate(self.ocr_app.pods):
                yield PodPanel(id=f"pod-{i}", classes="-selected" if i == 0 else "")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.ocr_app.config.ui.refresh_s, self.tick)
        self.call_after_refresh(self.tick)

    async def tick(self) -> None:
        """Each pod's panel from its latest snapshot, when it (or the run) changed."""
        if self.app.screen is not self:
            return
        app = self.ocr_app
        with self.app.batch_update():
            for i, (name, pod) in enumerate(app.pods.items()):
                snap = pod.source.snapshot
                models = {m.name for m in pod.config.models}
                comparison = comparison_here(app.run_view, models)
                last = self._applied.get(name)
                if last is not None and last[0] is snap and last[1] == comparison:
                    continue
                self._applied[name] = (snap, comparison)
                refresh_s = pod.config.pod.agent_interval_s
                content = pod_panel_content(snap, refresh_s, comparison, pod.config.routing())
                self.query_one(f"#pod-{i}", PodPanel).update(content)

    def action_select(self, step: int) -> None:
        count = len(self.ocr_app.pods)
        self.query_one(f"#pod-{self.selected}", PodPanel).remove_class("-selected")
        self.selected = (self.selected + step) % count
        self.query_one(f"#pod-{self.selected}", PodPanel).add_class("-selected")

    def action_open(self, index: int | None = None) -> None:
        names = list(self.ocr_app.pods)
        chosen = self.selected if index is None else index
        if chosen < len(names):
            self.ocr_app.show_pod(names[chosen])

    def action_view_run(self) -> None:
        self.ocr_app.show_comparison()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "view_run":
            return self.ocr_app.run_view is not None
        return True
