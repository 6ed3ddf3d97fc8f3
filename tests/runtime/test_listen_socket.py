"""The API's listening socket: accepted connections get TCP_NODELAY, and workers can share the port.

Without TCP_NODELAY a response written in two pieces (head, then body) waits for the client's delayed
ACK: +40 ms on every request after the first on a kept-alive connection, which the SDKs all use. asyncio
sets it on accepted sockets only when the listening socket's proto says IPPROTO_TCP, which is why
``bind_socket`` passes it. The check reads the option on the accepted socket itself, on the event loops
``serve`` may run on (uvicorn serves through ``loop.create_server(sock=...)``, as here).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from inferhub.runtime.embedded_postgres import StartupError
from inferhub.server import bind_socket


async def _nodelay_of_accepted_connection(sock: socket.socket) -> int:
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted = writer.get_extra_info("socket")
        seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=sock)
    host, port = sock.getsockname()[:2]
    _, writer = await asyncio.open_connection(host, port)
    try:
        return await asyncio.wait_for(seen, 30)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_accepted_connections_have_tcp_nodelay(loop: str) -> None:
    sock = bind_socket("127.0.0.1", 0)
    if loop == "uvloop":
        import uvloop

        nodelay = uvloop.run(_nodelay_of_accepted_connection(sock))
    else:
        nodelay = asyncio.run(_nodelay_of_accepted_connection(sock))
    assert nodelay != 0


def test_workers_bind_the_port_their_supervisor_reserved() -> None:
    reserved = bind_socket("127.0.0.1", 0, reuse_port=True, listen=False)  # what `serve --workers N` holds
    port = reserved.getsockname()[1]
    workers = [bind_socket("127.0.0.1", port, reuse_port=True) for _ in range(2)]
    try:
        with pytest.raises(StartupError, match=f"port {port} on 127.0.0.1 is already in use"):
            bind_socket("127.0.0.1", port)  # anyone else is still refused, with the one-line message
    finally:
        for sock in (reserved, *workers):
            sock.close()
