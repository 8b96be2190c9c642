"""`ocrtui compare --headless` with model URLs given directly instead of through the
Controller, for tests that need the command in a subprocess (kill -9, resume).

    python -m tests.compare.driver --model NAME=PROFILE=URL [...] -- COMPARE ARGS...
"""

from __future__ import annotations

import asyncio
import sys

from ocrtui.cli import _parser
from ocrtui.compare.cli import build_request, run_headless
from ocrtui.compare.client import ModelTarget
from ocrtui.config import parse_config
from ocrtui.errors import OcrtuiError


def main(argv: list[str]) -> int:
    split = argv.index("--")
    models = [a.split("=", 2) for a in argv[:split] if a != "--model"]
    config = parse_config(
        {
            "pod": {"kind": "local"},
            "models": [
                {"name": n, "model": f"org/{n}", "port": 9000 + i, "gpu_memory_utilization": 0.4,
                 "profile": p}
                for i, (n, p, _) in enumerate(models)
            ],
            "compare": {"warm_runs": 2, "throughput_requests": 3, "concurrency": 2},
        },
        "driver",
    )  # fmt: skip
    args = _parser().parse_args(["compare", *argv[split + 1 :]])
    try:
        request = build_request(config, args)
        targets = [ModelTarget(config.model(n), url) for n, _, url in models]
        return asyncio.run(run_headless(request, targets))
    except OcrtuiError as exc:
        print(f"ocrtui: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
