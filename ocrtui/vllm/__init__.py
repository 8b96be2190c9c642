"""vLLM servers: HTTP client, metrics, startup stages, failure hints, lifecycle.

```
metrics.py    parse_metrics(text) -> VllmMetrics; token_rates(prev, t0, cur, t1) (tokens/s and
              spec-decode acceptance); phase_counters(before, during, after): a phase's counters
client.py     VllmClient(base_url, api_key=): health() -> Health, models() -> [ModelCard],
              metrics(), sleep(level), wake_up(), reload_weights(); parse_models(body).
              One httpx.AsyncClient per server.
stages.py     startup_stage(lines) -> Stage | None; strip_ansi(line); STAGES
hints.py      find_hint(lines, holders=None) -> Hint(key, cause, fix, line) | None (pass the
              whole current run; holders: [MemoryHolder] named by the free-memory hint);
              is_fatal(lines); encoder_cache_hint(message, page size) for a request's
              400; longest_side_that_fits(tokens, cache, longest, multiple)
crashlog.py   crash_lines(run, tail=12) -> CrashLines(cause, tail, .lines): the known-failure
              line and the last traceback's frame + message first, exit noise removed;
              the one traceback reader (is_exception_line, ending_exception)
logfile.py    "[ocrtui] launch|stop NAME TIME" markers appended to the model's log
              (and "ready", no run boundary); current_run(lines) -> (lines after the
              last marker, its kind); last_marker(); marker_time; start_duration
state.py      decide(facts, health, listed, tail, last_mark) -> Verdict(state, stage, hint,
              last_lines): the pure state machine; ProcessFacts from the agent's view
probe.py      ModelProbe.poll(get_facts) -> ProbeResult: one model's HTTP probes, log tail
              when not ready, verdict, metrics and rates
image_tokens.py  processor_for(model id) -> ImageProcessor (published.py); image_tokens,
              max_image_tokens, encoder_cache_tokens; fit_page(proc, prompt, Limits, w, h)
              -> PageFit: send as is, resized to fit, or refused with the reason
memory.py     min_memory(model, total_mib) -> MemoryNeed (weights, activations, runtime,
              one request's KV cache) | None; min_utilization(model, total_mib);
              MEASURED: the starts the prediction is calibrated on (data)
plan.py       the pure half of a start: serve_argv/serve_env, plan_warnings (the
              minimum from memory.py),
              devices_for / gpus_for (one GPU per data-parallel rank: CUDA_VISIBLE_DEVICES,
              else GPU 0..N-1), gpu_for (the first), cuda_total_mib, planned_mib (per
              rank), planned_total_mib,
              preflight_checks(model, view, wake_needs) -> (planned MiB | None,
              [Check(level "refuse"|"warn", message, hint)]): free VRAM as vLLM measures it
              less the sleepers' wake-up needs (WakeNeed), host RAM
              without a GPU, the port's owner; describe_holders
watch.py      ModelWatcher(config, pod, monitor): one poll round per refresh_s (all models
              concurrently) from the monitor's ModelProcesses, status(name) -> ModelStatus,
              subscribe(cb) (after every round), wait_model(name, done, timeout,
              on_change), wait_informed(timeout)
lifecycle.py  Lifecycle(config, pod, monitor, watcher): launch, stop, kill_orphans,
              preflight, start, restart, up, down; Progress
sleep.py      sleep(client, model, watcher, level) / wake(client, model, watcher): vLLM's
              sleep mode over the client's /sleep, /wake_up, reload_weights; the watcher's
              vllm:engine_sleep_state confirms each
flags.py      serve_options(argv) -> {--option: value}; recipe_for(model) (published.py);
              extra_reserved_mib(model) -> [Reservation(reason, mib, "host"|"gpu")]
advisories.py probe_pod(pod, pod_config, model, server_pid) -> PodProbe(Versions, server_argv):
              one command, agent/versions.py on stdin; advisories(model, versions,
              server_argv, image_format=) -> [Advisory(key, severity, text, source, fix,
              refuses)]; the known-bad data is each recipe's known_bad (published.py)
```

Rules the code relies on:
* Down vs crashed comes from the log markers (last marker `launch` and no process:
  crashed), so a fresh `ocrtui status` agrees with the dashboard.
* Which processes are a model's (its server, the groups and pids a stop signals, its
  orphans and their memory) is decided once per agent sample, in `monitor/attribution.py`
  (`ModelProcesses`, `serves`); nothing in `vllm/` decides it again. This session's
  launches and stops are one record, the monitor's `Launches` (`monitor/launches.py`).
* While a launch is in progress and the agent does not list the new server yet, it counts
  as alive before its pid is back, and then as long as `kill -0 PID` on the pod succeeds
  (at most 20 s; `Launches.unlisted`). A launch registers itself before writing its
  log marker, and a poll reads the facts again after the log, so a marker is never taken
  for a crash. Zombies never count as running servers.
* Stop signals only process groups of API servers whose `--served-model-name` is the model,
  the pid this session launched, and the model's tree/orphans as attributed by the monitor
  (`ModelProcesses.groups`/`.pids`): SIGTERM then SIGCONT (`Pod.terminate`, as for
  services), SIGKILL at the deadline; it waits on `AgentMonitor.wait_for` until the model
  holds no pid and no MiB, then checks on the pod (`/proc/PID/stat`, zombies excluded) that
  every pid of the tree captured at the start of the stop has exited.
* Preflight refusals (memory, port) raise `LifecycleError` unless `force`; what cannot be
  checked (no GPU, no agent data) is a warning. A launch marker newer than the agent's
  sample (`ProcessFacts.sample_t`) reads as starting.
* `Launches.begin`/`end` bracket every start; the start waits (bounded) for the agent to
  see the ready server own its port before `end`, so its EngineCore is attributed by tree.
  A restart holds the model's lock from the stop until ready (as a service's does).
* Imports point down: `lifecycle` -> `watch` -> `plan`, `probe`; nothing in
  `vllm/` imports `control`. The lifecycle waits on model states through the watcher
  (`wait_model`), never through snapshots.
"""
