"""The comparison protocol as an async stream of typed events (see events.py).

Per model: cold latency (first request), warm latency (N sequential requests; p50/p95),
throughput at each concurrency level of ``RunPlan.concurrencies`` (images/s and latency
p50/p95 per level, ascending; the seed's one level, ``concurrency``, unless a sweep was
asked), then the documents phase (pages/s per document and accuracy; with
``RunPlan.variants`` each document also as its degraded copies, ``NAME@VARIANT``, the speed
phases staying on clean pages). An API arm
(``[[api_arms]]``, a :class:`DocApiTarget`) runs the documents phase only: one document at a
time, its pages sent as the arm's ``split`` says (``docapi.py``), each text scored like a
model's (no tokens, no finish reason). Speed phases run one model at a time unless
``schedule == "parallel"``; the documents phase runs all arms side by side. A serve sweep
(``RunPlan.server``: the arms are one model's flag sets) runs the arms one after another
instead, each served first (``ArmServer.serve``: a restart; an arm that cannot be served is
stopped with the reason) and every phase of one before the next; the model is served as
configured again (``ArmServer.restore``) however the run ends. Pages are
rendered in a process pool ahead of the requests, at most ``max_rendered_pages`` (split
between the arms) in memory at once, and fitted to their server before they are sent
(page_fit.py: resized, or refused without a request).

Measured like ``vllm bench serve``: a streamed page's text goes out piece by piece as
PageDelta (live only, see history.py), its timings into its results.jsonl line, and each
phase of a vLLM arm (each speed phase, the documents phase) gets :class:`PhaseMeasures`:
its pages' timings summarised (stream_stats.py) and what its server counted, from
``/metrics`` scraped before and after the phase and every ``METRICS_SAMPLE_S`` during it
(vllm/metrics.py: the peak KV-cache use comes from those samples). Arms that share one
server count each other's requests there.

Outages: with a gate (gate.py: the link's and each model's state, from the launcher) a
model's requests wait while the link is down or its server is crashed/unhealthy/restarting
(RunPaused/RunResumed), and a request that failed transiently while such an outage began is
sent again once it is over, so it costs no page. A pause longer than
``outage_budget_s`` stops the run (RunStopped: exit 3, the rest left for --resume). An error
every request of a model would get (client.fatal_reason) stops that model (ModelStopped).

A :class:`CompareRun` owns its task: consumers (a dashboard screen, the CLI) subscribe,
may go away and subscribe again (a compact history is replayed, see history.py), and never
slow the run down.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol

import aiohttp

from ocrtui.compare import arms, page_files, report, report_files
from ocrtui.compare.client import ModelTarget, Outcome, ocr_page, open_session
from ocrtui.compare.docapi import DocApiTarget, PageText, ocr_document_pages
from ocrtui.compare.documents import Document, DocumentError, DocumentSpec
from ocrtui.compare.events import (
    DocumentDone,
    DocumentFailed,
    DocumentReady,
    Event,
    ModelStopped,
    PageDelta,
    PageDone,
    PageFailed,
    PageStarted,
    Phase,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunDone,
    RunPaused,
    RunResumed,
    RunStarted,
    phase_key,
)
from ocrtui.compare.gate import LINK, RunGate
from ocrtui.compare.history import EventHistory
from ocrtui.compare.page_fit import FittedPage, fit_rendered
from ocrtui.compare.profiles import render_target
from ocrtui.compare.render import RenderedPage, RenderError, RenderPool
from ocrtui.compare.results import (
    DocumentStats,
    PhaseMeasures,
    PhaseStats,
    ServeSweepRecord,
    Summary,
)
from ocrtui.compare.scoring import flags_for
from ocrtui.compare.store import PageResult, PhaseRecord, RunStore
from ocrtui.compare.stream_stats import StreamTally, percentile
from ocrtui.compare.tally import Tally, score_page
from ocrtui.compare.variants import Variant
from ocrtui.config import CompareConfig
from ocrtui.errors import LifecycleError
from ocrtui.vllm.image_tokens import PageFit
from ocrtui.vllm.metrics import VllmMetrics, parse_metrics, phase_counters

SPEED_IMAGES_MAX = 4  # distinct pages cycled through by the speed phases
OUTAGE_RESENDS_MAX = 20  # times one request is sent again after outages (each one bounded)
EXIT_UNREACHABLE = 3  # errors.py's code for a pod or model server out of reach
METRICS_SAMPLE_S = 1.0  # /metrics scraped this often during a phase (the KV cache's peak)
METRICS_TIMEOUT_S = 5.0  # one scrape; a server that does not answer has no counters


class RunStopped(Exception):
    """The run cannot go on; finished pages are kept and --resume sends the rest."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ModelHalted(Exception):
    """Raised to a model's request path once the model is stopped (ModelStopped)."""


@dataclass(frozen=True)
class ServedArm:
    """An arm whose server was (re)started for it: the target fitted to that server
    (max_tokens, max_model_len) and what it runs as."""

    target: ModelTarget
    arm: arms.VllmArm


class ArmServer(Protocol):
    """Serves each vLLM arm's settings before its phases (a serve sweep: launch.SweepServer)."""

    @property
    def sweep(self) -> ServeSweepRecord:
        """Which arms the sweep made (summary.json's serve_sweep)."""
        ...

    async def serve(self, target: ModelTarget) -> ServedArm:
        """Restart the arm's model with its settings; LifecycleError when it cannot."""
        ...

    async def restore(self) -> None:
        """Serve the model as configured again (the run's last step, whatever ended it)."""
        ...


@dataclass(frozen=True)
class RunPlan:
    documents: tuple[DocumentSpec, ...]
    models: tuple[ModelTarget | DocApiTarget, ...]
    settings: CompareConfig
    speed_phases: bool = True
    gate: RunGate | None = None  # the link's and the models' state; None: never pause
    # Throughput levels, ascending; empty: the one level settings.concurrency.
    concurrencies: tuple[int, ...] = ()
    arms: tuple[arms.ArmRecord, ...] = ()  # per model, what it runs as (compare/arms.py)
    # Degraded copies of every page sent in the documents phase too (variants.py): a
    # document's copy is the Document NAME@VARIANT; "clean" is the document itself.
    variants: tuple[Variant, ...] = ()
    # A serve sweep: each vLLM arm served (restarted) before its phases, the arms one after
    # another with every phase of one before the next, the model restored at the end.
    server: ArmServer | None = None

    @property
    def levels(self) -> tuple[int, ...]:
        return self.concurrencies or (self.settings.concurrency,)

    @property
    def render_budget(self) -> int:
        """Rendered pages each model may hold (queued or in flight)."""
        return max(1, self.settings.max_rendered_pages // max(1, len(self.models)))


class CompareRun:
    """A running (or finished) comparison: its event history plus live subscribers."""

    def __init__(self, plan: RunPlan, store: RunStore) -> None:
        self.plan = plan
        self.store = store
        self.history = EventHistory()
        self.documents: list[Document] = []
        self.failed_documents: dict[str, str] = {}
        self.tally = Tally([m.name for m in plan.models])
        # What each model runs as; without a probe of the pod (RunPlan.arms), config alone.
        # A serve sweep replaces an arm's once its server is up (ArmServer.serve).
        self.arms = list(plan.arms) or list(
            arms.arm_record(m.config, plan.settings, None)
            if isinstance(m, ModelTarget)
            else arms.api_arm_record(m.config)
            for m in plan.models
        )
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._cancel_requested = False
        self.result: RunDone | None = None
        self.stopped: dict[str, str] = {}  # model -> why no more requests go to it
        self._stop_codes: dict[str, int] = {}
        self._paused_since: dict[str | None, float] = {}  # gate key -> start of its pause
        # (model, phase_key or "documents") -> what the phase measured (_ServerWatch)
        self.measures: dict[tuple[str, str], PhaseMeasures] = {}
        # model -> the streamed timings of its phase being measured (_request adds)
        self._timings: dict[str, StreamTally] = {}

    # Consumers ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name="ocrtui-compare")

    @property
    def done(self) -> bool:
        return self.result is not None

    def subscribe(self) -> AsyncIterator[Event]:
        """The history (compact: see history.py), then live events, ending after RunDone."""
        return self.history.subscribe()

    def cancel(self) -> None:
        # Once only: a second cancel would interrupt the summary being written.
        if self._cancel_requested:
            return
        self._cancel_requested = True
        # A task cancelled before its first step would end without RunDone; _main checks.
        if self._started and self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait(self) -> RunDone:
        if self._task is not None:
            # shield: a waiter that is cancelled must not cancel the run it waits for.
            await asyncio.shield(self._task)
        assert self.result is not None
        return self.result

    def finished(self) -> report.FinishedRun:
        """What the report needs of this run (its results so far)."""
        return report.FinishedRun(
            run_dir=str(self.store.dir),
            # A sweep's arms share one served model: the report knows each by its arm name.
            models=tuple(
                m.config.model_copy(update={"name": m.name})
                if m.name != m.config.name
                else m.config
                for m in self.plan.models
            ),
            settings=self.plan.settings,
            specs=self.plan.documents,
            documents=tuple(self.documents),
            failed_documents=dict(self.failed_documents),
            stopped=dict(self.stopped),
            results=self.store.results,
            phases=self.store.phases,
            tally=self.tally,
            levels=self.plan.levels,
            arms={m.name: a for m, a in zip(self.plan.models, self.arms, strict=True)},
            measures=dict(self.measures),
            serve_sweep=self.plan.server.sweep if self.plan.server is not None else None,
        )

    def _emit(self, ev: Event) -> None:
        self.history.append(ev)

    # The run ---------------------------------------------------------------------------------

    async def _main(self) -> None:
        self._started = True
        s = self.plan.settings
        pool = RenderPool(s.render_workers, s.file_limits())
        client = open_session()
        cancelled = False
        error: str | None = None
        stop_code = 0
        gate = self.plan.gate
        follow = asyncio.create_task(self._follow_gate(gate)) if gate is not None else None
        try:
            try:
                if self._cancel_requested:
                    raise asyncio.CancelledError
                await self._protocol(pool, client)
            except asyncio.CancelledError:
                cancelled = True
            except Exception as exc:  # the run breaks, the consumer still gets RunDone
                while isinstance(exc, ExceptionGroup) and exc.exceptions:
                    exc = exc.exceptions[0]  # TaskGroup wraps the real cause
                if isinstance(exc, RunStopped):
                    error, stop_code = str(exc), exc.exit_code
                else:
                    error = f"{type(exc).__name__}: {exc}"
            if self.plan.server is not None:
                # Also after a cancellation (caught above) or a failure midway.
                try:
                    await self.plan.server.restore()
                except Exception as exc:  # the summary is still written, with the reason
                    error = error or f"restoring the configured flags failed: {exc}"
        finally:
            if follow is not None:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow
            if gate is not None:
                await gate.close()
            pool.close()
            await client.close()
        summary: Summary | None = None
        code = 1
        try:
            summary = await report_files.write_summary(self.finished(), self.store)
            code = max(
                summary.exit_code,
                1 if (cancelled or error) else 0,
                stop_code,
                *self._stop_codes.values(),
            )
        except Exception as exc:  # results.jsonl is intact; the consumer must still hear
            error = error or f"writing the summary failed: {type(exc).__name__}: {exc}"
            code = 1
        else:
            try:
                await report_files.write_html(self.store.dir)
            except Exception as exc:  # report.md and summary.json are written; say what is not
                error = error or f"writing report.html failed: {type(exc).__name__}: {exc}"
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
        self.result = RunDone(summary, code, cancelled=cancelled, error=error)
        self._emit(self.result)

    async def _protocol(self, pool: RenderPool, client: aiohttp.ClientSession) -> None:
        plan = self.plan
        self._emit(
            RunStarted(
                str(self.store.dir),
                tuple(m.name for m in plan.models),
                tuple(d.name for d in plan.documents),
                tuple(a.label for a in self.arms),
            )
        )
        for spec in plan.documents:
            try:
                doc = await pool.inspect(spec)
            except DocumentError as exc:
                self.failed_documents[spec.name] = str(exc)
                self._emit(DocumentFailed(spec.name, str(exc)))
                continue
            for copy in [doc, *(replace(doc, variant=v) for v in plan.variants if v != "clean")]:
                self.documents.append(copy)
                await asyncio.to_thread(
                    page_files.save_references, self.store.dir, copy.name, copy.references
                )
                await self._score_resumed(copy)
                self._emit(
                    DocumentReady(copy.name, spec.category, copy.pages, bool(copy.references))
                )
        if not self.documents:
            return
        if plan.server is not None:
            for i, m in enumerate(plan.models):
                if isinstance(m, ModelTarget):
                    await self._serve_arm(i, m, plan.server, pool, client)
            return
        if plan.speed_phases:
            vllm = [m for m in plan.models if isinstance(m, ModelTarget)]
            if plan.settings.schedule == "parallel":
                async with asyncio.TaskGroup() as tg:
                    for vm in vllm:
                        tg.create_task(self._speed(vm, pool, client))
            else:
                for vm in vllm:
                    await self._speed(vm, pool, client)
        async with asyncio.TaskGroup() as tg:
            for m in plan.models:
                tg.create_task(self._documents_phase(m, pool, client))

    async def _serve_arm(
        self,
        index: int,
        model: ModelTarget,
        server: ArmServer,
        pool: RenderPool,
        client: aiohttp.ClientSession,
    ) -> None:
        """One arm of a serve sweep: its server restarted with its settings, then its phases;
        an arm whose server cannot start is stopped with the reason (the next one goes on).
        Resumed, every arm is served again (its record is read from its server), and only
        what the store lacks is measured."""
        try:
            served = await server.serve(model)
        except LifecycleError as exc:
            self._stop_model(model.name, f"could not serve its flags: {exc}")
            return
        self.arms[index] = served.arm
        if self.plan.speed_phases:
            await self._speed(served.target, pool, client)
        await self._documents_phase(served.target, pool, client)

    # The request path: pauses, outages, stopped models -----------------------------------

    async def _request(
        self,
        client: aiohttp.ClientSession,
        model: ModelTarget,
        page: RenderedPage,
        on_delta: Callable[[str], None] | None = None,
    ) -> Outcome:
        """One page's request, held while the gate pauses the model and sent again when it
        failed transiently as an outage began; raises ModelHalted for a stopped model."""
        s = self.plan.settings
        for _ in range(OUTAGE_RESENDS_MAX):
            self._check_stopped(model.name)
            await self._hold(model.config.name)  # the gate knows servers, not arms
            sent = time.monotonic()
            out = await ocr_page(
                client,
                model,
                page,
                retries=s.retries,
                timeout_s=s.request_timeout_s,
                on_delta=on_delta,
            )
            if out.ok and out.timings is not None and model.name in self._timings:
                self._timings[model.name].add(out.timings)
            if out.fatal is not None:
                self._check_stopped(model.name)  # only the first such failure is a result
                self._stop_model(model.name, out.fatal)
                return out
            if not out.transient or not await self._outage_since(model.config.name, sent):
                return out
        return out

    def _check_stopped(self, model: str) -> None:
        if model in self.stopped:
            raise ModelHalted(model)

    def _stop_model(self, model: str, reason: str) -> None:
        self.stopped[model] = reason
        auth = reason.startswith(("HTTP 401", "HTTP 403"))
        self._stop_codes[model] = EXIT_UNREACHABLE if auth else 1
        self._emit(ModelStopped(model, reason))

    async def _hold(self, model: str) -> None:
        """Wait while the gate pauses ``model``; RunStopped past ``outage_budget_s``."""
        gate = self.plan.gate
        if gate is None:
            return
        budget = self.plan.settings.outage_budget_s
        first = time.monotonic()
        while True:
            pauses = gate.pauses()
            key = LINK if LINK in pauses else model
            if key not in pauses:
                return
            since = min(first, self._paused_since.get(key, first))
            left = since + budget - time.monotonic()
            if left <= 0:
                what = "the link to the pod" if key is LINK else f"model {key}"
                raise RunStopped(
                    f"{what}: paused ({pauses[key]}) for more than "
                    f"outage_budget_s = {budget:g} s; finished pages are kept, "
                    f"`ocrtui compare --resume {self.store.dir}` sends the rest",
                    EXIT_UNREACHABLE,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await gate.changed()

    async def _outage_since(self, model: str, sent: float) -> bool:
        """Whether the link or the model's server went away after ``sent`` (waiting up to
        the gate's grace for the watcher to notice)."""
        gate = self.plan.gate
        if gate is None:
            return False
        deadline = time.monotonic() + gate.grace_s
        while not (gate.paused_since(LINK, sent) or gate.paused_since(model, sent)):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await gate.changed()
        return True

    async def _follow_gate(self, gate: RunGate) -> None:
        """RunPaused when a pause begins or its reason changes, RunResumed when it ends."""
        paused: dict[str | None, str] = {}
        while True:
            now = dict(gate.pauses())
            for key, why in now.items():
                if paused.get(key) != why:
                    self._paused_since.setdefault(key, time.monotonic())
                    self._emit(RunPaused(key, why))
            for key in [k for k in paused if k not in now]:
                since = self._paused_since.pop(key, time.monotonic())
                self._emit(RunResumed(key, round(time.monotonic() - since, 3)))
            paused = now
            await gate.changed()

    # Speed phases ----------------------------------------------------------------------------

    async def _speed(
        self, model: ModelTarget, pool: RenderPool, client: aiohttp.ClientSession
    ) -> None:
        try:
            await self._speed_phases(model, pool, client)
        except* ModelHalted:
            pass  # ModelStopped said why

    async def _speed_phases(
        self, model: ModelTarget, pool: RenderPool, client: aiohttp.ClientSession
    ) -> None:
        s = self.plan.settings
        phases: list[tuple[Phase, int, int | None]] = [
            ("cold", 1, None),
            ("warm", s.warm_runs, None),
            *(("throughput", s.throughput_requests, c) for c in self.plan.levels),
        ]
        todo = []
        for p, n, c in phases:
            rec = self.store.phases.get((model.name, phase_key(p, c)))
            if rec is None:
                todo.append((p, n, c))
            else:  # a resumed run: finished phases and levels are not measured again
                if rec.measures is not None:
                    self.measures[(model.name, rec.phase)] = rec.measures
                self._emit(
                    PhaseDone(
                        model.name, p, rec.stats, skipped=True, concurrency=c, measures=rec.measures
                    )
                )
        if not todo:
            return
        images = await self._speed_images(model, pool)
        if not images:
            return
        for phase, n, level in todo:
            self._emit(PhaseStarted(model.name, phase, n, level))
            key = phase_key(phase, level)
            async with _ServerWatch(self, model, client, key):
                stats = await self._timed_requests(model, client, images, phase, n, level)
            measures = self.measures.get((model.name, key))
            await self.store.add_phase(PhaseRecord(model.name, key, stats, measures))
            self._emit(PhaseDone(model.name, phase, stats, concurrency=level, measures=measures))

    async def _speed_images(self, model: ModelTarget, pool: RenderPool) -> list[RenderedPage]:
        want = min(SPEED_IMAGES_MAX, self.plan.render_budget)
        out: list[RenderedPage] = []
        # Photos and scans first: "single-image latency" is about an image, and a whole
        # 200 DPI page costs a CPU engine several times more. Clean pages only: the speed
        # phases measure the server, not the page's condition.
        clean = [d for d in self.documents if d.variant == "clean"]
        ordered = sorted(clean, key=lambda d: d.kind != "image")
        for doc in ordered:
            for p in doc.pages:
                if len(out) >= want:
                    return out
                with contextlib.suppress(RenderError):
                    fitted = await self._render(model, doc, p, pool)
                    if fitted.fit is None or fitted.fit.refused is None:
                        out.append(fitted.image)
        return out

    async def _render(
        self, model: ModelTarget, doc: Document, page: int, pool: RenderPool
    ) -> FittedPage:
        """One page rendered for ``model`` and fitted to its server (page_fit.py)."""
        fmt = self.plan.settings.image_format
        image = await pool.render(doc, page, render_target(model.config), fmt)
        return await fit_rendered(model, image, pool, fmt)

    async def _timed_requests(
        self,
        model: ModelTarget,
        client: aiohttp.ClientSession,
        images: list[RenderedPage],
        phase: Phase,
        n: int,
        level: int | None,
    ) -> PhaseStats:
        """One speed phase: ``n`` requests, ``level`` at a time (None: one at a time)."""
        latencies: list[float] = []
        errors: list[str] = []
        done = 0
        sem = asyncio.Semaphore(level or 1)

        async def one(i: int) -> None:
            nonlocal done
            async with sem:
                out = await self._request(client, model, images[i % len(images)])
            if out.ok and out.latency_s is not None:
                latencies.append(out.latency_s)
            else:
                errors.append(out.error or "failed")
            done += 1
            self._emit(PhaseProgress(model.name, phase, done, n, level))

        start = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            for i in range(n):
                tg.create_task(one(i))
        wall = time.monotonic() - start
        # No request answered: nothing was measured (not 0 images/s).
        measured = bool(latencies) and wall > 0
        return PhaseStats(
            requests=n,
            ok=len(latencies),
            failed=len(errors),
            first_error=errors[0] if errors else None,
            wall_s=round(wall, 4),
            latency_p50_s=round(statistics.median(latencies), 4) if latencies else None,
            latency_p95_s=round(percentile(sorted(latencies), 95), 4) if latencies else None,
            latency_mean_s=round(statistics.fmean(latencies), 4) if latencies else None,
            concurrency=level,
            images_per_s=round(len(latencies) / wall, 4) if measured and level else None,
        )

    # Documents phase -------------------------------------------------------------------------

    async def _documents_phase(
        self, model: ModelTarget | DocApiTarget, pool: RenderPool, client: aiohttp.ClientSession
    ) -> None:
        total = sum(len(d.pages) for d in self.documents)
        self._emit(PhaseStarted(model.name, "documents", total))
        start = time.monotonic()
        counted = [0, 0]
        watch = _ServerWatch(self, model, client, "documents") if isinstance(
            model, ModelTarget
        ) else contextlib.nullcontext()  # fmt: skip
        async with watch:
            try:
                for doc in self.documents:
                    if isinstance(model, DocApiTarget):
                        if doc.variant != "clean":
                            continue  # an API arm is sent the file itself, never a rendering
                        o, f = await self._api_document(model, doc, client)
                    else:
                        o, f = await self._document(model, doc, pool, client)
                    counted[0] += o
                    counted[1] += f
            except* ModelHalted:
                pass  # ModelStopped said why; the pages not sent are left for --resume
        ok, failed = counted
        elapsed = time.monotonic() - start
        stats = DocumentStats(ok + failed, ok, failed, round(elapsed, 4))
        measures = self.measures.get((model.name, "documents"))
        self._emit(PhaseDone(model.name, "documents", stats, measures=measures))

    async def _document(
        self, model: ModelTarget, doc: Document, pool: RenderPool, client: aiohttp.ClientSession
    ) -> tuple[int, int]:
        s = self.plan.settings
        keys = {(doc.name, p, model.name) for p in doc.pages}
        done = keys & self.store.results.keys()
        async for prev in self.store.read_results(done):  # texts from disk, in stored order
            self._emit(PageDone(prev, resumed=True))
        todo = [p for p in doc.pages if (doc.name, p, model.name) not in done]
        if not todo:
            return 0, 0
        budget = asyncio.Semaphore(self.plan.render_budget)
        workers = min(s.concurrency, self.plan.render_budget, len(todo))
        queue: asyncio.Queue[tuple[int, asyncio.Task[FittedPage]] | None] = asyncio.Queue()
        counts = {"ok": 0, "failed": 0}

        async def produce() -> None:
            for p in todo:
                await budget.acquire()
                task = asyncio.create_task(self._render(model, doc, p, pool))
                await queue.put((p, task))
            for _ in range(workers):
                await queue.put(None)

        async def consume() -> None:
            while (item := await queue.get()) is not None:
                try:
                    await self._page(model, doc, item[0], item[1], client, counts)
                finally:
                    item = None  # drop the rendered page before its slot is reused
                    budget.release()

        start = time.monotonic()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(produce())
                for _ in range(workers):
                    tg.create_task(consume())
        finally:
            while not queue.empty():  # renders left behind by a cancellation
                item = queue.get_nowait()
                if item is not None:
                    item[1].cancel()
        return await self._document_done(model.name, doc, todo, counts, start)

    async def _page(
        self,
        model: ModelTarget,
        doc: Document,
        page: int,
        render: Awaitable[FittedPage],
        client: aiohttp.ClientSession,
        counts: dict[str, int],
    ) -> None:
        if model.name in self.stopped:
            if isinstance(render, asyncio.Future):
                render.cancel()
            raise ModelHalted(model.name)
        self._emit(PageStarted(model.name, doc.name, page))
        fit = None
        try:
            fitted = await render
        except RenderError as exc:
            out = Outcome(False, None, error=f"render: {exc}")
        else:
            fit = fitted.fit
            if fit is not None and fit.refused is not None:
                out = Outcome(False, None, error=f"not sent: {fit.refused}")
            else:
                await asyncio.to_thread(
                    page_files.save_page_image,
                    self.store.dir,
                    doc.name,
                    page,
                    render_target(model.config),
                    fitted.image,
                )
                out = await self._request(
                    client,
                    model,
                    fitted.image,
                    lambda text: self.history.publish(PageDelta(model.name, doc.name, page, text)),
                )
            del fitted
        await self._record(model.name, doc, page, out, counts, fit)

    async def _document_done(
        self, arm: str, doc: Document, todo: list[int], counts: dict[str, int], start: float
    ) -> tuple[int, int]:
        """One document of one arm finished: its event and its phase record, the same for a
        vLLM arm and an API arm."""
        elapsed = time.monotonic() - start
        partial = len(todo) < len(doc.pages)
        # Timed over the pages this run sent (a resumed document's earlier part was timed by
        # a run whose clock is gone); no page read: no speed.
        pps = round(counts["ok"] / elapsed, 4) if counts["ok"] and elapsed > 0 else None
        self._emit(DocumentDone(arm, doc.name, counts["ok"], counts["failed"], elapsed, pps))
        await self.store.add_phase(
            PhaseRecord(
                arm,
                f"document:{doc.name}",
                DocumentStats(
                    len(todo), counts["ok"], counts["failed"], round(elapsed, 4), pps, partial
                ),
            )
        )
        return counts["ok"], counts["failed"]

    async def _record(
        self,
        model: str,
        doc: Document,
        page: int,
        out: Outcome,
        counts: dict[str, int],
        fit: PageFit | None = None,
    ) -> None:
        """Score, store and announce one page's outcome (``fit``: its tokens predicted
        before sending)."""
        ref = doc.references.get(page)
        # In a thread: TEDS on a large table takes seconds (scoring.score_structure).
        score = await asyncio.to_thread(score_page, doc, page, out.text) if out.ok else None
        page_cer = score.strict.cer if score and score.strict else None
        st = score.structure if score else None
        tables = st.tables if st else None
        flags = flags_for(out.text, out.finish_reason, ref) if out.ok else []
        t = out.timings
        itl = sorted(t.itl) if t is not None else []
        result = PageResult(
            doc=doc.name,
            page=page,
            model=model,
            ok=out.ok,
            error=out.error,
            latency_s=None if out.latency_s is None else round(out.latency_s, 4),
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            finish_reason=out.finish_reason,
            text=out.text,
            cer=None if page_cer is None else round(page_cer, 6),
            category=doc.spec.category,
            flags=tuple(flags),
            predicted_prompt_tokens=fit.prompt_tokens if fit else None,
            resized=fit.resized if fit else None,
            teds=_round(tables.teds if tables else None),
            teds_s=_round(tables.teds_structure if tables else None),
            formula_ed=_round(st.formulas.distance if st and st.formulas else None),
            tests=st.tests if st else None,
            ttft_s=None if t is None else round(t.ttft, 6),
            tpot_s=None if t is None or t.tpot is None else round(t.tpot, 6),
            e2el_s=None if t is None else round(t.e2el, 6),
            output_tokens=None if t is None else t.output_tokens,
            itl_p50_s=round(percentile(itl, 50), 6) if itl else None,
            itl_p90_s=round(percentile(itl, 90), 6) if itl else None,
            itl_p99_s=round(percentile(itl, 99), 6) if itl else None,
        )
        await self.store.add_result(result)
        self.tally.add(doc, result, score)
        if out.ok:
            counts["ok"] += 1
            self._emit(PageDone(result))
        else:
            counts["failed"] += 1
            self._emit(PageFailed(result))

    async def _api_document(
        self, arm: DocApiTarget, doc: Document, client: aiohttp.ClientSession
    ) -> tuple[int, int]:
        """One document through an API arm: the file as it is, the pages not done yet."""
        keys = {(doc.name, p, arm.name) for p in doc.pages}
        done = keys & self.store.results.keys()
        async for prev in self.store.read_results(done):
            self._emit(PageDone(prev, resumed=True))
        todo = [p for p in doc.pages if (doc.name, p, arm.name) not in done]
        if not todo:
            return 0, 0
        counts = {"ok": 0, "failed": 0}
        for p in todo:
            self._emit(PageStarted(arm.name, doc.name, p))
        start = time.monotonic()
        for r in await ocr_document_pages(arm, client, doc.spec.path, todo):
            out = (
                Outcome(True, r.latency_s, text=r.text)
                if isinstance(r, PageText)
                else Outcome(False, r.latency_s, error=r.reason)
            )
            await self._record(arm.name, doc, r.page, out, counts)
        return await self._document_done(arm.name, doc, todo, counts, start)

    async def _score_resumed(self, doc: Document) -> None:
        """Score the pages an earlier run finished (their texts read back from disk) so the
        summary counts them even if this run never reaches their document."""
        keys = {k for k in self.store.results if k[0] == doc.name}
        async for r in self.store.read_results(keys):
            score = await asyncio.to_thread(score_page, doc, r.page, r.text or "") if r.ok else None
            self.tally.add(doc, r, score)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


async def _scrape(client: aiohttp.ClientSession, model: ModelTarget) -> VllmMetrics | None:
    """The model's server's ``/metrics``; None when it does not answer with Prometheus text
    (a server without it, a link down: the phase then has no counters, not a failure)."""
    try:
        async with asyncio.timeout(METRICS_TIMEOUT_S):
            async with client.get(model.url.rstrip("/") + "/metrics", raise_for_status=True) as r:
                text = await r.text()
        # Parsing takes ~15 ms of CPU for the simulator's 52 KiB: off the loop, where it
        # would delay the chunk arrivals the phase is timing.
        return await asyncio.to_thread(parse_metrics, text)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


class _ServerWatch:
    """Measures one phase of one vLLM arm (``async with``): collects its streamed timings
    (``CompareRun._timings``) and scrapes its server before, every ``METRICS_SAMPLE_S``
    during and after it; on a normal exit records :class:`PhaseMeasures` in
    ``run.measures``. Only the sample with the fullest KV cache is kept, so a long phase
    holds one scrape, not one a second."""

    def __init__(
        self, run: CompareRun, model: ModelTarget, client: aiohttp.ClientSession, key: str
    ) -> None:
        self.run, self.model, self.client, self.key = run, model, client, key
        self.before: VllmMetrics | None = None
        self.peak: VllmMetrics | None = None
        self.sampler: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        self.run._timings[self.model.name] = StreamTally()
        self.before = await _scrape(self.client, self.model)
        if self.before is not None:
            self.sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(METRICS_SAMPLE_S)
            m = await _scrape(self.client, self.model)
            if (
                m is not None
                and m.kv_cache_usage is not None
                and (self.peak is None or m.kv_cache_usage > (self.peak.kv_cache_usage or 0.0))
            ):
                self.peak = m

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timings = self.run._timings.pop(self.model.name, StreamTally())
        if self.sampler is not None:
            self.sampler.cancel()
            # wait() neither raises the sampler's CancelledError nor swallows one aimed at
            # this task (a suppress() here would, and the run would not stop on Ctrl-C).
            await asyncio.wait([self.sampler])
        if exc_type is not None:
            return
        after = await _scrape(self.client, self.model) if self.before is not None else None
        counters = None
        if self.before is not None and after is not None:
            during = [self.peak] if self.peak is not None else []
            counters = phase_counters(self.before, during, after)
        streamed = timings.summary().to_json() if timings.pages else {}
        if streamed or counters is not None:
            self.run.measures[(self.model.name, self.key)] = PhaseMeasures(
                streamed, {} if counters is None else counters.to_json()
            )


def start_run(plan: RunPlan, store: RunStore) -> CompareRun:
    """Start a comparison on the running loop; the caller subscribes to its events."""
    run = CompareRun(plan, store)
    run.start()
    return run
