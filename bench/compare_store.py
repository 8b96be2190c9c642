"""Cost of appending one result line to results.jsonl (write + flush + fsync, on the store's
own thread) as the runner does for every page.

    .venv/bin/python bench/compare_store.py [--lines 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from ocrtui.compare.store import PageResult, RunStore

TEXT = "第二条 租金：每月人民币肆仟伍佰元整（¥4,500.00），按季度支付。" * 20


async def bench(lines: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore.create(Path(tmp) / "run", {})
        times = []
        for i in range(lines):
            r = PageResult("doc", i, "glm-ocr", True, None, 1.0, 900, 400, "stop", TEXT, 0.01,
                           "zh_contract")  # fmt: skip
            start = time.perf_counter()
            await store.add_result(r)
            times.append(time.perf_counter() - start)
        store.close()
        return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=500)
    args = ap.parse_args()
    times = asyncio.run(bench(args.lines))
    ms = sorted(t * 1000 for t in times)
    print(f"{args.lines} appends of {len(TEXT.encode())} B: median {statistics.median(ms):.2f} ms, "
          f"p95 {ms[int(len(ms) * 0.95) - 1]:.2f} ms, max {ms[-1]:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
