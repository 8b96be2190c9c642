"""A forwarded client that reset its connection before the pod's EOF arrives: the EOF is
dropped instead of raising into asyncssh's packet handling (ENOTCONN from SHUT_WR)."""

from __future__ import annotations

import asyncio
import select
import socket
import struct

from ocrtui.pod.forward import _LocalSide


async def test_eof_to_a_client_that_reset_does_not_raise() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    assert select.select([client], [], [], 5)[0], "no RST arrived"
    client.setblocking(False)
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, sock=client)
    side = _LocalSide.__new__(_LocalSide)
    side._transport = transport
    try:
        side.write_eof()
    finally:
        transport.close()
