"""Starting a comparison from the dashboard and feeding its events into a :class:`RunView`.

The run is started by the compare layer's one start function
(:func:`ocrtui.compare.launch.start_comparison`), exactly as the headless ``ocrtui compare``
starts it; this module only turns its events into the bounded view the comparison screen
shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocrtui.compare import launch as compare_launch
from ocrtui.compare.events import (
    DocumentFailed,
    DocumentReady,
    Event,
    ModelStopped,
    PageDone,
    PageFailed,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunDone,
    RunPaused,
    RunResumed,
    RunStarted,
)
from ocrtui.compare.launch import RunSetup
from ocrtui.compare.runner import CompareRun
from ocrtui.tui.run_view import RunView

if TYPE_CHECKING:
    from ocrtui.tui.app import OcrtuiApp


async def launch(app: OcrtuiApp, setup: RunSetup, view: RunView) -> CompareRun:
    gate = compare_launch.gate_for(setup, app.source, app.config.ui.refresh_s)
    run = await compare_launch.start_comparison(setup, app.source.model_url, gate)
    view.out_dir = str(setup.run_dir)
    return run


async def follow(run: CompareRun, view: RunView) -> None:
    """Apply the run's events to the view until RunDone (history first when rejoining)."""
    async for ev in run.subscribe():
        apply_event(run, view, ev)


def apply_event(run: CompareRun, view: RunView, ev: Event) -> None:
    if isinstance(ev, RunStarted):
        view.out_dir = ev.run_dir
    elif isinstance(ev, DocumentReady):
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
    elif isinstance(ev, PageDone | PageFailed):
        view.add(ev.result)
    elif isinstance(ev, RunPaused):
        view.set_pause(ev.model, ev.reason)
    elif isinstance(ev, RunResumed):
        view.set_pause(ev.model, None)
    elif isinstance(ev, ModelStopped):
        view.notes.append(f"{ev.model} stopped: {ev.reason}")
        view.set_phase(view.phase)
    elif isinstance(ev, RunDone):
        view.finish("cancelled" if ev.cancelled else ev.error)
