"""The top line: which pod, whether we are connected, how old the data is, the provider's word
on the pod's power and price ([pod.provider]), the idle notice, and what is simulated."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from ocrtui.status import PodStatus
from ocrtui.tui.widgets.format import age, visible

_CONN_STYLE = {
    "connected": "$success",
    "connecting": "$warning",
    "reconnecting": "$warning bold",
    "lost": "$error bold",
    "closed": "$text-muted",
}


_POWER_STYLE = {"running": "$success", "stopped": "$error bold", "unknown": "$warning"}


def header_content(pod: PodStatus, refresh_s: float) -> Content:
    conn = pod.connection
    if conn == "connected":
        conn_text = f"● connected {age(pod.connection_age_s)}"
    elif conn in ("reconnecting", "lost"):
        conn_text = f"● {conn.upper()} for {age(pod.connection_age_s)}"
    else:
        conn_text = f"● {conn}"
    parts: list[str | tuple[str, str]] = [
        (f" {pod.label} ", "bold reverse $primary"),
        "  ",
        (conn_text, _CONN_STYLE.get(conn, "")),
        "  ",
    ]
    if pod.data_age_s is None:
        parts.append(("no data yet", "$warning"))
    else:
        # Several missed agent intervals means the numbers on screen are no longer live.
        stale = pod.data_age_s > 3 * refresh_s
        parts.append((f"data {age(pod.data_age_s)} old", "$error bold" if stale else "$text-muted"))
    if pod.power is not None:
        parts += ["  ", (f"power: {pod.power}", _POWER_STYLE.get(pod.power, ""))]
    if pod.price_per_hr is not None:
        parts += ["  ", (f"${pod.price_per_hr:.2f}/h", "$text-muted")]
    if pod.idle_notice:
        parts += ["  ", (pod.idle_notice, "$warning bold")]
    if pod.agent_error:
        parts += ["  ", (f"agent: {visible(pod.agent_error)}", "$error")]
    if pod.demo:
        parts += ["  ", (" DEMO ", "bold reverse $accent")]
    if pod.simulated_gpu:
        parts += ["  ", (" simulated GPU ", "bold reverse $warning")]
    return Content.assemble(*parts)


class PodHeader(Static):
    DEFAULT_CSS = """
    PodHeader { height: 1; background: $panel; }
    """

    def show(self, pod: PodStatus, refresh_s: float) -> None:
        self.update(header_content(pod, refresh_s), layout=False)  # always one line
