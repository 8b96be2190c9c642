"""Key latency on the comparison screen while page results stream in (default 20/s), and
memory over a long run (default 1000 pages per model). Goals: key p95 <= 100 ms while
streaming; RSS after 1000 pages per model <= 250 MB (baseline: after 100).

Key latency: time from a key event reaching the app to its action having run (the
diff-mode toggle, which recomputes and re-renders the diff), with the stream off (the
baseline) and on.
Memory: resident size after 100 pages and after all pages: panes keep at most PANE_LINES
lines, the run view at most TEXT_PAGES page texts per model, so it levels off.

    .venv/bin/python bench/tui_stream.py [--rate 20] [--pages 1000] [--presses 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import jsonl
from textual import events
from tui_common import MODELS, SIZE, make_app, page, tmpdir

from ocrtui.tui.run_view import RunView
from ocrtui.tui.screens.compare import CompareScreen


async def key_latency(pilot: Any, screen: CompareScreen, presses: int) -> list[float]:
    done = asyncio.Event()
    original = screen.action_diff_mode

    def toggled() -> None:
        original()
        done.set()

    screen.action_diff_mode = toggled  # type: ignore[method-assign]
    out = []
    for _ in range(presses):
        done.clear()
        start = time.perf_counter()
        # As a terminal would deliver it; pilot.press would also wait for the app to go
        # idle, which a busy stream delays without the key being late.
        pilot.app.post_message(events.Key("d", "d"))
        await asyncio.wait_for(done.wait(), 10)
        out.append(time.perf_counter() - start)
        await asyncio.sleep(0.05)
    screen.action_diff_mode = original  # type: ignore[method-assign]
    return out


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def feed(view: RunView, rate: list[float], pages: int, heap: dict[int, float]) -> None:
    """Results for every page of every model, at ``rate[0]`` results/s (changeable)."""
    next_at = time.perf_counter()
    for i in range(1, pages + 1):
        for m in MODELS:
            view.add(page(i, m))
            next_at += 1 / rate[0]
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        if i in (100, pages):
            heap[i] = rss_mib()


async def main(rate: float, fast: float, pages: int, presses: int) -> None:
    app, _ = make_app(tmpdir())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        view = RunView(list(MODELS), "bench")
        app.run_view = view
        app.show_comparison()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        for i in range(1, 3):  # something to diff
            for m in MODELS:
                view.add(page(i, m))
        await pilot.pause(0.3)

        idle = await key_latency(pilot, screen, presses)

        heap: dict[int, float] = {}
        speed = [rate]
        feeder = asyncio.create_task(feed(view, speed, pages, heap))
        busy = await key_latency(pilot, screen, presses)
        speed[0] = fast  # the rest of the long run as fast as the screen takes it
        start = time.perf_counter()
        await feeder
        await pilot.pause()
        elapsed = time.perf_counter() - start

    def p(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(len(xs) * q))] * 1000

    i50, b50 = statistics.median(idle) * 1000, statistics.median(busy) * 1000
    jsonl.emit("tui_key_p95_streaming", p(busy, 0.95), p(idle, 0.95), 100, "ms", False,
               goal_on="ours", rate=rate, p50_ours=round(b50, 2), p50_baseline=round(i50, 2),
               baseline_is="same screen, no stream")  # fmt: skip
    jsonl.emit(f"tui_rss_{pages}_pages", heap[pages], heap[100], 250, "MiB", False,
               goal_on="ours", baseline_is="RSS after 100 pages per model",
               results_per_s=round(2 * pages / max(elapsed, 1e-9)))  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=20.0, help="page results per second")
    ap.add_argument("--pages", type=int, default=1000, help="pages per model")
    ap.add_argument("--fast", type=float, default=400.0, help="results/s after the key test")
    ap.add_argument("--presses", type=int, default=40)
    a = ap.parse_args()
    asyncio.run(main(a.rate, a.fast, a.pages, a.presses))
