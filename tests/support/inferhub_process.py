"""Start ``inferhub serve`` as a real child process, wait until it answers, stop it with a signal."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERHUB_")}
    env.update({"INFERHUB_HOME": str(home), "INFERHUB_CONFIG_FILE": str(home / "inferhub.yaml")})
    env.update(extra)
    return env


def run_cli(
    home: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run an ``inferhub`` CLI command against the install under ``home``."""
    result = subprocess.run(
        [str(BIN / "inferhub"), *args],
        env=env or base_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"inferhub {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


TEST_ADMIN_PASSWORD = "ih-test-admin-password"  # the dashboard's admin, unless a test sets its own


class InferhubProcess:
    """One ``inferhub serve`` child with its own INFERHUB_HOME and port."""

    def __init__(self, home: Path, *, api_key: str = "ih-test-admin-key", local_models: bool = True,
                 config: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.api_key = api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if config is not None:
            import yaml

            (home / "inferhub.yaml").write_text(yaml.safe_dump(config))
        extra = {"INFERHUB_HOST": "127.0.0.1", "INFERHUB_PORT": str(self.port),
                 "INFERHUB_LOCAL_MODELS": "true" if local_models else "false"}  # fmt: skip
        if api_key:  # the harness chooses the credentials; api_key="" starts as a new user would, printing both
            extra["INFERHUB_API_KEY"] = api_key
            extra["INFERHUB_BOOTSTRAP_ADMIN_PASSWORD"] = TEST_ADMIN_PASSWORD
        extra.update(env or {})
        self.env = base_env(home, **extra)
        self.log_path = home / "serve.log"
        self.process: subprocess.Popen | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def start(self, timeout: float = 180.0) -> InferhubProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(BIN / "inferhub"), "serve"], env=self.env, cwd=self.home, stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"inferhub exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"inferhub did not start within {timeout}s:\n{self.output()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    events.append(orjson.loads(line))
        return events

    def health(self) -> dict[str, Any]:
        headers = self.headers if self.api_key else None  # the details need an admin key
        return httpx.get(f"{self.url}/health", headers=headers, timeout=60).json()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_cli(self.home, *args, env=self.env, check=check)

    def __enter__(self) -> InferhubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
