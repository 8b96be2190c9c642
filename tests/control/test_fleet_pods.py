"""Two pods (issue #25): each its own sshd on a loopback port, simulated GPU and servers;
one pod's link dropping leaves the other's link, agent and server untouched; ``status
--json`` lists every pod and ``--pod NAME`` narrows to one; a headless comparison's metrics
endpoint serves both pods."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from ocrtui.compare.events import Event, PageDone, PageFailed, RunPaused
from ocrtui.compare.launch import CompareRequest, gate_for, resolve, start_comparison
from ocrtui.config import ListenAddress, parse_fleet
from ocrtui.control import FleetController
from ocrtui.status import Snapshot
from tests.plugins.compare_inputs import MakePdf
from tests.plugins.reaper import kill_writing_under
from tests.plugins.scrape import scrape
from tests.plugins.sim import free_port
from tests.plugins.sim_pod import SimPod
from tests.plugins.sshd import Sshd, SshdKeys

DEADLINE_S = 60.0
LINK_DOWN = ("lost", "reconnecting", "connecting")


@pytest.fixture
def two_sshd(tmp_path_factory: pytest.TempPathFactory, sshd_keys: SshdKeys) -> Iterator[list[Sshd]]:
    servers = [Sshd(tmp_path_factory.mktemp(f"sshd-{n}"), sshd_keys) for n in ("a", "b")]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def two_sim_pods(tmp_path: Path) -> Iterator[list[SimPod]]:
    pods = []
    for name in ("a40", "h100"):
        (tmp_path / name).mkdir()
        pods.append(SimPod(tmp_path / name))
    try:
        yield pods
    finally:
        for pod in pods:
            kill_writing_under(pod.workdir)


def pod_entry(sim: SimPod, name: str, model: str, **pod: Any) -> dict[str, Any]:
    return {
        "name": name,
        **pod,
        **sim.pod_fields(),
        "models": [sim.model(model)],
    }


async def test_one_pods_link_drop_leaves_the_other_untouched(
    two_sshd: list[Sshd], two_sim_pods: list[SimPod]
) -> None:
    entries = []
    for (sshd, sim), (name, model) in zip(
        zip(two_sshd, two_sim_pods, strict=True),
        [("a40", "glm-ocr"), ("h100", "lighton-ocr")],
        strict=True,
    ):
        fields = sshd.pod_config().model_dump(exclude_none=True, exclude={"name"})
        entries.append(pod_entry(sim, name, model, **fields))
    fleet = parse_fleet({"pods": entries, "ui": {"refresh_s": 0.25}}, "test")
    ctl = FleetController(fleet)
    a40, h100 = ctl.controllers["a40"], ctl.controllers["h100"]
    try:
        assert await ctl.start() == {}
        await asyncio.wait_for(asyncio.gather(a40.up(), h100.up()), DEADLINE_S)
        a40_seen: list[Snapshot] = []
        unsubscribe = a40.subscribe(a40_seen.append)
        sample = a40.monitor.view.sample
        two_sshd[1].stop()  # h100's sshd dies, with its open connections
        await h100.wait_until(lambda s: s.pod.connection in LINK_DOWN, DEADLINE_S)
        # a40 gets fresh agent samples while h100 is down, and its server answers.
        await a40.wait_until(lambda s: a40.monitor.view.sample is not sample, DEADLINE_S)
        async with httpx.AsyncClient(timeout=10) as client:
            health = await client.get(await ctl.model_url("glm-ocr") + "/health")
        assert health.status_code == 200
        assert h100.snapshot.pod.connection in LINK_DOWN
        unsubscribe()
        assert a40_seen and {s.pod.connection for s in a40_seen} == {"connected"}
        assert {s.model("glm-ocr").state for s in a40_seen} == {"ready"}  # type: ignore[union-attr]
        assert a40.placement("glm-ocr").pod == "a40"
        two_sshd[1].start()  # back on the same port: h100 reconnects alone
        back = await h100.wait_until(
            lambda s: (
                s.pod.connection == "connected"
                and (m := s.model("lighton-ocr")) is not None
                and m.state == "ready"
            ),
            DEADLINE_S,
        )
        assert back.pod.label == "h100"
    finally:
        await ctl.close()


def ocrtui(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrtui", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XDG_STATE_HOME": str(config.parent / "state")},
    )


@pytest.mark.timeout(240)  # a few CLI runs, each bounded at 120 s
def test_status_json_lists_every_pod_and_pod_narrows(
    tmp_path: Path, two_sim_pods: list[SimPod]
) -> None:
    a40, h100 = two_sim_pods
    data = {
        "pods": [
            pod_entry(a40, "a40", "glm-ocr", kind="local"),
            pod_entry(h100, "h100", "lighton-ocr", kind="local"),
        ]
    }
    config = tmp_path / "ocrtui.toml"
    config.write_text(tomli_w.dumps(data))
    every = ocrtui(config, "status", "--json")
    assert every.returncode == 0, every.stderr
    pods = json.loads(every.stdout)["pods"]
    assert [(p["name"], p["error"], p["pod"]["label"]) for p in pods] == [
        ("a40", None, "a40"),
        ("h100", None, "h100"),
    ]
    assert [m["name"] for m in pods[1]["models"]] == ["lighton-ocr"]
    assert pods[0]["gpus"] and pods[1]["gpus"]  # each pod's own agent and simulated GPU
    one = ocrtui(config, "status", "--json", "--pod", "h100")
    assert one.returncode == 0, one.stderr
    assert [p["name"] for p in json.loads(one.stdout)["pods"]] == ["h100"]
    unknown = ocrtui(config, "status", "--pod", "nope")
    assert unknown.returncode == 2
    assert "no pod named 'nope' (configured: a40, h100)" in unknown.stderr


FAST_SIM = ("--sim-prefill-s", "0.01", "--sim-per-token-s", "0.0001", "--sim-tokens-per-page", "40")


@pytest.mark.timeout(240)  # a few CLI runs, each bounded at 120 s
def test_a_comparison_with_one_arm_per_pod_names_each_arms_pod_and_gpu(
    tmp_path: Path, two_sim_pods: list[SimPod], make_pdf: MakePdf
) -> None:
    a40, h100 = two_sim_pods
    entries = [
        pod_entry(a40, "a40", "glm-ocr", kind="local"),
        pod_entry(h100, "h100", "lighton-ocr", kind="local"),
    ]
    for entry in entries:
        entry["models"][0]["extra_args"] = [*entry["models"][0]["extra_args"], *FAST_SIM]
    data = {"pods": entries, "compare": {"warm_runs": 1, "throughput_requests": 2}}
    config = tmp_path / "ocrtui.toml"
    config.write_text(tomli_w.dumps(data))
    up = ocrtui(config, "up")
    assert up.returncode == 0, up.stderr
    pdf = make_pdf("doc.pdf", ["Page one.", "Page two."])
    run = tmp_path / "run"
    done = ocrtui(config, "compare", "--headless", "--out", str(run), str(pdf))
    assert done.returncode == 0, done.stderr + done.stdout
    arms = json.loads((run / "summary.json").read_text())["models"]
    assert (arms["glm-ocr"]["arm"]["pod"], arms["lighton-ocr"]["arm"]["pod"]) == ("a40", "h100")
    assert arms["glm-ocr"]["arm"]["gpu"].startswith("GPU 0 ")
    report = (run / "report.md").read_text()
    assert "  - on: pod a40, GPU 0 " in report and "  - on: pod h100, GPU 0 " in report
    html = (run / "report.html").read_text()
    assert "on pod a40, GPU 0 " in html and "on pod h100, GPU 0 " in html


# a40's arm reads a page in about 0.4 s, h100's in 0.2 s: a40 still has pages to read when
# h100's first page is done (and its link is cut).
SIM_SPEED = {"a40": "0.01", "h100": "0.005"}
PAGES = 6


async def test_a_comparison_across_two_pods_survives_one_pods_link_loss(
    two_sshd: list[Sshd], two_sim_pods: list[SimPod], make_pdf: MakePdf, tmp_path: Path
) -> None:
    """Done when (#25): one arm per pod, through each pod's SSH forward; the h100 pod's sshd
    dies mid-run: its arm pauses, the a40 arm finishes every page meanwhile, and once h100
    is back the run ends with every page of both and nothing failed."""
    entries = []
    for (sshd, sim), (name, model) in zip(
        zip(two_sshd, two_sim_pods, strict=True),
        [("a40", "glm-ocr"), ("h100", "lighton-ocr")],
        strict=True,
    ):
        fields = sshd.pod_config().model_dump(exclude_none=True, exclude={"name"})
        entry = pod_entry(sim, name, model, **fields)
        speed = ["--sim-prefill-s", "0.05", "--sim-tokens-per-page", "40"]
        speed += ["--sim-per-token-s", SIM_SPEED[name]]
        entry["models"][0]["extra_args"] = [*entry["models"][0]["extra_args"], *speed]
        entries.append(entry)
    compare = {"warm_runs": 1, "throughput_requests": 2, "schedule": "parallel"}
    fleet = parse_fleet({"pods": entries, "ui": {"refresh_s": 0.25}, "compare": compare}, "t")
    pdf = make_pdf("doc.pdf", [f"Page {i}." for i in range(1, PAGES + 1)])
    request = CompareRequest(documents=(str(pdf),), out=str(tmp_path / "run"))
    setup = await asyncio.to_thread(resolve, fleet.arms_config(), request)
    ctl = FleetController(fleet)
    pods = list(ctl.controllers.values())
    try:
        assert await ctl.start() == {}
        await asyncio.wait_for(asyncio.gather(*(c.up() for c in pods)), DEADLINE_S)
        gate = gate_for(setup, pods, 0.25)
        run = await start_comparison(
            setup, ctl.model_url, gate, served=ctl.served, placement=ctl.placement
        )
        seen: list[Event] = []
        arrived = asyncio.Condition()

        async def collect() -> None:
            async for ev in run.subscribe():
                async with arrived:
                    seen.append(ev)
                    arrived.notify_all()

        def pages(model: str) -> int:
            return sum(1 for e in seen if isinstance(e, PageDone) and e.result.model == model)

        async def until(cond: Callable[[], bool]) -> None:
            async with asyncio.timeout(DEADLINE_S), arrived:
                await arrived.wait_for(cond)

        collecting = asyncio.ensure_future(collect())
        await until(lambda: pages("lighton-ocr") >= 1)
        two_sshd[1].stop()
        assert pages("glm-ocr") < PAGES  # what a40 reads from here on, it reads alone
        # glm-ocr, on the other pod, reads every page while h100's link is down.
        await until(lambda: pages("glm-ocr") == PAGES)
        assert ctl.controllers["h100"].snapshot.pod.connection in LINK_DOWN
        assert pages("lighton-ocr") < PAGES
        two_sshd[1].start()
        done = await asyncio.wait_for(run.wait(), DEADLINE_S)
        await asyncio.wait_for(collecting, DEADLINE_S)
    finally:
        await ctl.close()
    assert done.exit_code == 0, done
    assert not [e for e in seen if isinstance(e, PageFailed)]
    paused = {(e.model, e.reason) for e in seen if isinstance(e, RunPaused)}
    # Only h100's arm paused (its server's probes may fail before the link is seen down).
    assert ("lighton-ocr", "link down (pod h100)") in paused
    assert {model for model, _ in paused} == {"lighton-ocr"}, paused
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for name in ("glm-ocr", "lighton-ocr"):
        assert summary["models"][name]["pages_ok"] == PAGES


def test_an_unreachable_pod_is_listed_with_its_error_and_the_others_answer(
    tmp_path: Path, two_sim_pods: list[SimPod]
) -> None:
    a40, _ = two_sim_pods
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    gone = {"name": "gone", "host": "127.0.0.1", "port": closed, "connect_timeout_s": 2.0,
            "ssh_config": str(tmp_path / "empty_ssh_config"),
            "models": [a40.model("lighton-ocr")]}  # fmt: skip
    (tmp_path / "empty_ssh_config").write_text("")
    data = {"pods": [pod_entry(a40, "a40", "glm-ocr", kind="local"), gone]}
    config = tmp_path / "ocrtui.toml"
    config.write_text(tomli_w.dumps(data))
    status = ocrtui(config, "status", "--json")
    assert status.returncode == 3, status.stderr
    pods = {p["name"]: p for p in json.loads(status.stdout)["pods"]}
    assert pods["a40"]["error"] is None and pods["a40"]["pod"]["connection"] == "connected"
    assert pods["gone"]["error"] and pods["gone"]["pod"]["connection"] != "connected"
    assert "ocrtui: pod gone: " in status.stderr


@pytest.mark.timeout(240)  # up, status and watch as CLI runs
async def test_watch_runs_a_watchdog_on_every_pod(
    tmp_path: Path, two_sim_pods: list[SimPod]
) -> None:
    a40, h100 = two_sim_pods
    events = tmp_path / "events.jsonl"
    data = {
        "pods": [
            pod_entry(a40, "a40", "glm-ocr", kind="local"),
            pod_entry(h100, "h100", "lighton-ocr", kind="local"),
        ],
        "watchdog": {"events": str(events)},
    }
    config = tmp_path / "ocrtui.toml"
    config.write_text(tomli_w.dumps(data))
    assert (await asyncio.to_thread(ocrtui, config, "up")).returncode == 0
    status = await asyncio.to_thread(ocrtui, config, "status", "--json")
    pids = {p["name"]: p["models"][0]["pid"] for p in json.loads(status.stdout)["pods"]}
    watch = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ocrtui", "--config", str(config), "watch",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert watch.stdout is not None
    try:
        line = await asyncio.wait_for(watch.stdout.readline(), DEADLINE_S)
        assert line.startswith(b"watching; events in ")
        os.kill(pids["h100"], signal.SIGKILL)  # h100's server crashes
        event = json.loads(await asyncio.wait_for(watch.stdout.readline(), DEADLINE_S))
        assert (event["model"], event["outcome"]) == ("lighton-ocr", "restarted")
        watch.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(watch.wait(), DEADLINE_S) == 0
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    after = await asyncio.to_thread(ocrtui, config, "status", "--json")
    pods = {p["name"]: p["models"][0] for p in json.loads(after.stdout)["pods"]}
    assert pods["a40"]["pid"] == pids["a40"] and pods["a40"]["state"] == "ready"
    assert pods["h100"]["state"] == "ready" and pods["h100"]["pid"] != pids["h100"]


async def test_a_headless_comparison_serves_every_pods_series(
    tmp_path: Path,
    two_sim_pods: list[SimPod],
    make_pdf: MakePdf,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``[export] listen`` while ``ocrtui compare --headless`` runs over two pods: both pods'
    series, each with its pod label (the run itself is replaced by a scrape)."""
    from ocrtui.compare import cli as compare_cli

    port = free_port()
    a40, h100 = two_sim_pods
    entries = [
        pod_entry(a40, "a40", "glm-ocr", kind="local"),
        pod_entry(h100, "h100", "lighton-ocr", kind="local"),
    ]
    fleet = parse_fleet({"pods": entries, "export": {"listen": f"127.0.0.1:{port}"}}, "test")
    pdf = make_pdf("doc.pdf", ["Page one."])
    request = CompareRequest(documents=(str(pdf),), out=str(tmp_path / "run"))
    setup = await asyncio.to_thread(resolve, fleet.arms_config(), request)
    seen: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []

    async def scraped_instead(*args: object, **kwargs: object) -> int:
        seen.append(await scrape(ListenAddress("127.0.0.1", port)))
        return 0

    monkeypatch.setattr(compare_cli, "run_headless", scraped_instead)
    assert await compare_cli._with_controller(fleet, setup, demo=False) == 0
    state = "ocrtui_model_state"
    for pod, model in (("a40", "glm-ocr"), ("h100", "lighton-ocr")):
        assert seen[0][(state, (("model", model), (state, "down"), ("pod", pod)))] == 1
