"""report.html generation for a run of 100 and 1000 pages x 2 models: time, size and peak
memory, against report.md generated from the same run's summary.json in the same process.

    .venv/bin/python -m bench.report_html [--pages 100 1000] [--chars 1500]

(run as a module from the repository root: the synthetic run directories come from
tests/plugins/run_dirs.py). Every page holds a real rendered page (the sample contract's
first page at LightOnOCR's 1540 px, hard-linked so the run takes no disk per page), a
reference of ``--chars`` Chinese characters, and two outputs with a few wrong characters.

Goals, for 1000 pages: written in at most 30 s, at most 25 MB, peak traced memory at most
64 MiB (images are embedded worst page first up to report_html.IMAGE_BUDGET_BYTES, texts
stream from results.jsonl). One JSON line per measurement:
{"bench","ours","baseline","ratio","goal","goal_met","machine"}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

from ocrtui.compare import page_files, report
from ocrtui.compare.profiles import TARGETS
from ocrtui.compare.render import render_page_sync
from ocrtui.compare.report_html import write_html_report
from ocrtui.compare.results import Summary
from ocrtui.compare.sample_suite import sample_suite_path
from tests.plugins.run_dirs import SynthPage, write_run_dir

LINE = "第二条 租金：每月人民币肆仟伍佰元整（¥4,500.00），按季度支付。"
GOAL_S, GOAL_MB, GOAL_PEAK_MIB = 30.0, 25.0, 64.0
MACHINE = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def synth_pages(n: int, chars: int) -> list[SynthPage]:
    out = []
    for p in range(1, n + 1):
        ref = (f"第{p}页 " + LINE * (chars // len(LINE) + 1))[:chars]
        glm = ref.replace("肆仟", "肆千", p % 3)
        lighton = ref.replace("4,500.00", "4,5OO.OO", 1 + p % 5)
        out.append(SynthPage("contract.pdf", p, {"glm-ocr": glm, "lighton-ocr": lighton}, ref,
                             "zh_contract"))  # fmt: skip
    return out


def make_run(root: Path, n: int, chars: int) -> Path:
    run_dir = write_run_dir(root / f"run{n}", synth_pages(n, chars))
    pdf = sample_suite_path().parent / "zh_contract.pdf"
    target = TARGETS["lighton-ocr"]
    image = render_page_sync(str(pdf), "pdf", None, 1, target, "jpeg")
    first = page_files.save_page_image(run_dir, "contract.pdf", 1, target, image)
    for p in range(2, n + 1):
        os.link(first, first.with_name(f"{p}-{page_files.target_slug(target)}.jpg"))
    return run_dir


def line(bench: str, ours: float, baseline: float, goal: str, met: bool) -> None:
    print(json.dumps({"bench": bench, "ours": round(ours, 4), "baseline": round(baseline, 4),
                      "ratio": round(ours / baseline, 2) if baseline else None, "goal": goal,
                      "goal_met": met, "machine": MACHINE}))  # fmt: skip


def measure(run_dir: Path, n: int) -> None:
    t0 = time.perf_counter()
    summary = Summary.from_json(json.loads((run_dir / "summary.json").read_text(encoding="utf-8")))
    md = report.render_markdown(summary)
    md_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = write_html_report(run_dir)
    html_s = time.perf_counter() - t0
    mb = out.stat().st_size / 1e6
    md_mb = len(md.encode()) / 1e6
    big = n >= 1000
    line(f"report_html_seconds_{n}p", html_s, md_s, f"<= {GOAL_S:g} s at 1000 pages",
         html_s <= GOAL_S or not big)  # fmt: skip
    line(f"report_html_mb_{n}p", mb, md_mb, f"<= {GOAL_MB:g} MB at 1000 pages",
         mb <= GOAL_MB or not big)  # fmt: skip
    tracemalloc.start()
    write_html_report(run_dir)
    peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
    tracemalloc.stop()
    results_mib = (run_dir / "results.jsonl").stat().st_size / (1 << 20)
    line(f"report_html_peak_mib_{n}p (baseline: results.jsonl MiB)", peak, results_mib,
         f"<= {GOAL_PEAK_MIB:g} MiB", peak <= GOAL_PEAK_MIB)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--chars", type=int, default=1500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.pages:
            measure(make_run(Path(tmp), n, args.chars), n)


if __name__ == "__main__":
    main()
