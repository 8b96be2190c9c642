"""Pod transport numbers on this machine: ``python -m tests.pod.bench_pod``.

Starts a throwaway sshd (the test fixture's) and a loopback HTTP server, then measures
connect time, one-command round trip, reconnect time after sshd returns, and HTTP latency
direct vs through the pod's forward (keep-alive and a new TCP connection per request).
"""

from __future__ import annotations

import asyncio
import http.server
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from ocrtui.pod import ConnState
from tests.plugins.sshd import Sshd


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this Nagle adds ~40 ms.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def _timed(n: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _fmt(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return f"mean {statistics.mean(ms):6.2f} ms  p50 {statistics.median(ms):6.2f}  p95 {p95:6.2f}"


async def _http(url: str, n: int, keepalive: bool) -> list[float]:
    limits = httpx.Limits(max_keepalive_connections=None if keepalive else 0)
    async with httpx.AsyncClient(limits=limits) as client:
        await client.get(url)
        return await _timed(n, lambda: client.get(url))


async def main(n: int = 200) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    http_port = httpd.server_address[1]
    sshd = Sshd(Path(tempfile.mkdtemp(prefix="bench-sshd-")))
    sshd.start()
    try:
        connects = []
        for _ in range(10):
            pod = sshd.make_pod()
            t = time.perf_counter()
            await pod.connect()
            connects.append((time.perf_counter() - t) * 1000)
            await pod.close()
        print(f"connect (10x)            {_fmt(connects)}")

        pod = sshd.make_pod()
        await pod.connect()
        runs = await _timed(50, lambda: pod.run(["true"]))
        print(f"run(['true']) (50x)      {_fmt(runs)}")

        reconnects = []
        for _ in range(5):
            sshd.stop()
            await pod.wait_for_state(ConnState.RECONNECTING, timeout=5)
            sshd.start()
            t = time.perf_counter()
            await pod.wait_for_state(ConnState.CONNECTED, timeout=10)
            reconnects.append((time.perf_counter() - t) * 1000)
        print(f"reconnect after sshd up  {_fmt(reconnects)}  (5x, sshd down ~0.1 s)")
        sshd.stop()
        await pod.wait_for_state(ConnState.RECONNECTING, timeout=5)
        await asyncio.sleep(8)  # let the backoff reach its cap before sshd returns
        sshd.start()
        t = time.perf_counter()
        await pod.wait_for_state(ConnState.CONNECTED, timeout=10)
        print(f"reconnect, sshd down 8 s {(time.perf_counter() - t) * 1000:6.0f} ms (backoff cap)")

        direct = f"http://127.0.0.1:{http_port}/health"
        forwarded = (await pod.forward(http_port)) + "/health"
        for keepalive in (True, False):
            kind = "keep-alive" if keepalive else "new conn  "
            print(f"HTTP direct    {kind} {_fmt(await _http(direct, n, keepalive))}")
            print(f"HTTP forwarded {kind} {_fmt(await _http(forwarded, n, keepalive))}")
        await pod.close()
    finally:
        sshd.stop()
        httpd.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
