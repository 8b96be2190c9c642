"""Key latency on the comparison screen while page results stream in (default 20/s), and
memory over a long run (default 1000 pages per model).

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
    print(f"key latency idle:                 p50 {i50:6.1f} ms  p95 {p(idle, 0.95):6.1f} ms")
    print(f"key latency at {rate:g} results/s:   p50 {b50:6.1f} ms  p95 {p(busy, 0.95):6.1f} ms"
          f"  (ratio p50 {b50 / i50:.1f}x)")  # fmt: skip
    print(f"RSS after 100 pages/model: {heap[100]:6.1f} MiB; after {pages}: {heap[pages]:6.1f} MiB"
          f" (ratio {heap[pages] / heap[100]:.2f}x); rest of the run at {fast:g}/s asked, "
          f"{(2 * pages) / max(elapsed, 1e-9):.0f} results/s reached")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=20.0, help="page results per second")
    ap.add_argument("--pages", type=int, default=1000, help="pages per model")
    ap.add_argument("--fast", type=float, default=400.0, help="results/s after the key test")
    ap.add_argument("--presses", type=int, default=40)
    a = ap.parse_args()
    asyncio.run(main(a.rate, a.fast, a.pages, a.presses))
