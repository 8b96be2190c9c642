"""The README's Performance table, from the JSON lines under bench/results/.

    .venv/bin/python bench/table.py [FILE.jsonl ...]

One row per figure: ours, baseline, ratio, goal, met?, machine; skipped figures say why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def row(d: dict[str, Any], source: str) -> str:
    if "skipped" in d:
        return f"| `{d['bench']}` | skipped: {d['skipped']} | | | | | {d['machine']} ({source}) |"
    op = ">=" if d["higher_is_better"] else "<="
    what = "ratio" if d["goal_on"] == "ratio" else "ours"
    met = {True: "yes", False: "**no**", None: "—"}[d["goal_met"]]
    return (
        f"| `{d['bench']}` | {_num(d['ours'])} {d['unit']} | {_num(d['baseline'])} | "
        f"{_num(d['ratio'])} | {what} {op} {d['goal']:g} | {met} | {d['machine']} ({source}) |"
    )


def main(paths: list[str]) -> int:
    files = [Path(p) for p in paths] or sorted(RESULTS.glob("*.jsonl"))
    print("| figure | ours | baseline | ratio | goal | met? | machine (file) |")
    print("|---|---|---|---|---|---|---|")
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip():
                print(row(json.loads(line), f.name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
