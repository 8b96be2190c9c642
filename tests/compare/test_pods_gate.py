"""Arms on different pods (issue #25): one pod's link outage pauses only that pod's arms;
the other pod's arm goes on and finishes meanwhile, and the run loses no page."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ocrtui.compare.client import ModelTarget
from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.events import Event, PageDone, PageFailed, RunDone, RunPaused, RunResumed
from ocrtui.compare.gate import LINK, PodsGate, SnapshotGate
from ocrtui.compare.launch import gate_for
from ocrtui.compare.runner import RunPlan, start_run
from ocrtui.compare.store import RunRecord, RunStore
from ocrtui.config import CompareConfig
from ocrtui.status import ModelStatus, PodStatus, Snapshot
from tests.plugins.compare_inputs import MakePdf, model
from tests.plugins.fake_chat_server import completion, fake_vllm

FAST = CompareConfig(
    warm_runs=1, throughput_requests=2, concurrency=2, retries=0, schedule="parallel"
)
DEADLINE_S = 30.0
PAGES = 8


class FakePod:
    """The part of a pod's Controller a gate reads: its snapshots, published on demand."""

    def __init__(self, label: str, models: tuple[str, ...]) -> None:
        self.label = label
        self.link = "connected"
        self.models = models
        self._subscribers: list[Callable[[Snapshot], None]] = []

    @property
    def snapshot(self) -> Snapshot:
        pod = PodStatus(self.label, self.link, 0.0, 0.0, simulated_gpu=True, demo=False)
        rows = tuple(ModelStatus(n, 8000, "ready", None) for n in self.models)
        return Snapshot(pod, (), (), rows)

    def subscribe(self, cb: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(cb)
        return lambda: self._subscribers.remove(cb)

    def publish(self, link: str) -> None:
        self.link = link
        for cb in list(self._subscribers):
            cb(self.snapshot)

    async def restart(self, name: str) -> None:
        raise AssertionError("no restart asked")


def gate(a40: FakePod, h100: FakePod) -> PodsGate:
    return PodsGate(
        [
            (pod.label, SnapshotGate(pod, pod.models, refresh_s=0.25), pod.models)
            for pod in (a40, h100)
        ]
    )


async def test_a_pods_link_pauses_its_models_only() -> None:
    a40, h100 = FakePod("a40", ("glm-ocr",)), FakePod("h100", ("lighton-ocr", "olm-ocr"))
    pods = gate(a40, h100)
    try:
        assert pods.pauses() == {}
        h100.publish("lost")
        reason = "link down (pod h100)"
        assert pods.pauses() == {"lighton-ocr": reason, "olm-ocr": reason}
        assert LINK not in pods.pauses()  # never every model: a40's link is up
        assert pods.paused_since("olm-ocr", 0.0) and not pods.paused_since("glm-ocr", 0.0)
        waiting = asyncio.ensure_future(pods.changed())
        await asyncio.sleep(0)
        h100.publish("connected")
        await asyncio.wait_for(waiting, DEADLINE_S)
        assert pods.pauses() == {}
    finally:
        await pods.close()


async def test_gate_for_gives_each_pod_its_arms() -> None:
    a40, h100 = FakePod("a40", ("glm-ocr",)), FakePod("h100", ("lighton-ocr",))
    idle = FakePod("spare", ("other",))
    setup = SimpleNamespace(
        models=(model("glm-ocr"), model("lighton-ocr")),
        request=SimpleNamespace(auto_restart=False),
    )
    one = gate_for(setup, [a40], 0.25)  # type: ignore[arg-type]
    assert isinstance(one, SnapshotGate)
    several = gate_for(setup, [a40, h100, idle], 0.25)  # type: ignore[arg-type]
    try:
        assert isinstance(several, PodsGate)
        h100.publish("reconnecting")
        assert dict(several.pauses()) == {"lighton-ocr": "link down (pod h100)"}
    finally:
        await one.close()
        await several.close()


class Outage:
    """A fake server answering 503 while ``down``, from its ``after``-th request on."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.down = threading.Event()
        self.hit = threading.Event()
        self.lock = threading.Lock()

    def respond(self, payload: dict[str, Any], n: int) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if n == self.after:
                self.down.set()
            if self.down.is_set():
                self.hit.set()
                return 503, {"error": {"message": "Service Unavailable"}}
        return completion(f"text {n}")


async def test_one_pods_outage_leaves_the_other_arm_running(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    path = make_pdf("doc.pdf", [f"page {i}" for i in range(1, PAGES + 1)])
    docs = (DocumentSpec(path=path, name="doc"),)
    a40, h100 = FakePod("a40", ("glm-ocr",)), FakePod("h100", ("lighton-ocr",))
    outage = Outage(after=8)  # lighton-ocr's documents phase (speed phases: 2 x 4 requests)
    glm_done = asyncio.Event()
    seen: list[Event] = []
    with fake_vllm() as glm_server, fake_vllm(outage.respond) as lighton_server:
        targets = (
            ModelTarget(model("glm-ocr"), glm_server.url),
            ModelTarget(model("lighton-ocr"), lighton_server.url),
        )
        plan = RunPlan(docs, targets, FAST, gate=gate(a40, h100))
        run = start_run(plan, RunStore.create(tmp_path / "run", RunRecord()))

        async def follow() -> None:
            async for ev in run.subscribe():
                seen.append(ev)
                done = [e for e in seen if isinstance(e, PageDone) and e.result.model == "glm-ocr"]
                if len(done) == PAGES:
                    glm_done.set()

        following = asyncio.ensure_future(follow())
        assert await asyncio.to_thread(outage.hit.wait, DEADLINE_S)
        h100.publish("lost")
        # glm-ocr, on the other pod, finishes every page while lighton-ocr's pod is down.
        await asyncio.wait_for(glm_done.wait(), DEADLINE_S)
        outage.down.clear()
        h100.publish("connected")
        await asyncio.wait_for(following, DEADLINE_S)
    done = seen[-1]
    assert isinstance(done, RunDone) and done.exit_code == 0, done
    assert not [e for e in seen if isinstance(e, PageFailed)]
    paused = [e for e in seen if isinstance(e, RunPaused)]
    assert paused and {e.model for e in paused} == {"lighton-ocr"}
    assert paused[0].reason == "link down (pod h100)"
    assert any(isinstance(e, RunResumed) and e.model == "lighton-ocr" for e in seen)
    lighton = [e for e in seen if isinstance(e, PageDone) and e.result.model == "lighton-ocr"]
    assert len(lighton) == PAGES
