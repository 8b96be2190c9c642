"""The runner against a loopback fake of vLLM's chat endpoint."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from ocrtui.compare import client as client_mod
from ocrtui.compare.client import ModelTarget
from ocrtui.compare.documents import DocumentSpec
from ocrtui.compare.events import (
    DocumentFailed,
    DocumentReady,
    Event,
    PageDone,
    PageFailed,
    PageStarted,
    PhaseDone,
    PhaseStarted,
    RunDone,
    RunStarted,
)
from ocrtui.compare.results import Agreement
from ocrtui.compare.runner import RunPlan, start_run
from ocrtui.compare.store import RESULT_FIELDS, RunRecord, RunStore
from ocrtui.config import CompareConfig
from tests.plugins.compare_inputs import MakePdf, model
from tests.plugins.fake_chat_server import completion, fake_vllm
from tests.plugins.scripted_http import Answer, Sent, scripted_http

SUMMARY_MODEL_KEYS = {
    "pages_ok", "pages_failed", "latency_cold_s", "latency_warm_p50_s", "latency_warm_p95_s",
    "throughput_c5_imgs_per_s", "pages_per_s", "cer", "cer_lenient", "by_category",
    "critical_pass_rate",
}  # fmt: skip
SETTINGS = CompareConfig(warm_runs=2, throughput_requests=3, concurrency=2, retries=0)


def docs(make_pdf: MakePdf, n_pages: int = 3) -> list[DocumentSpec]:
    path = make_pdf("doc.pdf", [f"page {i} text" for i in range(1, n_pages + 1)])
    return [DocumentSpec(path=path, name="doc", reference="text-layer", critical=("page 1",))]


def targets(url: str) -> tuple[ModelTarget, ...]:
    return (
        ModelTarget(model("glm-ocr", "glm-ocr"), url),
        ModelTarget(model("lighton-ocr", "lighton-ocr"), url),
    )


def lines(run_dir: Path) -> list[dict[str, Any]]:
    text = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


async def run_to_end(plan: RunPlan, run_dir: Path, resume: bool = False) -> list[Event]:
    store = RunStore.resume(run_dir) if resume else RunStore.create(run_dir, RunRecord())
    run = start_run(plan, store)
    return [ev async for ev in run.subscribe()]


async def test_event_order_files_and_summary(make_pdf: MakePdf, tmp_path: Path) -> None:
    with fake_vllm() as fake:
        plan = RunPlan(tuple(docs(make_pdf)), targets(fake.url), SETTINGS)
        events = await run_to_end(plan, tmp_path / "run")
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunDone)
    assert [type(e) for e in events[1:2]] == [DocumentReady]
    speed = [(e.model, e.phase) for e in events if isinstance(e, PhaseStarted)]
    # Sequential schedule: one model's speed phases, then the other's, then documents.
    assert speed[:6] == [
        ("glm-ocr", "cold"), ("glm-ocr", "warm"), ("glm-ocr", "throughput"),
        ("lighton-ocr", "cold"), ("lighton-ocr", "warm"), ("lighton-ocr", "throughput"),
    ]  # fmt: skip
    assert sorted(speed[6:]) == [("glm-ocr", "documents"), ("lighton-ocr", "documents")]
    last_speed_done = max(
        i for i, e in enumerate(events) if isinstance(e, PhaseDone) and e.phase == "throughput"
    )
    first_page = next(i for i, e in enumerate(events) if isinstance(e, PageStarted))
    assert last_speed_done < first_page
    for e in events:
        if isinstance(e, PageDone):
            started = events.index(PageStarted(e.model, e.doc, e.page))
            assert started < events.index(e)
    done = [e for e in events if isinstance(e, PageDone)]
    assert len(done) == 6 and all(e.result.cer is not None for e in done)
    # 1 cold + 2 warm + 3 throughput + 3 pages, per model
    assert len(fake.requests) == 2 * (1 + 2 + 3 + 3)

    rows = lines(tmp_path / "run")
    assert len(rows) == 6 and all(tuple(r) == RESULT_FIELDS for r in rows)
    assert {(r["page"], r["model"]) for r in rows} == {
        (p, m) for p in (1, 2, 3) for m in ("glm-ocr", "lighton-ocr")
    }
    summary = json.loads((tmp_path / "run/summary.json").read_text(encoding="utf-8"))
    for m in ("glm-ocr", "lighton-ocr"):
        s = summary["models"][m]
        assert set(s) >= SUMMARY_MODEL_KEYS
        assert s["pages_ok"] == 3 and s["pages_failed"] == 0
        assert s["latency_cold_s"] > 0 and s["throughput_imgs_per_s"] > 0
        # Measured at concurrency 2: named by its concurrency, never called c5 (issue #11).
        assert s["throughput_concurrency"] == 2 and s["throughput_c5_imgs_per_s"] is None
        assert "sweep" not in summary  # one level: no sweep
        assert s["latency_warm_p50_s"] <= s["latency_warm_p95_s"]
        assert s["by_category"]["other"]["pages"] == 3
        assert s["critical_pass_rate"] == 0.0  # "page 1" never came back
    assert summary["documents"]["doc"]["error"] is None
    assert events[-1].exit_code == 0
    report = (tmp_path / "run/report.md").read_text(encoding="utf-8")
    assert "| Warm latency p50 / p95 |" in report and "1.16 s" in report


async def test_request_profiles_and_api_key(
    make_pdf: MakePdf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OCR_TEST_KEY", "sk-very-secret")
    glm = model("glm-ocr", "glm-ocr", api_key_env="OCR_TEST_KEY")
    lighton = model("lighton-ocr", "lighton-ocr", max_tokens=2048)
    with fake_vllm() as fake:
        plan = RunPlan(
            tuple(docs(make_pdf, 1)),
            (ModelTarget(glm, fake.url), ModelTarget(lighton, fake.url)),
            SETTINGS,
            speed_phases=False,
        )
        await run_to_end(plan, tmp_path / "run")
    by_model = {p["model"]: (p, h) for p, h in zip(fake.requests, fake.headers, strict=True)}
    g, g_headers = by_model["glm-ocr"]
    parts = g["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]
    assert parts[1]["text"] == "Text Recognition:" and g["max_tokens"] == 8192
    image = base64.b64decode(parts[0]["image_url"]["url"].split(",", 1)[1])
    assert parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert image[:3] == b"\xff\xd8\xff"
    assert g_headers["authorization"] == "Bearer sk-very-secret"
    lo, lo_headers = by_model["lighton-ocr"]
    assert [p["type"] for p in lo["messages"][0]["content"]] == ["image_url"]
    assert (lo["temperature"], lo["top_p"], lo["max_tokens"]) == (0.2, 0.9, 2048)
    assert "authorization" not in lo_headers
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert b"sk-very-secret" not in f.read_bytes()


async def test_http_errors_recorded_not_retried(make_pdf: MakePdf, tmp_path: Path) -> None:
    def respond(payload: dict[str, Any], n: int) -> tuple[int, dict[str, Any]]:
        if n == 1:
            return 500, {"error": {"message": "EngineCore died", "type": "InternalServerError"}}
        if n == 2:
            return 400, {"error": {"message": "The decoder prompt (length 9000) is longer"}}
        return completion("text", finish_reason="length" if n == 0 else "stop")

    settings = SETTINGS.model_copy(update={"retries": 3, "concurrency": 1})
    with fake_vllm(respond) as fake:
        plan = RunPlan(tuple(docs(make_pdf)), targets(fake.url)[:1], settings, speed_phases=False)
        events = await run_to_end(plan, tmp_path / "run")
    assert len(fake.requests) == 3  # nothing retried
    failed = sorted((e.page, e.reason) for e in events if isinstance(e, PageFailed))
    assert failed == [
        (2, "HTTP 500: EngineCore died"),
        (3, "HTTP 400: The decoder prompt (length 9000) is longer"),
    ]
    rows = {r["page"]: r for r in lines(tmp_path / "run")}
    assert rows[1]["ok"] and rows[1]["flags"] == ["truncated"]
    assert rows[2]["ok"] is False and rows[2]["error"] == "HTTP 500: EngineCore died"
    assert events[-1].exit_code == 1  # type: ignore[union-attr]


async def test_connection_errors_are_retried(
    make_pdf: MakePdf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "BACKOFF_BASE_S", 0.01)
    with fake_vllm() as fake:
        dead_url = fake.url  # the port is closed once the fake is gone
    settings = SETTINGS.model_copy(update={"retries": 2})
    plan = RunPlan(tuple(docs(make_pdf, 1)), targets(dead_url)[:1], settings, speed_phases=False)
    events = await run_to_end(plan, tmp_path / "run")
    (fail,) = [e for e in events if isinstance(e, PageFailed)]
    assert fail.reason.startswith(f"connection error to {dead_url}: ClientConnectorError")
    assert fail.reason.endswith("(after 3 attempts)")


async def test_good_and_broken_documents(make_pdf: MakePdf, tmp_path: Path) -> None:
    good = docs(make_pdf, 2)[0]
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4\n" + b"\x00garbage" * 100)
    specs = [
        DocumentSpec(path=tmp_path / "missing.pdf", name="missing"),
        good,
        DocumentSpec(path=corrupt, name="corrupt"),
    ]
    with fake_vllm() as fake:
        plan = RunPlan(tuple(specs), targets(fake.url), SETTINGS, speed_phases=False)
        events = await run_to_end(plan, tmp_path / "run")
    failed = {e.doc: e.error for e in events if isinstance(e, DocumentFailed)}
    assert set(failed) == {"missing", "corrupt"}
    assert "file not found" in failed["missing"] and "not a readable PDF" in failed["corrupt"]
    assert len(lines(tmp_path / "run")) == 4  # the good document, both models
    summary = json.loads((tmp_path / "run/summary.json").read_text(encoding="utf-8"))
    assert summary["documents"]["missing"]["error"] == failed["missing"]
    assert summary["documents"]["doc"]["error"] is None
    assert events[-1].exit_code == 1  # type: ignore[union-attr]


async def test_consumer_can_leave_and_rejoin(make_pdf: MakePdf, tmp_path: Path) -> None:
    with fake_vllm(delay_s=0.01) as fake:
        plan = RunPlan(tuple(docs(make_pdf)), targets(fake.url), SETTINGS)
        run = start_run(plan, RunStore.create(tmp_path / "run", RunRecord()))
        seen = []
        async for ev in run.subscribe():  # a screen that goes away early
            seen.append(ev)
            if len(seen) == 3:
                break
        done = await run.wait()
    replay = [ev async for ev in run.subscribe()]
    assert replay[:3] == seen and replay[-1] is done
    assert sum(isinstance(e, PageDone) for e in replay) == 6


async def test_cancel_then_resume_completes_without_duplicates(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    spec = docs(make_pdf, 6)
    with fake_vllm(delay_s=0.02) as fake:
        plan = RunPlan(tuple(spec), targets(fake.url), SETTINGS)
        run = start_run(plan, RunStore.create(tmp_path / "run", RunRecord()))
        async for ev in run.subscribe():
            if isinstance(ev, PageDone):
                run.cancel()
                break
        done = await run.wait()
        assert done.cancelled and done.exit_code == 1
        before = lines(tmp_path / "run")
        assert 1 <= len(before) < 12
        # a torn last line, as a kill -9 mid-write leaves it
        with (tmp_path / "run/results.jsonl").open("ab") as f:
            f.write(b'{"doc": "doc", "page": 6, "mod')
        n_before = len(fake.requests)
        events = await run_to_end(plan, tmp_path / "run", resume=True)
    after = lines(tmp_path / "run")
    keys = [(r["doc"], r["page"], r["model"]) for r in after]
    assert len(keys) == len(set(keys)) == 12
    resumed = [e for e in events if isinstance(e, PageDone) and e.resumed]
    assert len(resumed) == len([r for r in before if r["ok"]])
    assert all(isinstance(e, PhaseDone) and e.skipped for e in events if
               isinstance(e, PhaseDone) and e.phase == "cold")  # fmt: skip
    # pages and speed phases already done were not sent again
    assert len(fake.requests) - n_before <= 12 - len(resumed) + 2 * (2 + 3)
    assert events[-1].exit_code == 0  # type: ignore[union-attr]


async def test_parallel_schedule_runs_speed_phases_together(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    settings = SETTINGS.model_copy(update={"schedule": "parallel"})
    with fake_vllm(delay_s=0.2) as fake:  # each model's speed phases take >= 1.2 s
        plan = RunPlan(tuple(docs(make_pdf, 1)), targets(fake.url), settings)
        events = await run_to_end(plan, tmp_path / "run")

    def at(kind: type, model: str, phase: str) -> int:
        return next(
            i for i, e in enumerate(events)
            if isinstance(e, kind) and (e.model, e.phase) == (model, phase)  # type: ignore[union-attr]
        )  # fmt: skip

    # The two models' speed phases overlap (sequential would start one after the other).
    assert at(PhaseStarted, "lighton-ocr", "cold") < at(PhaseDone, "glm-ocr", "throughput")
    assert at(PhaseStarted, "glm-ocr", "cold") < at(PhaseDone, "lighton-ocr", "throughput")


async def test_cancel_before_the_first_step_still_ends_with_run_done(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    plan = RunPlan(tuple(docs(make_pdf, 1)), targets("http://127.0.0.1:9"), SETTINGS)
    run = start_run(plan, RunStore.create(tmp_path / "run", RunRecord()))
    run.cancel()
    done = await run.wait()
    assert done.cancelled and done.exit_code == 1
    assert (tmp_path / "run/summary.json").is_file()


async def test_rendering_overlaps_requests_within_the_memory_bound(
    make_pdf: MakePdf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrtui.compare.render import RenderPool

    settings = SETTINGS.model_copy(update={"max_rendered_pages": 6, "concurrency": 2})
    path = make_pdf("long.pdf", [f"page {i}" for i in range(1, 13)])
    plan_docs = (DocumentSpec(path=path, name="long"),)
    held: list[int] = []  # pages rendered or rendering and not finished, as each render starts
    run_ref: list[Any] = []
    original = RenderPool.render

    async def counting(self: RenderPool, *args: Any) -> Any:
        finished = sum(isinstance(e, PageDone | PageFailed) for e in run_ref[0].history.events)
        counting.calls += 1  # type: ignore[attr-defined]
        held.append(counting.calls - finished)  # type: ignore[attr-defined]
        return await original(self, *args)

    counting.calls = 0  # type: ignore[attr-defined]
    monkeypatch.setattr(RenderPool, "render", counting)
    with fake_vllm(delay_s=0.05) as fake:
        plan = RunPlan(plan_docs, targets(fake.url), settings, speed_phases=False)
        run = start_run(plan, RunStore.create(tmp_path / "run", RunRecord()))
        run_ref.append(run)
        live = [ev async for ev in run.subscribe()]  # every event, PageStarted included
        done = await run.wait()
    assert done.exit_code == 0 and counting.calls == 24  # type: ignore[attr-defined]
    # Two models, 6 pages in memory in all: never more than 3 each, 6 together.
    assert max(held) <= 6
    # Requests left before the last page was rendered: page 1's result precedes it.
    first_done = next(i for i, e in enumerate(live) if isinstance(e, PageDone))
    last_started = max(i for i, e in enumerate(live) if isinstance(e, PageStarted))
    assert first_done < last_started


async def test_agreement_where_no_reference_exists(make_pdf: MakePdf, tmp_path: Path) -> None:
    path = make_pdf("plain.pdf", ["a", "b"])
    spec = (DocumentSpec(path=path, name="plain"),)  # no sidecars, no text layer
    with fake_vllm(lambda p, n: completion("same text from both")) as fake:
        plan = RunPlan(spec, targets(fake.url), SETTINGS, speed_phases=False)
        events = await run_to_end(plan, tmp_path / "run")
    summary = events[-1].summary  # type: ignore[union-attr]
    assert summary is not None
    assert summary.agreement == Agreement(("glm-ocr", "lighton-ocr"), 2, 0.0)
    assert summary.models["glm-ocr"].cer is None


async def test_a_broken_run_still_ends_with_run_done(
    make_pdf: MakePdf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def disk_full(self: RunStore, result: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunStore, "add_result", disk_full)
    with fake_vllm() as fake:
        plan = RunPlan(tuple(docs(make_pdf, 1)), targets(fake.url), SETTINGS, speed_phases=False)
        events = await run_to_end(plan, tmp_path / "run")
    done = events[-1]
    assert isinstance(done, RunDone) and done.exit_code == 1
    assert done.error == "OSError: [Errno 28] No space left on device"


async def test_a_throughput_level_is_that_many_requests_at_the_server_at_once(
    make_pdf: MakePdf, tmp_path: Path
) -> None:
    """A sweep's level above 2 x concurrency was capped by the client's connection pool
    (httpx, max(16, 2 x concurrency) connections): its images/s measured 16 in flight."""
    level = 40
    settings = SETTINGS.model_copy(update={"warm_runs": 1, "throughput_requests": level})
    chats = in_flight = most = 0
    everyone = asyncio.Event()
    sse = [b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n',
           b"data: [DONE]\n\n"]  # fmt: skip

    async def respond(sent: Sent, n: int) -> Answer:
        nonlocal chats, in_flight, most
        if sent.path != "/v1/chat/completions":
            return Answer.json(404, {})  # /metrics: no counters
        chats += 1
        if chats > 2:  # past the cold and the warm request: the throughput phase
            in_flight += 1
            most = max(most, in_flight)
            if in_flight == level:
                everyone.set()
            # Held until all are here (a capped client never gets there: the deadline)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await everyone.wait()
            in_flight -= 1
        return Answer.sse(sse)

    async with scripted_http(respond) as server:
        target = ModelTarget(model("lighton-ocr", "lighton-ocr"), server.url)
        plan = RunPlan(tuple(docs(make_pdf, 1)), (target,), settings, concurrencies=(level,))
        events = await run_to_end(plan, tmp_path / "run")
    assert isinstance(events[-1], RunDone) and events[-1].error is None
    assert most == level
