"""The run's event history stays bounded in texts and entries while live subscribers get
every event and late ones replay a compact, correctly ordered history."""

from __future__ import annotations

from ocrtui.compare.events import (
    Event,
    PageDelta,
    PageDone,
    PageStarted,
    PhaseDone,
    PhaseProgress,
    PhaseStarted,
    RunDone,
    RunStarted,
)
from ocrtui.compare.history import REPLAY_TEXTS, EventHistory
from ocrtui.compare.results import DocumentStats
from ocrtui.compare.store import PageResult

MODELS = ("glm-ocr", "lighton-ocr")
TEXT_CHARS = 3000  # a dense page of OCR output


def page_done(model: str, page: int) -> PageDone:
    text = f"{model} p{page} " + "字" * TEXT_CHARS
    return PageDone(
        PageResult("doc", page, model, True, None, 1.0, 900, 60, "stop", text, 0.01, "other",
                   ("repetition",))
    )  # fmt: skip


def feed(history: EventHistory, first: int, last: int) -> None:
    for page in range(first, last + 1):
        for m in MODELS:
            history.append(PageStarted(m, "doc", page))
            history.append(PhaseProgress(m, "throughput", page, last))
            history.append(page_done(m, page))


def held_text_chars(history: EventHistory) -> int:
    return sum(len(e.result.text or "") for e in history.events if isinstance(e, PageDone))


def test_history_size_is_bounded_over_many_pages() -> None:
    history = EventHistory()
    history.append(RunStarted("runs/x", MODELS, ("doc",)))
    feed(history, 1, 1000)
    after_1000 = (held_text_chars(history), len(history.events))
    feed(history, 1001, 5000)
    chars, count = held_text_chars(history), len(history.events)
    bound = len(MODELS) * REPLAY_TEXTS * len(page_done("lighton-ocr", 5000).result.text or "")
    assert after_1000[0] <= bound and chars <= bound  # 1000 or 5000 pages: the same texts held
    # One compact record per page and model, plus RunStarted and the latest progress each.
    assert count == 1 + len(MODELS) * 5000 + len(MODELS)
    assert after_1000[1] == 1 + len(MODELS) * 1000 + len(MODELS)
    assert not any(isinstance(e, PageStarted) for e in history.events)


async def test_late_subscriber_replays_numbers_for_every_page_and_the_last_texts() -> None:
    history = EventHistory()
    history.append(RunStarted("runs/x", MODELS, ("doc",)))
    history.append(PhaseStarted("glm-ocr", "documents", 500))
    feed(history, 1, 500)
    history.append(PageStarted("glm-ocr", "doc", 501))  # still in flight
    history.append(PhaseDone("lighton-ocr", "documents", DocumentStats(500, 500, 0, 1.0)))
    done = RunDone(None, 0)
    history.append(done)

    events = [ev async for ev in history.subscribe()]
    assert isinstance(events[0], RunStarted) and events[-1] is done
    pages = [e for e in events if isinstance(e, PageDone)]
    assert [(e.model, e.page) for e in pages] == [(m, p) for p in range(1, 501) for m in MODELS]
    assert all(e.result.latency_s == 1.0 and e.result.flags == ("repetition",) for e in pages)
    for m in MODELS:
        mine = [e for e in pages if e.model == m]
        assert all(e.result.text is None for e in mine[:-REPLAY_TEXTS])
        assert [e.result.text for e in mine[-REPLAY_TEXTS:]] == [
            page_done(m, p).result.text for p in range(501 - REPLAY_TEXTS, 501)
        ]
    progress = [e for e in events if isinstance(e, PhaseProgress)]
    assert sorted((e.model, e.done) for e in progress) == [(m, 500) for m in MODELS]
    assert [e for e in events if isinstance(e, PageStarted)] == [PageStarted("glm-ocr", "doc", 501)]


async def test_live_subscriber_gets_every_event_in_full() -> None:
    history = EventHistory(texts_per_model=2)
    stream = history.subscribe()
    for page in range(1, 6):
        for ev in (PageStarted("glm-ocr", "doc", page), page_done("glm-ocr", page)):
            history.append(ev)
            assert await anext(stream) is ev
    history.append(RunDone(None, 0))
    assert [type(e) async for e in stream] == [RunDone]
    assert sum(isinstance(e, PageDone) and e.result.text is not None for e in history.events) == 2


async def test_deltas_reach_listening_subscribers_in_order_and_are_never_kept() -> None:
    history = EventHistory()
    history.append(RunStarted("runs/x", MODELS, ("doc",)))
    history.publish(PageDelta("glm-ocr", "doc", 1, "nobody listens"))
    live = history.subscribe()
    assert isinstance(await anext(live), RunStarted)  # now listening
    history.append(PageStarted("glm-ocr", "doc", 1))
    history.publish(PageDelta("glm-ocr", "doc", 1, "Born "))
    history.publish(PageDelta("glm-ocr", "doc", 1, "digital"))
    history.append(page_done("glm-ocr", 1))
    history.append(RunDone(None, 0))
    got: list[Event] = [ev async for ev in live]
    # PageStarted is gone (its page finished before the subscriber read on); the deltas
    # come where they were sent, before the page's PageDone.
    assert [type(ev).__name__ for ev in got] == ["PageDelta", "PageDelta", "PageDone", "RunDone"]
    assert [ev.text for ev in got if isinstance(ev, PageDelta)] == ["Born ", "digital"]
    late = [ev async for ev in history.subscribe()]
    assert not any(isinstance(ev, PageDelta) for ev in late) and len(late) == 3
