"""The EngineCore process: titled ``VLLM::EngineCore``, holds the GPU memory, runs OCR.

Started by the API server as ``python -m ocrtui.sim.engine_core --fd N --tracker-fd T
[--dp-rank I]`` in the same process group, like vLLM's; it starts its ``VLLM::Worker`` child
(ocrtui/sim/worker.py). With ``--data-parallel-size`` above 1 there is one per rank, titled
``VLLM::EngineCore_DP<i>`` with its ``VLLM::Worker_DP<i>`` as vLLM 0.32 titles them
(vllm/v1/engine/core.py, multiproc_executor.py), on device ``CUDA_VISIBLE_DEVICES[i]`` (else
device i) of the simulated GPU. It deliberately does not die with its parent (no
PR_SET_PDEATHSIG): when the API server is SIGKILLed it lives on holding its memory, with its
Worker, which is the real vLLM behaviour the dashboard must detect and clean up. Real vLLM
0.32 keeps the memory in the Worker; here the EngineCore keeps it (docs/sim.md, "Deliberate
differences").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ocrtui.sim import ipc, vlog
from ocrtui.sim.args import ServeArgs
from ocrtui.sim.engines import OcrEngine, SyntheticEngine, make_engine
from ocrtui.sim.memory import (
    GpuBackend,
    KvPlan,
    check_free_memory,
    non_kv_bytes,
    plan_kv_cache,
    select_backend,
)
from ocrtui.sim.model_numbers import GIB, MIB, ModelNumbers, numbers_for, tokenize
from ocrtui.sim.version import VLLM_VERSION

TITLE = "VLLM::EngineCore"
VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"


def title(dp_rank: int | None) -> str:
    """vLLM 0.32's title: ``VLLM::EngineCore``, or ``VLLM::EngineCore_DP<i>`` under DP."""
    return TITLE if dp_rank is None else f"{TITLE}_DP{dp_rank}"


def device_of(dp_rank: int | None, visible: str | None) -> int:
    """The device a rank takes: the rank-th of ``CUDA_VISIBLE_DEVICES``, else the rank-th."""
    rank = dp_rank or 0
    listed = [d.strip() for d in (visible or "").split(",") if d.strip()]
    if rank < len(listed) and listed[rank].isdigit():
        return int(listed[rank])
    return rank


CONTEXT_BYTES = 512 * MIB  # what a CUDA context costs before any weights
WORKER_STOP_TIMEOUT_S = 5.0


@dataclass
class _Request:
    rid: str
    images: list[bytes]
    max_tokens: int
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class EngineCore:
    def __init__(
        self,
        args: ServeArgs,
        writer: asyncio.StreamWriter,
        tracker_fd: int,
        dp_rank: int | None = None,
    ) -> None:
        self.args = args
        self.tracker_fd = tracker_fd
        self.dp_rank = dp_rank
        self.worker: asyncio.subprocess.Process | None = None
        self.worker_pipe: int | None = None
        self.profile: ModelNumbers = numbers_for(args.model)
        self.max_model_len = args.max_model_len or self.profile.default_max_model_len
        self.writer = writer
        self.gpu: GpuBackend | None = None
        self.engine: OcrEngine | None = None
        self.pool = ThreadPoolExecutor(args.ocr_workers, thread_name_prefix="ocr")
        self.waiting: deque[_Request] = deque()
        self.running: dict[str, _Request] = {}
        self.stopping = asyncio.Event()
        self.requested = 0  # bytes held awake (gpu_memory_utilization x total)
        self.asleep_bytes: int | None = None  # held while asleep; None: awake

    # -- startup ------------------------------------------------------------------------

    async def start(self) -> KvPlan:
        a, p = self.args, self.profile
        t0 = time.monotonic()
        vlog.info(
            "core.py:133",
            f"Initializing a V1 LLM engine (v{VLLM_VERSION}) with config: "
            f"model='{a.model}', speculative_config={a.speculative_config}, "
            f"tokenizer='{a.model}', trust_remote_code={a.trust_remote_code}, "
            f"max_seq_len={self.max_model_len}, tensor_parallel_size=1, "
            f"served_model_name={a.name}, enable_prefix_caching={a.enable_prefix_caching}",
        )
        await self._start_worker()
        self.gpu = select_backend(
            a.sim_gpu, os.getpid(), device_of(self.dp_rank, os.environ.get(VISIBLE_DEVICES_ENV))
        )
        vlog.warning("sim.py:2", f"GPU memory: {self.gpu.label}")
        requested = check_free_memory(
            self.gpu.free_bytes(), self.gpu.total_bytes(), a.gpu_memory_utilization
        )
        self.gpu.hold(min(CONTEXT_BYTES, requested))
        stage = a.startup_s / 3

        vlog.info("gpu_model_runner.py:4493", f"Starting to load model {a.model}...")
        print("Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]")
        t_load = time.monotonic()
        loop = asyncio.get_running_loop()
        self.engine = await loop.run_in_executor(
            self.pool, make_engine, a.engine, a.tokens_per_page
        )
        await asyncio.sleep(max(0.0, stage - (time.monotonic() - t_load)))
        load_s = time.monotonic() - t_load
        print(
            f"Loading safetensors checkpoint shards: 100% Completed | 1/1 "
            f"[00:{load_s:02.0f}<00:00, {load_s:.2f}s/it]"
        )
        self.gpu.hold(min(requested, CONTEXT_BYTES + int(p.weights_gib * GIB)))
        vlog.info("default_loader.py:384", f"Loading weights took {load_s:.2f} seconds")
        vlog.info(
            "gpu_model_runner.py:4578",
            f"Model loading took {p.weights_gib} GiB memory "
            f"and {time.monotonic() - t0:.6f} seconds",
        )
        budget = p.image_tokens(4096, 4096) if p.longest_side_px else 16384
        vlog.info(
            "gpu_model_runner.py:5503",
            f"Encoder cache will be initialized with a budget "
            f"of {budget} tokens, and profiled with 1 image items of the maximum feature "
            "size.",
        )

        await asyncio.sleep(stage)
        vlog.info("monitor.py:48", f"torch.compile took {stage * 0.8:.2f} s in total")
        vlog.info("monitor.py:76", f"Initial profiling/warmup run took {stage * 0.2:.2f} s")
        available = requested - non_kv_bytes(p)
        vlog.info("gpu_worker.py:436", f"Available KV cache memory: {available / GIB:.2f} GiB")
        plan = plan_kv_cache(p, requested, self.max_model_len)
        vlog.info("kv_cache_utils.py:1087", f"GPU KV cache size: {plan.num_tokens:,} tokens")
        vlog.info(
            "kv_cache_utils.py:1091",
            f"Maximum concurrency for {self.max_model_len:,} "
            f"tokens per request: {plan.max_concurrency:.2f}x",
        )
        self.gpu.hold(requested)
        self.requested = requested

        print("Capturing CUDA graphs (decode, FULL):   0%|          | 0/35 [00:00<?, ?it/s]")
        await asyncio.sleep(stage)
        vlog.info(
            "gpu_model_runner.py:4645",
            f"Graph capturing finished in {stage:.0f} secs, took {p.cuda_graph_gib:.2f} GiB",
        )
        vlog.info(
            "core.py:402",
            "init engine (profile, create kv cache, warmup model) took "
            f"{time.monotonic() - t0:.2f} seconds",
        )
        return plan

    async def _start_worker(self) -> None:
        read_end, self.worker_pipe = os.pipe()  # not inheritable: only this process writes
        try:
            self.worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ocrtui.sim.worker",
                "--fd",
                str(read_end),
                "--tracker-fd",
                str(self.tracker_fd),
                *(() if self.dp_rank is None else ("--dp-rank", str(self.dp_rank))),
                pass_fds=(read_end, self.tracker_fd),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            os.close(read_end)

    async def stop_worker(self) -> None:
        """Close the Worker's pipe (it exits on EOF, as vLLM's does) and wait for it."""
        if self.worker_pipe is not None:
            os.close(self.worker_pipe)
            self.worker_pipe = None
        if self.worker is None or self.worker.returncode is not None:
            return
        vlog.info(
            "multiproc_executor.py:479", "[shutdown] Executor: waiting for worker exit count=1"
        )
        try:
            await asyncio.wait_for(self.worker.wait(), WORKER_STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.worker.kill()
            await self.worker.wait()

    # -- requests -----------------------------------------------------------------------

    async def send(self, frame: ipc.Frame) -> None:
        with contextlib.suppress(ConnectionError):
            await ipc.send(self.writer, frame)

    def add(self, rid: str, images: list[bytes], max_tokens: int) -> None:
        self.waiting.append(_Request(rid, images, max_tokens))
        self._schedule()

    def abort(self, rid: str) -> None:
        for req in list(self.waiting):
            if req.rid == rid:
                self.waiting.remove(req)
        running = self.running.get(rid)
        if running and running.task:
            running.task.cancel()

    def _schedule(self) -> None:
        # At most --max-num-seqs requests in the batch; the rest wait, as in vLLM's scheduler.
        # Asleep, the scheduler is paused: requests wait until the wake-up.
        if self.asleep_bytes is not None:
            return
        while self.waiting and len(self.running) < self.args.max_num_seqs:
            req = self.waiting.popleft()
            self.running[req.rid] = req
            req.task = asyncio.create_task(self._run(req))
            # A done callback, not a finally: a task aborted before it first ran never
            # executes its body, and its slot must still be freed.
            req.task.add_done_callback(functools.partial(self._finished, req.rid))

    def _finished(self, rid: str, task: asyncio.Task[None]) -> None:
        self.running.pop(rid, None)
        self._schedule()

    async def _run(self, req: _Request) -> None:
        try:
            await self.send(("admitted", req.rid))
            await self._generate(req)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            await self.send(("error", req.rid, f"{type(exc).__name__}: {exc}"))

    async def _generate(self, req: _Request) -> None:
        assert self.engine is not None
        engine = self.engine
        if isinstance(engine, SyntheticEngine):
            text = "\n\n".join(engine.recognize(img) for img in req.images)
            await asyncio.sleep(self.args.prefill_s)
        else:
            loop = asyncio.get_running_loop()
            texts = [
                await loop.run_in_executor(self.pool, engine.recognize, img) for img in req.images
            ]
            text = "\n\n".join(texts)
        pieces = tokenize(text)
        finish = "stop"
        if len(pieces) > req.max_tokens:
            pieces, finish = pieces[: req.max_tokens], "length"
        per_token = self.args.decode_s_per_token if isinstance(engine, SyntheticEngine) else 0.0
        await self._emit(req.rid, pieces, per_token)
        await self.send(("done", req.rid, finish))

    async def _emit(self, rid: str, pieces: list[str], per_token: float) -> None:
        """Send tokens as decode produces them: the first at once (prefill made it), then
        token k at ``k * per_token``, in batches of at least 20 ms so a fast decode does not
        flood the socket. Nothing to say is still one token, as in vLLM: the end-of-sequence
        one, counted in the usage and the metrics."""
        if not pieces:
            await self.send(("delta", rid, "", 1))
            return
        await self.send(("delta", rid, pieces[0], 1))
        step = max(1, round(0.02 / per_token)) if per_token > 0 else 8
        start = time.monotonic()
        for i in range(1, len(pieces), step):
            chunk = pieces[i : i + step]
            if per_token > 0:
                due = start + (i + len(chunk) - 1) * per_token
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self.send(("delta", rid, "".join(chunk), len(chunk)))

    # -- sleep mode ---------------------------------------------------------------------

    async def sleep(self, level: int) -> None:
        """vLLM's sleep (pause mode ``abort``): every request in flight finishes ``abort``,
        the scheduler pauses; at level 1 and 2 with ``--enable-sleep-mode`` the weights
        (level 1: offloaded to host memory; level 2: discarded) and the KV cache leave the
        GPU, which keeps the CUDA context and graphs. Without the flag nothing is freed (no
        memory was allocated in sleep mode's pools), as on real vLLM."""
        for req in [*self.running.values(), *self.waiting]:
            if req.task:
                req.task.cancel()
            await self.send(("done", req.rid, "abort"))
        self.waiting.clear()
        if self.asleep_bytes is not None:
            vlog.warning("abstract.py:384", "Executor is already sleeping.")
            await self.send(("slept", level))
            return
        t0 = time.perf_counter()
        self.asleep_bytes = self.requested
        if level >= 1 and self.args.enable_sleep_mode and self.gpu is not None:
            kept = min(self.requested, CONTEXT_BYTES + int(self.profile.cuda_graph_gib * GIB))
            self.gpu.hold_exactly(kept)
            self.asleep_bytes = kept
            vlog.info(
                "gpu_worker.py:326",
                f"Sleep mode freed {(self.requested - kept) / GIB:.2f} GiB memory, "
                f"{kept / GIB:.2f} GiB memory is still in use.",
            )
        if level >= 1:
            took = time.perf_counter() - t0
            vlog.info("abstract.py:390", f"It took {took:.6f} seconds to fall asleep.")
        await self.send(("slept", level))

    async def wake(self) -> None:
        """Take the memory back (vLLM's CUDA out-of-memory error when another process took
        it meanwhile) and resume scheduling."""
        if self.asleep_bytes is None:
            vlog.warning("abstract.py:396", "Executor is not sleeping.")
            await self.send(("awake", None))
            return
        t0 = time.perf_counter()
        if self.gpu is not None and self.asleep_bytes < self.requested:
            need = self.requested - self.asleep_bytes
            free = self.gpu.free_bytes()
            if free < need:
                await self.send(
                    (
                        "awake",
                        f"CUDA out of memory. Tried to allocate {need / GIB:.2f} GiB. GPU 0 "
                        f"has a total capacity of {self.gpu.total_bytes() / GIB:.2f} GiB of "
                        f"which {free / GIB:.2f} GiB is free.",
                    )
                )
                return
            self.gpu.hold_exactly(self.requested)
        self.asleep_bytes = None
        took = time.perf_counter() - t0
        vlog.info(
            "abstract.py:408",
            f"It took {took:.6f} seconds to wake up tags {{'weights', 'kv_cache'}}.",
        )
        self._schedule()
        await self.send(("awake", None))

    async def reload_weights(self) -> None:
        """``collective_rpc("reload_weights")``: the weights read again (what a level-2
        sleeper needs after its wake-up), taking the start-up's loading time."""
        t0 = time.monotonic()
        await asyncio.sleep(self.args.startup_s / 3)
        vlog.info(
            "default_loader.py:384", f"Loading weights took {time.monotonic() - t0:.2f} seconds"
        )
        await self.send(("reloaded", None))

    # -- shutdown -----------------------------------------------------------------------

    def on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            return
        vlog.info("core.py:1454", f"[shutdown] EngineCore: trigger received signal={sig.name}")
        self.stopping.set()

    async def shutdown(self) -> None:
        vlog.info("core.py:1635", "[shutdown] EngineCore: start mode=abort timeout=0s")
        for req in list(self.running.values()):
            if req.task:
                req.task.cancel()
        self.waiting.clear()
        vlog.info(
            "core.py:1666",
            "[shutdown] EngineCore: request processing complete; starting resource teardown",
        )
        vlog.info("core.py:1499", "[shutdown] EngineCore: exiting busy loop")
        await self.stop_worker()
        if self.gpu is not None:
            self.gpu.release()


async def _serve(fd: int, tracker_fd: int, dp_rank: int | None) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    kind, args = await ipc.recv(reader)
    assert kind == "config" and isinstance(args, ServeArgs)
    core = EngineCore(args, writer, tracker_fd, dp_rank)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, core.on_signal, sig)
    starting = asyncio.create_task(core.start())
    stop_early = asyncio.create_task(core.stopping.wait())
    await asyncio.wait({starting, stop_early}, return_when=asyncio.FIRST_COMPLETED)
    if core.stopping.is_set():
        # Stopped while loading: give up on startup, release what was taken.
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        await core.shutdown()
        return 0
    stop_early.cancel()
    try:
        plan = starting.result()
    except Exception as exc:
        vlog.error("core.py:1108", "EngineCore failed to start.")
        vlog.error_block("core.py:1108", traceback.format_exc())
        await core.send(("failed", f"{type(exc).__name__}: {exc}"))
        if core.gpu is not None:
            core.gpu.release()
        await core.stop_worker()
        return 1
    await core.send(
        (
            "ready",
            {
                "num_gpu_blocks": plan.num_gpu_blocks,
                "max_model_len": core.max_model_len,
                "worker_pid": core.worker.pid if core.worker else None,
            },
        )
    )
    reading = asyncio.create_task(_read_requests(core, reader))
    stopping = asyncio.create_task(core.stopping.wait())
    await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not core.stopping.is_set():
        # The API server is gone (SIGKILL). Like vLLM's EngineCore we keep our memory and
        # live on until someone signals us: the orphan the dashboard has to find.
        await core.stopping.wait()
    reading.cancel()
    await core.shutdown()
    return 0


async def _read_requests(core: EngineCore, reader: asyncio.StreamReader) -> None:
    while True:
        try:
            frame = await ipc.recv(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if frame[0] == "add":
            core.add(frame[1], frame[2], frame[3])
        elif frame[0] == "abort":
            core.abort(frame[1])
        elif frame[0] == "sleep":
            await core.sleep(frame[1])
        elif frame[0] == "wake":
            await core.wake()
        elif frame[0] == "reload_weights":
            await core.reload_weights()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ocrtui.sim.engine_core")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--tracker-fd", type=int, required=True)
    p.add_argument("--dp-rank", type=int, help="its data-parallel rank (only when DP > 1)")
    ns = p.parse_args(argv)
    from setproctitle import setproctitle

    name = title(ns.dp_rank)
    setproctitle(name)
    vlog.install_prefix(name.removeprefix("VLLM::"))
    return asyncio.run(_serve(ns.fd, ns.tracker_fd, ns.dp_rank))


if __name__ == "__main__":
    sys.exit(main())
