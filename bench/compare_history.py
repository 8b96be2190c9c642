"""Memory a run's event history holds over a long documents phase (default 1000 pages per
model, two models): every event a runner emits per page (PageStarted, PageDone with a dense
page of text) plus the speed phases' progress, fed to

- the baseline: a plain list of every event (what CompareRun kept before history.py), and
- EventHistory (compact: texts only for the last REPLAY_TEXTS pages per model),

measured with tracemalloc in the same run. Texts are distinct objects held by nothing else,
so this is the history's own share (RunStore keeps no texts: bench/compare_memory.py).

    .venv/bin/python bench/compare_history.py [--pages 1000] [--chars 3000]
"""

from __future__ import annotations

import argparse
import tracemalloc
from collections.abc import Callable
from functools import partial

import jsonl

from ocrtui.compare.events import Event, PageDone, PageStarted, PhaseProgress, RunStarted
from ocrtui.compare.history import EventHistory
from ocrtui.compare.store import PageResult

MODELS = ("glm-ocr", "lighton-ocr")
LINE = "第二条 租金：每月人民币肆仟伍佰元整（¥4,500.00），按季度支付。"


def events(pages: int, chars: int) -> list[Callable[[], Event]]:
    """Factories, so each text is created when it is emitted (as a response arrives)."""

    def done(m: str, p: int) -> Event:
        text = f"p{p} " + (LINE * (chars // len(LINE) + 1))[:chars]
        return PageDone(
            PageResult("doc", p, m, True, None, 1.0, 900, 400, "stop", text, 0.01, "other")
        )

    out: list[Callable[[], Event]] = [partial(RunStarted, "runs/x", MODELS, ("doc",))]
    for m in MODELS:
        out += [partial(PhaseProgress, m, "throughput", i, 50) for i in range(1, 51)]
    for p in range(1, pages + 1):
        for m in MODELS:
            out += [partial(PageStarted, m, "doc", p), partial(done, m, p)]
    return out


def measure(
    append: Callable[[Event], None], feed: list[Callable[[], Event]], pages: int
) -> dict[int, int]:
    """Traced bytes after every 100 pages."""
    per_page = 2 * len(MODELS)
    head = len(feed) - per_page * pages  # RunStarted and the speed phases' progress
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    sizes: dict[int, int] = {}
    for i, make in enumerate(feed, 1):
        append(make())
        if i > head and (i - head) % (100 * per_page) == 0:
            sizes[(i - head) // per_page] = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return sizes


def main(pages: int, chars: int) -> None:
    feed = events(pages, chars)
    baseline: list[Event] = []
    before = measure(baseline.append, feed, pages)
    history = EventHistory()
    after = measure(history.append, feed, pages)
    kept = len(history.events)
    del baseline, history
    last = max(before)
    for n in (100, last):  # how it grows: at two sizes
        goal = 0.5 if n == last else 1.0  # the window fills first: the saving shows later
        jsonl.emit(f"compare_history_{n}_pages", after[n] / 2**20, before[n] / 2**20, goal,
                   "MiB", False, chars=chars, replayable_events=kept, emitted=len(feed),
                   baseline_is="a list of every event")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--chars", type=int, default=3000)
    a = ap.parse_args()
    main(a.pages, a.chars)
