"""A title-only vLLM process of a data-parallel server: ``VLLM::APIServer_<i>`` or
``VLLM::DPCoordinator``, as vLLM 0.32 titles them (vllm/v1/utils.py, v1/engine/coordinator.py).

Started by the API server as ``python -m ocrtui.sim.helper --title T [--keep-fd N]`` in its
process group. An ``APIServer_<i>`` keeps the listening socket open (``--keep-fd``), as each
of vLLM's does; the launching process answers every request here (docs/sim.md, "Deliberate
differences"). Like vLLM's (spawned, not daemonic), it does not die with its parent: after a
SIGKILL of the API server it lives on, holding the port, until someone signals it.
"""

from __future__ import annotations

import argparse
import signal
import sys

from ocrtui.sim import vlog


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ocrtui.sim.helper")
    p.add_argument("--title", required=True)
    p.add_argument("--keep-fd", type=int, help="an inherited fd kept open until exit")
    ns = p.parse_args(argv)
    from setproctitle import setproctitle

    setproctitle(ns.title)
    vlog.install_prefix(ns.title.removeprefix("VLLM::"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
