"""Starting a comparison from the dashboard and feeding its events into a :class:`RunView`.

The run itself is the compare layer's (``ocrtui.compare.runner``), built exactly as the
headless ``ocrtui compare`` builds it; this module only turns the launcher's choices into
its arguments (``ocrtui compare`` on a terminal hands over the request it resolved) and its
events into the bounded view the comparison screen shows.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from ocrtui.compare.cli import CompareRequest as ResolvedRequest
from ocrtui.compare.cli import build_request, check_reachable, open_store
from ocrtui.compare.client import ModelTarget
from ocrtui.compare.events import (
    DocumentFailed,
    DocumentReady,
    Event,
    PageDone,
    PageFailed,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunDone,
    RunStarted,
)
from ocrtui.compare.runner import CompareRun, RunPlan, start_run
from ocrtui.compare.store import PageResult
from ocrtui.tui.run_view import RunView
from ocrtui.tui.screens.dialogs import CompareRequest

if TYPE_CHECKING:
    from ocrtui.tui.app import OcrtuiApp


def request_args(request: CompareRequest) -> argparse.Namespace:
    """The launcher's choices as the `ocrtui compare` arguments they stand for."""
    return argparse.Namespace(
        docs=list(request.documents),
        suite=None,
        pages=request.pages,
        reference=None,
        password=None,
        out=None,
        resume=None,
        models=None,
        concurrency=request.concurrency,
        schedule=request.schedule,
    )


async def resolve(app: OcrtuiApp, request: CompareRequest) -> ResolvedRequest:
    # Resolving documents reads files (and generates the sample suite the first time).
    return await asyncio.to_thread(build_request, app.config, request_args(request))


async def launch(app: OcrtuiApp, req: ResolvedRequest, view: RunView) -> CompareRun:
    targets = [ModelTarget(app.config.model(n), await app.source.model_url(n)) for n in req.models]
    await check_reachable(targets)
    store = await asyncio.to_thread(open_store, req)
    run = start_run(RunPlan(req.documents, tuple(targets), req.settings), store)
    view.out_dir = str(req.run_dir)
    return run


async def follow(run: CompareRun, view: RunView) -> None:
    """Apply the run's events to the view until RunDone (history first when rejoining)."""
    categories: dict[str, str] = {}
    async for ev in run.subscribe():
        apply_event(run, view, ev, categories)


def apply_event(run: CompareRun, view: RunView, ev: Event, categories: dict[str, str]) -> None:
    if isinstance(ev, RunStarted):
        view.out_dir = ev.run_dir
    elif isinstance(ev, DocumentReady):
        categories[ev.doc] = ev.category
        view.expected_pages = (view.expected_pages or 0) + len(ev.pages)
        doc = next((d for d in run.documents if d.name == ev.doc), None)
        if doc is not None:
            for page, text in doc.references.items():
                view.set_reference(ev.doc, page, text)
    elif isinstance(ev, DocumentFailed):
        view.notes.append(f"{ev.doc}: {ev.error}")
        view.set_phase(view.phase)
    elif isinstance(ev, PhaseStarted):
        view.set_phase(f"{ev.model} {ev.phase}")
    elif isinstance(ev, PhaseProgress):
        view.set_phase(f"{ev.model} {ev.phase} {ev.done}/{ev.total}")
    elif isinstance(ev, PhaseDone) and ev.phase != "documents":
        view.speed[(ev.model, ev.phase)] = ev.stats
    elif isinstance(ev, PageDone):
        view.add(
            PageResult(
                doc=ev.doc,
                page=ev.page,
                model=ev.model,
                ok=True,
                error=None,
                latency_s=ev.latency_s,
                prompt_tokens=ev.prompt_tokens,
                completion_tokens=ev.completion_tokens,
                finish_reason=ev.finish_reason,
                text=ev.text or "",  # None: a replayed page older than the view's texts
                cer=ev.cer,
                category=categories.get(ev.doc, "other"),
                flags=list(ev.flags),
            )
        )
    elif isinstance(ev, PageFailed):
        view.add(
            PageResult(
                doc=ev.doc,
                page=ev.page,
                model=ev.model,
                ok=False,
                error=ev.reason,
                latency_s=None,
                prompt_tokens=None,
                completion_tokens=None,
                finish_reason=None,
                text="",
                cer=None,
                category=categories.get(ev.doc, "other"),
                flags=[],
            )
        )
    elif isinstance(ev, RunDone):
        view.finish("cancelled" if ev.cancelled else ev.error)
