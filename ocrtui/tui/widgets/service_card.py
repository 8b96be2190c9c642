"""One ``[[services]]`` process: state, port, pid, uptime, the crash hint and the log's
last lines, and the progress of an operation the dashboard started on it."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from ocrtui.status import ServiceStatus
from ocrtui.tui.widgets.format import age, visible, visible_log_line
from ocrtui.tui.widgets.model_card import STATE_STYLE, watchdog_gave_up

CRASH_LINES = 3  # of ServiceStatus.last_lines: the card stays compact; `l` shows the log


def service_content(s: ServiceStatus, operation: str | None) -> Content:
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
        self._rendered: tuple[ServiceStatus, str | None] | None = None

    def show(self, s: ServiceStatus, operation: str | None) -> None:
        if (s, operation) == self._rendered:
            return
        self._rendered = (s, operation)
        self.set_class(s.state == "crashed", "-crashed")
        self.update(service_content(s, operation))
