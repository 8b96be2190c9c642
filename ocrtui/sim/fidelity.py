"""The simulator held to real vLLM 0.32: one probe set, two servers, a list of differences.

``observe(command, ...)`` starts a server (the simulator, or a real ``vllm``), sends the probe
set and records what it showed: process titles and tree shape, start-up stage lines (which
process printed each, in order), the SIGTERM lines, the engine-death lines (``kill -9`` of
the EngineCore), ``/metrics`` families with their types, label names, enumerated label
values and buckets, ``/v1/models``, ``/version``, ``/load``, the chat body's fields, error
bodies and codes, the exit code and text of two usage errors, and sleep mode's development
endpoints (``SLEEP_PROBES``, on a server with ``VLLM_SERVER_DEV_MODE=1``) with
``vllm:engine_sleep_state`` after each step. ``recorded(dir)`` builds
the same from real vLLM 0.32's recorded output (tests/sim/fixtures/real-0.32/, copied from
the CPU measurement). ``compare(real, sim)`` lists every difference; ``KNOWN`` holds the
deliberate ones with their reasons (docs/sim.md shows them as a table). A difference not in
``KNOWN``, or an entry of ``KNOWN`` that no longer differs, fails tests/sim/test_fidelity.py.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

MODEL_DIR = "/srv/realvllm/models/tiny-qwen2"
SERVED = "tiny"
# The real server's flags (fixtures' serve1.log) and the probe set's limits.
SERVE_FLAGS: tuple[str, ...] = ("--served-model-name", SERVED, "--max-model-len", "512")
SERVE_FLAGS += ("--max-num-seqs", "4", "--dtype", "bfloat16", "--host", "127.0.0.1")
SIM_FLAGS = ("--engine", "synthetic", "--sim-startup-s", "0")
DEATH_MARK = "engine core exited unexpectedly"
# Real vLLM 0.32 exits 2 on both usage errors (argparse's usage-error status; their logs are
# tests/sim/fixtures/real-0.32/logs/unknown_flag.log and old_limit_mm.log).
USAGE_EXIT = 2

# -- normalisation --------------------------------------------------------------------------

_HEADER = re.compile(
    r"^(?:\((?P<role>[A-Za-z]+)(?:-\d+)? pid=\d+\) )?"
    r"(?:(?P<level>INFO|WARNING|ERROR|DEBUG) \d\d-\d\d [\d:]+ \[[^\]]+\] )?(?P<msg>.*)$"
)
_ROLES = {"VllmWorker": "Worker"}


def _split(line: str) -> tuple[str, str, str]:
    """(role, level, message) of a log line; role "" for bare lines such as uvicorn's."""
    m = _HEADER.match(line.rstrip("\n"))
    assert m is not None  # the pattern matches any line
    role = m.group("role") or ""
    return _ROLES.get(role, role), m.group("level") or "", m.group("msg")


def _norm(text: str) -> str:
    """Pids, addresses and ports out: they differ between any two runs."""
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    text = re.sub(r"\[\d+\]", "[N]", text)
    text = re.sub(r"pid \d+", "pid N", text)
    return re.sub(r"main\(\d+\)", "main(N)", text)


# Start-up stage lines; a marker's first line counts. Both GPU and CPU builds' markers.
STARTUP_MARKERS: tuple[tuple[str, str], ...] = (
    ("banner", r"█▄█▀ .* model "),
    ("non-default args", r"^non-default args: "),
    ("resolved architecture", r"^Resolved architecture: "),
    ("max model len", r"^Using max model len "),
    ("initializing engine", r"^Initializing a V1 LLM engine \(v"),
    ("start loading model", r"^Starting to load model "),
    ("loading weights took", r"^Loading weights took "),
    ("model loading took", r"^Model loading took "),
    ("warming up (CPU)", r"^Warming up model for the compilation"),
    ("compiled", r"^torch\.compile took|saved AOT compiled function"),
    ("profiling run", r"Initial profiling/warmup run took "),
    ("available KV cache", r"^Available KV cache memory: "),
    ("KV cache size", r"^(GPU|CPU) KV cache size: "),
    ("maximum concurrency", r"Maximum concurrency for [\d,]+ tokens per request"),
    ("CUDA graphs", r"^Graph capturing finished"),
    ("init engine took", r"^init engine \(profile, create kv cache, warmup model\) took "),
    ("supported tasks", r"^Supported tasks: "),
    ("server on", r"^Starting vLLM server on http://"),
    ("routes", r"^Available routes are:"),
    ("uvicorn started", r"^INFO:     Started server process \["),
    ("uvicorn waiting", r"^INFO:     Waiting for application startup\."),
    ("uvicorn ready", r"^INFO:     Application startup complete\."),
)
# Printed or not by real vLLM depending on how fast its SIGKILL (shutdown timeout 0) lands.
_RACY = re.compile(r"Executor: waiting for worker exit|Parent process exited")
_STOP_LINE = re.compile(
    r"\[shutdown\]|Parent process exited|output_handler failed\.$|EngineDeadError: |"
    r"^INFO:     (Shutting down|Waiting for application shutdown|Application shutdown "
    r"complete|Finished server process)"
)


def startup_stages(log: str) -> list[tuple[str, str]]:
    """(marker, role that printed it), in the order the log shows them."""
    found: dict[str, tuple[int, str]] = {}
    for i, line in enumerate(log.splitlines()):
        role, _, msg = _split(line)
        for name, pattern in STARTUP_MARKERS:
            if name not in found and re.search(pattern, msg):
                found[name] = (i, role)
    return [(name, role) for name, (_, role) in sorted(found.items(), key=lambda kv: kv[1][0])]


def stop_lines(log: str) -> dict[str, list[str]]:
    """Shutdown lines per process role (their interleaving between processes is a race)."""
    out: dict[str, list[str]] = {}
    for line in log.splitlines():
        role, level, msg = _split(line)
        if _STOP_LINE.search(msg) and not _RACY.search(msg):
            out.setdefault(role or "uvicorn", []).append(_norm(f"{level} {msg}".strip()))
    return out


def _after(log: str, marker: str) -> str:
    i = log.find(marker)
    return log[log.rfind("\n", 0, i) + 1 :] if i >= 0 else ""


# -- metrics ----------------------------------------------------------------------------------

# Labels whose values are a fixed vocabulary (or, for http_*, follow from the probe set).
ENUM_LABELS = frozenset(
    {"finished_reason", "reason", "source", "sleep_state", "handler", "method", "status"}
)
CONFIG_LABELS = ("gpu_memory_utilization", "enable_prefix_caching", "cache_dtype", "block_size")


def metric_shape(text: str) -> dict[str, Any]:
    """Per family: type, label names, enumerated values, buckets; cache_config_info values."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    shape: dict[str, Any] = {}
    for name, kind in types.items():
        shape[name] = {"type": kind, "labels": set(), "values": {}, "buckets": []}
    for m in re.finditer(r"^([^#\s{]+)(?:\{([^}]*)\})? ", text, re.M):
        sample, labels = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        family = next(
            (
                sample[: -len(s)] if s else sample
                for s in ("_bucket", "_count", "_sum", "")
                if sample.endswith(s) and (sample[: -len(s)] if s else sample) in shape
            ),
            None,
        )
        if family is None:
            continue
        f = shape[family]
        if "le" in labels and sample.endswith("_bucket"):
            le = labels.pop("le")
            if le not in f["buckets"]:
                f["buckets"].append(le)
        labels.pop("quantile", None)
        f["labels"] |= set(labels)
        for key in ENUM_LABELS & set(labels):
            f["values"].setdefault(key, set()).add(labels[key])
        if family == "vllm:cache_config_info":
            f["config"] = {k: labels.get(k) for k in CONFIG_LABELS}
    for f in shape.values():
        f["labels"] = sorted(f["labels"])
        f["values"] = {k: sorted(v) for k, v in sorted(f["values"].items())}
    return shape


# -- what one server showed ------------------------------------------------------------------


@dataclass
class Observation:
    tree: list[tuple[int, str]] = field(default_factory=list)  # (depth, normalised title)
    after_api_kill: list[tuple[int, str]] = field(default_factory=list)  # survivors' tree
    startup: list[tuple[str, str]] = field(default_factory=list)
    sigterm: dict[str, list[str]] = field(default_factory=dict)
    engine_death: dict[str, list[str]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)  # probe -> (code, body)
    usage: dict[str, tuple[int, str]] = field(default_factory=dict)
    # SLEEP_PROBES' metrics reads -> vllm:engine_sleep_state's values by sleep_state
    sleep_state: dict[str, dict[str, float]] = field(default_factory=dict)


def _title(argv: str) -> str:
    if re.search(r"\bserve\b", argv):
        return "vllm serve ..."  # the API server keeps its argv
    if "multiprocessing.resource_tracker" in argv:
        # The interpreter's flags are the environment's, not vLLM's: -B is there exactly
        # when PYTHONDONTWRITEBYTECODE was set where the server ran.
        return _norm(re.sub(r"^\S*python[\d.]*(\s+-[A-Za-z]+)*\s+-c", "python -c", argv).strip())
    return argv.strip()


def _tree(rows: Sequence[tuple[int, int, str]], root: int) -> list[tuple[int, str]]:
    """(depth, title) from (pid, ppid, argv) rows, depth-first from ``root``."""
    kids: dict[int, list[tuple[int, str]]] = {}
    for pid, ppid, argv in rows:
        kids.setdefault(ppid, []).append((pid, argv))
    out: list[tuple[int, str]] = []

    def walk(pid: int, depth: int) -> None:
        for child, argv in sorted(kids.get(pid, []), key=lambda c: _title(c[1])):
            out.append((depth, _title(argv)))
            walk(child, depth + 1)

    walk(root, 0)
    return out


def _proc_rows(pgid: int) -> list[tuple[int, int, str]]:
    rows = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":
            rows.append((int(entry.name), int(stat[1]), argv))
    return rows


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _chat(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": SERVED, "messages": [{"role": "user", "content": content}], **extra}


def _image_parts(n: int, url: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}}] * n
    return [*parts, {"type": "text", "text": "read"}]


# name -> (method, path, JSON body or raw bytes); the fixtures' file names.
PROBES: dict[str, tuple[str, str, Any]] = {
    "v1_models": ("GET", "/v1/models", None),
    "version": ("GET", "/version", None),
    "load": ("GET", "/load", None),
    "chat": ("POST", "/v1/chat/completions", _chat("hi", max_tokens=16)),
    "err_prompt_plus_max_tokens": (
        "POST",
        "/v1/chat/completions",
        _chat("hello there", max_tokens=500),
    ),
    "err_unknown_model": ("POST", "/v1/chat/completions", {**_chat("hi"), "model": "nope"}),
    "err_bad_json": ("POST", "/v1/chat/completions", b'{"model":"tiny",}'),
    "err_bad_temperature": ("POST", "/v1/chat/completions", _chat("hi", temperature=-1)),
    "err_image_to_text_model": ("POST", "/v1/chat/completions", _chat(_image_parts(1, "IMG"))),
    "err_max_tokens_too_large": ("POST", "/v1/chat/completions", _chat("hi", max_tokens=100000)),
    "err_prompt_too_long": ("POST", "/v1/chat/completions", _chat("word " * 700)),
    "err_404_route": ("GET", "/v1/nothing", None),
    "err_405": ("GET", "/v1/chat/completions", None),
    "sleep_no_dev_mode": ("POST", "/sleep?level=1", None),  # without VLLM_SERVER_DEV_MODE
}
# Sent to a server started with --limit-mm-per-prompt '{"image": 1}' (a vision model's).
VL_PROBES: dict[str, tuple[str, str, Any]] = {
    "vl_err_two_images": ("POST", "/v1/chat/completions", _chat(_image_parts(2, "IMG"))),
    "vl_err_bad_image": (
        "POST",
        "/v1/chat/completions",
        _chat(_image_parts(1, "data:image/png;base64,AAAA")),
    ),
}


# Sleep mode, in this order, to a server started with VLLM_SERVER_DEV_MODE=1 (no
# --enable-sleep-mode: the CPU build refuses it, "Sleep mode is not supported on current
# platform."; without it, vLLM pauses and sleeps but frees nothing, on any build).
SLEEP_PROBES: dict[str, tuple[str, str, Any]] = {
    "sleep_is_sleeping_before": ("GET", "/is_sleeping", None),
    "sleep_level1": ("POST", "/sleep?level=1", None),
    "sleep_is_sleeping_asleep": ("GET", "/is_sleeping", None),
    "sleep_again": ("POST", "/sleep?level=2", None),
    "sleep_wake_up": ("POST", "/wake_up", None),
    "sleep_is_sleeping_woken": ("GET", "/is_sleeping", None),
    "sleep_bad_level": ("POST", "/sleep?level=3", None),
}
# After these probes, /metrics' vllm:engine_sleep_state is read (the fixtures' names).
SLEEP_METRICS_AFTER = {
    "sleep_is_sleeping_before": "sleep_metrics_before",
    "sleep_is_sleeping_asleep": "sleep_metrics_asleep",
    "sleep_again": "sleep_metrics_again",
    "sleep_is_sleeping_woken": "sleep_metrics_woken",
}
DEV_MODE = {"VLLM_SERVER_DEV_MODE": "1"}
_SLEEP_STATE = re.compile(r'^vllm:engine_sleep_state\{[^}]*sleep_state="(\w+)"[^}]*\} (\S+)$', re.M)


def sleep_state(metrics_text: str) -> dict[str, float]:
    """``vllm:engine_sleep_state``'s value per ``sleep_state`` label."""
    return {m.group(1): float(m.group(2)) for m in _SLEEP_STATE.finditer(metrics_text)}


def _send(client: httpx.Client, probe: tuple[str, str, Any]) -> tuple[int, Any]:
    method, path, body = probe
    if isinstance(body, dict):
        body = json.dumps(body).replace('"IMG"', json.dumps(_png())).encode()
    r = client.request(method, path, content=body, headers={"content-type": "application/json"})
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def _http_shape(name: str, code: int, body: Any) -> Any:
    """What is compared of a probe's answer: errors whole; other answers by their fields."""
    if name == "v1_models" and isinstance(body, dict):
        card = body["data"][0]
        keep = ("id", "object", "owned_by", "root", "max_model_len", "parent")
        return {
            "code": code,
            "card": {k: card.get(k) for k in keep},
            "card_keys": sorted(card),
            "permission_keys": sorted(card["permission"][0]),
        }
    if name in ("chat", "err_prompt_plus_max_tokens") and isinstance(body, dict):
        choice = body["choices"][0]
        usage = body["usage"]
        return {
            "code": code,
            "keys": sorted(body),
            "choice_keys": sorted(choice),
            "message_keys": sorted(choice["message"]),
            "usage_keys": sorted(usage),
            "finish_reason": choice["finish_reason"],
            "fills_context": usage["total_tokens"] == 512,
        }
    return {"code": code, "body": body}


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _start(
    command: Sequence[str],
    model: str,
    flags: Sequence[str],
    workdir: Path,
    env: dict[str, str],
    timeout: float,
) -> Server:
    port = _free_port()
    log_path = workdir / f"serve_{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "serve", model, "--port", str(port), *SERVE_FLAGS, *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            return httpx.get(f"{server.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    _until("the server to answer /health", ready, timeout)
    return server


def _kill_group(server: Server) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    _until("the process group to go", lambda: not _proc_rows(server.proc.pid), 10)


def _engine_pid(rows: Sequence[tuple[int, int, str]]) -> int:
    return next(pid for pid, _, argv in rows if argv.startswith("VLLM::EngineCore"))


def observe(
    command: Sequence[str],
    workdir: Path,
    *,
    model: str = MODEL_DIR,
    flags: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Observation:
    """Run the probe set against ``command serve MODEL`` (simulator or real vLLM)."""
    env = env or {}
    obs = Observation()
    # 1. The main server: tree, probes, metrics, SIGTERM.
    server = _start(command, model, flags, workdir, env, timeout)
    try:
        pgid = server.proc.pid
        _until("the VLLM::Worker", lambda: "VLLM::Worker" in str(_proc_rows(pgid)), timeout)
        rows = _proc_rows(pgid)
        top = next(argv for pid, _, argv in rows if pid == server.proc.pid)
        obs.tree = [(0, _title(top))] + [(d + 1, t) for d, t in _tree(rows, server.proc.pid)]
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for name, probe in PROBES.items():
                obs.http[name] = _http_shape(name, *_send(client, probe))
            obs.metrics = metric_shape(client.get("/metrics").text)
        os.kill(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout)
        _until("the process group to go", lambda: not _proc_rows(pgid), 30)
        log = server.log()
        obs.startup = startup_stages(log)
        obs.sigterm = stop_lines(_after(log, "[shutdown] API server: shutdown triggered"))
    finally:
        _kill_group(server)
    # 2. A server with an image limit: the vision errors; then kill -9 of its API server,
    # then kill -9 of a third one's EngineCore.
    server = _start(
        command, model, [*flags, "--limit-mm-per-prompt", '{"image": 1}'], workdir, env, timeout
    )
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for name, probe in VL_PROBES.items():
                obs.http[name] = _http_shape(name, *_send(client, probe))
        pgid = server.proc.pid
        os.kill(pgid, signal.SIGKILL)
        server.proc.wait(10)
        rows = _proc_rows(pgid)
        engine = _engine_pid(rows)
        obs.after_api_kill = [(0, "VLLM::EngineCore")] + [
            (d + 1, t) for d, t in _tree(rows, engine)
        ]
        obs.after_api_kill += [(0, _title(a)) for p, pp, a in rows if pp != engine and p != engine]
    finally:
        _kill_group(server)
    # The third one in development mode: the sleep probes first.
    server = _start(command, model, flags, workdir, {**env, **DEV_MODE}, timeout)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for name, probe in SLEEP_PROBES.items():
                obs.http[name] = _http_shape(name, *_send(client, probe))
                if name in SLEEP_METRICS_AFTER:
                    obs.sleep_state[name] = sleep_state(client.get("/metrics").text)
        size = len(server.log())
        os.kill(_engine_pid(_proc_rows(server.proc.pid)), signal.SIGKILL)
        server.proc.wait(timeout)
        # From vLLM's first line about it: where the recorded tail starts.
        obs.engine_death = stop_lines(_after(server.log()[size:], DEATH_MARK))
    finally:
        _kill_group(server)
    # 3. Usage errors.
    for name, extra in (
        ("unknown_flag", ["--no-such-flag", "3"]),
        ("old_limit_mm", ["--limit-mm-per-prompt", "image=10"]),
    ):
        done = subprocess.run(
            [*command, "serve", model, *SERVE_FLAGS, *flags, *extra],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=timeout,
        )
        obs.usage[name] = (done.returncode, _usage_text(done.stderr))
    return obs


def _usage_text(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith(("usage:", " ", "vllm"))]
    return _norm("\n".join(lines))


# -- the recorded real server -----------------------------------------------------------------


# Codes the recorded files do not hold: serve1.log's access lines.
_REAL_CODES = {"err_404_route": 404, "err_405": 405}


def recorded(root: Path) -> Observation:
    """Real vLLM 0.32 (CPU build), from the recorded files under ``root``."""
    obs = Observation()
    rows = []
    for line in (root / "proc_tree_serve1.txt").read_text().splitlines()[1:]:
        # PID PPID PGID SID STAT RSS COMM ARGS, where ps's forest marks ("\_") lead COMM
        # and ARGS of children.
        pid, ppid, *_, rest = line.split(None, 6)
        args = rest.rsplit("\\_ ", 1)[1] if "\\_ " in rest else rest.split(None, 1)[1]
        rows.append((int(pid), int(ppid), args))
    top = rows[0]
    obs.tree = [(0, _title(top[2]))] + [(d + 1, t) for d, t in _tree(rows, top[0])]
    obs.after_api_kill = [
        (0, "VLLM::EngineCore"),
        (1, "VLLM::Worker"),
        (0, "python -c from multiprocessing.resource_tracker import main;main(N)"),
    ]  # seen 2 s after kill -9 of the API server (tests/monitor/data/cpu_vllm_killed.json)
    log = (root / "logs/serve1.log").read_text()
    obs.startup = startup_stages(log)
    obs.sigterm = stop_lines(_after(log, "[shutdown] API server: shutdown triggered"))
    obs.engine_death = stop_lines(
        _after((root / "logs/enginecore_kill9_tail.log").read_text(), DEATH_MARK)
    )
    obs.metrics = metric_shape((root / "http/metrics_after.body").read_text())
    http = root / "http"
    for name in [*PROBES, *VL_PROBES, *SLEEP_PROBES]:
        text = (http / f"{name}.body").read_text()
        if (http / f"{name}.code").exists():
            code = int((http / f"{name}.code").read_text())
        elif m := re.search(r"\s+(?:HTTP )?(\d{3})\s*$", text):  # curl's -w after the body
            code, text = int(m.group(1)), text[: m.start()]
        else:
            code = _REAL_CODES.get(name, 200)
        obs.http[name] = _http_shape(name, code, json.loads(text))
    for name in ("unknown_flag", "old_limit_mm"):
        obs.usage[name] = (USAGE_EXIT, _usage_text((root / f"logs/{name}.log").read_text()))
    for name, body in SLEEP_METRICS_AFTER.items():
        obs.sleep_state[name] = sleep_state((http / f"{body}.body").read_text())
    return obs


# -- comparing ---------------------------------------------------------------------------------


def compare(real: Observation, sim: Observation) -> dict[str, str]:
    """Every difference, keyed ``aspect:item``, with what each side showed."""
    out: dict[str, str] = {}

    def differ(key: str, a: Any, b: Any) -> None:
        if a != b:
            out[key] = f"real {a!r} / sim {b!r}"

    differ("tree", real.tree, sim.tree)
    differ("tree after kill -9 of the API server", real.after_api_kill, sim.after_api_kill)
    real_stages, sim_stages = dict(real.startup), dict(sim.startup)
    for name in dict.fromkeys([*real_stages, *sim_stages]):
        differ(f"startup:{name}", real_stages.get(name), sim_stages.get(name))
    common = [n for n, _ in real.startup if n in sim_stages]
    differ("startup:order", common, [n for n, _ in sim.startup if n in real_stages])
    for what, a_lines, b_lines in (
        ("sigterm", real.sigterm, sim.sigterm),
        ("engine death", real.engine_death, sim.engine_death),
    ):
        for role in dict.fromkeys([*a_lines, *b_lines]):
            differ(f"{what}:{role}", a_lines.get(role), b_lines.get(role))
    for family in dict.fromkeys([*real.metrics, *sim.metrics]):
        a, b = real.metrics.get(family), sim.metrics.get(family)
        if a is None or b is None:
            differ(f"metrics:{family}", a and a["type"], b and b["type"])
            continue
        for part in ("type", "labels", "values", "buckets", "config"):
            differ(f"metrics:{family}:{part}", a.get(part), b.get(part))
    for name in dict.fromkeys([*real.http, *sim.http]):
        a, b = real.http.get(name), sim.http.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            for part in dict.fromkeys([*a, *b]):
                differ(f"http:{name}:{part}", a.get(part), b.get(part))
        else:
            differ(f"http:{name}", a, b)
    for name in dict.fromkeys([*real.usage, *sim.usage]):
        differ(f"usage:{name}", real.usage.get(name), sim.usage.get(name))
    for name in dict.fromkeys([*real.sleep_state, *sim.sleep_state]):
        differ(f"sleep_state:{name}", real.sleep_state.get(name), sim.sleep_state.get(name))
    return out


_GPU = "the simulator plays a GPU server; the reference is vLLM's CPU build"
# Deliberate differences: key -> why. Anything else that differs is a bug in the simulator.
KNOWN: dict[str, str] = {
    "startup:start loading model": (
        "printed by the EngineCore, not the Worker: the EngineCore runs the simulated "
        "startup and holds the memory (the monitor attributes memory to it)"
    ),
    "startup:loading weights took": f"GPU loading line; {_GPU}",
    "startup:model loading took": f"GPU loading line; {_GPU}",
    "startup:warming up (CPU)": f"CPU-only warm-up line; {_GPU}",
    "startup:compiled": (
        f"printed by the EngineCore (`torch.compile took`) where the CPU build's Worker "
        f"prints `saved AOT compiled function`; {_GPU}"
    ),
    "startup:profiling run": "printed by the EngineCore, not the Worker (see above)",
    "startup:available KV cache": f"GPU memory line; {_GPU}",
    "startup:CUDA graphs": f"GPU-only line; {_GPU}",
    "metrics:vllm:cache_config_info:config": (
        f"block_size 16 (GPU default) where the CPU build uses 128; {_GPU}"
    ),
    "http:version:body": "reports 0.32.0+ocrtui.sim: it says it is a simulator",
    "http:err_image_to_text_model:code": (
        "every simulated model is a vision model, so an image is never refused this way"
    ),
    "http:err_image_to_text_model:body": "as above",
    "http:chat:finish_reason": (
        "the simulator's engines read images; a text-only prompt gets an empty answer "
        "(finish `stop`), where real dummy weights ramble until `length`"
    ),
    "http:err_prompt_plus_max_tokens:finish_reason": "as above",
    "http:err_prompt_plus_max_tokens:fills_context": "as above: nothing is generated",
}
