"""The metrics endpoint: ``ocrtui export --listen 127.0.0.1:PORT`` and ``[export] listen``.

A custom ``prometheus_client`` Collector reads each pod's latest
:class:`~ocrtui.status.Snapshot` (immutable, so the library's own HTTP server thread reads
it without a lock while the event loop publishes the next one) and, when a comparison runs
in the same process, the arms' latest :class:`~ocrtui.compare.progress.ArmProgress` (given
through :meth:`MetricsExporter.arm_progress` by the comparison's event consumers, the
dashboard's and ``ocrtui compare --headless``'s, each through an ``ArmTally``). The server
answers OpenMetrics to a scraper that asks for it (Prometheus does), the classic
text format otherwise.

Series (memory in bytes, as Prometheus names units; over several pods every series but the
comparison's carries a ``pod`` label first, the pod's name, and one pod's series carry none):

- ``ocrtui_pod_connected``; ``ocrtui_pod_idle_seconds``; ``ocrtui_pod_price_per_hour`` (when
  the provider gives one)
- ``ocrtui_gpu_memory_total_bytes{gpu}``, ``ocrtui_gpu_memory_used_bytes{gpu}``
- ``ocrtui_gpu_owner_memory_bytes{gpu, model}``: each model's share of a GPU; ``model`` is
  ``orphan`` for leaked vLLM processes and ``other`` for everything else
- ``ocrtui_process_memory_bytes{gpu, pid, kind, model}``: each GPU process row; ``model`` is
  the model (or service) it belongs to, ``orphan`` for a leaked process, ``""`` for none
- ``ocrtui_model_state{model, ocrtui_model_state}``: a state set (down, starting, ready,
  unhealthy, crashed)
- ``ocrtui_model_restarts_total{model}``: restarts this process asked for
- ``ocrtui_model_sleep_level{model}``: vLLM's sleep mode, -1 awake, else the level;
  ``ocrtui_model_given_back_bytes{model}``: while asleep, the memory its wake-up takes back
- ``ocrtui_orphans{model}``: leaked vLLM processes found now, by the model they belonged to
- ``ocrtui_orphans_killed_total``: orphans this process killed
- ``ocrtui_compare_pages_done_total{arm}``, ``ocrtui_compare_pages_failed_total{arm}``,
  ``ocrtui_compare_cer{arm}`` (the mean so far), ``ocrtui_compare_images_per_second{arm}``

The address must be a loopback one unless ``allow_remote`` is set: the series name the
pod's processes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from ocrtui.compare.progress import ArmProgress
from ocrtui.config import ListenAddress
from ocrtui.errors import ConfigError
from ocrtui.status import ModelState, Snapshot

MIB = 1024 * 1024
MODEL_STATES: tuple[str, ...] = get_args(ModelState)


class SnapshotSource(Protocol):
    """What the endpoint reads a pod from: a ``Controller``, or the dashboard's pod source."""

    @property
    def snapshot(self) -> Snapshot: ...


class _SnapshotCollector(Collector):
    def __init__(
        self,
        sources: Sequence[SnapshotSource],
        arms: Callable[[], MappingProxyType[str, ArmProgress]],
        by_pod: bool,
    ) -> None:
        self._sources = tuple(sources)
        self._arms = arms
        self._by_pod = by_pod

    def collect(self) -> Iterator[Metric]:
        pods = _Pods(tuple(s.snapshot for s in self._sources), by_pod=self._by_pod)
        yield from _pod_metrics(pods)
        yield from _gpu_metrics(pods)
        yield from _model_metrics(pods)
        yield from _arm_metrics(tuple(self._arms().values()))


@dataclass(frozen=True)
class _Pods:
    """The pods' latest snapshots in one scrape; ``by_pod``: every pod series carries a
    ``pod`` label first (several pods), else none (one pod: the series as they always were).
    Each family is built once over all pods: a name may appear only once in an exposition."""

    snaps: tuple[Snapshot, ...]
    by_pod: bool

    def labels(self, *names: str) -> list[str]:
        return ["pod", *names] if self.by_pod else list(names)

    def values(self, snap: Snapshot, *values: str) -> list[str]:
        return [snap.pod.label, *values] if self.by_pod else list(values)


def _pod_metrics(pods: _Pods) -> Iterator[Metric]:
    connected = GaugeMetricFamily(
        "ocrtui_pod_connected", "1 while the link to the pod is up", labels=pods.labels()
    )
    idle = GaugeMetricFamily(
        "ocrtui_pod_idle_seconds",
        "Since a model last had a request running or waiting",
        labels=pods.labels(),
    )
    price = GaugeMetricFamily(
        "ocrtui_pod_price_per_hour",
        "The rental's price per hour ([pod.provider])",
        labels=pods.labels(),
    )
    for snap in pods.snaps:
        connected.add_metric(pods.values(snap), 1 if snap.pod.connection == "connected" else 0)
        if snap.pod.idle_s is not None:
            idle.add_metric(pods.values(snap), snap.pod.idle_s)
        if snap.pod.price_per_hr is not None:
            price.add_metric(pods.values(snap), snap.pod.price_per_hr)
    yield connected
    # Not known: not made up (a family without samples is left out).
    yield from (family for family in (idle, price) if family.samples)


def _gpu_metrics(pods: _Pods) -> Iterator[Metric]:
    total = GaugeMetricFamily(
        "ocrtui_gpu_memory_total_bytes", "GPU memory", labels=pods.labels("gpu")
    )
    used = GaugeMetricFamily(
        "ocrtui_gpu_memory_used_bytes", "GPU memory in use", labels=pods.labels("gpu")
    )
    owner = GaugeMetricFamily(
        "ocrtui_gpu_owner_memory_bytes",
        "GPU memory by owner: a model, orphan (leaked vLLM processes) or other",
        labels=pods.labels("gpu", "model"),
    )
    process = GaugeMetricFamily(
        "ocrtui_process_memory_bytes",
        "GPU memory of one process, with the model it belongs to (orphan: leaked)",
        labels=pods.labels("gpu", "pid", "kind", "model"),
    )
    for snap in pods.snaps:
        for g in snap.gpus:
            gpu = str(g.index)
            total.add_metric(pods.values(snap, gpu), g.total_mib * MIB)
            used.add_metric(pods.values(snap, gpu), g.used_mib * MIB)
            for share in g.models:
                owner.add_metric(pods.values(snap, gpu, share.name), share.used_mib * MIB)
            owner.add_metric(pods.values(snap, gpu, "orphan"), g.orphan_mib * MIB)
            owner.add_metric(
                pods.values(snap, gpu, "other"), (g.other_mib + g.unattributed_mib) * MIB
            )
        for p in snap.processes:
            model = "orphan" if p.kind == "orphan" else (p.owner or "")
            process.add_metric(
                pods.values(snap, str(p.gpu), str(p.pid), p.kind, model), p.used_mib * MIB
            )
    yield from (total, used, owner, process)


def _model_metrics(pods: _Pods) -> Iterator[Metric]:
    state = StateSetMetricFamily("ocrtui_model_state", "Model state", labels=pods.labels("model"))
    restarts = CounterMetricFamily(
        "ocrtui_model_restarts", "Restarts this ocrtui asked for", labels=pods.labels("model")
    )
    sleep = GaugeMetricFamily(
        "ocrtui_model_sleep_level",
        "vLLM's sleep mode: the level a model sleeps at (0 paused, 1 weights offloaded, 2 "
        "discarded); -1 awake",
        labels=pods.labels("model"),
    )
    given_back = GaugeMetricFamily(
        "ocrtui_model_given_back_bytes",
        "GPU memory a sleeping model gave back: what its wake-up takes again",
        labels=pods.labels("model"),
    )
    orphans = GaugeMetricFamily(
        "ocrtui_orphans", "Leaked vLLM processes found now", labels=pods.labels("model")
    )
    killed = CounterMetricFamily(
        "ocrtui_orphans_killed", "Orphans this ocrtui killed", labels=pods.labels()
    )
    for snap in pods.snaps:
        for m in snap.models:
            at = pods.values(snap, m.name)
            state.add_metric(at, {s: s == m.state for s in MODEL_STATES})
            restarts.add_metric(at, m.restarts)
            sleep.add_metric(at, -1 if m.sleep_level is None else m.sleep_level)
            if m.given_back_mib is not None:
                given_back.add_metric(at, m.given_back_mib * MIB)
        found: dict[str, int] = {}
        for o in snap.orphans:
            found[o.model] = found.get(o.model, 0) + 1
        for model, count in sorted(found.items()):
            orphans.add_metric(pods.values(snap, model), count)
        killed.add_metric(pods.values(snap), snap.orphans_killed)
    yield from (state, restarts, sleep, given_back, orphans, killed)


def _arm_metrics(arms: tuple[ArmProgress, ...]) -> Iterator[Metric]:
    done = CounterMetricFamily("ocrtui_compare_pages_done", "Pages read by an arm", labels=["arm"])
    failed = CounterMetricFamily(
        "ocrtui_compare_pages_failed", "Pages an arm failed", labels=["arm"]
    )
    cer = GaugeMetricFamily("ocrtui_compare_cer", "Mean CER so far", labels=["arm"])
    speed = GaugeMetricFamily(
        "ocrtui_compare_images_per_second", "Pages per second", labels=["arm"]
    )
    for a in arms:
        done.add_metric([a.arm], a.pages_done)
        failed.add_metric([a.arm], a.pages_failed)
        if a.cer is not None:
            cer.add_metric([a.arm], a.cer)
        if a.images_per_s is not None:
            speed.add_metric([a.arm], a.images_per_s)
    yield from (done, failed, cer, speed)


class MetricsExporter:
    """The endpoint over the pods' snapshot sources (in config order); :meth:`serve` binds
    it, :meth:`close` stops it. ``by_pod``: label every pod series with its pod (default:
    when there are several sources; ``ocrtui export`` says whether the fleet has several, so
    that a fleet's series keep their label when only one of its pods could be reached)."""

    def __init__(self, sources: Sequence[SnapshotSource], *, by_pod: bool | None = None) -> None:
        # Replaced whole on each update, never mutated: the server thread reads it unlocked.
        self._arms: MappingProxyType[str, ArmProgress] = MappingProxyType({})
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(
            _SnapshotCollector(
                sources, lambda: self._arms, len(sources) > 1 if by_pod is None else by_pod
            )
        )
        self._server: tuple[WSGIServer, threading.Thread] | None = None

    def arm_progress(self, progress: ArmProgress) -> None:
        """A comparison arm's latest numbers (from an ArmTally over the run's events)."""
        self._arms = MappingProxyType({**self._arms, progress.arm: progress})

    def serve(self, address: ListenAddress) -> ListenAddress:
        """Listen (in prometheus_client's own thread); the bound address. ConfigError when
        the address cannot be bound."""
        try:
            server, thread = start_http_server(address.port, address.host, self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {address.url}: {exc.strerror or exc}") from None
        self._server = (server, thread)
        return ListenAddress(address.host, server.server_port)

    async def close(self) -> None:
        if self._server is None:
            return
        server, thread = self._server
        self._server = None
        # shutdown() waits for the serving loop's next poll (up to 0.5 s): off the event loop.
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        await asyncio.to_thread(thread.join)
