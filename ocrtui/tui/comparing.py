"""Starting a comparison from the dashboard and feeding its events into a :class:`RunView`.

The run is started by the compare layer's one start function
(:func:`ocrtui.compare.launch.start_comparison`), exactly as the headless ``ocrtui compare``
starts it; this module only turns its events into the bounded view the comparison screen
shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from ocrtui.compare import launch as compare_launch
from ocrtui.compare.events import (
    DocumentFailed,
    DocumentReady,
    Event,
    ModelStopped,
    PageDelta,
    PageDone,
    PageFailed,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunDone,
    RunPaused,
    RunResumed,
    RunStarted,
    phase_key,
)
from ocrtui.compare.launch import RunSetup
from ocrtui.compare.progress import ArmTally
from ocrtui.compare.results import PhaseStats
from ocrtui.compare.runner import CompareRun
from ocrtui.export import MetricsExporter
from ocrtui.tui.run_view import RunView
from ocrtui.tui.widgets.format import visible
from ocrtui.vllm.client import VllmClient
from ocrtui.vllm.served import Served

if TYPE_CHECKING:
    from ocrtui.tui.app import OcrtuiApp


VERSION_TIMEOUT_S = 3.0


async def launch(app: OcrtuiApp, setup: RunSetup, view: RunView) -> CompareRun:
    """The run over the pods of its arms: each arm's URL, probe, pod and GPU from its pod's
    source, and a pod's outage pausing only that pod's arms (``gate_for``)."""
    pods = {app.pod_of(m.name).name: app.pod_of(m.name).source for m in setup.models}
    gate = compare_launch.gate_for(setup, list(pods.values()), app.config.ui.refresh_s)

    async def model_url(name: str) -> str:
        return await app.pod_of(name).source.model_url(name)

    async def served(name: str) -> Served | None:
        return await app.pod_of(name).source.served(name)

    run = await compare_launch.start_comparison(
        setup,
        model_url,
        gate,
        served=served,
        note=lambda line: app.notify(visible(line), severity="warning", timeout=15, markup=False),
        placement=lambda name: app.pod_of(name).source.placement(name),
    )
    view.out_dir = str(setup.run_dir)
    return run


async def probe_versions(app: OcrtuiApp, view: RunView) -> None:
    """Ask each model server's /version (no key needed) for the header; "?" stays otherwise."""
    if view.facts is None:
        return
    for name in view.models:
        try:
            url = await app.pod_of(name).source.model_url(name)
            client = VllmClient(url, timeout=VERSION_TIMEOUT_S)
        except Exception:  # no URL for it (any reason): the header says "vLLM ?"
            continue
        try:
            version = await client.version()
        except httpx.HTTPError:
            version = None
        finally:
            await client.aclose()
        if version:
            view.facts.vllm[name] = version
            view.set_phase(view.phase)  # repaint the screen


async def follow(run: CompareRun, view: RunView, metrics: MetricsExporter | None = None) -> None:
    """Apply the run's events to the view until RunDone (history first when rejoining), and
    each arm's progress to the metrics endpoint's comparison series."""
    tally = ArmTally()
    async for ev in run.subscribe():
        apply_event(run, view, ev)
        if metrics is not None and (arm := tally.apply(ev)) is not None:
            metrics.arm_progress(arm)


def apply_event(run: CompareRun, view: RunView, ev: Event) -> None:
    if isinstance(ev, RunStarted):
        view.out_dir = ev.run_dir
        view.arms = dict(zip(ev.models, ev.arms, strict=False))
        view.set_phase(view.phase)
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
        view.set_phase(f"{ev.model} {phase_key(ev.phase, ev.concurrency)}")
    elif isinstance(ev, PhaseProgress):
        view.set_phase(f"{ev.model} {phase_key(ev.phase, ev.concurrency)} {ev.done}/{ev.total}")
    elif isinstance(ev, PhaseDone) and isinstance(ev.stats, PhaseStats):  # a speed phase
        # The run's own concurrency is the view's "throughput"; sweep levels keep their name.
        main = ev.concurrency in (None, run.plan.settings.concurrency)
        view.speed[(ev.model, ev.phase if main else phase_key(ev.phase, ev.concurrency))] = ev.stats
        if ev.measures is not None:
            view.measures[(ev.model, phase_key(ev.phase, ev.concurrency))] = ev.measures
    elif isinstance(ev, PhaseDone) and ev.measures is not None:  # the documents phase
        view.measures[(ev.model, ev.phase)] = ev.measures
    elif isinstance(ev, PageDelta):
        view.add_delta(ev.model, ev.doc, ev.page, ev.text)
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
