"""Pure formatting helpers shared by the widgets (no Textual state)."""

from __future__ import annotations

from collections.abc import Iterable

SPARK = "▁▂▃▄▅▆▇█"


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f}"


def sparkline(values: Iterable[float], top: float) -> str:
    """One character per value, scaled to ``top`` (e.g. the GPU's total memory)."""
    if top <= 0:
        return ""
    last = len(SPARK) - 1
    return "".join(SPARK[max(0, min(last, round(v / top * last)))] for v in values)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def segments(parts: list[tuple[int, str]], total: int, width: int) -> list[tuple[int, str]]:
    """Split ``width`` cells among (MiB, style) parts by share of ``total``, largest remainder.

    A non-zero part gets at least one cell so a small leak is still visible; the cells left
    over are returned with style "" (free memory).
    """
    if total <= 0 or width <= 0:
        return [(width, "")] if width > 0 else []
    exact = [(mib / total * width, style) for mib, style in parts if mib > 0]
    cells = [max(1, int(x)) for x, _ in exact]
    while sum(cells) > width and max(cells, default=0) > 1:
        cells[cells.index(max(cells))] -= 1
    spare = width - sum(cells)
    order = sorted(range(len(exact)), key=lambda i: exact[i][0] - int(exact[i][0]), reverse=True)
    used_share = sum(x for x, _ in exact)
    for i in order:
        if spare <= 0 or sum(cells) >= round(min(used_share, width)):
            break
        cells[i] += 1
        spare -= 1
    out = [(n, style) for n, (_, style) in zip(cells, exact, strict=True) if n > 0]
    free = width - sum(n for n, _ in out)
    if free > 0:
        out.append((free, ""))
    return out
