"""One way to run a comparison: what a user asked, validated once, resolved, started.

    CompareRequest   what was asked, as given (built by `ocrtui compare`'s arguments and
                     by the dashboard's launcher alike)
    validate_request the one validation: page spec, reference, models, and the settings
                     through the config schema (CompareConfig), so every front end has the
                     schema's limits
    resolve          request -> RunSetup: documents, models, settings, run directory and
                     the run.json inputs (blocking: reads run.json, suites, folders, and
                     generates the sample suite the first time; call it off the loop)
    start_comparison RunSetup + model URLs -> a started CompareRun: the models answer
                     /health (else PodUnreachable, exit 3); each model's max_tokens is
                     fitted to /v1/models' max_model_len (profiles.fit_max_tokens: a
                     capped default is a note, a configured value over it a ConfigError);
                     each arm is recorded (compare/arms.py, from the Controller's probe
                     of the running server when given, with its pod and GPU from
                     ``placement``); the run directory is created or
                     resumed, the run starts with the gate (the link's and the models'
                     state, gate.py); the headless CLI and the dashboard call it
    gate_for         the run's gate over the Controller-like sources of the pods its arms
                     are on (with their restart when the request asked for
                     --auto-restart): one pod's SnapshotGate, or a PodsGate of one per pod

A serve sweep (``serve_sweep``: a file, compare/serve_sweep.py) makes one arm per flag set of
one model; ``start_comparison`` then needs the lifecycle's ``restart`` (the Controller's,
the one `ocrtui restart` uses): a :class:`SweepServer` restarts the model with each arm's
flags before the arm's phases (fitting max_tokens and probing the new server as at a run's
start) and with its configured flags once the run ends, however it ends.

Every problem is one line naming the input: InputError/ConfigError (exit 2).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from ocrtui.compare.arms import Placement, api_arm_record, arm_record
from ocrtui.compare.client import ModelTarget
from ocrtui.compare.docapi import DocApiTarget
from ocrtui.compare.documents import TEXT_LAYER, DocumentSpec, expand_inputs
from ocrtui.compare.gate import PodsGate, RunGate, SnapshotGate, SnapshotSource
from ocrtui.compare.pages import ALL_PAGES, parse_page_spec
from ocrtui.compare.profiles import fit_max_tokens
from ocrtui.compare.results import ServeSweepRecord
from ocrtui.compare.runner import CompareRun, RunPlan, ServedArm, start_run
from ocrtui.compare.sample_suite import sample_suite_path
from ocrtui.compare.serve_sweep import ServeSweep, load_serve_sweep
from ocrtui.compare.store import RunRecord, RunStore, claim_new_run_dir
from ocrtui.compare.suite import load_suite
from ocrtui.compare.variants import Variant, parse_variants
from ocrtui.config import ApiArmConfig, CompareConfig, Config, ModelConfig
from ocrtui.errors import ConfigError, InputError, PodUnreachable
from ocrtui.vllm.client import VllmClient
from ocrtui.vllm.served import Served

HEALTH_TIMEOUT_S = 10.0

# An arm's name (a served model, an API arm) -> its base URL (Controller.model_url).
ModelUrl = Callable[[str], Awaitable[str]]
Arm = ModelConfig | ApiArmConfig  # what a comparison compares: vLLM models and document APIs
# served name -> the probe of its running server (Controller.served), None when unknown
ServedOf = Callable[[str], Awaitable[Served | None]]
Note = Callable[[str], None]  # a warning line for the user (the terminal, a notification)
# Restart a model through the lifecycle (Controller.restart), with these settings instead of
# the configured ones (None: the configured ones).
Restart = Callable[[str, ModelConfig | None], Awaitable[None]]
# served name -> the pod and GPU it runs on (Controller.placement), None when unknown
PlacementOf = Callable[[str], Placement | None]


@dataclass(frozen=True)
class CompareRequest:
    """What a user asked for. None / empty: the config's value (or, with ``resume``, the
    recorded run's)."""

    documents: tuple[str, ...] = ()  # PDFs, images, folders; with no suite: the config's
    # A suite file, olmOCR-bench JSONL or Omni Parse Bench folder (suite.load_suite);
    # neither documents nor suite: the sample suite.
    suite: str | None = None
    pages: str | None = None  # page spec of the documents, e.g. "1-3,7,10-"
    reference: str | None = None  # "text-layer" or None (sidecar files)
    password: str | None = None  # for encrypted PDFs; never written anywhere
    models: tuple[str, ...] = ()  # configured models and [[api_arms]] by name; () all models
    concurrency: int | None = None
    schedule: str | None = None  # "sequential" | "parallel"
    out: str | None = None  # run directory; default compare.out_dir/<timestamp>
    resume: str | None = None  # continue the run in this directory
    auto_restart: bool = False  # restart a model whose server crashes mid-run
    sweep: bool = False  # throughput at compare.sweep's levels too (with resume: as recorded)
    # Degraded copies every page is also sent as (variants.py); () clean only (resume: as
    # recorded).
    variants: tuple[Variant, ...] = ()
    # A serve sweep file: one arm per flag set of one model (resume: as recorded).
    serve_sweep: str | None = None


@dataclass(frozen=True)
class RunSetup:
    """A request resolved: what the run will send and where it writes."""

    request: CompareRequest
    documents: tuple[DocumentSpec, ...]
    models: tuple[Arm, ...]
    settings: CompareConfig
    run_dir: Path
    info: RunRecord  # written to run.json; never holds the password
    label: str  # how a screen names the run: its documents, its suite, or "sample suite"
    concurrencies: tuple[int, ...] = ()  # throughput levels; empty: settings.concurrency
    # A benchmark suite's tests ocrtui cannot run (suite.Suite.skipped): reason -> count.
    skipped_tests: Mapping[str, int] = field(default_factory=dict)
    variants: tuple[Variant, ...] = ()  # the degraded copies of every page (variants.py)
    serve_sweep: ServeSweep | None = None  # models is then the swept model alone
    # run_dir is [compare] out_dir/<the second it was resolved>: the store takes the first
    # free name from it (store.claim_new_run_dir), as two runs may start in one second.
    run_dir_named_by_clock: bool = False


def validate_request(config: Config, request: CompareRequest) -> CompareConfig:
    """The settings the request runs with; InputError/ConfigError naming the problem."""
    if request.out and request.resume and Path(request.out).expanduser() != _resume_dir(request):
        raise InputError("give either --out or --resume, not both")
    if request.pages is not None:
        parse_page_spec(request.pages)
    if request.reference not in (None, TEXT_LAYER):
        raise InputError(f"reference {request.reference!r}: the only choice is {TEXT_LAYER}")
    for name in request.models:
        arm(config, name)  # ConfigError naming the known ones
    if request.serve_sweep:
        # Each of these would pick other arms or serve other flags than the sweep's.
        for given, flag in ((request.resume, "--resume (it reads the sweep from run.json)"),
                            (request.models, "--models"),
                            (request.auto_restart, "--auto-restart")):  # fmt: skip
            if given:
                raise InputError(f"--serve-sweep runs its own arms: give it without {flag}")
    return _settings(config, request.concurrency, request.schedule)


def arm(config: Config, name: str) -> Arm:
    """A model (a routed one: measured through its router) or an API arm by name (names
    are unique across both: config.py)."""
    for m in (*config.models, *config.routed):
        if m.name == name:
            return m
    for a in config.api_arms:
        if a.name == name:
            return a
    known = ", ".join([m.name for m in config.models] + [a.name for a in config.api_arms])
    raise ConfigError(f"no model or API arm named {name!r} (configured: {known})")


def _settings(config: Config, concurrency: int | None, schedule: str | None) -> CompareConfig:
    """The config's [compare] with the asked overrides, validated by the schema itself."""
    update: dict[str, Any] = {}
    if concurrency is not None:
        update["concurrency"] = concurrency
    if schedule is not None:
        update["schedule"] = schedule
    if not update:
        return config.compare
    try:
        return CompareConfig.model_validate({**config.compare.model_dump(), **update})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Input ")
        raise InputError(f"{key}: {msg}, got {err['input']!r}") from None


def _resume_dir(request: CompareRequest) -> Path | None:
    return Path(request.resume).expanduser() if request.resume else None


def resolve(config: Config, request: CompareRequest) -> RunSetup:
    """Resolve a request (and, with ``resume``, its run.json). Blocking: call off the loop."""
    validate_request(config, request)
    saved: RunRecord | None = None
    resume_dir = _resume_dir(request)
    if resume_dir is not None:
        run_dir = resume_dir
        saved = RunStore.resume_info(run_dir)
    elif request.out:
        run_dir = Path(request.out).expanduser()
    else:
        run_dir = Path(config.compare.out_dir).expanduser() / time.strftime("%Y%m%d-%H%M%S")

    docs = list(request.documents)
    suite = request.suite
    cwd = Path.cwd()
    if not docs and not suite and saved is not None:
        docs, suite = list(saved.docs), saved.suite
        cwd = Path(saved.cwd or cwd)
    was = saved or RunRecord()
    pages_text = request.pages if request.pages is not None else was.pages
    reference = request.reference if request.reference is not None else was.reference
    pages = parse_page_spec(pages_text) if pages_text else ALL_PAGES
    label = " ".join(docs) or (Path(suite).stem if suite else "")
    if not docs and not suite:
        suite = config.compare.suite
        label = Path(suite).stem if suite else "sample suite"
        suite = suite or str(sample_suite_path())
    specs: list[DocumentSpec] = []
    skipped: dict[str, int] = {}
    if suite:
        loaded = load_suite(suite, password=request.password)
        specs += loaded.documents
        skipped = dict(loaded.skipped)
    if docs:
        specs += expand_inputs(
            docs, pages=pages, reference=reference, password=request.password, base=cwd
        )
    if reference == TEXT_LAYER and suite and not docs:
        raise InputError("--reference text-layer applies to documents given on the command line")
    if not specs:
        raise InputError("nothing to compare: no documents")

    sweep_file = request.serve_sweep or was.serve_sweep
    serve_sweep = load_serve_sweep(sweep_file, config) if sweep_file else None
    names = request.models or tuple(n.strip() for n in was.models if n.strip())
    models: list[Arm] = (
        [serve_sweep.model]
        if serve_sweep is not None
        else [arm(config, n) for n in names] or list(config.ordered_models())
    )
    settings = _settings(
        config,
        request.concurrency if request.concurrency is not None else was.concurrency,
        request.schedule or was.schedule,
    )
    sweep = request.sweep or was.sweep
    variants = request.variants or (parse_variants(",".join(was.variants)) if was.variants else ())
    levels = tuple(sorted({settings.concurrency, *settings.sweep})) if sweep else ()
    if serve_sweep is not None and serve_sweep.concurrencies:
        # With the run's own level, as --sweep: the comparison table's throughput row.
        levels = tuple(sorted({settings.concurrency, *serve_sweep.concurrencies}))
    info = RunRecord(
        docs=tuple(docs),
        cwd=str(cwd),  # relative DOC paths are read from here on --resume
        suite=str(Path(suite).expanduser().resolve()) if suite else None,
        pages=pages_text,
        reference=reference,
        models=tuple(a.name for a in serve_sweep.arms)
        if serve_sweep
        else tuple(m.name for m in models),
        concurrency=settings.concurrency,
        schedule=settings.schedule,
        sweep=sweep,
        suite_skipped=dict(skipped),
        variants=variants,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        serve_sweep=str(Path(sweep_file).expanduser().resolve()) if sweep_file else None,
    )
    return RunSetup(
        request,
        tuple(specs),
        tuple(models),
        settings,
        run_dir,
        info,
        label,
        levels,
        skipped_tests=skipped,
        variants=variants,
        serve_sweep=serve_sweep,
        run_dir_named_by_clock=resume_dir is None and not request.out,
    )


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


def open_store(setup: RunSetup) -> RunStore:
    """Create the run directory, or resume it (blocking: rewrites results.jsonl)."""
    if setup.request.resume:
        return RunStore.resume(setup.run_dir)
    if setup.run_dir_named_by_clock:
        return RunStore.create(claim_new_run_dir(setup.run_dir), setup.info)
    return RunStore.create(setup.run_dir, setup.info)


class RestartingSource(SnapshotSource, Protocol):
    async def restart(self, name: str) -> None: ...


def gate_for(setup: RunSetup, sources: Sequence[RestartingSource], refresh_s: float) -> RunGate:
    """The run's gate over the Controllers' (or the dashboard sources') snapshots: each
    source gates the models its snapshot lists; one source, its SnapshotGate alone."""
    names = [m.name for m in setup.models if isinstance(m, ModelConfig)]
    gates = []
    for source in sources:
        here = {m.name for m in source.snapshot.models}
        models = tuple(n for n in names if n in here)
        if not models and len(sources) > 1:
            continue
        gate = SnapshotGate(
            source,
            models,
            refresh_s=refresh_s,
            restart=source.restart if setup.request.auto_restart else None,
        )
        gates.append((source.snapshot.pod.label, gate, models))
    if len(gates) == 1:
        return gates[0][1]
    return PodsGate(gates)


async def fit_targets(targets: list[ModelTarget], note: Note) -> list[ModelTarget]:
    """Each target with max_tokens fitted to its server's max_model_len (/v1/models), which
    it keeps (pages are fitted to it before they are sent, compare/page_fit.py);
    ConfigError when a configured max_tokens is over it. A server whose /v1/models does
    not answer keeps its config (its requests will say what is wrong)."""
    out = []
    for t in targets:
        client = VllmClient(t.url, api_key=t.config.api_key(), timeout=HEALTH_TIMEOUT_S)
        try:
            cards = await client.models()
        except (httpx.HTTPError, ValueError):
            cards = []
        finally:
            await client.aclose()
        served_len = next((c.max_model_len for c in cards if c.id == t.name), None)
        config, warning = fit_max_tokens(t.config, served_len)
        if warning:
            note(f"warning: {warning}")
        out.append(replace(t, config=config, max_model_len=served_len))
    return out


@dataclass(frozen=True)
class SweepServer:
    """A serve sweep's arms served in turn (runner.ArmServer), through the lifecycle."""

    sweep: ServeSweepRecord
    restart: Restart
    served: ServedOf
    settings: CompareConfig
    note: Note

    async def serve(self, target: ModelTarget) -> ServedArm:
        name = self.sweep.model
        self.note(f"{target.name}: restarting {name} with this flag set")
        await self.restart(name, target.config)
        fitted = (await fit_targets([target], self.note))[0]
        return ServedArm(fitted, arm_record(fitted.config, self.settings, await self.served(name)))

    async def restore(self) -> None:
        self.note(f"{self.sweep.model}: restarting with its configured flags")
        await self.restart(self.sweep.model, None)


async def start_comparison(
    setup: RunSetup,
    model_url: ModelUrl,
    gate: RunGate | None = None,
    *,
    served: ServedOf | None = None,
    note: Note | None = None,
    restart: Restart | None = None,
    placement: PlacementOf | None = None,
) -> CompareRun:
    """Start the run on the running loop; the caller subscribes to its events. The run
    closes the gate when it ends (and this, when no run starts). ``placement`` names each
    arm's pod and GPU in its record; a serve sweep needs ``restart`` and ``served``."""
    if setup.serve_sweep is not None:
        return await _start_serve_sweep(setup, model_url, gate, served, note, restart)
    try:
        targets: list[ModelTarget | DocApiTarget] = [
            ModelTarget(m, await model_url(m.name))
            if isinstance(m, ModelConfig)
            else DocApiTarget(m, await model_url(m.name))
            for m in setup.models
        ]
        # API arms have no /health: an arm that does not answer fails its pages with the reason.
        models = [t for t in targets if isinstance(t, ModelTarget)]
        await check_reachable(models)
        fitted = iter(await fit_targets(models, note or (lambda _line: None)))
        targets = [next(fitted) if isinstance(t, ModelTarget) else t for t in targets]
        arms = [
            arm_record(
                t.config,
                setup.settings,
                await served(t.name) if served else None,
                placement(t.name) if placement else None,
            )
            if isinstance(t, ModelTarget)
            else api_arm_record(t.config)
            for t in targets
        ]
        store = await asyncio.to_thread(open_store, setup)
    except BaseException:
        if gate is not None:
            await gate.close()
        raise
    plan = RunPlan(
        setup.documents,
        tuple(targets),
        setup.settings,
        gate=gate,
        concurrencies=setup.concurrencies,
        arms=tuple(arms),
        variants=setup.variants,
    )
    return start_run(plan, store)


async def _start_serve_sweep(
    setup: RunSetup,
    model_url: ModelUrl,
    gate: RunGate | None,
    served: ServedOf | None,
    note: Note | None,
    restart: Restart | None,
) -> CompareRun:
    """A serve sweep's run: its arms' servers are started by the run (SweepServer), so no
    /health check here; the arms' records are made as each server comes up."""
    sweep = setup.serve_sweep
    assert sweep is not None
    try:
        if restart is None or served is None:
            raise InputError("--serve-sweep restarts the model: it needs the pod (ocrtui compare)")
        url = await model_url(sweep.model.name)
        targets = tuple(ModelTarget(a.config, url, arm=a.name) for a in sweep.arms)
        store = await asyncio.to_thread(open_store, setup)
    except BaseException:
        if gate is not None:
            await gate.close()
        raise
    server = SweepServer(
        sweep.record(), restart, served, setup.settings, note or (lambda _line: None)
    )
    plan = RunPlan(
        setup.documents,
        targets,
        setup.settings,
        gate=gate,
        concurrencies=setup.concurrencies,
        arms=tuple(arm_record(t.config, setup.settings, None) for t in targets),
        variants=setup.variants,
        server=server,
    )
    return start_run(plan, store)
