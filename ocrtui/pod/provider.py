"""The pod's power state from its rental provider (``[pod.provider]``).

Step 1 of the handoff note's recovery is not SSH but the provider's own tool, run on the
operator's machine: ``python3 scripts/runpod_manager.py --action status``, and ``--action
start --pod-id ID`` when the pod is stopped. Both commands are argv lists from the config,
run here as local subprocesses (never over SSH: a stopped pod has no sshd), in their own
process group, killed as a group when they outlast ``timeout_s``.

The status command's output (stdout, then stderr) is read with ``state_json`` (a path into
JSON output, ocrtui/jsonpath.py) or else ``state_regex`` (the group ``state``, else the
whole match); the value is compared case-insensitively with ``running_values`` /
``stopped_values``. Anything else is ``unknown``, with the reason in ``detail``.

With JSON output, ``ssh_host_json`` / ``ssh_port_json`` / ``price_json`` read where SSH
answers and the price per hour into the state (absent or unreadable: None); after a start
the Controller moves the SSH target there (a restarted pod may come back on another port).
A failed command whose output says the host has no free GPU (RunPod: "There are not enough
free GPUs on the host machine to start this pod.") carries ``NO_FREE_GPU_HINT``, and so does
a state in ``no_gpu_values`` (vast.ai's "scheduling": stopped, waiting for the host's GPU).

``ocrtui pod status|start`` (:func:`provider_command`) prints one state line; exit 0 when the
state is known, 1 when a command failed, timed out or said nothing readable, 2 config error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ocrtui.config import Config, ProviderConfig
from ocrtui.errors import ConfigError, HintedError
from ocrtui.jsonpath import PathMissing, compile_path

PowerState = Literal["running", "stopped", "unknown"]
DETAIL_CHARS = 200


# The reply of RunPod's API to starting a stopped pod whose machine has no GPU left
# (runpod/runpod-python issue 168), and the like from other rentals.
NO_FREE_GPU = re.compile(
    r"(?i)not enough free GPUs?|no (free|available) GPUs?|GPUs? (are )?(not|no longer) available"
)
NO_FREE_GPU_HINT = (
    "the pod's host has no free GPU now: wait and start it again later, or move its volume "
    "to a new pod on another host"
)


class ProviderCommandError(HintedError):
    """A provider command could not be run, failed or timed out; ``hint`` what it means
    when the output says so."""


@dataclass(frozen=True)
class ProviderState:
    state: PowerState
    detail: str  # the line (or JSON value) the state was read from, or why it is unknown
    failed: bool = False  # the status command itself failed (not run, exit != 0, timeout)
    ssh_host: str | None = None  # where SSH answers, when the provider says (ssh_host_json)
    ssh_port: int | None = None
    price_per_hr: float | None = None  # price_json
    hint: str | None = None  # what the state means when it needs saying (no free GPU)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text[:DETAIL_CHARS] + ("..." if len(text) > DETAIL_CHARS else "")


async def run_provider_command(argv: Sequence[str], timeout_s: float) -> tuple[str, str]:
    """Run a local command; (stdout, stderr). ProviderCommandError on failure."""
    what = argv[0]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a timeout kills the script and whatever it started
        )
    except OSError as exc:
        raise ProviderCommandError(f"cannot run {what!r}: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise ProviderCommandError(f"{what!r} timed out after {timeout_s:g} s") from None
        raise
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        last = (stderr.strip() or stdout.strip()).splitlines()[-1:] or [""]
        raise ProviderCommandError(
            f"{what!r} exited with status {proc.returncode}"
            + (f": {_short(last[0])}" if last[0] else ""),
            NO_FREE_GPU_HINT if NO_FREE_GPU.search(stdout + stderr) else None,
        )
    return stdout, stderr


def parse_state(cfg: ProviderConfig, stdout: str, stderr: str = "") -> ProviderState:
    """The power state in a status command's output (pure): JSON from stdout; the regex
    over stdout, then stderr."""
    output = stdout + ("\n" + stderr if stderr else "")
    facts: dict[str, Any]
    if cfg.state_json is not None:
        try:
            body = json.loads(stdout)
        except ValueError as exc:
            return ProviderState("unknown", f"output is not JSON ({exc}): {_short(stdout)!r}")
        try:
            values = compile_path(cfg.state_json).extract(body)
        except PathMissing as exc:
            return ProviderState("unknown", f"state_json {cfg.state_json}: {_short(str(exc))}")
        value = values[0] if len(values) == 1 else values
        found, where = str(value), f"{cfg.state_json} = {value}"
        facts = _facts(cfg, body)
    else:
        m = re.search(cfg.state_regex, output)
        if m is None:
            first = output.strip().splitlines()[:1]
            said = _short(first[0]) if first else "(no output)"
            return ProviderState("unknown", f"no match for {cfg.state_regex!r} in: {said}")
        found = m.group("state") if "state" in m.re.groupindex else m.group(0)
        start = output.rfind("\n", 0, m.start()) + 1
        end = output.find("\n", m.end())
        where = _short(output[start : end if end >= 0 else None])
        facts = {}
    lowered = found.strip().lower()
    if lowered in (v.lower() for v in cfg.running_values):
        return ProviderState("running", where, **facts)
    if lowered in (v.lower() for v in cfg.stopped_values):
        return ProviderState("stopped", where, **facts)
    if lowered in (v.lower() for v in cfg.no_gpu_values):
        return ProviderState("stopped", where, hint=NO_FREE_GPU_HINT, **facts)
    return ProviderState("unknown", f"{found!r} is neither running nor stopped ({where})", **facts)


def _facts(cfg: ProviderConfig, body: object) -> dict[str, Any]:
    """SSH host, port and price from JSON output; each None where absent or malformed."""

    def one(path: str | None) -> object:
        if path is None:
            return None
        try:
            values = compile_path(path).extract(body)
        except PathMissing:
            return None
        return values[0] if len(values) == 1 else None

    host, port, price = one(cfg.ssh_host_json), one(cfg.ssh_port_json), one(cfg.price_json)
    return {
        "ssh_host": host if isinstance(host, str) and host else None,
        "ssh_port": port if isinstance(port, int) and 0 < port < 65536 else None,
        "price_per_hr": float(price)
        if isinstance(price, int | float) and not isinstance(price, bool)
        else None,
    }


async def provider_state(cfg: ProviderConfig) -> ProviderState:
    """Ask the provider; a failed command is state ``unknown`` with ``failed`` set."""
    try:
        stdout, stderr = await run_provider_command(cfg.status_command, cfg.timeout_s)
    except ProviderCommandError as exc:
        return ProviderState("unknown", str(exc), failed=True)
    return parse_state(cfg, stdout, stderr)


async def provider_start(cfg: ProviderConfig) -> ProviderState:
    """Run ``start_command`` (ProviderCommandError when it fails), then ask for the state."""
    if cfg.start_command is None:
        raise ConfigError("[pod.provider] has no start_command")
    await run_provider_command(cfg.start_command, cfg.timeout_s)
    return await provider_state(cfg)


def provider_command(config: Config, action: Literal["status", "start"]) -> int:
    """``ocrtui pod status|start``: one state line on stdout; the exit code."""
    cfg = config.pod.provider
    if cfg is None:
        raise ConfigError(
            "no [pod.provider] in the config: set status_command (and start_command), "
            "e.g. the rental's own CLI (see ocrtui.example.toml)"
        )
    try:
        state = asyncio.run(provider_state(cfg) if action == "status" else provider_start(cfg))
    except ProviderCommandError as exc:
        print(f"ocrtui: pod {config.pod.label}: start failed: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    line = f"pod {config.pod.label}: {state.state} ({state.detail})" + "".join(
        f"; {fact}" for fact in describe(state)
    )
    if state.state == "unknown":
        print(line, file=sys.stderr)
        return 1
    print(line)
    if state.hint:
        print(f"hint: {state.hint}", file=sys.stderr)
    return 0


def describe(state: ProviderState) -> list[str]:
    """The SSH address and price the provider gave, as the status line shows them."""
    facts = []
    if state.ssh_host is not None or state.ssh_port is not None:
        facts.append(f"ssh {state.ssh_host or '?'}:{state.ssh_port or '?'}")
    if state.price_per_hr is not None:
        facts.append(f"${state.price_per_hr:.3f}/h")
    return facts


POWER_RECHECK_S = 30.0  # while the link keeps failing, ask the provider at most this often


class PowerWatch:
    """The pod's power state as the dashboard shows it: asked in the background, one
    question at a time, and (unless forced) not again within ``POWER_RECHECK_S``; every
    answer is passed to ``on_change``. Inert without ``[pod.provider]``."""

    def __init__(
        self, cfg: ProviderConfig | None, on_change: Callable[[], None], *, recheck_s: float
    ) -> None:
        self.cfg = cfg
        self.state: ProviderState | None = None
        self._on_change = on_change
        self._recheck_s = recheck_s
        self._task: asyncio.Task[ProviderState | None] | None = None
        self._asked = -recheck_s

    def ask(self, *, force: bool = False) -> asyncio.Task[ProviderState | None] | None:
        if self.cfg is None:
            return None
        now = asyncio.get_running_loop().time()
        idle = self._task is None or self._task.done()
        if idle and (force or now - self._asked >= self._recheck_s):
            self._asked = now
            self._task = asyncio.create_task(self._fetch(self.cfg), name="ocrtui-power")
        return self._task

    async def _fetch(self, cfg: ProviderConfig) -> ProviderState:
        self.state = await provider_state(cfg)
        self._on_change()
        return self.state

    async def now(self) -> ProviderState | None:
        """The provider's answer, asked now (None without ``[pod.provider]``)."""
        task = self.ask(force=True)
        return None if task is None else await task

    async def start(self) -> ProviderState:
        """Run the provider's ``start_command`` (ProviderCommandError / ConfigError)."""
        if self.cfg is None:
            raise ConfigError("no [pod.provider] in the config")
        self.state = await provider_start(self.cfg)
        self._on_change()
        return self.state

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the provider command's process group is killed
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
