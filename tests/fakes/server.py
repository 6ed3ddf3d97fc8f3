"""Run an ASGI app with uvicorn in a daemon thread on 127.0.0.1, for tests that need a real socket.

    with BackgroundServer(create_fake_ollama_app()) as srv:
        httpx.get(f"{srv.url}/api/tags")

``stop()`` then ``start()`` again rebinds the same port, so a test can take an upstream down and bring it
back at the same address.
"""

import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn


class BackgroundServer:
    """A uvicorn server in a daemon thread; ``start()`` returns once the port accepts connections."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
        graceful_timeout: int = 1,
    ) -> None:
        self.app = app
        self.host = host
        self._port = port
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.graceful_timeout = graceful_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("server has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if self.running:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            lifespan="off",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=self.graceful_timeout,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"fake-upstream-{self._port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._accepts_connections():
            if not thread.is_alive():
                sock.close()
                raise RuntimeError(f"uvicorn exited before serving on port {self._port}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server on port {self._port} did not start in {self.startup_timeout}s")
            time.sleep(0.01)
        return self

    def _accepts_connections(self) -> bool:
        if self._server is None or not self._server.started:
            return False
        try:
            with socket.create_connection((self.host, self._port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
