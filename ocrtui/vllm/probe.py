"""One poll of one model server: HTTP probes, the log when needed, and the state verdict.

Called once per refresh (1 Hz by default) by the model watcher (watch.py) with the agent's
latest view of the model's processes. The log is read only where it can change the answer
(while not ready), and while nothing runs at most every ``QUIET_TAIL_S`` seconds, so a pod
with idle models costs one ``/health`` request per model per second.

A start's stage never goes back to "no marker yet": once the log named a stage, a later
tail that holds none and does not reach back to the launch marker (only the lines of a
traceback, while the API server unwinds after its EngineCore died) keeps the last one, so
the watcher never falls back to the process stages (``engine spawned``, ``API server
importing``) of a start that is ending.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import httpx

from ocrtui.config import ModelConfig
from ocrtui.pod.base import Pod
from ocrtui.vllm.client import Health, VllmClient
from ocrtui.vllm.logfile import (
    Mark,
    current_run,
    last_marker,
    last_marker_time,
    last_start_duration,
)
from ocrtui.vllm.metrics import TokenRates, VllmMetrics, token_rates
from ocrtui.vllm.stages import Stage
from ocrtui.vllm.state import ProcessFacts, Verdict, decide

TAIL_LINES = 200
QUIET_TAIL_S = 5.0
# /v1/models is asked when a server turns healthy and then only this often: vLLM logs every
# request it serves, and a 1 Hz poll of three endpoints would fill its log.
MODELS_RECHECK_S = 30.0


def auth_problem(model: ModelConfig, status: int) -> str | None:
    """What a 401 from /v1/models means for this model's config (None for other codes).
    Never the key itself: only the name of the variable that should hold it."""
    if status != 401:
        return None
    wants = "the server wants an API key (/v1/models answered 401)"
    if not model.api_key_env:
        return f"{wants}. Fix: set api_key_env to the environment variable holding it"
    if not model.api_key():
        return f"{wants} and ${model.api_key_env} (api_key_env) is unset. Fix: export it"
    return (
        f"the server refused the API key in ${model.api_key_env} (/v1/models answered 401). "
        "Fix: check the key"
    )


@dataclass(frozen=True)
class ProbeResult:
    verdict: Verdict
    health: Health | None
    metrics: VllmMetrics | None = None
    rates: TokenRates = field(default_factory=lambda: TokenRates(None, None))
    max_model_len: int | None = None
    launched_at: float | None = None  # while starting: when its launch marker was written
    last_start_s: float | None = None  # while starting: how long the previous start took


class ModelProbe:
    def __init__(self, model: ModelConfig, pod: Pod, base_url: str, log_path: str) -> None:
        self.model = model
        self.pod = pod
        self.log_path = log_path
        self.client = VllmClient(base_url, api_key=model.api_key())
        self._prev: tuple[VllmMetrics, float] | None = None
        self._was_ready = False
        self._misses = 0  # consecutive failed /health probes of a server that was ready
        self._listed_at: tuple[float, bool | None, int | None] | None = None
        self._models_problem: str | None = None  # why /v1/models gave no list (e.g. 401)
        # (launch marker time, the previous start's duration) of the start in progress
        self._timing: tuple[float, float | None] | None = None
        self._quiet_read: tuple[float, ProcessFacts | None, list[str], Mark | None] | None = None
        self._stage: Stage | None = None  # the last stage the log named in this start

    async def aclose(self) -> None:
        await self.client.aclose()

    async def tail(self, lines: int = TAIL_LINES) -> list[str]:
        return await self.pod.tail(self.log_path, lines)

    async def poll(
        self, get_facts: Callable[[], Awaitable[ProcessFacts | None]], *, launching: bool = False
    ) -> ProbeResult:
        """Probe over HTTP, then decide with the agent's facts as they are after the probe
        and the log read (a server seen refusing while the agent still lists it is then
        really alive).
        ``launching``: a new server is being started, so an earlier "ready" says nothing."""
        if launching:
            self._was_ready = False
            self._stage = None
        health = await self.client.health()
        if health.status is None and self._was_ready:
            self._misses += 1
            if self._misses == 1:
                # One lost probe (a busy server, a forward re-opening after a reconnect) is
                # not a state change; a second in a row is.
                return ProbeResult(Verdict("ready"), health)
        else:
            self._misses = 0
        listed: bool | None = None
        mml: int | None = None
        metrics: VllmMetrics | None = None
        rates = TokenRates(None, None)
        if health.ok:
            listed, mml = await self._listed()
            metrics = await self._metrics()
            if metrics is not None:
                now = time.monotonic()
                prev, t_prev = self._prev if self._prev else (None, 0.0)
                rates = token_rates(prev, t_prev, metrics, now)
                self._prev = (metrics, now)
        else:
            self._prev = None
            self._listed_at = None
        facts = await get_facts()
        tail: list[str] | None = None
        mark: Mark | None = None
        if not (health.ok and listed):
            tail, mark = await self._log(facts)
            # Facts again, after the log: a launch registers itself before it writes its
            # marker, so a marker in this tail is always matched by facts that know of it.
            facts = await get_facts()
        verdict = decide(
            facts,
            health,
            listed,
            tail,
            mark,
            served_name=self.model.name,
            was_ready=self._was_ready,
            models_problem=self._models_problem,
        )
        if verdict.state == "starting":
            whole_run = tail is not None and current_run(tail)[1] == "launch"
            verdict = self._forward_only(verdict, whole_run)
        else:
            self._stage = None
        if verdict.state == "ready":
            self._quiet_read = None
            self._was_ready = True
        elif verdict.state in ("down", "crashed"):
            self._was_ready = False
        launched_at, last_start = None, None
        if verdict.state == "starting" and tail is not None:
            launched_at, last_start = await self._start_timing(tail)
        return ProbeResult(verdict, health, metrics, rates, mml, launched_at, last_start)

    def _forward_only(self, verdict: Verdict, whole_run: bool) -> Verdict:
        """``whole_run``: the tail reaches back to the launch marker, so its stage is the
        start's own (a new start by another client begins at no stage)."""
        if verdict.stage is None:
            if whole_run:
                self._stage = None
            elif self._stage is not None:
                return replace(verdict, stage=self._stage)
            return verdict
        if verdict.stage.name != "launched":
            self._stage = verdict.stage
        return verdict

    async def _start_timing(self, tail: list[str]) -> tuple[float | None, float | None]:
        """When the current start was launched, and how long the one before took (read
        from the whole log once per start)."""
        if current_run(tail)[1] != "launch":
            return None, None
        launched_at = last_marker_time(tail)
        if launched_at is None:
            return None, None
        if self._timing is None or self._timing[0] != launched_at:
            self._timing = (launched_at, await last_start_duration(self.pod, self.log_path))
        return self._timing

    async def _listed(self) -> tuple[bool | None, int | None]:
        now = time.monotonic()
        if self._listed_at is not None and now - self._listed_at[0] < MODELS_RECHECK_S:
            return self._listed_at[1], self._listed_at[2]
        listed: bool | None = False
        mml: int | None = None
        self._models_problem = None
        try:
            cards = await self.client.models()
        except httpx.HTTPStatusError as exc:
            cards, listed = [], None
            self._models_problem = auth_problem(self.model, exc.response.status_code)
        except (httpx.HTTPError, ValueError):
            cards, listed = [], None
        for card in cards:
            if card.id == self.model.name:
                listed, mml = True, card.max_model_len
        self._listed_at = (now, listed, mml) if listed else None
        return listed, mml

    async def _metrics(self) -> VllmMetrics | None:
        # Metrics are decoration: a scrape that fails leaves the state alone.
        with contextlib.suppress(httpx.HTTPError, ValueError):
            return await self.client.metrics()
        return None

    async def _log(self, facts: ProcessFacts | None) -> tuple[list[str], Mark | None]:
        now = time.monotonic()
        alive = facts is not None and facts.alive
        if not alive and self._quiet_read is not None:
            t, seen, cached, cached_mark = self._quiet_read
            if seen == facts and now - t < QUIET_TAIL_S:
                return cached, cached_mark
        lines = await self.tail()
        mark: Mark | None = None
        if not alive and current_run(lines)[1] is None:
            mark = await last_marker(self.pod, self.log_path)
        self._quiet_read = None if alive else (now, facts, lines, mark)
        return lines, mark
