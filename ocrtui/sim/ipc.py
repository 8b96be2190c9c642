"""Frames between the API server and its EngineCore over a socketpair: length + pickle.

Both ends are this package in a parent and its own child, so pickle is safe here.

API server -> EngineCore: ("config", ServeArgs), ("add", rid, [image bytes], max_tokens),
("abort", rid), ("sleep", level), ("wake",), ("reload_weights",).
EngineCore -> API server: ("ready", info), ("failed", message), ("admitted", rid),
("delta", rid, text, n_tokens), ("done", rid, finish_reason), ("error", rid, message),
("slept", level), ("awake", None or the error that kept it asleep), ("reloaded", None).
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

Frame = tuple[Any, ...]


async def send(writer: asyncio.StreamWriter, frame: Frame) -> None:
    data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(len(data).to_bytes(4, "big") + data)
    await writer.drain()


async def recv(reader: asyncio.StreamReader) -> Frame:
    """The next frame; raises asyncio.IncompleteReadError when the other side is gone."""
    size = int.from_bytes(await reader.readexactly(4), "big")
    frame = pickle.loads(await reader.readexactly(size))
    assert isinstance(frame, tuple)
    return frame
