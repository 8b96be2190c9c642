"""A stand-in for `vllm serve` with the process layout that matters to the GPU monitor.

Copied into a temp dir as an executable named ``vllm`` so its argv reads ``... vllm serve
MODEL --port P --served-model-name NAME`` like the real one. The API server binds its port
and spawns an EngineCore child (title ``VLLM::EngineCore`` via setproctitle) that registers
its memory on the simulated GPU; SIGKILL of the parent leaves the child holding it.
Prints ``ready PORT ENGINE_PID`` once both are up.
"""

import os
import signal
import socket
import subprocess
import sys


def engine(gpu_dir: str, mib: int) -> None:
    from setproctitle import setproctitle

    from ocrtui.sim.gpu import SimGpu

    setproctitle("VLLM::EngineCore")
    SimGpu(gpu_dir).hold(os.getpid(), mib)
    print("ready", flush=True)
    signal.pause()


def serve(argv: list[str]) -> None:
    opts = dict(zip(argv[1::2], argv[2::2], strict=False))
    sock = socket.socket()
    sock.bind(("127.0.0.1", int(opts.get("--port", "0"))))
    sock.listen()
    child = subprocess.Popen(
        [sys.executable, __file__, "--engine", opts["--sim-gpu"], opts["--mib"]],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    print("ready", sock.getsockname()[1], child.pid, flush=True)
    signal.pause()


if __name__ == "__main__":
    if sys.argv[1] == "--engine":
        engine(sys.argv[2], int(sys.argv[3]))
    else:
        assert sys.argv[1] == "serve"
        serve(sys.argv[2:])
