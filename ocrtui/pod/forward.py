"""Local port forwards over an SSH connection that may be replaced (reconnects).

The listener is ours, not asyncssh's ``forward_local_port``: it stays bound for the pod's
whole life, so the local port never changes and is never free for another program to take
while the link is down. Each accepted client gets its own direct-tcpip channel on whatever
connection is current; while there is none the client is closed at once.

Both sides are protocols writing straight into each other's transport (as asyncssh's own
forwarder does). sshd sets TCP_NODELAY only for interactive sessions, so a response written
in two pieces (headers, then body) has its second piece held back until our kernel ACKs the
first, which it delays by up to 40 ms: measured here, most requests over a fresh connection
took ~45 ms through asyncssh's own forward. Asking for an immediate ACK whenever forwarded
data arrives (TCP_QUICKACK, Linux) brings them back to ~3 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import asyncssh

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only

ConnGetter = Callable[[], asyncssh.SSHClientConnection | None]


class _RemoteSide(asyncssh.SSHTCPSession[bytes]):
    """The channel's end: what the pod sends goes to the local client."""

    def __init__(self, local: _LocalSide, conn: asyncssh.SSHClientConnection) -> None:
        self._local = local
        self._ssh_sock = conn.get_extra_info("socket")

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._local.write(data)
        if _QUICKACK is not None and self._ssh_sock is not None:
            # ACK sshd's segment now: sshd does not disable Nagle on non-interactive
            # connections, so its next small segment (an HTTP body after the headers)
            # would otherwise wait for our delayed ACK, ~40 ms.
            with contextlib.suppress(OSError):
                self._ssh_sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def eof_received(self) -> bool:
        self._local.write_eof()
        return True  # keep the channel open: the client may still be sending

    def connection_lost(self, exc: Exception | None) -> None:
        self._local.close()

    def pause_writing(self) -> None:
        self._local.pause_reading()

    def resume_writing(self) -> None:
        self._local.resume_reading()


class _LocalSide(asyncio.Protocol):
    """One local client; its bytes go into a channel once that is open."""

    def __init__(self, forward: LocalForward) -> None:
        self._forward = forward
        self._transport: asyncio.Transport | None = None
        self._chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self._pending: list[bytes] = []
        self._eof = False
        self._opening: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        conn = self._forward.get_conn()
        if conn is None:
            transport.close()  # the pod is away: say so at once rather than hang
            return
        self._forward.clients.add(self)
        self._opening = asyncio.create_task(self._open(conn))

    async def _open(self, conn: asyncssh.SSHClientConnection) -> None:
        try:
            chan, _ = await conn.create_connection(
                lambda: _RemoteSide(self, conn),
                self._forward.remote_host,
                self._forward.remote_port,
            )
        except (asyncssh.Error, OSError):
            self.close()
            return
        if self._transport is None:  # the client left while the channel was opening
            chan.close()
            return
        self._chan = chan
        for data in self._pending:
            chan.write(data)
        self._pending.clear()
        if self._eof:
            chan.write_eof()

    def data_received(self, data: bytes) -> None:
        if self._chan is not None:
            self._chan.write(data)
        else:
            self._pending.append(data)

    def eof_received(self) -> bool:
        self._eof = True
        if self._chan is not None:
            self._chan.write_eof()
        return True  # half-close: the answer may still be on its way

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._forward.clients.discard(self)
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self._chan is not None:
            self._chan.close()
            self._chan = None

    def pause_writing(self) -> None:
        if self._chan is not None:
            self._chan.pause_reading()

    def resume_writing(self) -> None:
        if self._chan is not None:
            self._chan.resume_reading()

    # Called by the channel side.

    def write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def write_eof(self) -> None:
        if self._transport is not None and self._transport.can_write_eof():
            # The client may have reset its end before its connection_lost has run; the
            # error would otherwise escape into asyncssh's packet handling.
            with contextlib.suppress(OSError):
                self._transport.write_eof()

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class LocalForward:
    """``127.0.0.1:local_port`` on this machine to ``remote_host:remote_port`` on the pod."""

    def __init__(self, get_conn: ConnGetter, remote_host: str, remote_port: int) -> None:
        self.get_conn = get_conn
        self.remote_host = remote_host
        self.remote_port = remote_port
        self.clients: set[_LocalSide] = set()
        self._server: asyncio.Server | None = None
        self.local_port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _LocalSide(self), "127.0.0.1", 0)
        self.local_port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.close()
