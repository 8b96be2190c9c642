"""Starting a comparison from the dashboard and feeding its events into a :class:`RunView`.

The run itself is the compare layer's (``ocrtui.compare.runner``), built exactly as the
headless ``ocrtui compare`` builds it; this module only turns the launcher's choices into
its arguments and its events into the bounded view the comparison screen shows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from multiprocessing import resource_tracker
from typing import TYPE_CHECKING

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


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker with the real stderr.

    While the app runs, Textual's stand-in sys.stderr reports fileno() == -1, and the
    tracker (started on first use by the render pool) hands stderr's fd to its child:
    spawning fails with "bad value(s) in fds_to_keep". Started once here, it is reused.
    """
    captured, sys.stderr = sys.stderr, sys.__stderr__
    try:
        resource_tracker.ensure_running()
    finally:
        sys.stderr = captured


async def launch(app: OcrtuiApp, request: CompareRequest, view: RunView) -> CompareRun:
    # Resolving documents reads files (and generates the sample suite the first time).
    req = await asyncio.to_thread(build_request, app.config, request_args(request))
    targets = [ModelTarget(app.config.model(n), await app.source.model_url(n)) for n in req.models]
    await check_reachable(targets)
    store = await asyncio.to_thread(open_store, req)
    _start_resource_tracker()
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
                text=ev.text,
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
