"""ServiceRunner against real processes, through LocalPod and through a real sshd."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ocrtui.config import Config, start_order
from ocrtui.pod import Pod
from ocrtui.services import ServiceRunner, in_waves
from ocrtui.vllm.lifecycle import LifecycleError
from tests.plugins.processes import pid_alive
from tests.plugins.services_config import SERVICE_APP, services_config
from tests.plugins.sim import free_port

pytestmark = pytest.mark.timeout(60)


def _session(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[3]) == pid:
                out.append(int(entry.name))
    return out


def app_service(tmp_path: Path, name: str = "api", *args: str, **keys: Any) -> dict[str, Any]:
    port = keys.pop("port", None) or free_port()
    return {
        "name": name,
        "command": [sys.executable, SERVICE_APP, str(port), str(tmp_path / f"{name}.argv"), *args],
        "port": port,
        "ready_path": "/ready",
        "ready_timeout_s": 20.0,
        **keys,
    }


@asynccontextmanager
async def running(
    config: Config, pod: Pod, workdir: Path, **kw: Any
) -> AsyncIterator[ServiceRunner]:
    runner = ServiceRunner(config, pod, workdir=str(workdir), **kw)
    try:
        yield runner
    finally:
        await runner.aclose()


async def test_start_ready_stop_with_ready_path(pod: Pod, tmp_path: Path) -> None:
    config = services_config(
        [app_service(tmp_path, "api", "--child", env={"SERVICE_TEST_ENV": "v1"})]
    )
    async with running(config, pod, tmp_path) as runner:
        assert (await runner.status("api")).state == "down"
        status = await runner.start("api")
        assert status.state == "ready" and status.managed and status.pid is not None
        assert status.uptime_s is not None and status.uptime_s >= 0
        pid = status.pid
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # own session and group
        tree = _session(pid)
        assert len(tree) == 2  # the server and its child
        # The environment arrives, and never on the command line.
        assert "env=v1" in (tmp_path / "api.log").read_text()
        assert b"v1" not in await asyncio.to_thread(Path(f"/proc/{pid}/cmdline").read_bytes)
        assert (await runner.start("api")).pid == pid  # ready: left alone
        await runner.stop("api")
        assert not any(pid_alive(p) for p in tree)
        assert (await runner.status("api")).state == "down"


async def test_waves_start_each_service_after_its_dependencies(pod: Pod, tmp_path: Path) -> None:
    first = app_service(tmp_path, "first")
    # "second" dies at once unless "first" already accepts connections when it starts.
    second = app_service(tmp_path, "second", "--require-port", str(first["port"]), after=["first"])
    config = services_config([second, first])
    # Without the config's (never started) model.
    waves = [[n for n in wave if n != "m"] for wave in start_order(config)]
    assert waves == [["first"], ["second"]]
    async with running(config, pod, tmp_path) as runner:
        await in_waves(waves, runner.start)
        assert [s.state for s in await runner.statuses()] == ["ready", "ready"]
        await in_waves(waves[::-1], runner.stop)
        assert [s.state for s in await runner.statuses()] == ["down", "down"]


async def test_a_failed_wave_stops_the_next(pod: Pod, tmp_path: Path) -> None:
    bad = app_service(tmp_path, "bad", "--fail-unless", str(tmp_path / "never"))
    later = app_service(tmp_path, "later", after=["bad"])
    config = services_config([bad, later])
    async with running(config, pod, tmp_path) as runner:
        outcome = await in_waves([["bad"], ["later"]], runner.start)
        assert outcome.skipped == ("later",)
        with pytest.raises(LifecycleError, match="bad exited while starting"):
            outcome.raise_failures()
        assert (await runner.status("later")).state == "down"


async def test_bare_port_readiness(pod: Pod, tmp_path: Path) -> None:
    port = free_port()
    service = {
        "name": "files",
        "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        "port": port,
        "ready_timeout_s": 20.0,
    }
    async with running(services_config([service]), pod, tmp_path) as runner:
        status = await runner.start("files")
        assert status.state == "ready"
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # it really listens
        await runner.stop("files")
        assert (await runner.status("files")).state == "down"


async def test_not_ready_while_path_answers_non_2xx(pod: Pod, tmp_path: Path) -> None:
    service = app_service(tmp_path, "api", ready_path="/missing", ready_timeout_s=1.0)
    async with running(services_config([service]), pod, tmp_path) as runner:
        with pytest.raises(LifecycleError, match="not ready after 1 s \\(still starting\\)"):
            await runner.start("api")
        assert (await runner.status("api")).state == "starting"  # it runs, 404 on the path
        await runner.stop("api")


async def test_crash_hint_then_restart(pod: Pod, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    config = services_config([app_service(tmp_path, "api", "--fail-unless", str(flag))])
    async with running(config, pod, tmp_path) as runner:
        with pytest.raises(LifecycleError) as err:
            await runner.start("api")
        assert err.value.hint == f"RuntimeError: required file {flag} is missing"
        status = await runner.status("api")
        assert status.state == "crashed" and status.pid is None
        assert status.hint == err.value.hint
        assert any("Traceback" in line for line in status.last_lines)
        flag.write_text("")
        status = await runner.restart("api")
        assert status.state == "ready"
        # The old run's traceback stays in the log but no longer counts.
        await runner.stop("api")
        assert (await runner.status("api")).state == "down"


async def test_port_in_use_is_named(pod: Pod, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = {
            "name": "files",
            "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            "port": port,
        }
        async with running(services_config([service]), pod, tmp_path) as runner:
            # Something answers there, but nothing of ours: ready, not managed, never signalled.
            status = await runner.status("files")
            assert (status.state, status.managed, status.pid) == ("ready", False, None)
            await runner.launch("files")
            with pytest.raises(LifecycleError) as err:
                await runner.wait_ready("files")
            assert err.value.hint is not None
            assert err.value.hint.startswith(f"port {port} is already in use")
            assert (await runner.status("files")).state == "crashed"


async def test_stop_escalates_to_sigkill(pod: Pod, tmp_path: Path) -> None:
    config = services_config([app_service(tmp_path, "api", "--ignore-term")])
    steps: list[str] = []
    async with running(config, pod, tmp_path, stop_timeout_s=0.5) as runner:
        pid = (await runner.start("api")).pid
        assert pid is not None
        await runner.stop("api", lambda _name, step: steps.append(step))
        assert not pid_alive(pid)
    assert "still running after 0.5 s: SIGKILL" in steps


async def test_hostile_values_stay_one_argv_element(pod: Pod, tmp_path: Path) -> None:
    hostile = ["$(touch canary)", ";", "touch canary2", "a\nb", "`touch canary3`", "' \""]
    config = services_config(
        [app_service(tmp_path, "api", *hostile, env={"SERVICE_TEST_ENV": "$(touch canary4)"})]
    )
    workdir = tmp_path / "work dir; $(touch canary5)"
    workdir.mkdir()
    async with running(config, pod, workdir) as runner:
        await runner.start("api")
        argv = json.loads((tmp_path / "api.argv").read_text())
        assert argv[3:] == hostile
        await runner.stop("api")
    for where in (tmp_path, workdir, Path.cwd(), Path.home()):
        assert not any(where.glob("canary*")), where


async def test_unhealthy_after_ready_then_start_restarts(pod: Pod, tmp_path: Path) -> None:
    config = services_config([app_service(tmp_path, "api")])
    async with running(config, pod, tmp_path) as runner:
        pid = (await runner.start("api")).pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # alive, not answering
        try:
            assert (await runner.status("api")).state == "unhealthy"
            steps: list[str] = []
            status = await runner.start("api", lambda _name, step: steps.append(step))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        assert status.state == "ready" and status.pid != pid
        assert not pid_alive(pid)
        assert not any("SIGKILL" in step for step in steps)  # SIGCONT let SIGTERM act
        await runner.stop("api")


@pytest.mark.sshd
async def test_survives_disconnect(sshd: Any, tmp_path: Path) -> None:
    config = services_config([app_service(tmp_path, "api")])
    first = sshd.make_pod()
    await first.connect()
    async with running(config, first, tmp_path) as runner:
        pid = (await runner.start("api")).pid
    await first.close()
    assert pid is not None and pid_alive(pid)
    second = sshd.make_pod()
    await second.connect()
    try:
        async with running(config, second, tmp_path) as runner:
            status = await runner.status("api")
            assert (status.state, status.pid, status.managed) == ("ready", pid, True)
            await runner.stop("api")
            assert not pid_alive(pid)
    finally:
        await second.close()


async def test_status_json_shape(pod: Pod, tmp_path: Path) -> None:
    config = services_config([app_service(tmp_path, "api", gpu=True)])
    async with running(config, pod, tmp_path) as runner:
        entry = (await runner.statuses())[0].to_json()
    assert entry == {
        "name": "api",
        "port": config.services[0].port,
        "state": "down",
        "pid": None,
        "managed": True,
        "uptime_s": None,
        "gpu": True,
        "hint": None,
        "last_lines": [],
        "pids": [],
        "watchdog": None,
    }
    json.dumps(entry)


async def test_waves_go_on_past_a_failure_skipping_only_what_waits_for_it() -> None:
    """``up``'s rule: a failed model does not stop the models after it; a service waiting
    for it is skipped, and the failures are told together at the end."""
    ran: list[str] = []

    async def start(name: str) -> None:
        ran.append(name)
        if name == "glm":
            raise LifecycleError("glm failed to start", "serve without MTP")

    waves = [["glm"], ["lighton"], ["ocr-api", "pdf-api"]]
    after = {"ocr-api": ("glm", "lighton"), "pdf-api": ("lighton",)}
    outcome = await in_waves(waves, start, lambda n: after.get(n, ()))
    assert ran == ["glm", "lighton", "pdf-api"]
    assert [name for name, _ in outcome.failed] == ["glm"] and outcome.skipped == ("ocr-api",)
    with pytest.raises(LifecycleError) as raised:
        outcome.raise_failures()
    assert raised.value.message == ("glm failed to start; not run, as they wait for glm: ocr-api")
    assert raised.value.hint == "glm: serve without MTP"
    # Without ``needs`` (down): a failure skips every later wave.
    ran.clear()
    assert (await in_waves(waves, start)).skipped == ("lighton", "ocr-api", "pdf-api")
    assert ran == ["glm"]
