"""Cost of appending one result line to results.jsonl (write + flush + fsync, on the store's
own thread) as the runner does for every page.

    .venv/bin/python bench/compare_store.py [--lines 500]

Baseline: the same line through plain write+flush+fsync. Goal: median <= 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import jsonl

from ocrtui.compare.store import PageResult, RunRecord, RunStore

TEXT = "第二条 租金：每月人民币肆仟伍佰元整（¥4,500.00），按季度支付。" * 20


async def bench(lines: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create(Path(tmp) / "run", RunRecord())
        times = []
        for i in range(lines):
            r = PageResult("doc", i, "glm-ocr", True, None, 1.0, 900, 400, "stop", TEXT, 0.01,
                           "zh_contract")  # fmt: skip
            start = time.perf_counter()
            await store.add_result(r)
            times.append(time.perf_counter() - start)
        store.close()
        return times


def plain_appends(lines: int) -> list[float]:
    """The baseline: the same line written and fsynced with plain file calls."""
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "r.jsonl", "a") as f:
        line = json.dumps({"text": TEXT}, ensure_ascii=False) + "\n"
        times = []
        for _ in range(lines):
            start = time.perf_counter()
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - start)
        return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=500)
    args = ap.parse_args()
    ours = statistics.median(asyncio.run(bench(args.lines))) * 1000
    base = statistics.median(plain_appends(args.lines)) * 1000
    jsonl.emit("store_append", ours, base, 1.0, "ms", False, goal_on="ours",
               bytes=len(TEXT.encode()), baseline_is="plain write+flush+fsync")  # fmt: skip


if __name__ == "__main__":
    main()
