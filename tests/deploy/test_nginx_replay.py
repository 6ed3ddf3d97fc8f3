"""nginx replays an inference request on the next replica when the first closed without answering.

That is what a replica does when it stops at the moment nginx sends to it, and what a rolling restart
must survive. nginx can only send a request again if it holds the whole body (request buffering on):
with ``proxy_request_buffering off`` it gives up after the first try and the client gets nginx's 502.
Here the first upstream reads each request and closes the connection without a byte of answer; the
second answers. Every request must succeed, and nginx's log must show one that tried the closing
upstream first, so the replay path really ran.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from deploy_support import Nginx, require, which
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from fakes import BackgroundServer

ANSWER = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}


class ClosesWithoutAnswering:
    """A TCP server that reads a POST's head, then closes the connection: no response."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests_dropped = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> ClosesWithoutAnswering:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
            with connection:
                connection.settimeout(5)
                received = b""
                try:
                    while b"\r\n\r\n" not in received:
                        chunk = connection.recv(65536)
                        if not chunk:
                            break
                        received += chunk
                except OSError:
                    continue
                if received.startswith(b"POST"):
                    self.requests_dropped += 1
                elif received:  # nginx's start-up check (GET /health/live) is answered, or it would skip us
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def stop(self) -> None:
        self.listener.close()


def _answering_app() -> Starlette:
    async def chat(request) -> JSONResponse:
        await request.body()
        return JSONResponse(ANSWER)

    async def live(request) -> JSONResponse:
        return JSONResponse({"status": "alive"})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/health/live", live)])


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nginx, ClosesWithoutAnswering]]:
    require(which("nginx"), "nginx (Debian package nginx)")
    closer = ClosesWithoutAnswering().start()
    good = BackgroundServer(_answering_app()).start()
    nginx = Nginx(Path(tmp_path_factory.mktemp("replay-nginx")), [closer.address, f"127.0.0.1:{good.port}"])
    try:
        yield nginx.start(), closer
    finally:
        nginx.stop()
        good.stop()
        closer.stop()


def post_in_two_parts(url: str, body: bytes) -> int:
    """POST with the head and the body sent apart, as HTTP clients often write them: nginx has read
    the head before the body arrives (the body is not pre-read with it), the case a race can bring."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")  # fmt: skip
        connection.sendall(head.encode())
        time.sleep(0.05)
        connection.sendall(body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_a_chat_request_dropped_by_one_replica_is_answered_by_the_next(proxied) -> None:
    nginx, closer = proxied
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]})
    statuses = [post_in_two_parts(nginx.url, body) for _ in range(6)]
    assert statuses == [200] * 6, f"{statuses}; nginx said: {nginx.errors()[-5:]}"
    assert closer.requests_dropped >= 1, "no request reached the closing upstream: the replay was not exercised"
    replayed = [entry for entry in nginx.access_log() if entry[1].startswith(closer.address + ", ")]
    assert replayed and replayed[0][0] == "200", nginx.access_log()
