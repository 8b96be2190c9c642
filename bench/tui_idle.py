"""Idle CPU of the dashboard: one new snapshot a second (as from the pod agent), no keys.

Baseline, measured in the same run: a bare Textual app (Header, Static, Footer) idling.
Goal: <= 3 % of a core.

    .venv/bin/python bench/tui_idle.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import jsonl
from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static
from tui_common import SIZE, cpu_s, make_app, publish_next, tmpdir


class Bare(App[None]):
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("idle")
        yield Footer()


async def measure(seconds: float, dashboard: bool) -> float:
    app: App[Any]
    if dashboard:
        app, source = make_app(tmpdir())
    else:
        app, source = Bare(), None
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await asyncio.sleep(1.0)  # let start-up work finish before measuring
        start = cpu_s()
        for tick in range(int(seconds)):
            if source is not None:
                publish_next(source, tick + 1)
            await asyncio.sleep(1.0)
        used = cpu_s() - start
    return used / seconds * 100


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    base = asyncio.run(measure(args.seconds, dashboard=False))
    dash = asyncio.run(measure(args.seconds, dashboard=True))
    jsonl.emit("tui_idle_cpu", dash, base, 3.0, "% of a core", False, goal_on="ours",
               seconds=args.seconds, baseline_is="bare Textual app idle")  # fmt: skip


if __name__ == "__main__":
    main()
