"""One ``[[services]]`` process: state, port, pid, uptime, the crash hint and the log's
last lines, and the progress of an operation the dashboard started on it; a router in front
of a model's replicas says how many of them are ready."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

from ocrtui.config import Routing
from ocrtui.status import ModelStatus, ServiceStatus
from ocrtui.tui.widgets.format import age, visible, visible_log_line
from ocrtui.tui.widgets.model_card import STATE_STYLE, watchdog_gave_up

# A router's line: the model it serves and replicas_ready's styled text.
Routes = tuple[str, tuple[str, str]]
Rendered = tuple[ServiceStatus, str | None, Routes | None]

CRASH_LINES = 3  # of ServiceStatus.last_lines: the card stays compact; `l` shows the log


def replicas_ready(r: Routing, models: Sequence[ModelStatus]) -> tuple[str, str]:
    """``1/2 replicas ready`` of a routed model, styled as an error while none is (a replica
    the snapshot lacks yet counts as not ready)."""
    ready = sum(m.state == "ready" for m in models if m.name in r.replicas)
    return (f"{ready}/{len(r.replicas)} replicas ready", "" if ready else "$error")


def service_content(s: ServiceStatus, operation: str | None, routes: Routes | None) -> Content:
    parts: list[str | tuple[str, str]] = [
        (s.state.upper(), STATE_STYLE.get(s.state, "")),
        f"  :{s.port}  pid {s.pid if s.pid is not None else '-'}",
    ]
    if s.uptime_s is not None:
        parts += [("  up ", "$text-muted"), age(s.uptime_s)]
    if not s.managed:
        parts += ["  ", ("not started by ocrtui", "$text-muted")]
    if s.gpu:
        parts += ["  ", ("GPU", "$accent")]
    if routes is not None:
        model, ready = routes
        parts += ["\n", ("routes ", "$text-muted"), f"{visible(model)}: ", ready]
    if operation:
        parts += ["\n", ("» ", "$accent"), (operation, "$accent bold")]
    if s.hint:
        parts += ["\n", ("hint: ", "$error bold"), (visible(s.hint), "$error")]
    if s.watchdog is not None and s.watchdog.state == "gave up":
        parts += ["\n", watchdog_gave_up(s.watchdog)]
    if s.state == "crashed":
        for line in s.last_lines[-CRASH_LINES:]:
            parts += ["\n", (visible_log_line(line), "$text-muted")]
    return Content.assemble(*parts)


class ServiceCard(Static):
    DEFAULT_CSS = """
    ServiceCard { border: round $panel-lighten-2; width: 1fr; height: auto; padding: 0 1; }
    ServiceCard.-selected { border: heavy $primary; }
    ServiceCard.-crashed { border: round $error; }
    ServiceCard.-selected.-crashed { border: heavy $error; }
    """

    def __init__(self, name: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.service_name = name
        self.border_title = name
        self._rendered: Rendered | None = None

    def show(self, s: ServiceStatus, operation: str | None, routes: Routes | None) -> None:
        if (s, operation, routes) == self._rendered:
            return
        self._rendered = (s, operation, routes)
        self.set_class(s.state == "crashed", "-crashed")
        self.update(service_content(s, operation, routes))
