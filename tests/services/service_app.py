"""A tiny real HTTP service for the services tests (stdlib only, runs as a pod process).

``python3 service_app.py PORT ARGV_FILE [--child] [--ignore-term] [--fail-unless FILE]
[--require-port P] [--require-model PORT NAME] ARGS...``
writes its whole argv as JSON to ARGV_FILE, then serves ``GET /ready`` (200) and anything
else (404) on 127.0.0.1:PORT. ``--child`` starts a child process in the same session (a
tree to stop); ``--ignore-term`` ignores SIGTERM (stop must escalate); ``--fail-unless FILE``
raises before binding when FILE does not exist (a crash with a traceback);
``--require-port P`` raises unless something accepts connections on 127.0.0.1:P;
``--require-model PORT NAME`` raises unless ``GET /v1/models`` there lists NAME (the model
it sits in front of is ready).
"""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/ready" else 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        try:
            self.end_headers()
            self.wfile.write(b"ok")
        except (BrokenPipeError, ConnectionResetError):
            pass  # a readiness probe that gave up waiting (a loaded box): nothing to log

    def log_message(self, format: str, *args: object) -> None:
        print(format % args, flush=True)


def main() -> None:
    port, argv_file, *rest = sys.argv[1:]
    with open(argv_file, "w") as f:
        json.dump(sys.argv, f)
    if "--fail-unless" in rest:
        need = rest[rest.index("--fail-unless") + 1]
        if not os.path.exists(need):
            raise RuntimeError(f"required file {need} is missing")
    if "--require-port" in rest:
        need_port = int(rest[rest.index("--require-port") + 1])
        socket.create_connection(("127.0.0.1", need_port), timeout=2).close()
    if "--require-model" in rest:
        i = rest.index("--require-model")
        url = f"http://127.0.0.1:{rest[i + 1]}/v1/models"
        with urllib.request.urlopen(url, timeout=5) as resp:
            listed = [m["id"] for m in json.load(resp)["data"]]
        if rest[i + 2] not in listed:
            raise RuntimeError(f"{rest[i + 2]} is not served at {url}: {listed}")
    if "--ignore-term" in rest:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--child" in rest:
        subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(60)"])
    server = http.server.HTTPServer(("127.0.0.1", int(port)), Handler)
    print(f"serving on {port} env={os.environ.get('SERVICE_TEST_ENV', '')}", flush=True)
    server.serve_forever()


main()
