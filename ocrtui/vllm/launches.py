"""What this session is doing to which model server: written by the lifecycle, read by the
model watcher (ocrtui/vllm/watch.py) when it decides which pid is a model's server and
whether it is alive.

Under load the agent's newest sample may predate a launch however many samples later, so
"not listed" alone is no proof of death: while a launch is in progress its server counts as
alive before its pid is back, then for at most ``UNLISTED_TRUST_S`` as long as the pod says
the pid exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ocrtui.monitor.agent_samples import AgentSample

UNLISTED_TRUST_S = 20.0


class Launches:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.pids: dict[str, int] = {}  # model -> pid of the server this session started
        # model -> when its launch began, then again when the pid came back
        self._since: dict[str, float] = {}
        self.stopping: set[str] = set()  # models being stopped right now

    def begin(self, name: str) -> None:
        """A start of ``name`` begins (before its log marker is written)."""
        self.pids.pop(name, None)
        self._since[name] = self._clock()

    def started(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        self._since[name] = self._clock()

    def end(self, name: str) -> bool:
        """The start finished (ready or failed); False when none was in progress."""
        return self._since.pop(name, None) is not None

    def launching(self, name: str) -> bool:
        """A start of ``name`` is in progress (from launch until ready or failed)."""
        return name in self._since

    def unlisted(self, name: str, sample: AgentSample | None) -> tuple[bool, int | None]:
        """(True, pid) while ``name`` is being launched and the agent does not list its server
        (yet): pid None before start_detached returned, else the pid to check on the pod."""
        since = self._since.get(name)
        if since is None:
            return False, None
        pid = self.pids.get(name)
        if pid is None:
            return True, None
        if sample is not None and any(v.pid == pid for v in sample.vllm):
            return False, None
        if self._clock() - since > UNLISTED_TRUST_S:
            return False, None
        return True, pid
