"""``ocrtui sim-vllm ARGS``: the simulator's command line, shaped like ``vllm``'s.

``serve MODEL [flags]`` runs the server (see docs/sim.md); ``--version`` prints the version.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ocrtui.sim.args import TOP_USAGE
from ocrtui.sim.version import VLLM_VERSION


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv[:1] in (["-v"], ["--version"]):
        print(VLLM_VERSION)
        return 0
    if argv[:1] in ([], ["-h"], ["--help"]):
        out = sys.stdout if argv else sys.stderr
        print(TOP_USAGE, file=out)
        print(
            "\n  serve    start the vLLM-compatible simulator (ocrtui sim-vllm serve -h)", file=out
        )
        return 0 if argv else 2
    if argv[0] != "serve":
        print(TOP_USAGE, file=sys.stderr)
        print(
            f"vllm: error: argument subparser: invalid choice: '{argv[0]}' (choose from 'serve')",
            file=sys.stderr,
        )
        return 2
    from ocrtui.sim.api_server import run
    from ocrtui.sim.args import parse_serve_args

    try:
        args = parse_serve_args(argv[1:])
    except SystemExit as exc:  # argparse: usage error (2) or -h (0)
        return int(exc.code or 0)
    return run(args)
