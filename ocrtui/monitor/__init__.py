"""Client side of the pod agent: typed samples, attribution, orphan detection, the monitor.

Importing this package (and ``agent_samples`` / ``attribution``) pulls in the standard library
only, so the GPU benchmark can use them on a bare machine. The monitor that drives the agent
over a Pod lives in ``ocrtui.monitor.agent_monitor``.

"Which processes are model M's" is decided here, once per sample, and nowhere else:
`ModelProcesses` (below) is what the model watcher, the lifecycle, the status types and the
GPU panel read; `attribution.serves` is the one server rule.

**Monitor** (`ocrtui/monitor/`; `agent_samples` and `attribution` are stdlib-only):

- `agent_samples.parse_line(str) -> AgentSample` (typed: `GpuSample`, `GpuProc`, `VllmProc`,
  `LocalProc`, `PortOwner`); raises `ProtocolMismatch` / `SampleError`.
  `GpuSample.status_fields()` == `status.GpuStatus`'s device fields.
- `attribution.attribute(sample, models: [ModelRef(name, port, log_name = the log path)], launches:
  [LaunchRecord], known) -> Attribution` — pure. `Attribution.rows: [Row]` (`model` is the
  served name, `"orphan:<name>"`, `"orphan:?"`, or None; `kind` model/orphan/other/
  unattributed; `Row.owner` (the model without the prefix); `Row.status_fields()` ==
  `status.ProcessStatus`
  fields), `.models[name]: ModelProcesses(server_pid, port_owner, port_state, tree_pids,
  groups, pids, orphans, used_mib, orphan_mib, rss_mib; .listening, .orphan_pids, .held_mib)`
  (`groups`/`pids`: what a stop signals and waits for),
  `.gpus: [GpuUsage(index, used_mib, rows_mib, other_mib, unattributed_mib, model_mib,
  orphan_mib, other_rows_mib)]` (rows_mib + other_mib == used_mib; other_mib is memory no
  row holds; `owner_other_mib` = other_rows_mib + other_mib), `.orphans: [Orphan(pid, model,
  used_mib|None, title, rss_mib)]`, `.known`
  (pid memory to feed back). Rules are in the module docstring.
- `launches.Launches`: this session's launches and stops, the one record (owned by the
  monitor as `monitor.launches`, written by the lifecycle, read by attribution and the
  model watcher): `begin(name)`, `started(name, pid)`, `end(name)`, `stopping(name)` (a
  context), `stopped(name)`; `pid(name)`, `launching(name)`, `is_stopping(name)`,
  `unlisted(name, sample)`, `records`.
- `agent_monitor.AgentMonitor(pod, pod_config, models, *, clock=, backoff_s=)` (imports
  `ocrtui.pod`, hence pydantic; `ocrtui.monitor` itself does not import it):

```python
await start(); await close()
view -> MonitorView(sample, attribution, error, data_age_s, stale, running, restarts,
                    simulated; .orphans, .model(name) -> ModelProcesses | None)
subscribe(cb(MonitorView)) -> unsubscribe          # after every sample / state change
await wait_for(pred(MonitorView), timeout) -> MonitorView   # TimeoutError
await next_samples(n=1, timeout=10) -> MonitorView  # fresh data after an action
launches: Launches                                  # every change is attributed at once
```

Mapping to the status types (`control.py`, `vllm/watch.with_usage`): `PodStatus.data_age_s
= view.data_age_s`, `simulated_gpu = view.simulated`, `agent_error = view.error`;
`GpuStatus(**g.status_fields(), models=, orphan_mib=, other_mib=owner_other_mib,
unattributed_mib=, planned_mib=)` for `view.sample.gpus` and `view.attribution.gpus`;
`ProcessStatus(**r.status_fields())` for `view.attribution.rows`; `ModelStatus.used_mib`,
`rss_mib` and `pid` = `view.model(name).used_mib`, `.rss_mib` and `.server_pid` (or a
launch the agent does not list yet, `Launches.unlisted`).
Errors shown in `view.error`: "no NVIDIA driver (...)", "no python3 on the pod: ...",
"agent protocol version X, monitor expects 1: ...", "the GPU agent exited",
"connection to POD lost; agent will restart", "waiting for the connection to POD".
"""

from ocrtui.monitor.agent_samples import (
    PROTOCOL_VERSION,
    AgentSample,
    GpuProc,
    GpuSample,
    ProtocolMismatch,
    SampleError,
    VllmProc,
    parse_line,
    parse_sample,
)
from ocrtui.monitor.attribution import (
    ORPHAN_PREFIX,
    Attribution,
    GpuUsage,
    LaunchRecord,
    ModelProcesses,
    ModelRef,
    Orphan,
    Row,
    attribute,
)

__all__ = [
    "ORPHAN_PREFIX",
    "PROTOCOL_VERSION",
    "AgentSample",
    "Attribution",
    "GpuProc",
    "GpuSample",
    "GpuUsage",
    "LaunchRecord",
    "ModelProcesses",
    "ModelRef",
    "Orphan",
    "ProtocolMismatch",
    "Row",
    "SampleError",
    "VllmProc",
    "attribute",
    "parse_line",
    "parse_sample",
]
