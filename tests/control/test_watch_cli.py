"""``ocrtui watch`` as a command: it restarts a crashed model, gives up after
``max_restarts``, exits 0 on SIGTERM; another process's ``ocrtui status --json`` then shows
the guard's verdict, read back from the events file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.plugins.sim_pod import SimPod

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WAIT_S = 40.0


def ocrtui(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrtui", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def glm_status(cfg: Path) -> dict[str, Any]:
    proc = ocrtui(cfg, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    glm: dict[str, Any] = json.loads(proc.stdout)["models"][0]
    return glm


async def test_watch_restarts_then_gives_up_and_status_says_so(
    sim_pod: SimPod, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    cfg = tmp_path / "ocrtui.toml"
    data = {
        "pod": {"kind": "local", **sim_pod.pod_fields()},
        "models": [sim_pod.model("glm")],
        "watchdog": {"max_restarts": 1, "events": str(events)},
    }
    cfg.write_text(tomli_w.dumps(data))
    assert (await asyncio.to_thread(ocrtui, cfg, "up")).returncode == 0
    first = await asyncio.to_thread(glm_status, cfg)
    watch = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ocrtui", "--config", str(cfg), "watch",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watch.stdout is not None
    try:
        line = await asyncio.wait_for(watch.stdout.readline(), WAIT_S)
        assert line.startswith(b"watching; events in ")
        os.kill(first["pid"], signal.SIGKILL)
        event = json.loads(await asyncio.wait_for(watch.stdout.readline(), WAIT_S))
        assert (event["model"], event["why"], event["outcome"]) == ("glm", "crashed", "restarted")
        second = await asyncio.to_thread(glm_status, cfg)
        assert second["state"] == "ready" and second["pid"] != first["pid"]
        os.kill(second["pid"], signal.SIGKILL)
        event = json.loads(await asyncio.wait_for(watch.stdout.readline(), WAIT_S))
        assert event["outcome"] == "gave up: 1 restarts within 10 min"
        watch.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(watch.wait(), WAIT_S) == 0
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    glm = await asyncio.to_thread(glm_status, cfg)
    assert glm["state"] == "crashed"
    assert glm["watchdog"] == {"state": "gave up", "restarts": 1, "last_hint": glm["hint"]}
    text = (await asyncio.to_thread(ocrtui, cfg, "status")).stdout
    assert "  watchdog: gave up after 1 restarts" in text
