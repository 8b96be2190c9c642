"""What this session does to which model server: the one record of its launches and stops.

The agent monitor owns it (``AgentMonitor.launches``) and attributes every sample with its
:class:`LaunchRecord` s (NVML's pid set across each launch, the server pid launched); the
lifecycle writes it (``ocrtui/vllm/lifecycle.py``); the model watcher reads it
(``ocrtui/vllm/watch.py``). Each change is attributed at once, so the monitor's view and
this record never disagree.

Under load the agent's newest sample may predate a launch however many samples later, so
"not listed" alone is no proof of death: while a launch is in progress its server counts as
alive before its pid is back, then for at most ``UNLISTED_TRUST_S`` as long as the pod says
the pid exists (:meth:`Launches.unlisted`).

```python
begin(name); started(name, pid); end(name) -> bool   # bracket every start
with stopping(name): ...                             # a stop under way
stopped(name)                                        # the launched pid is ours no more
pid(name) -> int | None; launching(name); is_stopping(name); unlisted(name, sample)
records -> (LaunchRecord, ...)                       # what attribution reads
```
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from ocrtui.monitor.agent_samples import AgentSample
from ocrtui.monitor.attribution import LaunchRecord

UNLISTED_TRUST_S = 20.0
# The agent's start times come from /proc's clock ticks and the boot time: the same process
# reads the same to well within this.
START_TOLERANCE_S = 0.5


class Launches:
    def __init__(
        self,
        nvml_pids: Callable[[], frozenset[int]],
        on_change: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml_pids = nvml_pids
        self._on_change = on_change
        self._clock = clock
        self._records: dict[str, LaunchRecord] = {}  # the latest launch of each model
        # model -> when its launch began, then again when the pid came back
        self._since: dict[str, float] = {}
        self._stopping: set[str] = set()

    # -- written by the lifecycle ---------------------------------------------------------

    def begin(self, name: str) -> None:
        """A start of ``name`` begins (before its log marker is written): NVML's pid set now."""
        self._records[name] = LaunchRecord(name, self._nvml_pids())
        self._since[name] = self._clock()
        self._on_change()

    def started(self, name: str, pid: int) -> None:
        """The start returned the server's pid (it leads its own process group)."""
        record = self._records.get(name) or LaunchRecord(name, self._nvml_pids())
        self._records[name] = replace(
            record, server_pid=pid, stopped=False, server_start=None, reused=False
        )
        self._since[name] = self._clock()
        self._on_change()

    def end(self, name: str) -> bool:
        """The start finished (ready or failed): NVML pids new since ``begin`` are its own.
        False, and nothing claimed, when no start was in progress."""
        if self._since.pop(name, None) is None:
            return False
        record = self._records.get(name) or LaunchRecord(name, self._nvml_pids())
        self._records[name] = replace(record, after=self._nvml_pids())
        self._on_change()
        return True

    @contextmanager
    def stopping(self, name: str) -> Iterator[None]:
        """A stop of ``name`` is under way inside the block."""
        self._stopping.add(name)
        try:
            yield
        finally:
            self._stopping.discard(name)

    def stopped(self, name: str) -> None:
        """``name`` was stopped: the pid launched is no server of ours any more (it still
        names the model of leftovers)."""
        record = self._records.get(name)
        if record is not None and not record.stopped:
            self._records[name] = replace(record, stopped=True)
            self._on_change()

    # -- written by the monitor ----------------------------------------------------------

    def observe(self, sample: AgentSample) -> None:
        """Pin each launched server to its start time from the first sample listing it; a
        vLLM process with that pid and another start time means the pid was reused."""
        starts = {v.pid: v.start for v in sample.vllm}
        for name, r in list(self._records.items()):
            if r.server_pid is None or r.reused or r.server_pid not in starts:
                continue
            start = starts[r.server_pid]
            if r.server_start is None:
                self._records[name] = replace(r, server_start=start)
            elif abs(start - r.server_start) > START_TOLERANCE_S:
                self._records[name] = replace(r, reused=True)

    # -- read by the watcher, the lifecycle and attribution ------------------------------

    @property
    def records(self) -> tuple[LaunchRecord, ...]:
        return tuple(self._records.values())

    def pid(self, name: str) -> int | None:
        """The server this session started, until it is stopped."""
        record = self._records.get(name)
        return record.launched_pid if record is not None else None

    def launching(self, name: str) -> bool:
        """A start of ``name`` is in progress (from launch until ready or failed)."""
        return name in self._since

    def is_stopping(self, name: str) -> bool:
        return name in self._stopping

    def unlisted(self, name: str, sample: AgentSample | None) -> tuple[bool, int | None]:
        """(True, pid) while ``name`` is being launched and the agent does not list its server
        (yet): pid None before start_detached returned, else the pid to check on the pod."""
        since = self._since.get(name)
        if since is None:
            return False, None
        pid = self.pid(name)
        if pid is None:
            return True, None
        if sample is not None and any(v.pid == pid for v in sample.vllm):
            return False, None
        if self._clock() - since > UNLISTED_TRUST_S:
            return False, None
        return True, pid
