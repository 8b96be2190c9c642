"""A run's event history: every event reaches live subscribers, and a late subscriber (a
screen rejoining, a second consumer) replays a compact history whose size does not grow
with the page texts.

What the history keeps, per event type:

- ``PageDone``: every one, but with ``result.text=None`` once more than ``REPLAY_TEXTS`` newer
  pages of the same model exist (every text is in results.jsonl); numbers and flags stay.
- ``PageStarted``: only while the page is in flight.
- ``PhaseProgress``: only the latest per model and phase.
- ``PageDelta``: none; :meth:`EventHistory.publish` hands it to the subscribers listening
  now, in its place among the other events (a subscriber more than ``LIVE_BACKLOG`` deltas
  behind loses the oldest: PageDone carries the whole text).
- everything else (run, document, phase and summary events): all of them.

Slots are blanked in place rather than removed, so a subscriber's position stays valid;
a subscriber that falls behind by more than the bounds sees the compact form too.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace

from ocrtui.compare.events import (
    Event,
    PageDelta,
    PageDone,
    PageFailed,
    PageStarted,
    PhaseProgress,
    RunDone,
)

REPLAY_TEXTS = 200  # page texts a late subscriber gets per model (the dashboard shows 200)
LIVE_BACKLOG = 10_000  # PageDelta events one subscriber may have waiting


class EventHistory:
    def __init__(self, texts_per_model: int = REPLAY_TEXTS) -> None:
        self._slots: list[Event | None] = []
        self._changed = asyncio.Event()
        self._texts_per_model = texts_per_model
        self._texts: dict[str, deque[int]] = {}  # model -> slots of PageDone holding text
        self._in_flight: dict[tuple[str, str, int], int] = {}  # (model, doc, page) -> slot
        self._progress: dict[tuple[str, str], int] = {}  # (model, phase) -> slot
        # Each listening subscriber's waiting PageDelta events, with the slot count when sent.
        self._live: dict[int, deque[tuple[int, PageDelta]]] = {}  # id -> waiting

    def append(self, ev: Event) -> None:
        slot = len(self._slots)
        self._slots.append(ev)
        if isinstance(ev, PageStarted):
            self._in_flight[(ev.model, ev.doc, ev.page)] = slot
        elif isinstance(ev, PageDone | PageFailed):
            started = self._in_flight.pop((ev.model, ev.doc, ev.page), None)
            if started is not None:
                self._slots[started] = None
            if isinstance(ev, PageDone) and ev.result.text is not None:
                self._keep_text(ev.model, slot)
        elif isinstance(ev, PhaseProgress):
            previous = self._progress.get((ev.model, ev.phase))
            if previous is not None:
                self._slots[previous] = None
            self._progress[(ev.model, ev.phase)] = slot
        self._changed.set()

    def publish(self, ev: PageDelta) -> None:
        """Hand ``ev`` to the subscribers listening now; nothing is kept."""
        for waiting in self._live.values():
            waiting.append((len(self._slots), ev))
        if self._live:
            self._changed.set()

    def _keep_text(self, model: str, slot: int) -> None:
        held = self._texts.setdefault(model, deque())
        held.append(slot)
        while len(held) > self._texts_per_model:
            old = held.popleft()
            ev = self._slots[old]
            if isinstance(ev, PageDone):
                self._slots[old] = replace(ev, result=ev.result.without_text())

    @property
    def events(self) -> list[Event]:
        """The events a subscriber starting now would replay."""
        return [ev for ev in self._slots if ev is not None]

    async def subscribe(self) -> AsyncIterator[Event]:
        """The history, then live events (PageDelta among them), ending after RunDone."""
        i = 0
        live: deque[tuple[int, PageDelta]] = deque(maxlen=LIVE_BACKLOG)
        self._live[id(live)] = live
        try:
            while True:
                while i < len(self._slots) or live:
                    # A delta sent when the history had n slots comes before slot n.
                    if live and live[0][0] <= i:
                        yield live.popleft()[1]
                        continue
                    ev = self._slots[i]
                    i += 1
                    if ev is None:
                        continue
                    yield ev
                    if isinstance(ev, RunDone):
                        return
                self._changed.clear()
                if i < len(self._slots) or live:
                    continue
                await self._changed.wait()
        finally:
            del self._live[id(live)]
