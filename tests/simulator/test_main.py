"""`python -m simulator`: its listening sockets."""

from __future__ import annotations

import asyncio
import socket

from simulator.__main__ import _listen


async def test_simulator_connections_have_nagle_off_as_a_real_server_s_do():
    """Regression: a socket made with proto 0 kept Nagle on (asyncio only turns it off for IPPROTO_TCP),
    and every kept-alive response waited ~40 ms for a delayed ACK, a delay the real site does not have."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(handle, sock=_listen("127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    writer.close()
    server.close()
    assert seen == [1]
