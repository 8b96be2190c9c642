"""`ocrtui compare`: arguments -> CompareRequest -> RunSetup -> launch.start_comparison, and
the progress on the terminal (or, on a terminal without --headless, the dashboard's
comparison screen).

Exit codes: 0 all done; 1 failed pages or documents; 2 usage, config or input error;
3 pod or model server unreachable (before the run, for longer than outage_budget_s during
it, or a model refusing the API key); 130 interrupted (SIGINT). Whenever pages are left,
the last line says how to continue (--resume).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from ocrtui.compare import launch, report
from ocrtui.compare.events import (
    DocumentDone,
    DocumentFailed,
    ModelStopped,
    PageDone,
    PageFailed,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunDone,
    RunPaused,
    RunResumed,
    phase_key,
)
from ocrtui.compare.gate import RunGate
from ocrtui.compare.launch import (
    CompareRequest,
    ModelUrl,
    PlacementOf,
    Restart,
    RunSetup,
    ServedOf,
)
from ocrtui.compare.progress import ArmProgress, ArmTally
from ocrtui.compare.results import DocumentStats
from ocrtui.compare.runner import CompareRun
from ocrtui.compare.variants import parse_variants
from ocrtui.config import Fleet, ModelConfig

OnProgress = Callable[[ArmProgress], None]


def request_from_args(args: argparse.Namespace) -> CompareRequest:
    """The `ocrtui compare` arguments as the request they stand for."""
    models = tuple(n.strip() for n in args.models.split(",") if n.strip()) if args.models else ()
    return CompareRequest(
        documents=tuple(args.docs or ()),
        suite=args.suite,
        pages=args.pages,
        reference=args.reference,
        password=args.password,
        models=models,
        concurrency=args.concurrency,
        schedule=args.schedule,
        out=args.out,
        resume=args.resume,
        auto_restart=args.auto_restart,
        sweep=bool(getattr(args, "sweep", False)),
        variants=parse_variants(v) if (v := getattr(args, "variants", None)) else (),
        serve_sweep=getattr(args, "serve_sweep", None),
    )


def compare_command(fleet: Fleet, args: argparse.Namespace, demo: bool) -> int:
    """The arms may be on different pods (``[[pods]]``): each pod of an arm is connected,
    and one pod's outage pauses only its arms (``launch.gate_for``)."""
    setup = launch.resolve(fleet.arms_config(), request_from_args(args))
    if setup.skipped_tests:
        reasons = ", ".join(f"{why}: {n}" for why, n in setup.skipped_tests.items())
        print(
            f"ocrtui: {setup.label}: tests ocrtui cannot run left out ({reasons})", file=sys.stderr
        )
    if setup.serve_sweep is not None and not args.headless:
        # The dashboard's comparison screen shows arms side by side; a sweep runs them in turn.
        print("ocrtui: --serve-sweep runs headless", file=sys.stderr)
    elif not args.headless:
        if sys.stdout.isatty():
            # Imported here: only the dashboard imports Textual, and only when it opens.
            from ocrtui.tui.app import run_comparison_dashboard

            return run_comparison_dashboard(fleet, setup, demo=demo)
        print("ocrtui: stdout is not a terminal; comparing headless", file=sys.stderr)
    return asyncio.run(_with_controller(fleet.of(m.name for m in setup.models), setup, demo))


async def _with_controller(fleet: Fleet, setup: RunSetup, demo: bool) -> int:
    """The run over the pods of its arms (``fleet``), each pod its own Controller."""
    from ocrtui.control import FleetController
    from ocrtui.export import MetricsExporter

    ctl = FleetController(fleet, demo=demo)
    console = Console()
    # [export] listen (a section every pod shares): every pod's series and this run's arms,
    # while the run goes on.
    exporter = MetricsExporter(list(ctl.controllers.values()))
    if fleet.pods[0].export.address is not None:
        exporter.serve(fleet.pods[0].export.address)
    try:
        failed = await ctl.start()
        if failed:
            raise next(iter(failed.values()))  # every arm's pod is needed
        pods = list(ctl.controllers.values())
        if demo:
            await asyncio.gather(
                *(c.up(lambda n, step: say(console, f"{n}: {step}")) for c in pods)
            )
        gate = launch.gate_for(setup, pods, fleet.pods[0].ui.refresh_s)  # the run closes it

        async def restart(name: str, serve: ModelConfig | None) -> None:
            await ctl.restart(name, lambda n, step: say(console, f"{n}: {step}"), serve=serve)

        return await run_headless(
            setup,
            ctl.model_url,
            console,
            gate,
            ctl.served,
            restart,
            on_progress=exporter.arm_progress,
            placement=ctl.placement,
        )
    finally:
        await exporter.close()
        await ctl.close()


EXIT_INTERRUPTED = 130  # the shell's code for SIGINT


async def run_headless(
    setup: RunSetup,
    model_url: ModelUrl,
    console: Console | None = None,
    gate: RunGate | None = None,
    served: ServedOf | None = None,
    restart: Restart | None = None,
    *,
    on_progress: OnProgress | None = None,
    placement: PlacementOf | None = None,
) -> int:
    """Run the comparison, its progress on the console; ``on_progress`` gets each arm's
    progress as it changes (the metrics endpoint's ``MetricsExporter.arm_progress``)."""
    out = console or Console()
    run = await launch.start_comparison(
        setup,
        model_url,
        gate,
        served=served,
        note=lambda line: say(out, line, "yellow"),
        restart=restart,
        placement=placement,
    )
    try:
        await _show(run, out, on_progress)
    except asyncio.CancelledError:
        # Ctrl-C (asyncio.run cancels this task): the run writes its summary, we say how to
        # go on, and return instead of re-raising so the exit status is ours.
        run.cancel()
        _print_summary(await run.wait(), out)
        return EXIT_INTERRUPTED
    done = await run.wait()
    _print_summary(done, out)
    return done.exit_code


async def _show(run: CompareRun, console: Console, on_progress: OnProgress | None) -> None:
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}
    tally = ArmTally()
    with progress:
        for name in (m.name for m in run.plan.models):
            tasks[name] = progress.add_task(f"{name}: waiting", total=None)
        async for ev in run.subscribe():
            if on_progress is not None and (arm := tally.apply(ev)) is not None:
                on_progress(arm)
            if isinstance(ev, PhaseStarted):
                progress.update(
                    tasks[ev.model],
                    description=f"{ev.model}: {phase_key(ev.phase, ev.concurrency)}",
                    total=ev.total,
                    completed=0,
                )
            elif isinstance(ev, PhaseProgress):
                progress.update(tasks[ev.model], completed=ev.done)
            elif isinstance(ev, PageDone | PageFailed):
                progress.advance(tasks[ev.model])
                if isinstance(ev, PageFailed):
                    say(
                        progress.console,
                        f"{ev.model}: {ev.doc} p.{ev.page} failed: {ev.reason}",
                        "red",
                    )
            elif isinstance(ev, RunPaused):
                who = ev.model or "all models"
                say(progress.console, f"{who}: paused: {ev.reason}", "yellow")
            elif isinstance(ev, RunResumed):
                who = ev.model or "all models"
                say(progress.console, f"{who}: resumed after {ev.paused_s:.1f} s")
            elif isinstance(ev, ModelStopped):
                say(progress.console, f"{ev.model}: stopped: {ev.reason}", "red")
            elif isinstance(ev, DocumentFailed):
                say(progress.console, _doc_error(ev.doc, ev.error), "red")
            elif isinstance(ev, PhaseDone):
                say(progress.console, _phase_line(ev))
            elif isinstance(ev, DocumentDone):
                speed = "" if ev.pages_per_s is None else f", {ev.pages_per_s:.2f} pages/s"
                say(
                    progress.console,
                    f"{ev.model}: {ev.doc}: {ev.pages_ok} ok, {ev.pages_failed} failed{speed}",
                )
            elif isinstance(ev, RunDone):
                break


def say(console: Console, line: str, style: str | None = None) -> None:
    """One line as it is: names, errors and argv are never read as Rich markup (an arm
    named ``glm[mtp=3]`` would lose its flags, a reason with ``[/]`` would raise)."""
    console.print(line, style=style, markup=False, highlight=False)


def _doc_error(name: str, error: str) -> str:
    # Errors already start with the path, which is the name of a command-line document.
    return error if error.startswith(name) else f"{name}: {error}"


def _phase_line(ev: PhaseDone) -> str:
    st = ev.stats
    pre = f"{ev.model}: {phase_key(ev.phase, ev.concurrency)}"
    pre += " (from the resumed run)" if ev.skipped else ""
    streamed = _measures_text(ev)
    if isinstance(st, DocumentStats):
        return f"{pre}: {st.pages_ok} pages ok, {st.pages_failed} failed{streamed}"
    parts = []
    if st.latency_p50_s is not None:
        parts.append(f"p50 {st.latency_p50_s:.2f} s")
    if ev.phase != "cold" and st.latency_p95_s is not None:
        parts.append(f"p95 {st.latency_p95_s:.2f} s")
    if st.images_per_s is not None:
        parts.append(f"{st.images_per_s:.2f} img/s")
    if st.failed:
        parts.append(f"{st.failed} failed ({st.first_error})")
    return f"{pre}: " + (", ".join(parts) or "no successful request") + streamed


def _measures_text(ev: PhaseDone) -> str:
    """`` · TTFT p50 120 ms, TPOT p50 8 ms, accepted 72%``: what the phase's stream and
    server measured (summary.json has the rest)."""
    m = ev.measures
    if m is None:
        return ""
    bits = [f"{name.upper()} p50 {v:.0f} ms" for name in ("ttft", "tpot")
            if (v := m.stream_ms(name, "median")) is not None]  # fmt: skip
    if (acc := m.spec_decode_acceptance) is not None:
        bits.append(f"accepted {acc:.0%}")
    return " · " + ", ".join(bits) if bits else ""


def _print_summary(done: RunDone, console: Console) -> None:
    summary = done.summary
    if summary is None:
        say(console, f"the run stopped: {done.error}", "red")
        return
    base = report.load_baseline()
    table = Table(title="OCR comparison (CER: lower is better)")
    table.add_column("Dimension")
    for label in report.arm_labels(summary):
        table.add_column(Text(label))
    table.add_column(base.label, style="dim")
    for label, cells, b in report.comparison_rows(summary):
        table.add_row(*(Text(c) for c in (label, *cells, b)))
    console.print(table)
    for name, d in summary.documents.items():
        if d.error:
            say(console, _doc_error(name, d.error), "red")
    for name, m in summary.models.items():
        if m.error:
            say(console, f"{name}: {m.error}", "red")
    if done.error:
        say(console, f"the run stopped: {done.error}", "red")
    out = summary.run.dir
    say(console, f"results: {out}/results.jsonl, {out}/summary.json, {out}/report.md")
    if done.cancelled or done.error or any(m.error for m in summary.models.values()):
        note = "interrupted; " if done.cancelled else ""
        say(console, f"{note}continue with: ocrtui compare --resume {out}", "yellow")
