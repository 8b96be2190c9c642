"""The comparison protocol as an async stream of typed events (see events.py).

Per model: cold latency (first request), warm latency (N sequential requests; p50/p95),
throughput at concurrency C (images/s), then the documents phase (pages/s per document and
accuracy). An API arm (``[[api_arms]]``, a :class:`DocApiTarget`) runs the documents phase
only: one document at a time, its pages sent as the arm's ``split`` says (``docapi.py``),
each text scored like a model's (no tokens, no finish reason). Speed phases run one model
at a time unless ``schedule == "parallel"``; the documents phase runs all arms side by side.
Pages are rendered in a process pool ahead of the requests, at most ``max_rendered_pages``
(split between the arms) in memory at once.

A :class:`CompareRun` owns its task: consumers (a dashboard screen, the CLI) subscribe,
may go away and subscribe again (a compact history is replayed, see history.py), and never
slow the run down.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import httpx

from ocrtui.compare import page_files, report, report_html
from ocrtui.compare.client import ModelTarget, Outcome, ocr_page
from ocrtui.compare.docapi import DocApiTarget, PageText, ocr_document_pages
from ocrtui.compare.documents import Document, DocumentError, DocumentSpec
from ocrtui.compare.events import (
    DocumentDone,
    DocumentFailed,
    DocumentReady,
    Event,
    PageDone,
    PageFailed,
    PageStarted,
    Phase,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunDone,
    RunStarted,
)
from ocrtui.compare.history import EventHistory
from ocrtui.compare.profiles import render_target
from ocrtui.compare.render import RenderedPage, RenderError, RenderPool
from ocrtui.compare.scoring import flags_for
from ocrtui.compare.store import PageResult, PhaseRecord, RunStore
from ocrtui.compare.tally import Tally, score_page
from ocrtui.config import CompareConfig

SPEED_IMAGES_MAX = 4  # distinct pages cycled through by the speed phases


@dataclass(frozen=True)
class RunPlan:
    documents: tuple[DocumentSpec, ...]
    models: tuple[ModelTarget | DocApiTarget, ...]
    settings: CompareConfig
    speed_phases: bool = True

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
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._cancel_requested = False
        self.result: RunDone | None = None

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
            models=tuple(m.config for m in self.plan.models),
            settings=self.plan.settings,
            specs=self.plan.documents,
            documents=tuple(self.documents),
            failed_documents=dict(self.failed_documents),
            results=self.store.results,
            phases=self.store.phases,
            tally=self.tally,
        )

    def _emit(self, ev: Event) -> None:
        self.history.append(ev)

    # The run ---------------------------------------------------------------------------------

    async def _main(self) -> None:
        self._started = True
        s = self.plan.settings
        pool = RenderPool(s.render_workers, s.file_limits())
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max(16, s.concurrency * 2)), timeout=None
        )
        cancelled = False
        error: str | None = None
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
                error = f"{type(exc).__name__}: {exc}"
        finally:
            pool.close()
            await client.aclose()
        summary: dict[str, Any] = {}
        code = 1
        try:
            finished = self.finished()
            summary = report.build_summary(finished)
            worst = {(w["doc"], w["page"], w["model"]) for w in summary["worst_pages"]}
            texts = {r.key: r.text or "" async for r in self.store.read_results(worst)}
            report.add_diffs(summary, finished, texts)
            code = max(report.exit_code(summary), 1 if (cancelled or error) else 0)
            await self.store.write_text("summary.json", report.summary_json(summary))
            await self.store.write_text("report.md", report.render_markdown(summary))
        except Exception as exc:  # results.jsonl is intact; the consumer must still hear
            error = error or f"writing the summary failed: {type(exc).__name__}: {exc}"
            code = 1
        else:
            try:
                await asyncio.to_thread(report_html.write_html_report, self.store.dir)
            except Exception as exc:  # report.md and summary.json are written; say what is not
                error = error or f"writing report.html failed: {type(exc).__name__}: {exc}"
        finally:
            await asyncio.get_running_loop().run_in_executor(None, self.store.close)
        self.result = RunDone(summary, code, cancelled=cancelled, error=error)
        self._emit(self.result)

    async def _protocol(self, pool: RenderPool, client: httpx.AsyncClient) -> None:
        plan = self.plan
        self._emit(
            RunStarted(
                str(self.store.dir),
                tuple(m.name for m in plan.models),
                tuple(d.name for d in plan.documents),
            )
        )
        for spec in plan.documents:
            try:
                doc = await pool.inspect(spec)
            except DocumentError as exc:
                self.failed_documents[spec.name] = str(exc)
                self._emit(DocumentFailed(spec.name, str(exc)))
                continue
            self.documents.append(doc)
            await asyncio.to_thread(
                page_files.save_references, self.store.dir, doc.name, doc.references
            )
            await self._score_resumed(doc)
            self._emit(DocumentReady(doc.name, spec.category, doc.pages, bool(doc.references)))
        if not self.documents:
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

    async def _request(
        self, client: httpx.AsyncClient, model: ModelTarget, page: RenderedPage
    ) -> Outcome:
        s = self.plan.settings
        return await ocr_page(client, model, page, retries=s.retries, timeout_s=s.request_timeout_s)

    # Speed phases ----------------------------------------------------------------------------

    async def _speed(self, model: ModelTarget, pool: RenderPool, client: httpx.AsyncClient) -> None:
        s = self.plan.settings
        phases: list[tuple[Phase, int]] = [
            ("cold", 1),
            ("warm", s.warm_runs),
            ("throughput", s.throughput_requests),
        ]
        todo = [(p, n) for p, n in phases if (model.name, p) not in self.store.phases]
        for p, _ in phases:
            rec = self.store.phases.get((model.name, p))
            if rec is not None:
                self._emit(PhaseDone(model.name, p, rec.stats, skipped=True))
        if not todo:
            return
        images = await self._speed_images(model, pool)
        if not images:
            return
        for phase, n in todo:
            self._emit(PhaseStarted(model.name, phase, n))
            conc = s.concurrency if phase == "throughput" else 1
            stats = await self._timed_requests(model, client, images, phase, n, conc)
            await self.store.add_phase(PhaseRecord(model.name, phase, stats))
            self._emit(PhaseDone(model.name, phase, stats))

    async def _speed_images(self, model: ModelTarget, pool: RenderPool) -> list[RenderedPage]:
        target = render_target(model.config)
        want = min(SPEED_IMAGES_MAX, self.plan.render_budget)
        out: list[RenderedPage] = []
        # Photos and scans first: "single-image latency" is about an image, and a whole
        # 200 DPI page costs a CPU engine several times more.
        ordered = sorted(self.documents, key=lambda d: d.kind != "image")
        for doc in ordered:
            for p in doc.pages:
                if len(out) >= want:
                    return out
                with contextlib.suppress(RenderError):
                    out.append(await pool.render(doc, p, target, self.plan.settings.image_format))
        return out

    async def _timed_requests(
        self,
        model: ModelTarget,
        client: httpx.AsyncClient,
        images: list[RenderedPage],
        phase: Phase,
        n: int,
        concurrency: int,
    ) -> dict[str, Any]:
        latencies: list[float] = []
        errors: list[str] = []
        done = 0
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            nonlocal done
            async with sem:
                out = await self._request(client, model, images[i % len(images)])
            if out.ok and out.latency_s is not None:
                latencies.append(out.latency_s)
            else:
                errors.append(out.error or "failed")
            done += 1
            self._emit(PhaseProgress(model.name, phase, done, n))

        start = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            for i in range(n):
                tg.create_task(one(i))
        wall = time.monotonic() - start
        stats: dict[str, Any] = {
            "requests": n,
            "ok": len(latencies),
            "failed": len(errors),
            "first_error": errors[0] if errors else None,
            "wall_s": round(wall, 4),
        }
        if latencies:
            stats["latency_p50_s"] = round(statistics.median(latencies), 4)
            stats["latency_p95_s"] = round(_percentile(latencies, 95), 4)
            stats["latency_mean_s"] = round(statistics.fmean(latencies), 4)
        if phase == "throughput":
            stats["concurrency"] = concurrency
            stats["imgs_per_s"] = round(len(latencies) / wall, 4) if wall > 0 else None
        return stats

    # Documents phase -------------------------------------------------------------------------

    async def _documents_phase(
        self, model: ModelTarget | DocApiTarget, pool: RenderPool, client: httpx.AsyncClient
    ) -> None:
        total = sum(len(d.pages) for d in self.documents)
        self._emit(PhaseStarted(model.name, "documents", total))
        start = time.monotonic()
        ok = failed = 0
        for doc in self.documents:
            if isinstance(model, DocApiTarget):
                o, f = await self._api_document(model, doc, client)
            else:
                o, f = await self._document(model, doc, pool, client)
            ok += o
            failed += f
        elapsed = time.monotonic() - start
        stats = {"pages_ok": ok, "pages_failed": failed, "elapsed_s": round(elapsed, 4)}
        self._emit(PhaseDone(model.name, "documents", stats))

    async def _document(
        self, model: ModelTarget, doc: Document, pool: RenderPool, client: httpx.AsyncClient
    ) -> tuple[int, int]:
        s = self.plan.settings
        target = render_target(model.config)
        keys = {(doc.name, p, model.name) for p in doc.pages}
        done = keys & self.store.results.keys()
        async for prev in self.store.read_results(done):  # texts from disk, in stored order
            self._emit(PageDone(prev, resumed=True))
        todo = [p for p in doc.pages if (doc.name, p, model.name) not in done]
        if not todo:
            return 0, 0
        budget = asyncio.Semaphore(self.plan.render_budget)
        workers = min(s.concurrency, self.plan.render_budget, len(todo))
        queue: asyncio.Queue[tuple[int, asyncio.Task[RenderedPage]] | None] = asyncio.Queue()
        counts = {"ok": 0, "failed": 0}

        async def produce() -> None:
            for p in todo:
                await budget.acquire()
                task = asyncio.create_task(pool.render(doc, p, target, s.image_format))
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
        elapsed = time.monotonic() - start
        partial = len(todo) < len(doc.pages)
        pps = None if partial or elapsed <= 0 else round(counts["ok"] / elapsed, 4)
        self._emit(DocumentDone(model.name, doc.name, counts["ok"], counts["failed"], elapsed, pps))
        await self.store.add_phase(
            PhaseRecord(
                model.name,
                f"document:{doc.name}",
                {"pages": len(todo), "pages_ok": counts["ok"], "elapsed_s": round(elapsed, 4),
                 "pages_per_s": pps, "partial": partial},
            )
        )  # fmt: skip
        return counts["ok"], counts["failed"]

    async def _page(
        self,
        model: ModelTarget,
        doc: Document,
        page: int,
        render: Awaitable[RenderedPage],
        client: httpx.AsyncClient,
        counts: dict[str, int],
    ) -> None:
        self._emit(PageStarted(model.name, doc.name, page))
        try:
            image = await render
        except RenderError as exc:
            out = Outcome(False, None, error=f"render: {exc}")
        else:
            await asyncio.to_thread(
                page_files.save_page_image,
                self.store.dir,
                doc.name,
                page,
                render_target(model.config),
                image,
            )
            out = await self._request(client, model, image)
            del image
        await self._record(model.name, doc, page, out, counts)

    async def _record(
        self, model: str, doc: Document, page: int, out: Outcome, counts: dict[str, int]
    ) -> None:
        """Score, store and announce one page's outcome."""
        ref = doc.references.get(page)
        score = score_page(doc, page, out.text) if out.ok else None
        page_cer = score.strict.cer if score and score.strict else None
        flags = flags_for(out.text, out.finish_reason, ref) if out.ok else []
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
        self, arm: DocApiTarget, doc: Document, client: httpx.AsyncClient
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
        elapsed = time.monotonic() - start
        partial = len(todo) < len(doc.pages)
        pps = None if partial or elapsed <= 0 else round(counts["ok"] / elapsed, 4)
        self._emit(DocumentDone(arm.name, doc.name, counts["ok"], counts["failed"], elapsed, pps))
        await self.store.add_phase(
            PhaseRecord(
                arm.name,
                f"document:{doc.name}",
                {"pages": len(todo), "pages_ok": counts["ok"], "elapsed_s": round(elapsed, 4),
                 "pages_per_s": pps, "partial": partial},
            )
        )  # fmt: skip
        return counts["ok"], counts["failed"]

    async def _score_resumed(self, doc: Document) -> None:
        """Score the pages an earlier run finished (their texts read back from disk) so the
        summary counts them even if this run never reaches their document."""
        keys = {k for k in self.store.results if k[0] == doc.name}
        async for r in self.store.read_results(keys):
            self.tally.add(doc, r)


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: with 10 runs p95 is the slowest)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, -(-len(ordered) * pct // 100) - 1))
    return ordered[int(k)]


def start_run(plan: RunPlan, store: RunStore) -> CompareRun:
    """Start a comparison on the running loop; the caller subscribes to its events."""
    run = CompareRun(plan, store)
    run.start()
    return run
