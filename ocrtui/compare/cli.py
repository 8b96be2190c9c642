"""`ocrtui compare`: arguments to a run plan, model URLs from the Controller, headless output
(or, on a terminal without --headless, the dashboard's comparison screen).

Exit codes: 0 all done; 1 failed pages or documents (or the run was interrupted);
2 usage, config or input error; 3 pod or model server unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from ocrtui.compare import report
from ocrtui.compare.client import ModelTarget
from ocrtui.compare.documents import TEXT_LAYER, DocumentSpec, expand_inputs
from ocrtui.compare.events import (
    DocumentDone,
    DocumentFailed,
    PageDone,
    PageFailed,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunDone,
)
from ocrtui.compare.pages import ALL_PAGES, parse_page_spec
from ocrtui.compare.runner import CompareRun, RunPlan, start_run
from ocrtui.compare.samples import sample_suite_path
from ocrtui.compare.store import RunStore
from ocrtui.compare.suite import load_suite
from ocrtui.config import CompareConfig, Config
from ocrtui.errors import InputError, PodUnreachable

HEALTH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CompareRequest:
    """What to run, resolved from the arguments (and run.json when resuming)."""

    documents: tuple[DocumentSpec, ...]
    models: tuple[str, ...]
    settings: CompareConfig
    run_dir: Path
    resume: bool
    info: dict[str, Any]  # written to run.json; never holds the password


def build_request(config: Config, args: argparse.Namespace) -> CompareRequest:
    """Resolve arguments into a request; every problem is an InputError/ConfigError (exit 2)."""
    saved: dict[str, Any] = {}
    if args.resume:
        run_dir = Path(args.resume).expanduser()
        if args.out and Path(args.out).expanduser() != run_dir:
            raise InputError("give either --out or --resume, not both")
        saved = RunStore.resume_info(run_dir)
    elif args.out:
        run_dir = Path(args.out).expanduser()
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(config.compare.out_dir).expanduser() / stamp

    docs = list(args.docs) if args.docs else []
    suite = args.suite
    cwd = Path.cwd()
    if not docs and not suite and saved:
        docs, suite = list(saved.get("docs") or []), saved.get("suite")
        cwd = Path(saved.get("cwd") or cwd)
    pages_text = args.pages if args.pages is not None else saved.get("pages")
    reference = args.reference if args.reference is not None else saved.get("reference")
    pages = parse_page_spec(pages_text) if pages_text else ALL_PAGES
    if not docs and not suite:
        suite = config.compare.suite or str(sample_suite_path())
    specs: list[DocumentSpec] = []
    if suite:
        specs += load_suite(suite, password=args.password).documents
    if docs:
        specs += expand_inputs(
            docs, pages=pages, reference=reference, password=args.password, base=cwd
        )
    if reference == TEXT_LAYER and suite and not docs:
        raise InputError("--reference text-layer applies to documents given on the command line")
    if not specs:
        raise InputError("nothing to compare: no documents")

    names = args.models.split(",") if args.models else saved.get("models")
    if names:
        names = [n.strip() for n in names if n.strip()]
        for n in names:
            config.model(n)  # ConfigError naming the known models
    else:
        names = [m.name for m in config.ordered_models()]

    update: dict[str, Any] = {}
    concurrency = args.concurrency if args.concurrency is not None else saved.get("concurrency")
    if concurrency is not None:
        if concurrency < 1:
            raise InputError(f"--concurrency must be at least 1, got {concurrency}")
        update["concurrency"] = concurrency
    schedule = args.schedule or saved.get("schedule")
    if schedule:
        update["schedule"] = schedule
    settings = config.compare.model_copy(update=update)
    info = {
        "docs": docs,
        "cwd": str(cwd),  # relative DOC paths are read from here on --resume
        "suite": str(Path(suite).expanduser().resolve()) if suite else None,
        "pages": pages_text,
        "reference": reference,
        "models": names,
        "concurrency": settings.concurrency,
        "schedule": settings.schedule,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return CompareRequest(tuple(specs), tuple(names), settings, run_dir, bool(args.resume), info)


def compare_command(config: Config, args: argparse.Namespace, demo: bool) -> int:
    request = build_request(config, args)
    if not args.headless:
        if sys.stdout.isatty():
            # Imported here: only the dashboard imports Textual, and only when it opens.
            from ocrtui.tui.app import run_comparison_dashboard

            return run_comparison_dashboard(config, request, demo=demo)
        print("ocrtui: stdout is not a terminal; comparing headless", file=sys.stderr)
    return asyncio.run(_with_controller(config, request, demo))


async def _with_controller(config: Config, request: CompareRequest, demo: bool) -> int:
    from ocrtui.control import Controller

    ctl = Controller(config, demo=demo)
    console = Console()
    try:
        await ctl.start()
        if demo:
            await ctl.up(lambda name, step: console.print(f"{name}: {step}"))
        targets = [ModelTarget(config.model(n), await ctl.model_url(n)) for n in request.models]
        return await run_headless(request, targets, console)
    finally:
        await ctl.close()


async def check_reachable(targets: list[ModelTarget]) -> None:
    """Fail fast (exit 3) when a model server does not answer /health."""
    async with httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S) as client:
        for t in targets:
            url = t.url.rstrip("/") + "/health"
            try:
                resp = await client.get(url)
            except httpx.HTTPError as exc:
                raise PodUnreachable(
                    f"model {t.name} at {t.url} is not answering ({type(exc).__name__}); "
                    "is it up? (`ocrtui status`, `ocrtui up`)"
                ) from None
            if resp.status_code != 200:
                raise PodUnreachable(f"model {t.name} at {t.url}: /health says {resp.status_code}")


def open_store(request: CompareRequest) -> RunStore:
    if request.resume:
        return RunStore.resume(request.run_dir)
    return RunStore.create(request.run_dir, request.info)


async def run_headless(
    request: CompareRequest, targets: list[ModelTarget], console: Console | None = None
) -> int:
    console = console or Console()
    await check_reachable(targets)
    store = await asyncio.to_thread(open_store, request)  # --resume rewrites results.jsonl
    plan = RunPlan(request.documents, tuple(targets), request.settings)
    run = start_run(plan, store)
    try:
        await _show(run, console)
    except asyncio.CancelledError:
        run.cancel()
        await run.wait()
        raise
    done = await run.wait()
    _print_summary(done, console)
    return done.exit_code


async def _show(run: CompareRun, console: Console) -> None:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}
    with progress:
        for name in (m.name for m in run.plan.models):
            tasks[name] = progress.add_task(f"{name}: waiting", total=None)
        async for ev in run.subscribe():
            if isinstance(ev, PhaseStarted):
                progress.update(
                    tasks[ev.model],
                    description=f"{ev.model}: {ev.phase}",
                    total=ev.total,
                    completed=0,
                )
            elif isinstance(ev, PhaseProgress):
                progress.update(tasks[ev.model], completed=ev.done)
            elif isinstance(ev, PageDone | PageFailed):
                progress.advance(tasks[ev.model])
                if isinstance(ev, PageFailed):
                    progress.console.print(
                        f"[red]{ev.model}: {ev.doc} p.{ev.page} failed: {ev.reason}[/]"
                    )
            elif isinstance(ev, DocumentFailed):
                progress.console.print(f"[red]{_doc_error(ev.doc, ev.error)}[/]")
            elif isinstance(ev, PhaseDone):
                progress.console.print(_phase_line(ev))
            elif isinstance(ev, DocumentDone):
                speed = "" if ev.pages_per_s is None else f", {ev.pages_per_s:.2f} pages/s"
                progress.console.print(
                    f"{ev.model}: {ev.doc}: {ev.pages_ok} ok, {ev.pages_failed} failed{speed}"
                )
            elif isinstance(ev, RunDone):
                break


def _doc_error(name: str, error: str) -> str:
    # Errors already start with the path, which is the name of a command-line document.
    return error if error.startswith(name) else f"{name}: {error}"


def _phase_line(ev: PhaseDone) -> str:
    st = ev.stats
    pre = f"{ev.model}: {ev.phase}" + (" (from the resumed run)" if ev.skipped else "")
    if ev.phase == "documents":
        return f"{pre}: {st.get('pages_ok')} pages ok, {st.get('pages_failed')} failed"
    parts = []
    if st.get("latency_p50_s") is not None:
        parts.append(f"p50 {st['latency_p50_s']:.2f} s")
    if ev.phase == "warm" and st.get("latency_p95_s") is not None:
        parts.append(f"p95 {st['latency_p95_s']:.2f} s")
    if st.get("imgs_per_s") is not None:
        parts.append(f"{st['imgs_per_s']:.2f} img/s")
    if st.get("failed"):
        parts.append(f"{st['failed']} failed ({st.get('first_error')})")
    return f"{pre}: " + (", ".join(parts) or "no successful request")


def _print_summary(done: RunDone, console: Console) -> None:
    summary = done.summary
    if not summary:
        console.print(f"[red]the run stopped: {done.error}[/]")
        return
    names = list(summary["models"])
    base = report.load_baseline()
    table = Table(title="OCR comparison (CER: lower is better)")
    table.add_column("Dimension")
    for n in names:
        table.add_column(n)
    table.add_column(base["label"], style="dim")
    for label, cells, b in report.comparison_rows(summary):
        table.add_row(label, *cells, b)
    console.print(table)
    for name, d in summary["documents"].items():
        if d["error"]:
            console.print(f"[red]{_doc_error(name, d['error'])}[/]")
    if done.error:
        console.print(f"[red]the run stopped: {done.error}[/]")
    if done.cancelled:
        console.print("[yellow]interrupted; continue with --resume[/]")
    out = summary["run"]["dir"]
    console.print(f"results: {out}/results.jsonl, {out}/summary.json, {out}/report.md")
