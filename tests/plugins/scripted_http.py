"""A loopback HTTP/1.1 server that answers each request with scripted bytes, on the test's
own event loop: the client's real transport (aiohttp) meets a body cut mid-stream, a
connection closed before any answer, a server gone quiet, as it would from a real server.

    async with scripted_http(lambda sent, n: Answer.json(200, {...})) as server:
        ... server.url ..., server.requests[0].body

``respond(sent, n)`` gets the n-th request (0-based) as read and returns an :class:`Answer`
(or an awaitable of one: a server that holds requests, counting those in flight):
``Answer.json`` (a Content-Length body), ``Answer.sse`` (a chunked event stream, its pieces
one chunk each) then ``end``: ``"done"`` (the closing chunk, keep-alive), ``"cut"`` (the
connection closed before the closing chunk) or ``"stall"`` (nothing more until the test
ends); ``Answer.drop()`` closes the connection without answering.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

End = Literal["done", "cut", "stall"]


@dataclass(frozen=True)
class Sent:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    client_port: int


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None  # sent with Content-Length; None: chunked ``pieces``
    pieces: tuple[bytes, ...] = ()
    end: End = "done"
    drop: bool = False  # close without a status line
    raw: bytes | None = None  # sent as is instead of an HTTP answer, then closed

    @classmethod
    def json(cls, status: int, payload: object) -> Answer:
        return cls(status, (("Content-Type", "application/json"),), json.dumps(payload).encode())

    @classmethod
    def sse(cls, pieces: list[bytes], end: End = "done") -> Answer:
        hdrs = (("Content-Type", "text/event-stream; charset=utf-8"),)
        return cls(200, hdrs, None, tuple(pieces), end)

    @classmethod
    def dropped(cls) -> Answer:
        return cls(drop=True)


Respond = Callable[["Sent", int], "Answer | Awaitable[Answer]"]


@dataclass
class ScriptedHttp:
    respond: Respond
    url: str = ""
    requests: list[Sent] = field(default_factory=list)
    quiet: asyncio.Event = field(default_factory=asyncio.Event)  # set: stalls end
    open_writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        self.open_writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed its connection
                line, *fields = head.decode("latin-1").split("\r\n")
                method, path, _ = line.split(" ", 2)
                hdrs = {k.strip().lower(): v.strip() for k, v in
                        (f.split(":", 1) for f in fields if f)}  # fmt: skip
                body = await reader.readexactly(int(hdrs.get("content-length", "0")))
                sent = Sent(method, path, hdrs, body, port)
                self.requests.append(sent)
                answer = self.respond(sent, len(self.requests) - 1)
                if inspect.isawaitable(answer):
                    answer = await answer
                if answer.drop:
                    return
                if not await self._write(writer, answer):
                    return
        finally:
            self.open_writers.discard(writer)
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    async def _write(self, writer: asyncio.StreamWriter, a: Answer) -> bool:
        """Send ``a``; whether the connection stays open for the next request."""
        if a.raw is not None:
            writer.write(a.raw)
            await writer.drain()
            return False
        lines = [f"HTTP/1.1 {a.status} X", *(f"{k}: {v}" for k, v in a.headers)]
        if a.body is not None:
            lines.append(f"Content-Length: {len(a.body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + a.body)
            await writer.drain()
            return True
        lines.append("Transfer-Encoding: chunked")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        for piece in a.pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        if a.end == "stall":
            await self.quiet.wait()
            return False
        if a.end == "cut":
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


@asynccontextmanager
async def scripted_http(respond: Respond) -> AsyncIterator[ScriptedHttp]:
    server = ScriptedHttp(respond)
    tcp = await asyncio.start_server(server._connection, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        server.quiet.set()
        tcp.close()
        for writer in list(server.open_writers):  # Server.close_clients() is Python 3.12's
            writer.close()
        await tcp.wait_closed()
