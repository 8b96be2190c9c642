"""One model: state and startup stage, health, load, KV cache, tokens/s (with the
speculative decoding's acceptance beside it where the server drafts), the last hint, the
first warning advisory (versions, serve flags), the watchdog's "gave up" with the last
crash's hint, "sleeping" with the memory it gave back (vLLM's sleep mode), and the progress
of an operation the dashboard started on it."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from ocrtui.status import ModelStatus, WatchdogStatus
from ocrtui.tui.widgets.format import gib, visible

STATE_STYLE = {
    "ready": "$success bold",
    "starting": "$warning bold",
    "unhealthy": "$warning bold",
    "crashed": "$error bold",
    "down": "$text-muted bold",
}


def _num(v: float | int | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


# Narrowest value column each, so the columns keep their place while the numbers change.
VALUE_WIDTHS = (8, 5, 5, 4)
GAP = "   "

Pair = tuple[str, str]


def _aligned(rows: list[list[Pair]]) -> list[str | tuple[str, str]]:
    """Label/value pairs in columns: labels left-aligned, values right-aligned, one line per
    row. A row of one pair (stage, VRAM) spans the line. Every span starts with a visible
    character (padding trails the span before it), which SVG viewers need to place text."""
    cols = max(len(r) for r in rows)
    label_w = [max((len(r[c][0]) for r in rows if len(r) > c), default=0) for c in range(cols)]
    value_w = [
        max([VALUE_WIDTHS[c]] + [len(r[c][1]) for r in rows if len(r) > 1 and len(r) > c])
        for c in range(cols)
    ]
    parts: list[str | tuple[str, str]] = []
    for r in rows:
        for c, (label, value) in enumerate(r):
            pad = 0 if len(r) == 1 else value_w[c] - len(value)
            parts.append((label.ljust(label_w[c]) + " " * (1 + pad), "$text-muted"))
            parts.append(value + (GAP if c < len(r) - 1 else "\n"))
    return parts


def card_content(m: ModelStatus, operation: str | None, colour: str) -> Content:
    parts: list[str | tuple[str, str]] = [
        ("■ ", colour),
        (f"{m.state.upper()}   ", STATE_STYLE.get(m.state, "")),
        f":{m.port}   pid {_num(m.pid)}\n",
    ]
    rows: list[list[Pair]] = []
    if m.state == "starting":
        stage = m.stage or "launching"
        if m.started_s is not None:
            last = f" (last {m.last_start_s:.0f} s)" if m.last_start_s is not None else ""
            stage += f"  {m.started_s:.0f} s{last}"
        rows.append([("stage", stage)])
    kv = None if m.kv_cache_usage is None else m.kv_cache_usage * 100
    planned = gib(m.planned_mib) if m.planned_mib is not None else "?"
    rows += [
        [
            ("health", _num(m.health_latency_ms, "{:.1f} ms")),
            ("run", _num(m.running)),
            ("wait", _num(m.waiting)),
        ],
        [
            ("KV", _num(kv, "{:.0f}%")),
            ("tok/s in", _num(m.prompt_tokens_per_s)),
            ("out", _num(m.generation_tokens_per_s)),
            *(
                [("acc", f"{m.spec_decode_acceptance:.0%}")]
                if m.spec_decode_acceptance is not None
                else []
            ),
        ],
        # No GPU to plan on (a CPU build): what the tree holds is host memory.
        [("RAM", f"{gib(m.rss_mib)} GiB (no GPU)")]
        if m.planned_mib is None and m.rss_mib is not None
        else [("VRAM", f"{gib(m.used_mib)} / {planned} GiB")],
    ]
    parts += _aligned(rows)
    parts[-1] = str(parts[-1]).removesuffix("\n")
    if m.sleep_text:
        parts += ["\n", ("☾ ", "$accent"), (m.sleep_text, "$accent bold")]
    if operation:
        parts += ["\n", ("» ", "$accent"), (operation, "$accent bold")]
    if m.hint:
        parts += ["\n", ("hint: ", "$error bold"), (visible(m.hint), "$error")]
    if m.watchdog is not None and m.watchdog.state == "gave up":
        parts += ["\n", watchdog_gave_up(m.watchdog)]
    warnings = [a for a in m.advisories if a.severity == "warning"]
    if warnings:
        more = f" (+{len(warnings) - 1} more: ocrtui status)" if len(warnings) > 1 else ""
        parts += ["\n", ("⚠ ", "$warning bold"), (visible(warnings[0].text) + more, "$warning")]
    return Content.assemble(*parts)


def watchdog_gave_up(w: WatchdogStatus) -> tuple[str, str]:
    """The crash-loop guard's line on a model's or service's card."""
    text = f"watchdog gave up after {w.restarts} restarts"
    if w.last_hint:
        text += f"; last crash: {visible(w.last_hint)}"
    return (text, "$error bold")


def _shape(m: ModelStatus, operation: str | None) -> tuple[object, ...]:
    gave_up = m.watchdog is not None and m.watchdog.state == "gave up"
    shown = (m.hint, m.advisories, gave_up, m.sleeping)
    return (m.state == "starting", operation is not None, *shown)


class ModelCard(Static):
    DEFAULT_CSS = """
    ModelCard { border: round $panel-lighten-2; width: 1fr; height: auto; min-height: 7;
                padding: 0 1; }
    ModelCard.-selected { border: heavy $primary; }
    ModelCard.-crashed { border: round $error; }
    ModelCard.-selected.-crashed { border: heavy $error; }
    """

    def __init__(self, name: str, colour: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model_name = name
        self.colour = colour
        self.border_title = name
        self._rendered: tuple[ModelStatus, str | None] | None = None

    def show(self, m: ModelStatus, operation: str | None) -> None:
        if (m, operation) == self._rendered:
            return
        old = self._rendered
        self._rendered = (m, operation)
        self.set_class(m.state == "crashed", "-crashed")
        content = card_content(m, operation, self.colour)
        # Numbers change every second; the card's height only when its set of lines does.
        same_shape = old is not None and _shape(old[0], old[1]) == _shape(m, operation)
        self.update(content, layout=not same_shape)
