"""The Textual dashboard: the only package that imports Textual.

It calls the Controller (``ocrtui.control``) and the comparison runner for everything that
touches the pod. Its own I/O, none of it on the UI path once the first frame is drawn (the
event loop then never waits on a file, a process or a request):

- files it reads: the theme files and ``ui-state.toml``, once at start before the first frame
  (themes.py); the run's kept page images, decoded in a thread worker (widgets/page_pane.py);
- files it writes: ``ui-state.toml`` when the palette's theme changes, and screenshots, each
  in a thread worker (app.py ``_remember_theme``, ``_write_screenshot``);
- a process: ``xdg-open report.html``, started detached from a thread worker (app.py);
- the launcher's documents and suite, resolved in a thread (``compare.launch.resolve``);
- a request: each model server's ``GET /version`` for the comparison header, async on the
  loop with a 3 s timeout (comparing.py ``probe_versions``).

Text from outside (model output, log lines, error bodies, provider output) reaches the screen
only through ``widgets/format.py``'s ``visible`` (control characters shown, never sent).

```
app.py          OcrtuiApp; run_dashboard(), run_comparison_dashboard() (`ocrtui compare` on a
                terminal: opened on that run; exit status from the run after quitting),
                save_screenshot_headless() (the CLI entry points)
source.py       PodSource: the Controller's interface as a Protocol; ReplaySource (recorded
                Snapshots, for snapshot tests and benchmarks)
screens/        dashboard.py (one pod's), fleet.py (every pod of a [[pods]] config, shown
                first with several), compare.py, dialogs.py (confirm, launcher, help)
widgets/        header, gpu_panel (bars + keyed process table), model_card, log_pane
                (FollowingLog: follows the tail until scrolled up), format (pure helpers, and
                ``visible``: the one gate for outside text)
run_view.py     RunView: the bounded view of a comparison (rows, last page texts, p50)
comparing.py    RunSetup -> compare.launch.start_comparison; runner events -> RunView
                (PageDone/PageFailed's PageResult as is), and each arm's progress to the
                [export] endpoint (compare/progress.py)
themes.py       theme files (TOML, pydantic-validated) and the ui-state.toml file
messages.py     OperationProgress, LogTail (workers -> screens)
```

- Several pods (``more_pods``): one ``PodSlot`` (config, source), dashboard and watchdog per
  pod; ``app.config`` / ``source`` / ``dashboard`` are the current pod's, ``pod_of(name)``
  finds the pod of a model, service or API arm, and operations, progress and log tails go
  to that pod's. The launcher and the comparison see every pod's arms
  (``Fleet.arms_config``).
- The app owns the source and every worker: connecting (+ `up` for the demo),
  lifecycle operations (one worker group per model, so a second press can't cancel the
  first), log tails, the comparison. `App.on_worker_state_changed` is the one place a
  worker error becomes a notification (with `LifecycleError.hint` when present).
- Refresh: the dashboard's timer (`[ui] refresh_s`) applies `source.snapshot` when it is
  a new object, inside `app.batch_update()`, and skips while a dialog or another screen is
  on top. Widgets diff: cards/bars update only on change (without layout when their
  height can't change); the process table is keyed by pid (`update_cell` only on change,
  rows removed when the pid goes). Sparklines keep 24 samples, one per new snapshot (a
  repaint after a theme change adds none); panes keep 2000/3000 lines.
- Comparison: `compare.runner.CompareRun` is started by the app and outlives the screen;
  `RunView` keeps every row's numbers but only the last `REPLAY_TEXTS` (200) page texts per
  model (no more than the run's history replays). `CompareScreen` replays the view on
  mount and coalesces updates per 0.1 s. The launcher (`LauncherDialog(config)`) returns a
  `CompareRequest` checked by `validate_request`; `app.launch_comparison(request)` resolves
  it off the loop and calls `app.start_comparison(setup)`, the one entry `ocrtui compare`
  on a terminal also uses. The comparison worker waits for the connecting worker (model
  URLs; the demo's servers) before it calls `start_comparison`.
- Themes: `themes/*.toml` (shipped as package data through the `ocrtui/tui/theme_files`
  link), then `[ui] theme_dir` or `<user config>/ocrtui/themes`; the palette's choice is
  written to `<user state>/ocrtui/ui-state.toml`, never to the config.
"""
