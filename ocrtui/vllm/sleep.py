"""Sleep and wake: vLLM's sleep mode for ``ocrtui sleep|wake NAME`` and the dashboard's key.

A ready model sleeps through ``POST /sleep?level=N``: vLLM aborts its requests in flight,
pauses its scheduler and, when started with ``--enable-sleep-mode``, gives its GPU memory
back (level 1: weights offloaded to host memory, KV cache freed; level 2: both discarded).
Without the flag it pauses and frees nothing (a warning says so). vLLM serves these
endpoints only with ``VLLM_SERVER_DEV_MODE=1`` in the server's environment, which
:func:`ocrtui.vllm.plan.serve_env` sets for a model with the flag; a server without it
answers 404, turned into a LifecycleError saying so. ``wake`` is ``POST /wake_up`` and,
after a level-2 sleep, ``collective_rpc("reload_weights")`` (the wake-up alone leaves the
discarded weights unset). Each waits until the watcher's next polls read
``vllm:engine_sleep_state`` at the new level and, where memory moves, the agent's sample
shows the model's processes holding less (sleep) or more (wake) than before: the status
(``ModelStatus.sleep_level``, ``given_back_mib``) is then the one that the card, the GPU
panel and ``status --json`` show.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ocrtui.config import ModelConfig
from ocrtui.errors import LifecycleError
from ocrtui.status import ModelStatus
from ocrtui.vllm.client import VllmClient
from ocrtui.vllm.plan import DEV_MODE_ENV, SLEEP_MODE_FLAG, sleep_mode_enabled
from ocrtui.vllm.watch import ModelWatcher

SLEEP_LEVELS = (1, 2)
# A sleep waits for the requests in flight to abort and the memory to go; a wake-up for
# the memory, and a reload for the weights read again from disk.
HTTP_TIMEOUT_S = 300.0
SEEN_TIMEOUT_S = 30.0  # until the watcher's polls read the new sleep state


def _refused(name: str, what: str, exc: httpx.HTTPError) -> LifecycleError:
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code == 404:
            return LifecycleError(
                f"{name}'s server has no /{what}: vLLM serves sleep mode's endpoints only with "
                f"{DEV_MODE_ENV}=1",
                f"add {SLEEP_MODE_FLAG} to the model's extra_args (ocrtui then starts it with "
                f"{DEV_MODE_ENV}=1) and restart it",
            )
        try:
            body = exc.response.json()
            detail = body["error"]["message"] if "error" in body else body
        except (ValueError, KeyError, TypeError):
            detail = exc.response.text[:300]
        return LifecycleError(f"{name}: POST /{what} answered {code}: {detail}")
    return LifecycleError(f"{name}: POST /{what} failed: {type(exc).__name__}: {exc}")


async def sleep(
    client: VllmClient, model: ModelConfig, watcher: ModelWatcher, level: int
) -> list[str]:
    """Put a ready model to sleep at ``level`` (1 or 2); the warnings to show. Raises
    LifecycleError (not ready, already asleep, no dev mode, the server's error)."""
    name = model.name
    if level not in SLEEP_LEVELS:
        raise LifecycleError(f"sleep level {level}: must be 1 or 2")
    status = watcher.status(name)
    if status.sleeping:
        raise LifecycleError(
            f"{name} is asleep already (level {status.sleep_level})", f"ocrtui wake {name}"
        )
    if status.state != "ready":
        raise LifecycleError(f"{name} is {status.state}: only a ready server can sleep")
    warnings = []
    if not sleep_mode_enabled(model):
        warnings.append(
            f"{name} was not started with {SLEEP_MODE_FLAG}: it pauses but gives no memory back"
        )
    try:
        await client.sleep(level)
    except httpx.HTTPError as exc:
        raise _refused(name, "sleep", exc) from None
    # The agent's sample of the GPU may come a moment after the gauge: with memory to give
    # back, done once the model's processes hold less than before.
    before = status.used_mib
    gives_back = sleep_mode_enabled(model) and status.planned_mib is not None and before > 0

    def done(s: ModelStatus) -> bool:
        return s.sleep_level == level and (not gives_back or s.used_mib < before)

    await _until_seen(watcher, name, done, f"asleep at level {level}")
    return warnings


async def wake(client: VllmClient, model: ModelConfig, watcher: ModelWatcher) -> None:
    """Wake a sleeping model (reloading its weights after a level-2 sleep). Raises
    LifecycleError (not asleep, the memory taken meanwhile, the server's error)."""
    name = model.name
    status = watcher.status(name)
    if not status.sleeping:
        raise LifecycleError(f"{name} is not asleep ({status.state})")
    try:
        await client.wake_up()
    except httpx.HTTPError as exc:
        error = _refused(name, "wake_up", exc)
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 500:
            error.hint = (
                f"its wake-up takes {status.given_back_mib} MiB back: free that much on its "
                f"GPU (stop what started meanwhile), then wake it again"
            )
        raise error from None
    if status.sleep_level == 2:
        try:
            await client.reload_weights()
        except httpx.HTTPError as exc:
            raise _refused(name, "collective_rpc", exc) from None
    before, takes_back = status.used_mib, bool(status.given_back_mib)

    def done(s: ModelStatus) -> bool:
        return s.sleep_level is None and (not takes_back or s.used_mib > before)

    await _until_seen(watcher, name, done, "awake")


async def _until_seen(
    watcher: ModelWatcher, name: str, done: Callable[[ModelStatus], bool], what: str
) -> None:
    try:
        await watcher.wait_model(name, done, SEEN_TIMEOUT_S)
    except TimeoutError:
        now = watcher.status(name)
        gauge = "awake" if now.sleep_level is None else f"level {now.sleep_level}"
        raise LifecycleError(
            f"{name}: the server answered, but after {SEEN_TIMEOUT_S:.0f} s it is not seen "
            f"{what}: vllm:engine_sleep_state says {gauge}, its processes hold "
            f"{now.used_mib} MiB"
        ) from None
