"""The static upstream: nginx on loopback answering a canned chat completion and a canned SSE stream.

It measures the gateway alone: nginx answers from memory (open_file_cache, sendfile) in a few
microseconds, so whatever a request costs beyond the direct call is Inferhub's.

Two ``server`` blocks, one per port, because nginx cannot route on a JSON body field (``stream``):

- the **JSON port** answers ``POST /v1/chat/completions`` with ``chat.json`` (a complete
  ``chat.completion`` with ``usage``);
- the **SSE port** answers the same path with ``stream.sse`` (``Content-Type: text/event-stream``):
  ``STREAM_CHUNKS`` ``data:`` events (the last one the usage chunk, ``choices: []``) and ``data: [DONE]``.
  nginx cannot pace a stream, so the whole body leaves at once: the gateway's per-chunk cost is
  what is measured, not an engine's token rate.

Both answer ``GET /v1/models`` (Inferhub's health check and discovery) and ``GET /health``.
The gateway registers model ``bench`` on the JSON port and ``bench-stream`` on the SSE port; a client
streaming straight to nginx uses the SSE port. nginx's static module refuses POST with 405; the
``error_page 405 =200 $uri`` line turns that into an internal GET of the same file, answered 200.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

STREAM_CHUNKS = 50  # data: events per canned stream, the usage chunk included, [DONE] excluded
UPSTREAM_MODEL = "bench-upstream"
PROMPT_TOKENS = 12
CREATED = 1_700_000_000


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def canned_chat() -> bytes:
    """A complete non-streaming chat completion, as vLLM sends it."""
    return orjson.dumps(
        {
            "id": "chatcmpl-bench0000000000000000000000",
            "object": "chat.completion",
            "created": CREATED,
            "model": UPSTREAM_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Hello! This is a canned answer from the static upstream.",
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 14, "total_tokens": PROMPT_TOKENS + 14},
        }
    )


def canned_stream_payloads(chunks: int = STREAM_CHUNKS) -> list[bytes]:
    """The ``data:`` payloads of the canned stream: content deltas, the last with ``finish_reason``, then usage.

    The first delta carries the role *and* text, so the client's first chunk is also its first token.
    """
    if chunks < 2:
        raise ValueError("a stream needs at least one content chunk and the usage chunk")
    content_chunks = chunks - 1
    base = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": UPSTREAM_MODEL,
    }
    payloads = []
    for i in range(content_chunks):
        delta: dict = {"content": f" tok{i:03d}"}
        if i == 0:
            delta = {"role": "assistant", "content": "Hello"}
        finish = "stop" if i == content_chunks - 1 else None
        payloads.append(
            orjson.dumps({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})
        )
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": content_chunks,
        "total_tokens": PROMPT_TOKENS + content_chunks,
    }
    payloads.append(orjson.dumps({**base, "choices": [], "usage": usage}))
    return payloads


def canned_stream(chunks: int = STREAM_CHUNKS) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in canned_stream_payloads(chunks)) + b"data: [DONE]\n\n"


def canned_models() -> bytes:
    return orjson.dumps(
        {"object": "list", "data": [{"id": UPSTREAM_MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}]}
    )


_SERVER = """
    server {{
        listen {host}:{port} reuseport;
        root {root};
        keepalive_requests 100000000;
        keepalive_timeout 300s;
        location = /v1/chat/completions {{
            default_type {content_type};
            try_files /{body} =500;
            error_page 405 =200 /{body};
        }}
        location = /{body} {{
            internal;
            default_type {content_type};
        }}
        location = /v1/models {{
            default_type application/json;
            try_files /models.json =500;
        }}
        location = /health {{
            default_type application/json;
            return 200 '{{"status":"ok"}}';
        }}
        location / {{
            return 404;
        }}
    }}
"""

_CONFIG = """
{user}
worker_processes {workers};
daemon off;
master_process on;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{
    worker_connections 16384;
    multi_accept on;
}}
http {{
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    etag off;
    types {{ }}
    open_file_cache max=16 inactive=3600s;
    open_file_cache_valid 3600s;
    client_body_buffer_size 64k;
    client_max_body_size 10m;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
{servers}
}}
"""


@dataclass
class StaticUpstream:
    """nginx serving the canned answers on two free loopback ports; a context manager."""

    host: str = "127.0.0.1"
    workers: int = 1
    chunks: int = STREAM_CHUNKS
    json_port: int = 0
    sse_port: int = 0

    def __post_init__(self) -> None:
        self.root: Path | None = None
        self.process: subprocess.Popen | None = None
        self._own_root = False

    @property
    def json_url(self) -> str:
        return f"http://{self.host}:{self.json_port}"

    @property
    def sse_url(self) -> str:
        return f"http://{self.host}:{self.sse_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def write_config(self, root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        (root / "chat.json").write_bytes(canned_chat())
        (root / "stream.sse").write_bytes(canned_stream(self.chunks))
        (root / "models.json").write_bytes(canned_models())
        self.json_port = self.json_port or free_port(self.host)
        self.sse_port = self.sse_port or free_port(self.host)
        servers = _SERVER.format(
            host=self.host, port=self.json_port, root=root, body="chat.json", content_type="application/json"
        )
        servers += _SERVER.format(
            host=self.host, port=self.sse_port, root=root, body="stream.sse", content_type="text/event-stream"
        )
        # As root nginx's workers would switch to `nobody`, who may not read a private temp dir.
        user = "user root root;" if os.geteuid() == 0 else ""
        config = root / "nginx.conf"
        config.write_text(_CONFIG.format(user=user, workers=self.workers, root=root, servers=servers))
        return config

    def start(self, root: Path | None = None, timeout: float = 10.0) -> StaticUpstream:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed: run `bash bench/ensure-bench-tools.sh` (apt package nginx)")
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="inferhub-bench-nginx-"))
            self._own_root = True
        self.root = root
        config = self.write_config(root)
        log = (root / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "-p", str(root), "-c", str(config), "-e", str(root / "error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self.log_tail()}")
            if _answers(self.host, self.json_port) and _answers(self.host, self.sse_port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not answer within {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        if self.root is None:
            return ""
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-1500:])
        return "\n".join(parts)

    def rss_bytes(self) -> int:
        """nginx master plus workers."""
        import psutil

        if self.process is None:
            return 0
        try:
            parent = psutil.Process(self.process.pid)
            return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
        except psutil.Error:
            return 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, master exits
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        if self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> StaticUpstream:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
