"""The headless commands: ``ocrtui status``, ``up``, ``down``, ``restart``, ``sleep``,
``wake``, ``export``, ``watch``, ``adopt`` (called by cli.py).

``restart NAME`` takes a model's or a service's name; ``up`` / ``down`` cover both.

Each runs one :class:`Controller` per pod (a :class:`FleetController`; cli.py's ``--pod
NAME`` narrows the fleet to one) for its duration and returns the exit code; progress
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

from ocrtui.config import Fleet, ListenAddress
from ocrtui.control import Controller, FleetController
from ocrtui.errors import LifecycleError
from ocrtui.export import MetricsExporter
from ocrtui.status import Snapshot, WatchdogStatus, fleet_json
from ocrtui.vllm.watch import FIRST_POLL_WAIT_S
from ocrtui.watchdog import Watchdog, WatchdogEvent, gave_up_from_events


def _print_progress(name: str, step: str) -> None:
    print(f"{name}: {step}", flush=True)


PodBody = Callable[[list[Controller]], Awaitable[int]]


async def _with_fleet(fleet: Fleet, demo: bool, body: PodBody) -> int:
    """Start every pod's Controller, run ``body`` over those that started, close them.

    One pod: its failure to start is raised, as ever (exit 3 unreachable, 2 config). Several:
    each failure is one ``ocrtui: pod NAME: ...`` line on stderr and the others go on; the
    exit status is the worst of the failures' and the body's."""
    ctl = FleetController(fleet, demo=demo)
    try:
        failed = await ctl.start()
        if failed and not fleet.several:
            raise next(iter(failed.values()))
        for name, exc in failed.items():
            print(f"ocrtui: pod {name}: {exc}", file=sys.stderr)
        started = [c for n, c in ctl.controllers.items() if n not in failed]
        code = await body(started) if started else 0
        return max([code, *(exc.exit_code for exc in failed.values())])
    finally:
        await ctl.close()


def _each(fleet: Fleet, demo: bool, one: Callable[[Controller], Awaitable[int]]) -> int:
    """``one`` on every pod at once (each pod its own link); the worst exit status."""

    async def body(controllers: list[Controller]) -> int:
        return max(await asyncio.gather(*(one(c) for c in controllers)))

    return asyncio.run(_with_fleet(fleet, demo, body))


def _run_operation(fleet: Fleet, demo: bool, op: Callable[[Controller], Awaitable[None]]) -> int:
    async def one(ctl: Controller) -> int:
        try:
            await op(ctl)
        except LifecycleError as exc:
            where = f"pod {ctl.config.pod.label}: " if fleet.several else ""
            print(f"ocrtui: {where}{exc.message}", file=sys.stderr)
            if exc.hint:
                print(f"hint: {exc.hint}", file=sys.stderr)
            return exc.exit_code
        return 0

    return _each(fleet, demo, one)


def status_command(fleet: Fleet, as_json: bool, *, demo: bool = False) -> int:
    """One snapshot per pod, after one complete health poll that had the agent's data
    (bounded), and the ready servers' probes (their advisories); a watchdog's ``gave up``
    from its events file for each model or service not ready now.

    A ``[pod]`` file prints its snapshot (``Snapshot.to_json()``, the contract); a
    ``[[pods]]`` file prints ``{"pods": [...]}``, each entry the pod's snapshot with its
    ``name`` and ``error`` (why it could not be reached; null when it answered), or the
    pod's text block under a ``== pod NAME`` line."""

    async def settle(ctl: Controller) -> Snapshot:
        config = ctl.config
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
        return ctl.snapshot

    async def run() -> int:
        fleet_ctl = FleetController(fleet, demo=demo)
        try:
            failed = await fleet_ctl.start()
            if failed and not fleet.listed:
                raise next(iter(failed.values()))
            names = [n for n in fleet_ctl.controllers if n not in failed]
            snaps = dict(
                zip(
                    names,
                    await asyncio.gather(*(settle(fleet_ctl.controllers[n]) for n in names)),
                    strict=True,
                )
            )
            for name, exc in failed.items():
                snaps[name] = fleet_ctl.controllers[name].snapshot
                print(f"ocrtui: pod {name}: {exc}", file=sys.stderr)
        finally:
            await fleet_ctl.close()
        errors = {n: str(exc) for n, exc in failed.items()}
        ordered = [(n, snaps[n]) for n in fleet_ctl.controllers]
        if as_json:
            out = fleet_json(ordered, errors) if fleet.listed else ordered[0][1].to_json()
            print(json.dumps(out, indent=2))
        elif fleet.listed:
            print("\n".join(f"== pod {n}\n{format_status(s)}" for n, s in ordered))
        else:
            print(format_status(ordered[0][1]))
        return max([0, *(exc.exit_code for exc in failed.values())])

    return asyncio.run(run())


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


def up_command(fleet: Fleet, demo: bool = False, *, force: bool = False) -> int:
    """``force``: start even where the preflight would refuse (each skip is printed).
    Every pod at once, each in its own start order."""
    return _run_operation(fleet, demo, lambda ctl: ctl.up(_print_progress, force=force))


def down_command(fleet: Fleet, *, demo: bool = False) -> int:
    return _run_operation(fleet, demo, lambda ctl: ctl.down(_print_progress))


def restart_command(fleet: Fleet, name: str, *, demo: bool = False, force: bool = False) -> int:
    """On the pod whose model or service ``name`` is, alone."""
    # An unknown name (an API arm's too) is a usage error (exit 2) before connecting.
    if not any(s.name == name for c in fleet.pods for s in c.services):
        fleet.arms_config().model(name)
    config = fleet.owner(name)
    return _run_operation(
        fleet.only(config.pod.label),
        demo,
        lambda ctl: ctl.restart(name, _print_progress, force=force),
    )


def sleep_command(fleet: Fleet, name: str, level: int, *, demo: bool = False) -> int:
    """``ocrtui sleep NAME``: vLLM's sleep mode (ocrtui/vllm/sleep.py) on the pod whose model
    ``name`` is; the state it reached."""
    fleet.arms_config().model(name)  # an unknown name is a usage error (exit 2) before connecting

    async def body(ctl: Controller) -> None:
        await ctl.sleep(name, level, _print_progress)
        _print_progress(name, _sleep_line(ctl.snapshot, name))

    return _run_operation(fleet.only(fleet.owner(name).pod.label), demo, body)


def wake_command(fleet: Fleet, name: str, *, demo: bool = False) -> int:
    fleet.arms_config().model(name)

    async def body(ctl: Controller) -> None:
        await ctl.wake(name)
        _print_progress(name, _sleep_line(ctl.snapshot, name))

    return _run_operation(fleet.only(fleet.owner(name).pod.label), demo, body)


def _sleep_line(snap: Snapshot, name: str) -> str:
    m = snap.model(name)
    assert m is not None
    return m.sleep_text or f"awake ({m.state}), {m.used_mib} MiB on the GPU"


def export_command(fleet: Fleet, address: ListenAddress, *, demo: bool = False) -> int:
    """Serve the metrics endpoint until SIGINT or SIGTERM (exit 0); the bound URL first.
    Every pod of ``fleet`` (``--pod NAME`` narrows it to one), each series labelled with its
    pod when there are several."""

    async def run(controllers: list[Controller]) -> int:
        exporter = MetricsExporter(controllers, by_pod=fleet.several)
        bound = exporter.serve(address)
        try:
            print(f"serving metrics at {bound.url}", flush=True)
            await _until_signalled()
        finally:
            await exporter.close()
        return 0

    return asyncio.run(_with_fleet(fleet, demo, run))


def watch_command(fleet: Fleet, *, demo: bool = False) -> int:
    """Run a watchdog on every pod until SIGINT or SIGTERM (exit 0); each event's JSON line
    on stdout as it is appended to the events file (model and service names say the pod)."""

    def show(event: WatchdogEvent) -> None:
        print(event.line(), flush=True)

    async def run(controllers: list[Controller]) -> int:
        await asyncio.gather(
            *(_informed(ctl) for ctl in controllers),
        )
        settings = fleet.pods[0].watchdog
        dogs = [Watchdog(ctl, settings, on_event=show) for ctl in controllers]
        for dog in dogs:
            dog.start()
        try:
            print(f"watching; events in {settings.events_path}", flush=True)
            await _until_signalled()
        finally:
            await asyncio.gather(*(dog.close() for dog in dogs))
        return 0

    return asyncio.run(_with_fleet(fleet, demo, run))


async def _informed(ctl: Controller) -> None:
    with contextlib.suppress(TimeoutError):
        await ctl.watcher.wait_informed(FIRST_POLL_WAIT_S)


def adopt_command(fleet: Fleet, *, demo: bool = False) -> int:
    """The vLLM servers on each pod that no ``[[models]]`` names, each with its block to
    paste (``vllm/adopt.py``; several pods: under a ``# pod NAME`` line); exit 0, also when
    there are none."""

    async def one(ctl: Controller) -> str | None:
        await _informed(ctl)
        if ctl.monitor.view.sample is None:
            return None
        found = ctl.strangers()
        if not found:
            return "# no vLLM server on the pod that the config does not name\n"
        return "".join(s.block() for s in found)

    async def run(controllers: list[Controller]) -> int:
        blocks = await asyncio.gather(*(one(c) for c in controllers))
        code = 0
        for ctl, block in zip(controllers, blocks, strict=True):
            where = f"pod {ctl.config.pod.label}" if fleet.several else "the pod"
            if block is None:
                print(
                    f"ocrtui: no agent sample from {where}: cannot list its servers",
                    file=sys.stderr,
                )
                code = 1
                continue
            if fleet.several:
                print(f"# pod {ctl.config.pod.label}")
            print(block, end="")
        return code

    return asyncio.run(_with_fleet(fleet, demo, run))


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
