"""Helpers of the job tests: ``inferhub worker`` processes, keys, submitting and polling jobs, usage rows.

``tests/`` is on the import path (``support``, ``fakes``); ``conftest.py`` adds this folder so the
tests here can ``import jobs_support`` (a name no other folder uses).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import httpx

from support import InferhubProcess
from support.inferhub_process import BIN

CHAT = {"model": "m", "messages": [{"role": "user", "content": "summarise ticket 42"}]}
SECRET_KEY = "uJfQ1Qm3o6YQHqH1B9s2QfFZ5oOZ8e6dY5V8N2bU0Ww="
FINISHED = ("succeeded", "failed", "cancelled")
MAX_ATTEMPTS = 3  # INFERHUB_JOB_MAX_ATTEMPTS of the folder's API


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    """Poll until ``predicate()`` is truthy and return it; a generous deadline, never an assertion on time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


class Worker:
    """An ``inferhub worker`` process against the same database and configuration as the API."""

    def __init__(self, api: InferhubProcess, name: str, **env: str) -> None:
        self.log = api.home / f"worker-{name}.log"
        self._file = self.log.open("ab")
        self._start = self.log.stat().st_size
        self.process = subprocess.Popen([str(BIN / "inferhub"), "worker"], env={**api.env, **env}, cwd=api.home,
                                        stdout=self._file, stderr=subprocess.STDOUT)  # fmt: skip
        wait_for(lambda: any(e["event"] == "job_worker_started" for e in self.events()), timeout=60)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """This run's JSON log events (optionally only those called ``name``)."""
        with self.log.open("rb") as handle:
            handle.seek(self._start)
            lines = handle.read().decode(errors="replace").splitlines()
        out = []
        for line in lines:
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    event = json.loads(line)
                    if name is None or event.get("event") == name:
                        out.append(event)
        return out

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        self._file.close()


@dataclass(frozen=True)
class Key:
    secret: str
    id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def new_key(api: InferhubProcess, name: str, tenant: str | None = None, limits: tuple[str, ...] = ()) -> Key:
    """A key with the ``jobs`` and ``inference`` scopes, once the API has it in its cache."""
    args = ["keys", "create", name, "--scope", "jobs", "--scope", "inference"]
    if tenant:
        args += ["--tenant", tenant]
    for limit in limits:
        args += ["--limit", limit]
    created = api.cli(*args)
    key = Key(created.stdout.strip(), int(re.search(r"created key (\d+)", created.stderr).group(1)))
    wait_for(lambda: httpx.get(f"{api.url}/v1/jobs", headers=key.headers).status_code == 200)
    return key


def submit(api: InferhubProcess, key: Key, body: dict[str, Any], **extra: Any) -> httpx.Response:
    headers = {**key.headers, **extra.pop("headers", {})}
    return httpx.post(f"{api.url}/v1/jobs", headers=headers, json={"type": "chat.completions", "body": body, **extra})


def get_job(api: InferhubProcess, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    return httpx.get(f"{api.url}/v1/jobs/{job_id}", headers=headers).json()


def finished(api: InferhubProcess, headers: dict[str, str], job_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: (j := get_job(api, headers, job_id))["status"] in FINISHED and j, timeout=timeout)


def usage_rows(api: InferhubProcess, key: Key) -> list[dict[str, Any]]:
    """Every usage record of one key, from the admin request log."""
    reply = httpx.get(f"{api.url}/api/request-log", params={"key_id": key.id, "limit": 1000}, headers=api.headers)
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]
