"""The comparison engine: documents in, both models streamed, scored results out.

Shared by the dashboard and the headless CLI: :func:`ocrtui.compare.launch.start_comparison`
returns a :class:`~ocrtui.compare.runner.CompareRun` whose typed events either can consume.

Modules: `docapi` (arms that are document APIs, `[[api_arms]]`:
`ocr_document_pages(DocApiTarget(arm, url), client, document, pages) -> [PageText | PageError]`,
`arm_url(arm, config, pod)`; the runner's documents phase sends an API arm's documents through
it), `pages` (page specs), `documents`
(DocumentSpec → inspected Document; per-document
`DocumentError`), `suite` (suite files: TOML, or a benchmark's through `bench_suites`;
`ConfigError` naming file/key/problem),
`sample_suite` (the generated sample suite, cached per version), `render` (RenderPool: a
forkserver process pool for PDFium/Pillow, replaced when a worker dies, the calls it took
down retried alone in a one-worker quarantine pool; workers end with the run through
`lifeline.die_with` (a pidfd); RenderTarget per profile; it starts
multiprocessing's resource tracker with the real stderr, so a caller whose `sys.stderr`
has no fd, like a Textual app, is safe), `profiles` (request
payload, prompt, headers per `ModelConfig.profile`, from `published.py`; `fit_max_tokens`
against the server's max_model_len), `page_fit` (`fit_rendered`: each rendered page
resized to fit its server or refused, before it is sent, from `vllm/image_tokens.py`;
`check_prompt_tokens(results)`: predictions against the servers' counts), `client` (one
chat request over aiohttp, `vllm bench serve`'s client, through the run's one
`open_session()` that also carries the API arms' uploads and the `/metrics` scrapes;
streamed by default
with `vllm bench serve`'s TTFT/ITL/E2EL as `Outcome.timings` and an `on_delta` hook for
text as it arrives: retries connection errors with backoff; HTTP errors and timeouts
recorded; each outcome says whether it is `transient` or `fatal` for the model),
`stream_stats` (streamed timings summarised with `vllm bench serve`'s percentiles and
names, per phase in bounded memory: `StreamTally`; the one percentile), `gate`
(`RunGate`: the link's and each model's pauses, `SnapshotGate` over the Controller's
snapshots, with `--auto-restart` through its `restart`; `PodsGate` over one per pod when the
arms are on several pods, a pod's link pausing only its arms), `scoring`
(normalization, CER, critical strings, flags; `score_structure` for what CER cannot see),
`tables` (TEDS/TEDS-S of HTML or Markdown tables), `formulas` (normalised LaTeX edit
distance per display formula), `page_tests` (tests by tag and their pass rates),
`bench_suites` (olmOCR-bench and Omni Parse Bench files as suites), `variants` (degraded
page copies, `--variants` parsing), `store` (run directory, append+fsync on one
thread, resume, compact in-memory records), `tally` (per-page scores and agreement as
results arrive; `agreement_count`, the one agreement between two texts), `progress` (each
arm's pages done and failed, CER so far and images/s from the events, for the metrics
endpoint: `ArmTally`), `events` (the event types), `history` (EventHistory: what a late
subscriber replays, bounded; PageDelta live only),
`runner` (the protocol, each phase's streamed timings and server counters), `results` (the
typed results: `PhaseStats`, `DocumentStats`, `SweepPoint`, `PhaseMeasures` and the
summary, `Summary` with `to_json()`/`from_json()`; one name per figure, the files' names
written there only), `ranking` (worst first: the one page order of both reports), `report`
(the `Summary` from a `FinishedRun` value, report.md, the comparison and category rows shared
with the CLI and report.html: it never imports the runner), `report_files` (writes
summary.json, report.md and report.html for the runner; Jinja2 and matplotlib are imported
only when report.html is written), `page_files`
(pages/: each rendered page's bytes once per render target, and the references),
`report_html` (report.html from the run directory's files alone, streamed through the Jinja2
template `templates/report.html.j2`; blocking) with `report_plots` (matplotlib's Figure API
to SVG, no pyplot), `against` (run against run: two loaded runs in, a frozen diff out; pure)
with `against_report` (loads two run directories, writes against.md and against.html),
`launch` (what a user asked, its validation and resolution, the one start
function; `SweepServer`: a serve sweep's arms served in turn through the lifecycle's
restart), `serve_sweep` (serve sweep files: one model, one arm per flag set, each arm's
ModelConfig), `cli` (`compare_command`: arguments → `CompareRequest` → `resolve` →
`start_comparison` and the progress on the terminal; on a terminal without `--headless` it
hands the `RunSetup` to `ocrtui.tui.app.run_comparison_dashboard`, imported lazily).

Starting, following and cancelling a run: the headless CLI and the dashboard (its launcher
and `ocrtui compare` on a terminal) go through the same three calls:

```python
from ocrtui.compare.launch import CompareRequest, resolve, start_comparison, validate_request

request = CompareRequest(documents=("lease.pdf",), pages="1-3", concurrency=4)  # all optional:
#   documents, suite, pages, reference, password, models, concurrency, schedule, out, resume,
#   auto_restart
validate_request(config, request)   # -> CompareConfig; InputError/ConfigError (exit 2). Settings
                                    # are checked by the CompareConfig schema (its limits)
setup = await asyncio.to_thread(resolve, config, request)   # RunSetup: documents (specs),
#   models (ModelConfigs), settings, run_dir, info (run.json), label; blocking (run.json,
#   suite, folders, the sample suite the first time); validates first
gate = gate_for(setup, [ctl], config.ui.refresh_s)  # SnapshotGate (several pods' Controllers:
#   PodsGate); the run closes it
run = await start_comparison(setup, model_url, gate)   # model_url: async name -> base URL
#   (Controller.model_url; FleetController.model_url across pods); /health of each model
#   (PodUnreachable, exit 3), then the run directory is created (or resumed, off the loop)
#   and the run started
async for ev in run.subscribe():   # compact history first, then live events; ends after RunDone
    ...
run.cancel()                       # RunDone(cancelled=True) follows; summary/report still written
done = await run.wait()            # RunDone
```

Below that: `RunPlan(documents, models=(ModelTarget(model_cfg, url), ...), settings,
gate=None)` and `start_run(plan, store)` (`runner.py`), used directly by the runner's tests.

The request path (`runner.py`, `_request`): a model's requests wait while `gate.pauses()`
holds the link (`None`) or the model; an outcome that is `transient` (connection error,
timeout, 5xx) is sent again when `gate.paused_since(...)` says an outage began after it was
sent (waiting up to `gate.grace_s` for the watcher to notice); one pause longer than
`outage_budget_s` raises `RunStopped` (exit 3, the rest left for `--resume`); a `fatal`
outcome stops the model (`ModelStopped`; its other requests raise `ModelHalted`, caught per
phase). The gate knows nothing of the pod: `SnapshotGate` reads `Snapshot.pod.connection`
and `ModelStatus.state`.

A page's result is one value, `store.PageResult` (the results.jsonl fields, frozen):
`PageDone.result` / `PageFailed.result` carry it, `run.store.results` keeps it without its
text (`result.without_text()`, `text=None`), and the dashboard's `RunView` holds it as is.

`CompareRun` owns its asyncio task: it keeps running when a subscriber stops iterating,
and `subscribe()` again replays `run.history` (`history.py`), which stays bounded in texts:
every run, document and phase event; one `PageDone` per page and model, but with
`text=None` beyond the last `REPLAY_TEXTS` (200) per model (results.jsonl has them all);
`PageStarted` only while in flight; the latest `PhaseProgress` per model and phase. Live
subscribers get every event in full. `run.documents` (opened documents, with `references[page]`) and
`run.store.results[(doc, page, model)]` (`PageResult` with `text=None`) hold the state a
screen needs to redraw. A run's memory stays bounded over long runs:
no page text is kept (`run.tally`, `tally.py`, scores each result as it arrives; agreement
holds a page's first text only until the other model's result for it arrives or fails); the
worst pages' diffs, resumed pages' `PageDone` texts and the `--resume` rewrite read
results.jsonl back, streaming, on the store's thread (`RunStore.read_results(keys)`;
`RunStore.resume` is blocking: call it off the loop).

Events (`ocrtui/compare/events.py`, frozen dataclasses), in order:

| event | fields |
|---|---|
| `RunStarted` | run_dir, models, documents |
| `DocumentReady` / `DocumentFailed` | doc, category, pages, has_reference / doc, error |
| `PhaseStarted` | model, phase (`cold`, `warm`, `throughput`, `documents`), total |
| `PhaseProgress` | model, phase, done, total (speed phases) |
| `PhaseDone` | model, phase, stats (`PhaseStats`; documents: `DocumentStats`), skipped (resumed) |
| `PageStarted` | model, doc, page |
| `PageDone` | result (`PageResult`, ok), resumed; `.model`, `.doc`, `.page` |
| `PageFailed` | result (`PageResult`, not ok); `.model`, `.doc`, `.page`, `.reason` |
| `DocumentDone` | model, doc, pages_ok, pages_failed, elapsed_s, pages_per_s |
| `RunPaused` / `RunResumed` | model (None: the link), reason / model, paused_s |
| `ModelStopped` | model, reason (no more requests go to it) |
| `RunDone` | summary (`results.Summary`; None: not written), exit_code, cancelled, error |

Speed phases run model after model (`schedule = "sequential"`) or together; the documents
phase runs all models at once, pages of the two interleaving. Rendered pages held at once
per model ≤ `max_rendered_pages // len(models)`; this also bounds in-flight page requests.
Run-directory files, metrics and normalization: docs/compare.md.
"""
