"""A ``vllm serve`` whose API server exits at once on SIGTERM while its EngineCore (a child
in its process group, title ``VLLM::EngineCore``, no GPU) takes ``LINGER_S`` more to exit:
real vLLM's API server is not the last of its tree to go.

Copied as an executable named ``vllm``, so its argv reads like the real one.
"""

import os
import signal
import socket
import subprocess
import sys
import time

LINGER_S = 1.5


def engine() -> None:
    from setproctitle import setproctitle

    setproctitle("VLLM::EngineCore")

    def linger_then_exit(*_: object) -> None:
        time.sleep(LINGER_S)
        os._exit(0)

    signal.signal(signal.SIGTERM, linger_then_exit)
    while True:
        signal.pause()


def serve(argv: list[str]) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(argv[argv.index("--port") + 1])))
    sock.listen()
    subprocess.Popen([sys.executable, __file__, "--engine"])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    if sys.argv[1] == "--engine":
        engine()
    else:
        serve(sys.argv[2:])
