"""One GPU: a memory bar with each model's share (a sleeping one's marked: its plan less its
share is what it gave back), the planned budgets, util/temp/power, and
a process table updated row by row (keyed; cells touched only when their value changes).

The numbers are the snapshot's as attributed (``GpuStatus.models``, ``orphan_mib``,
``other_mib``, ``unattributed_mib``, ``planned_mib``; ``ProcessStatus.kind`` / ``owner``):
the panel draws them and adds nothing up."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from ocrtui.status import GpuStatus, ModelShare, ProcessStatus
from ocrtui.tui.widgets.format import gib, segments, sparkline, visible

HISTORY = 24  # samples of VRAM per process kept for the sparkline
BAR_WIDTH = 60
COLUMNS = (("pid", "PID"), ("title", "process"), ("owner", "model"), ("vram", "VRAM GiB"))


def model_styles(names: Sequence[str]) -> dict[str, str]:
    """A stable colour variable per model, in config order."""
    palette = ("$primary", "$secondary", "$accent", "$success")
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def owner_label(p: ProcessStatus) -> tuple[str, str]:
    if p.kind == "orphan":
        return f"ORPHAN {p.owner}", "$error bold"
    if p.kind == "model" and p.owner is not None:
        return p.owner, ""
    return "other", "$text-muted"


def memory_content(gpu: GpuStatus, styles: dict[str, str], width: int = BAR_WIDTH) -> Content:
    used_parts = [(m.used_mib, styles.get(m.name, "")) for m in gpu.models]
    used_parts += [
        (gpu.orphan_mib, "$error"),
        (gpu.other_mib, "$text-muted"),
        (gpu.unattributed_mib, "$text-muted"),
    ]
    plan_parts = [(m.planned_mib or 0, styles.get(m.name, "")) for m in gpu.models]

    def bar(parts: list[tuple[int, str]], char: str) -> list[tuple[str, str]]:
        # Free memory is drawn as a light shade, so an empty GPU never looks full.
        return [
            (char * n, style) if style else ("░" * n, "$text-muted")
            for n, style in segments(parts, gpu.total_mib, width)
        ]

    lines: list[str | tuple[str, str]] = [
        ("used ", "bold"),
        *bar(used_parts, "█"),
        f" {gib(gpu.used_mib)}/{gib(gpu.total_mib)} GiB\n",
        ("plan ", "bold"),
        *bar(plan_parts, "▒"),
        f" {gib(gpu.planned_mib)} GiB planned\n",
    ]
    for m in gpu.models:
        over = m.planned_mib is not None and m.used_mib > m.planned_mib * 1.02
        plan = f"{gib(m.planned_mib)}" if m.planned_mib is not None else "?"
        lines += [
            ("■ ", styles.get(m.name, "")),
            (f"{m.name} {gib(m.used_mib)}/{plan}", "$warning bold" if over else ""),
            *([(f" sleeping, {_given_back(m)} back", "$accent bold")] if m.sleeping else []),
            "  ",
        ]
    if gpu.orphan_mib:
        lines += [("■ ", "$error"), (f"orphans {gib(gpu.orphan_mib)}", "$error bold"), "  "]
    if gpu.other_mib:
        lines += [("■ ", "$text-muted"), (f"other {gib(gpu.other_mib)}", "$text-muted")]
    if gpu.unattributed_mib:
        text = f"unattributed {gib(gpu.unattributed_mib)}"
        lines += ["  " if gpu.other_mib else "", ("■ ", "$text-muted"), (text, "$text-muted")]
    return Content.assemble(*lines)


def _given_back(m: ModelShare) -> str:
    """A sleeping model's plan less what it holds: the memory it gave back (GiB)."""
    return gib(max(0, (m.planned_mib or 0) - m.used_mib))


def vitals(gpu: GpuStatus) -> str:
    util = "-" if gpu.utilization_pct is None else f"{gpu.utilization_pct:.0f}%"
    temp = "-" if gpu.temperature_c is None else f"{gpu.temperature_c:.0f}°C"
    power = "-" if gpu.power_w is None else f"{gpu.power_w:.0f} W"
    return f"util {util}  temp {temp}  power {power}"


class GpuPanel(Vertical):
    DEFAULT_CSS = """
    GpuPanel { border: round $panel-lighten-2; height: auto; padding: 0 1; }
    GpuPanel > .bars { height: 3; }
    GpuPanel > DataTable { height: auto; max-height: 8; }
    """

    def __init__(self, index: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.index = index
        self._history: dict[str, deque[int]] = {}
        self._cells: dict[str, dict[str, object]] = {}
        self._rendered: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static(classes="bars")
        # Columns exist before the first show(), which may come before on_mount has run.
        table: DataTable[object] = DataTable(cursor_type="none", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.add_column("history", key="hist", width=HISTORY)
        yield table

    def show(
        self,
        gpu: GpuStatus,
        processes: Sequence[ProcessStatus],
        styles: dict[str, str],
        *,
        fresh: bool = True,
    ) -> None:
        """Draw ``gpu``; ``fresh``: new data (a repaint of the same, after a theme change or
        an operation step, adds no sample to the sparklines)."""
        sim = " (simulated)" if gpu.simulated and "simulated" not in gpu.name else ""
        self.border_title = f"GPU {gpu.index} · {gpu.name}{sim}"
        self.border_subtitle = vitals(gpu)
        mine = [p for p in processes if p.gpu == gpu.index]
        key = (gpu, tuple(mine))
        if key != self._rendered:
            self._rendered = key
            bars = memory_content(gpu, styles)
            self.query_one(".bars", Static).update(bars, layout=False)  # always 3 lines
        self._update_rows(mine, gpu.total_mib, fresh)

    def _update_rows(self, processes: Sequence[ProcessStatus], total_mib: int, fresh: bool) -> None:
        table = self.query_one(DataTable)
        seen: set[str] = set()
        for p in processes:
            key = str(p.pid)
            seen.add(key)
            hist = self._history.setdefault(key, deque(maxlen=HISTORY))
            if fresh or not hist:
                hist.append(p.used_mib)
            label, style = owner_label(p)
            title = visible(p.title) if p.visible else "(pid not visible here: host pid)"
            cells: dict[str, object] = {
                "pid": str(p.pid),
                "title": Text(title[:40], style="italic" if not p.visible else ""),
                "owner": Text(label, style=_rich_style(self, style)),
                "vram": Text(gib(p.used_mib), justify="right"),
                "hist": sparkline(hist, total_mib),
            }
            old = self._cells.get(key)
            if old is None:
                table.add_row(*cells.values(), key=key)
            else:
                for col, value in cells.items():
                    if old.get(col) != value:
                        # Only a changed owner or title can need a wider column.
                        table.update_cell(key, col, value, update_width=col in ("owner", "title"))
            self._cells[key] = cells
        for key in [k for k in self._cells if k not in seen]:
            table.remove_row(key)
            del self._cells[key]
            self._history.pop(key, None)

    def restyle(self) -> None:
        """The theme changed: forget rendered state so the next show() repaints every cell."""
        self._rendered = None
        for cells in self._cells.values():
            cells["owner"] = None


def _rich_style(widget: Static | Vertical, style: str) -> str:
    """DataTable cells are Rich renderables: resolve a theme variable to a concrete colour."""
    if not style:
        return ""
    theme = widget.app.current_theme
    words = style.split()
    out = []
    for w in words:
        if w == "$error":
            out.append(theme.error or "red")
        elif w == "$text-muted":
            out.append("grey50")
        else:
            out.append(w)
    return " ".join(out)
