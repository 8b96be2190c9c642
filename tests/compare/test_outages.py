"""The runner's request path under outages and model-wide errors (issue #13), against the
loopback fake of vLLM and a SnapshotGate fed with hand-made snapshots: the link going down,
a model crashing and being restarted, the outage budget, a refused API key, a 400 every
page would get, and speed figures when nothing (or only part) was measured."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from ocrtui.compare.client import ModelTarget
from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.events import (
    DocumentDone,
    Event,
    ModelStopped,
    PageDone,
    PageFailed,
    RunDone,
    RunPaused,
    RunResumed,
)
from ocrtui.compare.gate import LINK_DOWN, SnapshotGate
from ocrtui.compare.runner import RunPlan, start_run
from ocrtui.compare.store import RunRecord, RunStore
from ocrtui.config import CompareConfig
from ocrtui.status import ModelState, ModelStatus, PodStatus, Snapshot
from tests.plugins.compare_inputs import MakePdf, model
from tests.plugins.fake_chat_server import completion, fake_vllm

FAST = CompareConfig(warm_runs=1, throughput_requests=2, concurrency=2, retries=0)
MODELS = ("glm-ocr", "lighton-ocr")
DEADLINE_S = 20.0


class FakeController:
    """The part of the Controller a SnapshotGate reads: snapshots, published on demand."""

    def __init__(self, models: tuple[str, ...] = MODELS) -> None:
        self.link = "connected"
        self.states: dict[str, ModelState] = dict.fromkeys(models, "ready")
        self.restarts: list[str] = []
        self.asleep: set[str] = set()  # at sleep level 1
        self._subscribers: list[Callable[[Snapshot], None]] = []

    @property
    def snapshot(self) -> Snapshot:
        pod = PodStatus("fake", self.link, 0.0, 0.0, simulated_gpu=True, demo=False)
        models = tuple(
            ModelStatus(n, 8000 + i, s, None, sleep_level=1 if n in self.asleep else None)
            for i, (n, s) in enumerate(self.states.items())
        )
        return Snapshot(pod, (), (), models)

    def subscribe(self, cb: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(cb)
        return lambda: self._subscribers.remove(cb)

    def publish(self, link: str | None = None, **states: str) -> None:
        self.link = link or self.link
        self.states.update({k.replace("_", "-"): cast(ModelState, v) for k, v in states.items()})
        for cb in list(self._subscribers):
            cb(self.snapshot)

    async def restart(self, name: str) -> None:
        self.restarts.append(name)
        self.publish(**{name.replace("-", "_"): "starting"})
        await asyncio.sleep(0)
        self.publish(**{name.replace("-", "_"): "ready"})


def doc(make_pdf: MakePdf, n_pages: int) -> tuple[DocumentSpec, ...]:
    path = make_pdf("doc.pdf", [f"page {i}" for i in range(1, n_pages + 1)])
    return (DocumentSpec(path=path, name="doc"),)


def results(run_dir: Path) -> list[dict[str, Any]]:
    text = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


class Outage:
    """A fake server that answers 503 while ``down`` (a dead link or server does worse, but
    the runner treats both alike), and says when a request hit the outage."""

    def __init__(self, after: int) -> None:
        self.after = after  # the outage begins at this request
        self.down = threading.Event()
        self.hit = threading.Event()  # a request was answered while down
        self.lock = threading.Lock()

    def respond(self, payload: dict[str, Any], n: int) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if n == self.after:
                self.down.set()
            if self.down.is_set():
                self.hit.set()
                return 503, {"error": {"message": "Service Unavailable"}}
        return completion(f"text {n}")


async def wait_thread_event(ev: threading.Event) -> None:
    assert await asyncio.to_thread(ev.wait, DEADLINE_S), "the fake server's flag"


async def until_event(run: Any, pred: Callable[[Event], bool]) -> None:
    async with asyncio.timeout(DEADLINE_S):
        async for ev in run.subscribe():
            if pred(ev):
                return


async def collect(run: Any) -> list[Event]:
    async with asyncio.timeout(60):
        return [ev async for ev in run.subscribe()]


async def test_a_link_outage_pauses_and_costs_no_page(make_pdf: MakePdf, tmp_path: Path) -> None:
    ctl = FakeController()
    outage = Outage(after=12)  # in the documents phase (speed phases: 2 x 4 requests)
    with fake_vllm(outage.respond) as fake:
        gate = SnapshotGate(ctl, MODELS, refresh_s=0.25)
        targets = tuple(ModelTarget(model(n, n), fake.url) for n in MODELS)
        plan = RunPlan(doc(make_pdf, 10), targets, FAST, gate=gate)
        run = start_run(plan, RunStore.create(tmp_path / "run", RunRecord()))
        events = asyncio.ensure_future(collect(run))
        await wait_thread_event(outage.hit)
        ctl.publish(link="lost")
        await until_event(run, lambda e: isinstance(e, RunPaused))
        ctl.publish(link="reconnecting")
        outage.down.clear()
        ctl.publish(link="connected")
        got = await events
    done = got[-1]
    assert isinstance(done, RunDone) and done.exit_code == 0, done
    assert not [e for e in got if isinstance(e, PageFailed)]
    assert RunPaused(None, LINK_DOWN) in got
    assert any(isinstance(e, RunResumed) and e.model is None for e in got)
    keys = [(r["page"], r["model"]) for r in results(tmp_path / "run")]
    assert len(keys) == len(set(keys)) == 20 and all(r["ok"] for r in results(tmp_path / "run"))


async def test_a_sleeping_model_pauses_its_requests_until_it_wakes() -> None:
    ctl = FakeController()
    gate = SnapshotGate(ctl, MODELS, refresh_s=0.25)
    try:
        assert gate.pauses() == {}
        ctl.asleep.add("glm-ocr")
        ctl.publish()
        assert gate.pauses() == {"glm-ocr": "asleep (ocrtui wake glm-ocr)"}
        ctl.asleep.clear()
        ctl.publish()
        assert gate.pauses() == {}
    finally:
        await gate.close()


async def test_a_crashed_model_waits_for_the_auto_restart(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    ctl = FakeController(("glm-ocr",))
    outage = Outage(after=6)
    with fake_vllm(outage.respond) as fake:
        restarted = asyncio.Event()

        async def restart(name: str) -> None:
            # The server comes back with the restart.
            outage.down.clear()
            await ctl.restart(name)
            restarted.set()

        gate = SnapshotGate(ctl, ("glm-ocr",), refresh_s=0.25, restart=restart)
        plan = RunPlan(
            doc(make_pdf, 6), (ModelTarget(model("glm-ocr"), fake.url),), FAST, gate=gate
        )
        run = start_run(plan, RunStore.create(tmp_path / "run", RunRecord()))
        events = asyncio.ensure_future(collect(run))
        await wait_thread_event(outage.hit)
        ctl.publish(glm_ocr="crashed")
        async with asyncio.timeout(DEADLINE_S):
            await restarted.wait()
        got = await events
    done = got[-1]
    assert isinstance(done, RunDone) and done.exit_code == 0, done
    assert ctl.restarts == ["glm-ocr"]
    pauses = [e.reason for e in got if isinstance(e, RunPaused)]
    assert any("restarting (attempt 1 of 3)" in p for p in pauses), pauses
    assert len([e for e in got if isinstance(e, PageDone)]) == 6
    assert not [e for e in got if isinstance(e, PageFailed)]


async def test_past_the_outage_budget_the_run_stops_and_resume_finishes(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    ctl = FakeController(("glm-ocr",))
    outage = Outage(after=6)
    settings = FAST.model_copy(update={"outage_budget_s": 0.5})
    target = (ModelTarget(model("glm-ocr"), ""),)
    with fake_vllm(outage.respond) as fake:
        target = (ModelTarget(model("glm-ocr"), fake.url),)
        plan = RunPlan(
            doc(make_pdf, 8), target, settings, gate=SnapshotGate(ctl, ("glm-ocr",), refresh_s=0.25)
        )
        run = start_run(plan, RunStore.create(tmp_path / "run", RunRecord()))
        events = asyncio.ensure_future(collect(run))
        await wait_thread_event(outage.hit)
        ctl.publish(link="lost")
        got = await events
        done = got[-1]
        assert isinstance(done, RunDone) and done.exit_code == 3
        assert done.error and "outage_budget_s = 0.5 s" in done.error and "--resume" in done.error
        kept = results(tmp_path / "run")
        assert kept and all(r["ok"] for r in kept) and len(kept) < 8
        # Back up: --resume sends only the rest.
        outage.down.clear()
        ctl.publish(link="connected")
        plan = RunPlan(
            doc(make_pdf, 8), target, settings, gate=SnapshotGate(ctl, ("glm-ocr",), refresh_s=0.25)
        )
        resumed = await collect(start_run(plan, RunStore.resume(tmp_path / "run")))
    assert resumed[-1].exit_code == 0  # type: ignore[union-attr]
    pages = [r["page"] for r in results(tmp_path / "run")]
    assert sorted(pages) == list(range(1, 9))


async def test_a_refused_api_key_stops_that_model_after_one_request(
    make_pdf: MakePdf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OCR_TEST_MISSING_KEY", raising=False)
    glm = model("glm-ocr", "glm-ocr", api_key_env="OCR_TEST_MISSING_KEY")
    refuse = lambda p, n: (401, {"error": {"message": "Unauthorized"}})  # noqa: E731
    with fake_vllm(refuse) as locked, fake_vllm() as open_:
        targets = (ModelTarget(glm, locked.url), ModelTarget(model("lighton-ocr"), open_.url))
        plan = RunPlan(doc(make_pdf, 5), targets, FAST)
        got = await collect(start_run(plan, RunStore.create(tmp_path / "run", RunRecord())))
    assert len(locked.requests) == 1
    stopped = [e for e in got if isinstance(e, ModelStopped)]
    assert len(stopped) == 1 and stopped[0].model == "glm-ocr"
    assert "HTTP 401" in stopped[0].reason and "OCR_TEST_MISSING_KEY" in stopped[0].reason
    assert "api_key_env" in stopped[0].reason
    done = got[-1]
    assert isinstance(done, RunDone) and done.exit_code == 3 and done.summary is not None
    assert done.summary.models["glm-ocr"].error == stopped[0].reason
    assert done.summary.models["lighton-ocr"].pages_ok == 5


async def test_a_400_every_page_would_get_is_sent_once_and_reported(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    msg = "max_tokens=4096 cannot be greater than max_model_len=512"
    with fake_vllm(lambda p, n: (400, {"error": {"message": msg}})) as fake:
        plan = RunPlan(doc(make_pdf, 6), (ModelTarget(model("glm-ocr"), fake.url),), FAST)
        got = await collect(start_run(plan, RunStore.create(tmp_path / "run", RunRecord())))
    assert len(fake.requests) == 1
    done = got[-1]
    assert isinstance(done, RunDone) and done.exit_code == 1 and done.summary is not None
    s = done.summary.models["glm-ocr"]
    assert s.throughput_images_per_s is None and s.pages_per_s is None
    assert msg in (s.error or "")
    report = (tmp_path / "run/report.md").read_text(encoding="utf-8")
    assert f"**glm-ocr error:** HTTP 400: {msg}" in report
    assert "0.00 img/s" not in report and "0.00 pages/s" not in report


async def test_nothing_measured_is_no_speed(make_pdf: MakePdf, tmp_path: Path) -> None:
    """Every request fails (a 500 with no gate to ask): no figure reads 0.00 as if measured."""
    with fake_vllm(lambda p, n: (500, {"error": {"message": "EngineCore died"}})) as fake:
        plan = RunPlan(doc(make_pdf, 3), (ModelTarget(model("glm-ocr"), fake.url),), FAST)
        got = await collect(start_run(plan, RunStore.create(tmp_path / "run", RunRecord())))
    done = got[-1]
    assert isinstance(done, RunDone) and done.exit_code == 1 and done.summary is not None
    s = done.summary.models["glm-ocr"]
    assert s.pages_failed == 3 and s.pages_per_s is None
    assert s.throughput_images_per_s is None
    assert "EngineCore died" in (s.error or "")
    assert [e.pages_per_s for e in got if isinstance(e, DocumentDone)] == [None]
    assert done.summary.documents["doc"].pages_per_s == {"glm-ocr": None}
    report = (tmp_path / "run/report.md").read_text(encoding="utf-8")
    assert "0.00 img/s" not in report and "0.00 pages/s" not in report
    assert "EngineCore died" in report


async def test_a_document_finished_across_a_resume_keeps_its_speed(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    fail_late = lambda p, n: completion("ok") if n < 2 else (500, {"error": {"message": "x"}})  # noqa: E731
    target = (ModelTarget(model("glm-ocr"), ""),)
    with fake_vllm(fail_late) as fake:
        target = (ModelTarget(model("glm-ocr"), fake.url),)
        plan = RunPlan(doc(make_pdf, 4), target, FAST, speed_phases=False)
        first = await collect(start_run(plan, RunStore.create(tmp_path / "run", RunRecord())))
    assert first[-1].summary.models["glm-ocr"].pages_failed == 2  # type: ignore[union-attr]
    with fake_vllm() as fake:
        target = (ModelTarget(model("glm-ocr"), fake.url),)
        plan = RunPlan(doc(make_pdf, 4), target, FAST, speed_phases=False)
        got = await collect(start_run(plan, RunStore.resume(tmp_path / "run")))
    done = got[-1]
    assert isinstance(done, RunDone) and done.exit_code == 0 and done.summary is not None
    speeds = [e.pages_per_s for e in got if isinstance(e, DocumentDone)]
    assert len(speeds) == 1 and speeds[0] is not None and speeds[0] > 0
    assert done.summary.documents["doc"].pages_per_s["glm-ocr"] == speeds[0]
    assert done.summary.models["glm-ocr"].pages_per_s is not None
