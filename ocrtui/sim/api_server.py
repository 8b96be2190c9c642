"""The API server process: vLLM's OpenAI-compatible HTTP surface over starlette + uvicorn.

The launching process is the API server (argv unchanged, as with ``vllm serve``). Like
vLLM 0.32 it starts multiprocessing's resource tracker and spawns the ``VLLM::EngineCore``
child (which spawns its ``VLLM::Worker``), waits for it, and only then listens on the port
(bound early, so "address in use" fails at once, but connections are refused until ready).
Log lines, error bodies and metric families are vLLM 0.32's; ocrtui/sim/fidelity.py holds
the simulator to recorded real output and lists where it deliberately differs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
import traceback
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace
from multiprocessing import resource_tracker
from typing import Any

import uvicorn
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ocrtui.sim import ipc, vlog
from ocrtui.sim.args import ServeArgs
from ocrtui.sim.memory import BLOCK_SIZE
from ocrtui.sim.metrics import CONTENT_TYPE, SimMetrics
from ocrtui.sim.model_numbers import ModelNumbers, count_tokens, numbers_for
from ocrtui.sim.version import VLLM_VERSION

# vLLM's watchdog shuts the API server down after its engine died; /health says 503 meanwhile.
ENGINE_DEAD_EXIT_S = 3.0
ENGINE_STOP_TIMEOUT_S = 5.0
STATS_INTERVAL_S = 10.0
TEMPLATE_TOKENS_PER_MESSAGE = 6
ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause."
SYSTEM_FINGERPRINT = f"vllm-{VLLM_VERSION}"


class BadRequest(Exception):
    def __init__(
        self,
        message: str,
        status: int = 400,
        kind: str = "BadRequestError",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param


def error_response(message: str, status: int, kind: str, param: str | None = None) -> JSONResponse:
    """vLLM's error body: {"error": {"message", "type", "param", "code"}}."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": status}},
        status_code=status,
    )


@dataclass
class _Tracked:
    rid: str
    prompt_tokens: int
    arrival: float
    queue: asyncio.Queue[ipc.Frame] = field(default_factory=asyncio.Queue)
    admitted: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    generated: int = 0


@dataclass
class _Rank:
    """One data-parallel rank's EngineCore, as the API server sees it."""

    index: int | None  # None without data parallel
    proc: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    info: dict[str, Any] = field(default_factory=dict)
    load: int = 0  # requests sent to it and not finished

    @property
    def name(self) -> str:
        return "EngineCore" if self.index is None else f"EngineCore_DP{self.index}"


class EngineClient:
    """The API server's side of the EngineCores (one per data-parallel rank): spawn,
    handshake, requests (each to the rank with the fewest unfinished, as vLLM's internal load
    balancer does), death (one dead rank takes the server down, as in vLLM)."""

    def __init__(self, args: ServeArgs) -> None:
        self.args = args
        self.profile: ModelNumbers = numbers_for(args.model)
        self.ranks: list[_Rank] = []
        # Every EngineCore spawned, by its vLLM name, ready or not: what a stop signals.
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.info: dict[str, Any] = {}
        self.metrics: SimMetrics | None = None
        self.requests: dict[str, _Tracked] = {}
        self.dead = asyncio.Event()
        self.stopping = False
        self.interval_prompt = 0
        self.interval_generation = 0
        self.kv_usage = 0.0
        self.sleep_level: int | None = None  # None: awake (vllm:engine_sleep_state)
        self._control: asyncio.Future[ipc.Frame] | None = None  # a sleep or wake in flight
        self._control_lock = asyncio.Lock()

    async def start(self) -> None:
        dp = self.args.data_parallel_size
        indices: list[int | None] = [None] if dp == 1 else list(range(dp))
        spawned = await asyncio.gather(*(self._spawn(i) for i in indices), return_exceptions=True)
        self.ranks = [r for r in spawned if isinstance(r, _Rank)]
        failed = [r for r in spawned if isinstance(r, BaseException)]
        if failed:
            # The ranks that started go down with the one that failed, as in vLLM.
            for rank in self.ranks:
                with contextlib.suppress(ProcessLookupError):
                    rank.proc.send_signal(signal.SIGTERM)
                await _wait_stopped(rank.proc)
            raise failed[0]
        first = self.ranks[0].info
        self.info = {
            "max_model_len": first["max_model_len"],
            "num_gpu_blocks": sum(int(r.info["num_gpu_blocks"]) for r in self.ranks),
        }
        self.metrics = SimMetrics(
            self.args,
            int(self.info["num_gpu_blocks"]),
            int(self.info["max_model_len"]),
            BLOCK_SIZE,
        )

    async def _spawn(self, index: int | None) -> _Rank:
        parent, child = socket.socketpair()
        # vLLM's children inherit the tracker's pipe, so it outlives a SIGKILLed API server
        # for as long as they live, and goes when the last of them does.
        tracker_fd = resource_tracker.getfd()
        assert tracker_fd is not None
        with child:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ocrtui.sim.engine_core",
                "--fd",
                str(child.fileno()),
                "--tracker-fd",
                str(tracker_fd),
                *(() if index is None else ("--dp-rank", str(index))),
                pass_fds=(child.fileno(), tracker_fd),
                stdin=asyncio.subprocess.DEVNULL,
            )
        self.procs["EngineCore" if index is None else f"EngineCore_DP{index}"] = proc
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        # The engine never needs the API key; it never leaves this process.
        await ipc.send(writer, ("config", replace(self.args, api_key=None)))
        try:
            frame = await ipc.recv(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            frame = ("failed", "EngineCore exited during startup")
        if frame[0] != "ready":
            await proc.wait()
            raise RuntimeError(
                "Engine core initialization failed. See root cause above. Failed core proc(s): {}"
            )
        return _Rank(index, proc, reader, writer, dict(frame[1]))

    async def run(self) -> None:
        """Dispatch engine frames until an engine goes away."""
        readers = [asyncio.create_task(self._read(rank)) for rank in self.ranks]
        try:
            await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in readers:
                task.cancel()
        if not self.stopping:
            # vLLM's process monitor sees the death first and "stops" the dead process.
            vlog.info(
                "utils.py:628", "[shutdown] Process manager: send sigterm to process EngineCore"
            )
            vlog.warning(
                "core_client.py:817",
                "[shutdown] MPClient: engine core exited unexpectedly; starting cleanup",
            )
            vlog.info("core_client.py:770", "[shutdown] MPClient: start timeout=default")
            vlog.info("core_client.py:772", "[shutdown] MPClient: stopping engine manager")
            self._log_client_stopped()
        self.dead.set()
        if self._control is not None and not self._control.done():
            self._control.set_result(("awake", ENGINE_DEAD_MESSAGE))
        for tracked in self.requests.values():
            tracked.queue.put_nowait(("error", tracked.rid, ENGINE_DEAD_MESSAGE))

    async def _read(self, rank: _Rank) -> None:
        while True:
            try:
                frame = await ipc.recv(rank.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            self._on_frame(frame)

    def _on_frame(self, frame: ipc.Frame) -> None:
        if frame[0] in ("slept", "awake", "reloaded"):
            if self._control is not None and not self._control.done():
                self._control.set_result(frame)
            return
        tracked = self.requests.get(frame[1])
        if tracked is None or self.metrics is None:
            return
        now, m = time.monotonic(), self.metrics
        kind = frame[0]
        if kind == "admitted":
            tracked.admitted = now
            m.queue_time.observe(now - tracked.arrival)
        elif kind == "delta":
            n = int(frame[3])
            if tracked.first_token is None:
                # The engine sends the first token alone, when prefill made it.
                tracked.first_token = now
                m.ttft.observe(now - tracked.arrival)
                m.prompt_tokens.inc(tracked.prompt_tokens)
                m.prompt_tokens_computed.inc(tracked.prompt_tokens)
                self.interval_prompt += tracked.prompt_tokens
                m.generation_tokens.inc(n)
            else:
                gap = now - (tracked.last_token or now)
                for _ in range(n):
                    m.itl.observe(gap / n)
                m.decoded(n)
            tracked.last_token = now
            tracked.generated += n
            self.interval_generation += n
        tracked.queue.put_nowait(frame)
        self.update_gauges()

    async def _engine_call(self, frame: ipc.Frame) -> ipc.Frame:
        """Send a sleep or wake frame to each rank's EngineCore in turn and wait for its
        answer (one call at a time); the first failed answer is returned, else the last."""
        if self.dead.is_set() or not self.ranks:
            raise BadRequest(ENGINE_DEAD_MESSAGE, 500, "InternalServerError")
        async with self._control_lock:
            answer = frame
            for rank in self.ranks:
                self._control = asyncio.get_running_loop().create_future()
                await ipc.send(rank.writer, frame)
                answer = await self._control
                failed = answer[0] == "awake" and answer[1]
                if failed or answer[0] not in ("slept", "awake", "reloaded"):
                    break
            return answer

    async def sleep(self, level: int) -> None:
        """vLLM's ``AsyncLLM.sleep``: the engine sleeps, then the gauge says which level."""
        frame = await self._engine_call(("sleep", level))
        if frame[0] != "slept":  # the engine died meanwhile
            raise BadRequest(ENGINE_DEAD_MESSAGE, 500, "InternalServerError")
        self.sleep_level = level
        if self.metrics is not None:
            self.metrics.record_sleep_state(level)

    async def wake_up(self) -> None:
        """vLLM's ``AsyncLLM.wake_up``; raises BadRequest (500) when the memory is gone."""
        _, error = await self._engine_call(("wake",))
        if error:
            raise BadRequest(error, 500, "InternalServerError")
        self.sleep_level = None
        if self.metrics is not None:
            self.metrics.record_sleep_state(None)

    async def reload_weights(self) -> None:
        if (await self._engine_call(("reload_weights",)))[0] != "reloaded":
            raise BadRequest(ENGINE_DEAD_MESSAGE, 500, "InternalServerError")

    def update_gauges(self) -> None:
        if self.metrics is None:
            return
        running = [t for t in self.requests.values() if t.admitted is not None]
        self.metrics.running.set(len(running))
        self.metrics.waiting.set(len(self.requests) - len(running))
        self.metrics.waiting_capacity.set(len(self.requests) - len(running))
        blocks = int(self.info.get("num_gpu_blocks", 0)) or 1
        used = sum(-(-(t.prompt_tokens + t.generated) // BLOCK_SIZE) for t in running)
        self.kv_usage = min(1.0, used / blocks)
        self.metrics.kv_usage.set(self.kv_usage)

    async def generate(
        self, prompt_tokens: int, images: list[bytes], max_tokens: int
    ) -> AsyncGenerator[ipc.Frame, None]:
        """Frames for one request (admitted, deltas, then done or error); aborts on exit."""
        if self.dead.is_set() or not self.ranks:
            raise BadRequest(ENGINE_DEAD_MESSAGE, 500, "InternalServerError")
        rank = min(self.ranks, key=lambda r: r.load)
        rid = uuid.uuid4().hex
        tracked = _Tracked(rid, prompt_tokens, time.monotonic())
        self.requests[rid] = tracked
        rank.load += 1
        self.update_gauges()
        finished = None
        try:
            await ipc.send(rank.writer, ("add", rid, images, max_tokens))
            while True:
                frame = await tracked.queue.get()
                if frame[0] in ("done", "error"):
                    finished = frame[2] if frame[0] == "done" else "error"
                yield frame
                if finished:
                    return
        finally:
            rank.load -= 1
            self.requests.pop(rid, None)
            if finished is None:
                finished = "abort"
                if not self.dead.is_set():
                    with contextlib.suppress(ConnectionError):
                        await ipc.send(rank.writer, ("abort", rid))
            self._finish(tracked, finished)
            self.update_gauges()

    def _finish(self, t: _Tracked, reason: str) -> None:
        assert self.metrics is not None
        m, now = self.metrics, time.monotonic()
        m.success[reason].inc()
        m.e2e.observe(now - t.arrival)
        m.request_prompt_tokens.observe(t.prompt_tokens)
        m.request_generation_tokens.observe(t.generated)
        if t.admitted is not None:
            m.prefill_time.observe((t.first_token or now) - t.admitted)
            m.inference_time.observe(now - t.admitted)
        if t.first_token is not None:
            m.decode_time.observe((t.last_token or now) - t.first_token)

    async def stop(self) -> None:
        """SIGTERM the EngineCore and wait for it; SIGKILL it if it does not go.

        vLLM 0.32 (shutdown timeout 0) SIGKILLs its EngineCore and Worker at once and says
        so; the simulator logs the same lines but gives its EngineCore the time to release
        its simulated memory and stop its Worker, so nothing is left holding memory.
        """
        self.stopping = True
        live = {name: p for name, p in self.procs.items() if p.returncode is None}
        if not live:
            return
        vlog.info("core_client.py:770", "[shutdown] MPClient: start timeout=0s")
        vlog.info("core_client.py:772", "[shutdown] MPClient: stopping engine manager")
        for name, proc in live.items():
            vlog.info("utils.py:628", f"[shutdown] Process manager: send sigterm to process {name}")
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        vlog.warning(
            "utils.py:648",
            f"[shutdown] Process manager: force killing remaining processes count={len(live)}",
        )
        for name, proc in live.items():
            vlog.warning(
                "utils.py:653",
                f"[shutdown] Process manager: force killing remaining process {name} "
                f"pid {proc.pid}",
            )
        await asyncio.gather(*(_wait_stopped(proc) for proc in live.values()))
        for rank in self.ranks:
            if worker := rank.info.get("worker_pid"):
                title = "VLLM::Worker" + ("" if rank.index is None else f"_DP{rank.index}")
                vlog.warning(
                    "system_utils.py:225",
                    f"[shutdown] force killing sub process {title} pid {worker}",
                )
        self._log_client_stopped()

    @staticmethod
    def _log_client_stopped() -> None:
        vlog.info("core_client.py:774", "[shutdown] MPClient: engine manager stopped")
        vlog.info("core_client.py:775", "[shutdown] MPClient: cleaning up background resources")
        vlog.info("core_client.py:777", "[shutdown] MPClient: complete")

    async def log_stats(self) -> None:
        """vLLM's periodic ``Engine 000:`` line, while there is anything to report."""
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            if self.metrics is None:
                continue
            running = len([t for t in self.requests.values() if t.admitted is not None])
            waiting = len(self.requests) - running
            if not (self.interval_prompt or self.interval_generation or self.requests):
                continue
            vlog.info(
                "loggers.py:335",
                f"Engine 000: Avg prompt throughput: "
                f"{self.interval_prompt / STATS_INTERVAL_S:.1f} tokens/s, Avg generation "
                f"throughput: {self.interval_generation / STATS_INTERVAL_S:.1f} tokens/s, "
                f"Running: {running} reqs, Waiting: {waiting} reqs, GPU KV cache usage: "
                f"{self.kv_usage * 100:.1f}%, Prefix cache hit rate: 0.0%",
            )
            self.interval_prompt = self.interval_generation = 0


async def _wait_stopped(proc: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(proc.wait(), ENGINE_STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class Helpers:
    """The title-only processes of a data-parallel server (ocrtui/sim/helper.py): the
    ``VLLM::DPCoordinator`` with the engines, one ``VLLM::APIServer_<i>`` per API server once
    they are ready (``--api-server-count``, by default one per rank)."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def spawn(self, title: str, keep_fd: int | None = None) -> None:
        self.procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ocrtui.sim.helper",
                "--title",
                title,
                *(() if keep_fd is None else ("--keep-fd", str(keep_fd))),
                pass_fds=() if keep_fd is None else (keep_fd,),
                stdin=asyncio.subprocess.DEVNULL,
            )
        )

    async def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*(_wait_stopped(proc) for proc in self.procs))


# -- request parsing ----------------------------------------------------------------------


def _image_bytes(url: str) -> bytes:
    if not url.startswith("data:"):
        raise BadRequest(
            "The simulator (ocrtui sim-vllm) only accepts images as data: URLs "
            "(data:image/png;base64,...); it cannot fetch " + url[:60]
        )
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        raise BadRequest("image data URL must be base64-encoded")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image data URL is not valid base64") from None


@dataclass
class ChatRequest:
    images: list[bytes]
    prompt_tokens: int
    max_tokens: int
    stream: bool
    include_usage: bool


def parse_chat(body: Any, client: EngineClient) -> ChatRequest:
    args, profile = client.args, client.profile
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if model is not None and model not in args.names:
        message = f"The model `{model}` does not exist. Valid aliases: {', '.join(args.names)}."
        vlog.error(
            "serving.py:274",
            f"Error with model error=ErrorInfo(message={message!r}, type='NotFoundError', "
            "param='model', code=404)",
        )
        raise BadRequest(message, 404, "NotFoundError", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list", param="messages")
    images: list[bytes] = []
    prompt_tokens = 0
    for msg in messages:
        if not isinstance(msg, dict):
            raise BadRequest("each message must be an object", param="messages")
        prompt_tokens += TEMPLATE_TOKENS_PER_MESSAGE
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts or []:
            if not isinstance(part, dict):
                raise BadRequest("content parts must be objects", param="messages")
            if part.get("type") == "text":
                prompt_tokens += count_tokens(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if not isinstance(url, str):
                    raise BadRequest("image_url needs a url", param="messages")
                images.append(_image_bytes(url))
            else:
                raise BadRequest(
                    f"unsupported content part type {part.get('type')!r}", param="messages"
                )
    max_model_len = int(client.info["max_model_len"])
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    if requested is not None and (not isinstance(requested, int) or requested < 1):
        raise BadRequest(
            f"max_tokens must be at least 1, got {requested}. "
            f"(parameter=max_tokens, value={requested})",
            param="max_tokens",
        )
    if requested is not None and requested > max_model_len:
        raise BadRequest(
            f"max_tokens={requested} cannot be greater than max_model_len={max_model_len}. "
            f"Please request fewer output tokens. (parameter=max_tokens, value={requested})",
            param="max_tokens",
        )
    _check_number(body, "temperature", 0.0, None)
    _check_number(body, "top_p", 0.0, 1.0, open_low=True)
    if not images and prompt_tokens > max_model_len:
        # vLLM tokenizes one token past the limit, so it reports max_model_len + 1.
        at_least = max_model_len + 1
        raise BadRequest(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt contains at least {at_least} input tokens, which exceeds this limit even "
            "without any output tokens. Please reduce the length of the input prompt. "
            f"(parameter=input_tokens, value={at_least})",
            param="input_tokens",
        )
    if len(images) > args.image_limit:
        raise BadRequest(
            f"At most {args.image_limit} image(s) may be provided in one prompt. (parameter=image)",
            param="image",
        )
    for data in images:
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        except (UnidentifiedImageError, OSError):
            raise BadRequest(
                "Failed to load image: cannot identify image file <_io.BytesIO object>"
            ) from None
        prompt_tokens += profile.image_tokens(width, height)
    if prompt_tokens > max_model_len:
        raise BadRequest(
            f"Input length ({prompt_tokens}) exceeds model's maximum context length "
            f"({max_model_len})."
        )
    if body.get("n", 1) != 1:
        raise BadRequest("n must be 1 in the simulator", param="n")
    room = max(1, max_model_len - prompt_tokens)
    options = body.get("stream_options") or {}
    return ChatRequest(
        images,
        prompt_tokens,
        min(requested or room, room),
        bool(body.get("stream")),
        bool(options.get("include_usage")),
    )


def _check_number(
    body: dict[str, Any], key: str, low: float, high: float | None, open_low: bool = False
) -> None:
    value = body.get(key)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise BadRequest(f"{key} must be a number, got {value!r}.", param=key)
    value = float(value)
    if value < low or (open_low and value == low) or (high is not None and value > high):
        # vLLM's SamplingParams wording, e.g. "temperature must be non-negative, got -1.0."
        rule = f"in ({low:g}, {high:g}]" if open_low else "non-negative"
        raise BadRequest(
            f"{key} must be {rule}, got {value}. (parameter={key}, value={value})", param=key
        )


# -- HTTP ---------------------------------------------------------------------------------


def _bad_json(exc: json.JSONDecodeError) -> JSONResponse:
    """FastAPI's request validation error for a body that is not JSON, as vLLM returns it."""
    loc = f"body.{exc.pos}"
    detail = {
        "type": "json_invalid",
        "loc": loc,
        "msg": "JSON decode error",
        "input": "<dict of 0 items>",
        "ctx": {"error": exc.msg},
    }
    return error_response(f"1 validation error:\n  {detail!r}", 400, "Bad Request", loc)


class HttpCounter:
    """Feeds ``http_*`` in /metrics like vLLM's prometheus-fastapi-instrumentator: the route
    (``none`` when no route matches path and method), method, status class, sizes, time."""

    def __init__(self, app: ASGIApp, client: EngineClient) -> None:
        self.app, self.client = app, client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.client.metrics is None:
            await self.app(scope, receive, send)
            return
        http = self.client.metrics.http
        method, path = scope["method"], scope["path"]
        handler = path if (path, method) in ROUTES else "none"
        headers = dict(scope["headers"])
        in_bytes = int(headers.get(b"content-length", b"0") or 0)
        status, out_bytes, t0 = 500, 0, time.perf_counter()

        async def counting_send(message: Any) -> None:
            nonlocal status, out_bytes
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for key, value in message.get("headers", []):
                    if key.lower() == b"content-length":
                        out_bytes = int(value)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            http.observe(handler, method, status, in_bytes, out_bytes, time.perf_counter() - t0)


class ApiKeyGuard:
    """``--api-key`` guards only /v1; /health, /metrics and /version stay open (as vLLM)."""

    def __init__(self, app: ASGIApp, key: str | None) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key and scope["type"] == "http" and scope["path"].startswith("/v1"):
            headers = dict(scope["headers"])
            given = headers.get(b"authorization", b"").decode(errors="replace")
            if not secrets.compare_digest(given, f"Bearer {self.key}"):
                await JSONResponse({"error": "Unauthorized"}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"  # vLLM serves /sleep, /wake_up, ... only with it set


def dev_mode() -> bool:
    """vLLM's ``envs.VLLM_SERVER_DEV_MODE``: ``bool(int(...))`` of the variable."""
    try:
        return bool(int(os.environ.get(DEV_MODE_ENV, "0")))
    except ValueError:
        return False


def build_app(client: EngineClient) -> ASGIApp:
    args = client.args
    created = int(time.time())

    async def health(request: Request) -> Response:
        return Response(status_code=503 if client.dead.is_set() else 200)

    async def version(request: Request) -> Response:
        return JSONResponse({"version": args.vllm_version})

    async def load(request: Request) -> Response:
        return JSONResponse({"server_load": len(client.requests)})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [card(name) for name in args.names]})

    def card(name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": args.model,
            "parent": None,
            "max_model_len": client.info["max_model_len"],
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid4().hex[:16]}",
                    "object": "model_permission",
                    "created": created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }

    async def metrics(request: Request) -> Response:
        assert client.metrics is not None
        return Response(client.metrics.render(), media_type=CONTENT_TYPE)

    async def chat(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError as exc:
            return _bad_json(exc)
        except ValueError as exc:  # not UTF-8
            return error_response(f"Invalid JSON body: {exc}", 400, "BadRequestError")
        try:
            req = parse_chat(body, client)
            frames = client.generate(req.prompt_tokens, req.images, req.max_tokens)
        except BadRequest as exc:
            return error_response(str(exc), exc.status, exc.kind, exc.param)
        cid, now = f"chatcmpl-{uuid.uuid4().hex[:16]}", int(time.time())
        if req.stream:
            return StreamingResponse(
                _sse(frames, req, cid, now, args.name), media_type="text/event-stream"
            )
        text: list[str] = []
        generated, finish = 0, "stop"
        async with contextlib.aclosing(frames):
            async for frame in frames:
                if frame[0] == "delta":
                    text.append(frame[2])
                    generated += int(frame[3])
                elif frame[0] == "done":
                    finish = frame[2]
                elif frame[0] == "error":
                    return error_response(frame[2], 500, "InternalServerError")
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": now,
                "model": args.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "".join(text),
                            "refusal": None,
                            "annotations": None,
                            "audio": None,
                            "function_call": None,
                            "reasoning": None,
                        },
                        "logprobs": None,
                        "finish_reason": finish,
                        "stop_reason": None,
                        "token_ids": None,
                        "routed_experts": None,
                    }
                ],
                "service_tier": None,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "usage": {
                    "prompt_tokens": req.prompt_tokens,
                    "total_tokens": req.prompt_tokens + generated,
                    "completion_tokens": generated,
                    "prompt_tokens_details": None,
                    "completion_tokens_details": None,
                },
                "prompt_logprobs": None,
                "prompt_token_ids": None,
                "prompt_text": None,
                "kv_transfer_params": None,
                "ec_transfer_params": None,
                "metrics": None,
            }
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    # Sleep mode's development endpoints (VLLM_SERVER_DEV_MODE=1), answering as vLLM's do.
    async def sleep(request: Request) -> Response:
        raw = request.query_params.get("level", "1")
        level = int(raw) if raw.lstrip("-").isdigit() else None
        if level is None or not 0 <= level <= 2:
            return _level_error(raw, level)
        try:
            await client.sleep(level)
        except BadRequest as exc:
            return error_response(str(exc), exc.status, exc.kind)
        return JSONResponse({"status": "sleeping", "level": level})

    async def wake_up(request: Request) -> Response:
        vlog.info("api_router.py:50", "wake up the engine with tags: None")
        try:
            await client.wake_up()
        except BadRequest as exc:
            return error_response(str(exc), exc.status, exc.kind)
        return JSONResponse({"status": "awake", "tags": None})

    async def is_sleeping(request: Request) -> Response:
        return JSONResponse({"is_sleeping": client.sleep_level is not None})

    async def collective_rpc(request: Request) -> Response:
        # Only the method ocrtui calls (after a level-2 sleeper's wake-up) is simulated.
        try:
            method = json.loads(await request.body()).get("method")
        except (ValueError, AttributeError):
            method = None
        if method != "reload_weights":
            return error_response(
                f"the simulator runs only reload_weights, not {method!r}", 400, "BadRequestError"
            )
        try:
            await client.reload_weights()
        except BadRequest as exc:
            return error_response(str(exc), exc.status, exc.kind)
        return JSONResponse({"results": [None]})

    routes = [
        Route("/load", load, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/ping", health, methods=["GET", "POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
    if dev_mode():
        routes += [
            Route("/sleep", sleep, methods=["POST"]),
            Route("/wake_up", wake_up, methods=["POST"]),
            Route("/is_sleeping", is_sleeping, methods=["GET"]),
            Route("/collective_rpc", collective_rpc, methods=["POST"]),
        ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    return HttpCounter(ApiKeyGuard(app, args.api_key), client)


def _level_error(raw: str, level: int | None) -> JSONResponse:
    """vLLM's answer to a ``level`` outside ``Query(ge=0, le=2)``: FastAPI's validation
    error in vLLM's error body, 400 (tests/sim/fixtures/real-0.32/http/sleep_bad_level)."""
    if level is None:
        detail = (
            f"{{'type': 'int_parsing', 'loc': 'query.level', 'msg': 'Input should be a valid "
            f"integer, unable to parse string as an integer', 'input': {raw!r}}}"
        )
    else:
        kind, word, key, bound = (
            ("greater_than_equal", "greater", "ge", 0)
            if level < 0
            else ("less_than_equal", "less", "le", 2)
        )
        detail = (
            f"{{'type': '{kind}', 'loc': 'query.level', 'msg': 'Input should be {word} than or "
            f"equal to {bound}', 'input': {raw!r}, 'ctx': {{'{key}': {bound}}}}}"
        )
    message = f"1 validation error:\n  {detail}"
    return error_response(message, 400, "Bad Request", "query.level")


async def _sse(
    frames: AsyncGenerator[ipc.Frame, None], req: ChatRequest, cid: str, created: int, model: str
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish,
        }
        if finish:
            choice["stop_reason"] = None
        return _data(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
        )

    generated = 0
    role_sent = False
    async with contextlib.aclosing(frames):
        async for frame in frames:
            if frame[0] in ("delta", "done") and not role_sent:
                # Like vLLM, the role chunk goes out with the first output, not before.
                role_sent = True
                yield chunk({"role": "assistant", "content": ""})
            if frame[0] == "delta":
                generated += int(frame[3])
                yield chunk({"content": frame[2]})
            elif frame[0] == "done":
                yield chunk({"content": ""}, frame[2])
            elif frame[0] == "error":
                # Status 200 is already sent: vLLM reports the error in the stream.
                yield _data(
                    {
                        "error": {
                            "message": frame[2],
                            "type": "InternalServerError",
                            "param": None,
                            "code": 500,
                        }
                    }
                )
    if req.include_usage:
        yield _data(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": req.prompt_tokens,
                    "total_tokens": req.prompt_tokens + generated,
                    "completion_tokens": generated,
                },
            }
        )
    yield "data: [DONE]\n\n"


def _data(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


# -- process ------------------------------------------------------------------------------


def _log_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(json.dumps(uvicorn.config.LOGGING_CONFIG))
    for formatter in config["formatters"].values():
        formatter["use_colors"] = False
    # vLLM 0.32 leaves uvicorn's lines bare: past the (APIServer pid=N) prefixing stream.
    config["handlers"]["default"]["stream"] = "ext://sys.__stdout__"
    config["handlers"]["access"]["stream"] = "ext://sys.__stdout__"
    return config


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        # The launcher below owns SIGTERM/SIGINT: it stops the engine before HTTP.
        yield


def _no_finished_line(record: logging.LogRecord) -> bool:
    # vLLM 0.32 exits on SIGTERM before uvicorn says "Finished server process [N]".
    return not record.getMessage().startswith("Finished server process")


def bind(args: ServeArgs) -> socket.socket:
    """Bind now, listen only once the engine is ready (connections refused until then)."""
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    return sock


def log_startup(args: ServeArgs, profile: ModelNumbers) -> None:
    vlog.banner(args.vllm_version, args.model)
    vlog.info("api_utils.py:286", f"non-default args: {args.non_default}")
    vlog.warning(
        "sim.py:1",
        f"SIMULATED: ocrtui sim-vllm stands in for vLLM (OCR engine "
        f"{args.engine!r}); no model weights are loaded",
    )
    vlog.info("model.py:733", f"Resolved architecture: {profile.architecture}")
    vlog.info(
        "model.py:2152",
        f"Using max model len {args.max_model_len or profile.default_max_model_len}",
    )


ROUTES = (
    ("/load", "GET"),
    ("/version", "GET"),
    ("/health", "GET"),
    ("/metrics", "GET"),
    ("/v1/models", "GET"),
    ("/ping", "GET"),
    ("/ping", "POST"),
    ("/v1/chat/completions", "POST"),
)
DEV_ROUTES = (
    ("/sleep", "POST"),
    ("/wake_up", "POST"),
    ("/is_sleeping", "GET"),
    ("/collective_rpc", "POST"),
)


def _log_engine_dead() -> None:
    where = "async_llm.py:906"
    vlog.error(where, "AsyncLLM output_handler failed.")
    vlog.error_block(
        where,
        "Traceback (most recent call last):\n"
        '  File "ocrtui/sim/api_server.py", in output_handler\n'
        "    outputs = await engine_core.get_output_async()\n"
        "vllm.v1.engine.exceptions.EngineDeadError: " + ENGINE_DEAD_MESSAGE,
    )


async def serve(args: ServeArgs, sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    client = EngineClient(args)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    helpers = Helpers()
    try:
        return await _serve(args, sock, client, stop, helpers)
    finally:
        await helpers.stop()


async def _serve(
    args: ServeArgs,
    sock: socket.socket,
    client: EngineClient,
    stop: asyncio.Event,
    helpers: Helpers,
) -> int:
    if args.data_parallel_size > 1:
        await helpers.spawn("VLLM::DPCoordinator")
    starting = asyncio.create_task(client.start())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            await starting
        await client.stop()
        return 0
    stopped.cancel()
    try:
        starting.result()
    except RuntimeError:  # vLLM's "Engine core initialization failed", printed as such
        traceback.print_exc()
        return 1
    if args.api_servers > 1:
        for i in range(args.api_servers):
            await helpers.spawn(f"VLLM::APIServer_{i}", sock.fileno())

    vlog.info("entry.py:136", "Supported tasks: ['generate']")
    vlog.info("entry.py:140", f"Starting vLLM server on http://{args.host}:{args.port}")
    vlog.info("launcher.py:186", "Available routes are:")
    app = build_app(client)
    if dev_mode():
        vlog.warning(
            "__init__.py:44",
            "SECURITY WARNING: Development endpoints are enabled! This should NOT be used in "
            "production!",
        )
    for path, methods in ROUTES + (DEV_ROUTES if dev_mode() else ()):
        vlog.info("launcher.py:195", f"Route: {path}, Methods: {methods}")
    config = uvicorn.Config(
        app,
        log_config=_log_config(),
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=5,
    )
    server = _Server(config)
    tasks: dict[str, asyncio.Task[Any]] = {
        "http": asyncio.create_task(server.serve(sockets=[sock])),
        "engine": asyncio.create_task(client.run()),
        "stop": asyncio.create_task(stop.wait()),
    }
    stats = asyncio.create_task(client.log_stats())
    await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if stop.is_set():
        logging.getLogger("uvicorn.error").addFilter(_no_finished_line)
        vlog.info("launcher.py:254", "[shutdown] API server: shutdown triggered")
        vlog.info(
            "launcher.py:270", "[shutdown] API server: stopping engine client mode=abort timeout=0s"
        )
        await client.stop()
        vlog.info("launcher.py:279", "[shutdown] API server: engine client stopped")
        vlog.info("launcher.py:282", "[shutdown] API server: signalling HTTP server shutdown")
        vlog.info("launcher.py:304", "[shutdown] API server: shutting down FastAPI HTTP server")
    elif client.dead.is_set():
        _log_engine_dead()
        await asyncio.sleep(ENGINE_DEAD_EXIT_S)
        code = 1
    else:  # the HTTP server ended by itself (it could not listen): take the engine down too
        await client.stop()
        code = 1
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, SystemExit):
        await tasks["http"]
    stats.cancel()
    for task in tasks.values():
        task.cancel()
    if client.dead.is_set():
        # One dead rank takes the server down: vLLM stops the other ranks with it.
        for rank in client.ranks:
            if len(client.ranks) > 1:
                with contextlib.suppress(ProcessLookupError):
                    rank.proc.send_signal(signal.SIGTERM)
            await rank.proc.wait()
    return code


def run(args: ServeArgs) -> int:
    vlog.install_prefix("APIServer")
    log_startup(args, numbers_for(args.model))
    try:
        sock = bind(args)
    except OSError:
        traceback.print_exc()
        return 1
    with sock:
        return asyncio.run(serve(args, sock))
