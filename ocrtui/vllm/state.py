"""The state of one model server, decided from what the agent sees and what HTTP answers.

    down       no process of the model (and the last thing we did was stop it, or nothing)
    starting   a process is alive but the port does not answer yet; stage from the log
    ready      /health 200 and /v1/models lists the served name
    unhealthy  /health 503, timeouts, or the port answers for some other model
    crashed    the server we launched is gone (or only its orphans live on), or the log
               shows a fatal error; the hint and the last log lines say why

vLLM binds its port early but listens only when ready, so "connection refused" with a live
process means starting, not broken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ocrtui.status import ModelState
from ocrtui.vllm.client import Health
from ocrtui.vllm.crashlog import crash_lines
from ocrtui.vllm.hints import Hint, find_hint, is_fatal
from ocrtui.vllm.logfile import Mark, current_run, last_marker_time
from ocrtui.vllm.stages import Stage, startup_stage

LAST_LINES = 12
# Our own probes show up in vLLM's access log; they say nothing about a crash.
_PROBE_LINE = re.compile(r'"GET /(health|metrics|v1/models|ping|version) HTTP')


def without_probes(lines: Iterable[str]) -> list[str]:
    """Log lines less the access-log lines of health and metrics probes (ours at 1 Hz)."""
    return [line for line in lines if not _PROBE_LINE.search(line)]


# vLLM's shutdown lines (uvicorn, and >= 0.25 its own "[shutdown]" steps).
_SHUTDOWN = re.compile(r"Shutting down FastAPI HTTP server|\[shutdown\]|INFO:\s+Shutting down")


@dataclass(frozen=True)
class ProcessFacts:
    """What the agent's latest sample says about one model's processes."""

    server_pid: int | None  # the API server: listening on the port, or the one we launched
    alive: bool  # the API server runs (or is being launched and not listed by the agent yet)
    listening: bool  # something listens on the model's port
    # (pid, VRAM MiB, RSS MiB or None) of leftover vLLM processes
    orphans: tuple[tuple[int, int, int | None], ...] = ()
    sample_t: float | None = None  # when the agent took these facts (the pod's Unix time)


@dataclass(frozen=True)
class Verdict:
    state: ModelState
    stage: Stage | None = None
    hint: str | None = None
    last_lines: tuple[str, ...] = field(default_factory=tuple)


def decide(
    facts: ProcessFacts | None,
    health: Health | None,
    served_listed: bool | None,
    tail: Sequence[str] | None,
    last_mark: Mark | None,
    *,
    served_name: str = "",
    was_ready: bool = False,
    models_problem: str | None = None,
) -> Verdict:
    """One model's state. ``facts`` is None before the agent's first sample; ``tail`` is the
    log tail (None when not read this time); ``last_mark`` the last ocrtui marker in the
    whole log when the tail had none; ``was_ready`` whether this server answered before;
    ``models_problem`` why /v1/models gave no list, when known (a 401)."""
    run, mark_in_tail = current_run(tail) if tail is not None else ([], None)
    mark = mark_in_tail or last_mark
    if health is not None and health.ok:
        if served_listed:
            return Verdict("ready")
        if served_listed is False:
            return Verdict(
                "unhealthy",
                hint=f"the port answers but /v1/models does not list {served_name!r}: "
                "another server holds this port. Fix: stop it or change the model's port",
            )
        return Verdict("unhealthy", hint=models_problem or "/v1/models did not answer")
    if health is not None and health.status is not None:
        return Verdict("unhealthy", hint=f"/health answered {health.status}")
    if facts is None:
        # Without the agent nothing tells a starting server from a dead one.
        return Verdict("down", hint="no answer on the port; no process data from the pod agent")
    if facts.alive:
        if run and is_fatal(run):
            return _crashed(run, facts)
        if any(_SHUTDOWN.search(line) for line in run[-LAST_LINES:]):
            return Verdict("down", stage=Stage("stopping"))
        if health is not None and health.error == "timeout" and facts.listening:
            return Verdict("unhealthy", hint="/health timed out")
        stage = startup_stage(run) if run else None
        if was_ready and stage is not None and stage.name == "API server up":
            # It had finished starting and now refuses connections: dying, not starting.
            return Verdict("unhealthy", hint="the server stopped accepting connections")
        return Verdict("starting", stage=stage)
    if run and is_fatal(run):
        # A fatal line after the last launch marker ends that start, whatever the clocks say.
        return _crashed(run, facts)
    if mark_in_tail == "launch" and _launched_after(tail or (), facts):
        # The marker is newer than the process data: the server may not have existed yet
        # when the agent looked (another observer reads the log of a launch just begun).
        return Verdict("starting", stage=Stage("launched"))
    if facts.orphans or mark == "launch":
        return _crashed(run, facts)
    return Verdict("down")


# A launch marker this close to the agent's sample may predate its process: the server is
# spawned just after the marker is written, and the clocks of the launching machine and
# the pod may differ slightly. A start that fails at once reads as crashed after this, or at
# once when its fatal line is already in the log.
LAUNCH_GRACE_S = 1.0


def _launched_after(tail: Sequence[str], facts: ProcessFacts) -> bool:
    marked = last_marker_time(tail)
    if marked is None or facts.sample_t is None:
        return False
    return facts.sample_t < marked + LAUNCH_GRACE_S


def _crashed(run: Sequence[str], facts: ProcessFacts) -> Verdict:
    hint: Hint | None = find_hint(run)
    text = str(hint) if hint else None
    if facts.orphans and not facts.alive:
        held = ", ".join(_held(mib, rss, pid) for pid, mib, rss in facts.orphans)
        what = "GPU memory" if any(mib for _, mib, _ in facts.orphans) else "memory"
        orphan_text = (
            f"the API server is gone but its vLLM processes live on holding {what}: {held}. "
            "Fix: restart the model (it kills them first)"
        )
        text = orphan_text if text is None else f"{text} | {orphan_text}"
    elif text is None:
        text = "the server exited. Fix: read the log lines, then restart the model"
    # The explaining lines first: exit noise would push them out of a plain tail.
    last = crash_lines(without_probes(run), LAST_LINES).lines
    return Verdict("crashed", hint=text, last_lines=last)


def _held(vram_mib: int, rss_mib: int | None, pid: int) -> str:
    if vram_mib or rss_mib is None:
        return f"pid {pid} ({vram_mib} MiB)"
    return f"pid {pid} ({rss_mib} MiB RAM)"
