"""The headless commands: ``ocrtui status``, ``up``, ``down``, ``restart``, ``sleep``,
``wake``, ``export``, ``watch``, ``adopt`` (called by cli.py).

``restart NAME`` takes a model's or a service's name; ``up`` / ``down`` cover both.

Each runs one :class:`Controller` for its duration and returns the exit code; progress
lines ``NAME: step`` go to stdout, errors plus ``hint:`` to stderr. The model servers keep
running after the command (they are detached on the pod).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable

from ocrtui.config import Config, ListenAddress
from ocrtui.control import Controller
from ocrtui.errors import LifecycleError
from ocrtui.export import MetricsExporter
from ocrtui.status import Snapshot, WatchdogStatus
from ocrtui.vllm.watch import FIRST_POLL_WAIT_S
from ocrtui.watchdog import Watchdog, WatchdogEvent, gave_up_from_events


def _print_progress(name: str, step: str) -> None:
    print(f"{name}: {step}", flush=True)


async def _with_controller(
    config: Config, demo: bool, body: Callable[[Controller], Awaitable[int]]
) -> int:
    ctl = Controller(config, demo=demo)
    try:
        await ctl.start()
        return await body(ctl)
    finally:
        await ctl.close()


def _run_operation(
    config: Config, demo: bool, body: Callable[[Controller], Awaitable[None]]
) -> int:
    async def run(ctl: Controller) -> int:
        try:
            await body(ctl)
        except LifecycleError as exc:
            print(f"ocrtui: {exc.message}", file=sys.stderr)
            if exc.hint:
                print(f"hint: {exc.hint}", file=sys.stderr)
            return exc.exit_code
        return 0

    return asyncio.run(_with_controller(config, demo, run))


def status_command(config: Config, as_json: bool, *, demo: bool = False) -> int:
    """One snapshot, after one complete health poll that had the agent's data (bounded),
    and the ready servers' probes (their advisories); a watchdog's ``gave up`` from its
    events file for each model or service not ready now."""

    async def run(ctl: Controller) -> int:
        with contextlib.suppress(TimeoutError):
            await ctl.watcher.wait_informed(FIRST_POLL_WAIT_S)
        await asyncio.gather(*(ctl.served(m.name) for m in config.models))
        with contextlib.suppress(TimeoutError):
            await ctl.wait_services(FIRST_POLL_WAIT_S)
        gave_up = await asyncio.to_thread(gave_up_from_events, config.watchdog.events_path)
        now = ctl.snapshot
        for name, verdict in gave_up.items():
            unit = now.model(name) or now.service(name)
            if unit is not None and unit.state != "ready":
                ctl.set_watchdog(name, verdict)
        snap = ctl.snapshot
        if as_json:
            print(json.dumps(snap.to_json(), indent=2))
        else:
            print(format_status(snap))
        return 0

    return asyncio.run(_with_controller(config, demo, run))


def format_status(snap: Snapshot) -> str:
    pod = snap.pod
    lines = [
        f"pod {pod.label}: {pod.connection}"
        + (" (DEMO)" if pod.demo else "")
        + (f"; agent: {pod.agent_error}" if pod.agent_error else "")
        + (f"; ${pod.price_per_hr:.2f}/h" if pod.price_per_hr is not None else "")
        + (f"; {pod.idle_notice}" if pod.idle_notice else "")
    ]
    for g in snap.gpus:
        sim = " (simulated GPU)" if g.simulated and "simulated" not in g.name else ""
        lines.append(
            f"GPU {g.index} {g.name}{sim}: {g.used_mib}/{g.total_mib} MiB used, {g.free_mib} free"
        )
    for p in snap.processes:
        lines.append(f"  pid {p.pid:>7} {p.used_mib:>7} MiB  {p.model or '-':<20} {p.title}")
    for m in snap.models:
        extra = f" ({m.stage})" if m.stage else ""
        lines.append(f"model {m.name} :{m.port} {m.state}{extra} pid={m.pid or '-'}")
        if m.sleep_text:
            lines.append(f"  {m.sleep_text}")
        if m.hint:
            lines.append(f"  hint: {m.hint}")
        for a in m.advisories:
            lines.append(f"  {a.severity}: {a.text}")
        lines += _watchdog_lines(m.watchdog)
    for s in snap.services:
        up = f" up {s.uptime_s:.0f}s" if s.uptime_s is not None else ""
        by_hand = " (not started by ocrtui)" if not s.managed else ""
        lines.append(f"service {s.name} :{s.port} {s.state} pid={s.pid or '-'}{up}{by_hand}")
        if s.hint:
            lines.append(f"  hint: {s.hint}")
        lines += _watchdog_lines(s.watchdog)
    return "\n".join(lines)


def _watchdog_lines(w: WatchdogStatus | None) -> list[str]:
    if w is None or w.state != "gave up":
        return []
    last = f"; last crash: {w.last_hint}" if w.last_hint else ""
    return [f"  watchdog: gave up after {w.restarts} restarts{last}"]


def up_command(config: Config, demo: bool = False, *, force: bool = False) -> int:
    """``force``: start even where the preflight would refuse (each skip is printed)."""
    return _run_operation(config, demo, lambda ctl: ctl.up(_print_progress, force=force))


def down_command(config: Config, *, demo: bool = False) -> int:
    return _run_operation(config, demo, lambda ctl: ctl.down(_print_progress))


def restart_command(config: Config, name: str, *, demo: bool = False, force: bool = False) -> int:
    if not any(s.name == name for s in config.services):
        config.model(name)  # an unknown name is a usage error (exit 2) before connecting
    return _run_operation(config, demo, lambda ctl: ctl.restart(name, _print_progress, force=force))


def sleep_command(config: Config, name: str, level: int, *, demo: bool = False) -> int:
    """``ocrtui sleep NAME``: vLLM's sleep mode (ocrtui/vllm/sleep.py); the state it reached."""
    config.model(name)  # an unknown name is a usage error (exit 2) before connecting

    async def body(ctl: Controller) -> None:
        await ctl.sleep(name, level, _print_progress)
        _print_progress(name, _sleep_line(ctl.snapshot, name))

    return _run_operation(config, demo, body)


def wake_command(config: Config, name: str, *, demo: bool = False) -> int:
    config.model(name)

    async def body(ctl: Controller) -> None:
        await ctl.wake(name)
        _print_progress(name, _sleep_line(ctl.snapshot, name))

    return _run_operation(config, demo, body)


def _sleep_line(snap: Snapshot, name: str) -> str:
    m = snap.model(name)
    assert m is not None
    return m.sleep_text or f"awake ({m.state}), {m.used_mib} MiB on the GPU"


def export_command(config: Config, address: ListenAddress, *, demo: bool = False) -> int:
    """Serve the metrics endpoint until SIGINT or SIGTERM (exit 0); the bound URL first."""

    async def run(ctl: Controller) -> int:
        exporter = MetricsExporter(lambda: ctl.snapshot)
        bound = exporter.serve(address)
        try:
            print(f"serving metrics at {bound.url}", flush=True)
            await _until_signalled()
        finally:
            await exporter.close()
        return 0

    return asyncio.run(_with_controller(config, demo, run))


def watch_command(config: Config, *, demo: bool = False) -> int:
    """Run the watchdog until SIGINT or SIGTERM (exit 0); each event's JSON line on stdout
    as it is appended to the events file."""

    def show(event: WatchdogEvent) -> None:
        print(event.line(), flush=True)

    async def run(ctl: Controller) -> int:
        with contextlib.suppress(TimeoutError):
            await ctl.watcher.wait_informed(FIRST_POLL_WAIT_S)
        dog = Watchdog(ctl, config.watchdog, on_event=show)
        dog.start()
        try:
            print(f"watching; events in {config.watchdog.events_path}", flush=True)
            await _until_signalled()
        finally:
            await dog.close()
        return 0

    return asyncio.run(_with_controller(config, demo, run))


def adopt_command(config: Config, *, demo: bool = False) -> int:
    """The vLLM servers on the pod that no ``[[models]]`` names, each with its block to
    paste (``vllm/adopt.py``); exit 0, also when there are none."""

    async def run(ctl: Controller) -> int:
        with contextlib.suppress(TimeoutError):
            await ctl.watcher.wait_informed(FIRST_POLL_WAIT_S)
        if ctl.monitor.view.sample is None:
            print("ocrtui: no agent sample from the pod: cannot list its servers", file=sys.stderr)
            return 1
        found = ctl.strangers()
        if not found:
            print("# no vLLM server on the pod that the config does not name")
        print("\n".join(s.block() for s in found), end="")
        return 0

    return asyncio.run(_with_controller(config, demo, run))


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
