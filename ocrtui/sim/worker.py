"""The Worker process: titled ``VLLM::Worker``, the EngineCore's child, as in vLLM 0.32.

Started by the EngineCore as ``python -m ocrtui.sim.worker --fd R --tracker-fd T
[--dp-rank I]`` (``VLLM::Worker_DP<i>`` under data parallel). It holds
the read end of a pipe whose only writer is its EngineCore, and the resource tracker's pipe
(so the tracker lives as long as it does). When the EngineCore goes (shutdown or death) the
pipe reads EOF and the Worker logs vLLM's line and exits; SIGKILL of the API server leaves
both alive. It runs no model: the EngineCore holds the simulated memory and reads the pages
(docs/sim.md, "Deliberate differences").
"""

from __future__ import annotations

import argparse
import os
import sys

from ocrtui.sim import vlog

TITLE = "VLLM::Worker"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ocrtui.sim.worker")
    p.add_argument("--fd", type=int, required=True, help="read end of the EngineCore's pipe")
    p.add_argument("--tracker-fd", type=int, required=True, help="kept open, never used")
    p.add_argument("--dp-rank", type=int, help="its EngineCore's data-parallel rank")
    ns = p.parse_args(argv)
    from setproctitle import setproctitle

    name = TITLE if ns.dp_rank is None else f"{TITLE}_DP{ns.dp_rank}"
    setproctitle(name)
    vlog.install_prefix(name.removeprefix("VLLM::"))
    vlog.info(
        "parallel_state.py:1906",
        "world_size=1 rank=0 local_rank=0 distributed_init_method=env:// backend=nccl",
    )
    while os.read(ns.fd, 4096):
        pass
    vlog.info("multiproc_executor.py:843", "Parent process exited, terminating worker queues")
    return 0


if __name__ == "__main__":
    sys.exit(main())
