"""Start-up, restart, supervision and shutdown of ``inferhub serve`` as a real process tree."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from support import InferhubProcess
from support.inferhub_process import BIN, base_env, free_port


def _wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def _postmaster_pid(home: Path) -> int:
    return int((home / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def _serve_once(home: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `inferhub serve` expecting it to refuse to start."""
    full_env = base_env(home, INFERHUB_HOST="127.0.0.1", INFERHUB_PORT=str(free_port()), **env)
    return subprocess.run([str(BIN / "inferhub"), "serve"], env=full_env, cwd="/tmp", capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def _one_clear_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("inferhub: ")
    return lines[0]


def test_first_start_prints_a_bootstrap_key_once_and_data_survives_restart(tmp_path: Path) -> None:
    process = InferhubProcess(tmp_path / "home", api_key="", local_models=False)
    with process:
        match = re.search(r"^\s+(ih-\S+)\s*$", process.output(), re.MULTILINE)
        assert match, process.output()
        key = match.group(1)
        assert httpx.get(f"{process.url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    first_output = process.output()
    assert process.process.returncode == 0

    with process:  # same INFERHUB_HOME: the embedded database and its keys are reused
        assert httpx.get(f"{process.url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        second_output = process.output()[len(first_output):]
    assert "bootstrap admin API key" not in second_output
    assert key not in second_output


def test_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = base_env(tmp_path, INFERHUB_HOST="127.0.0.1", INFERHUB_PORT=str(port))
        result = subprocess.run([str(BIN / "inferhub"), "serve"], env=env, cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
    line = _one_clear_line(result)
    assert f"port {port}" in line and "already in use" in line


def test_unwritable_home_stops_start_up_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _serve_once(blocker / "home", INFERHUB_LOCAL_MODELS="false")
    line = _one_clear_line(result)
    assert "INFERHUB_HOME" in line and "not writable" in line


def test_missing_model_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = _serve_once(tmp_path / "home", INFERHUB_LOCAL_CHAT_MODEL_PATH=str(tmp_path / "missing.gguf"))
    line = _one_clear_line(result)
    assert "missing.gguf" in line and "not found" in line


def test_external_database_url_is_used_and_migrated(tmp_path: Path) -> None:
    from inferhub.runtime.embedded_postgres import EmbeddedPostgres

    external = EmbeddedPostgres(tmp_path / "external-pg")
    url = external.start()
    try:
        process = InferhubProcess(tmp_path / "home", local_models=False, env={"INFERHUB_DATABASE_URL": url})
        with process:
            assert process.health()["components"]["database"]["status"] == "healthy"
            assert not (process.home / "postgres").exists()
            current = process.cli("migrate", "current").stdout
            assert "up to date" in current
            head = re.search(r"head: (\S+)", current).group(1)
            process.cli("backends", "add", "remote-model", "http://127.0.0.1:9", "--type", "vllm")
            listed = process.cli("backends", "list", "--json").stdout
            assert "remote-model" in listed
        assert "base" in process.cli("migrate", "downgrade", "base").stdout
        assert "needs" in process.cli("migrate", "current").stdout
        assert f"revision {head}" in process.cli("migrate", "upgrade").stdout
    finally:
        external.stop()


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory):
    process = InferhubProcess(tmp_path_factory.mktemp("supervised"),
                              env={"INFERHUB_LOCAL_CHAT_RESTART_DELAY_SECONDS": "0.2"})  # fmt: skip
    with process:
        yield process


def test_a_killed_model_process_is_restarted_and_logged(supervised: InferhubProcess) -> None:
    before = supervised.health()["components"]["local_chat_model"]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted():
        state = supervised.health()["components"]["local_chat_model"]
        return state if state["restarts"] == before["restarts"] + 1 and state["status"] == "healthy" else None

    after = _wait_for(restarted, timeout=120)
    assert after["pid"] != before["pid"]
    events = [e["event"] for e in supervised.log_events()]
    assert "local_model_exited" in events and "local_model_restarted" in events
    reply = httpx.post(
        f"{supervised.url}/generate", headers=supervised.headers, json={"prompt": "hi", "max_tokens": 3}, timeout=120
    )
    assert reply.status_code == 200


def test_sigterm_stops_api_model_and_database_with_no_orphans(supervised: InferhubProcess) -> None:
    model_pid = supervised.health()["components"]["local_chat_model"]["pid"]
    postgres_pid = _postmaster_pid(supervised.home)
    children = psutil.Process(supervised.process.pid).children(recursive=True)
    assert any(c.pid == model_pid for c in children)

    assert supervised.stop(signal.SIGTERM) == 0
    _wait_for(lambda: not psutil.pid_exists(model_pid), timeout=15)
    _wait_for(lambda: not psutil.pid_exists(postgres_pid), timeout=15)
    assert all(not psutil.pid_exists(c.pid) for c in children)
    events = [e["event"] for e in supervised.log_events()]
    assert events[-1] == "inferhub_stopped"


def _postgres_processes(home: Path) -> list[psutil.Process]:
    """Every running ``postgres`` whose command line names this home's data directory."""
    data_dir = str((home / "postgres").resolve())
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and data_dir in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def test_after_a_sigkill_the_next_run_adopts_the_database_and_sigterm_stops_it(tmp_path: Path) -> None:
    process = InferhubProcess(tmp_path / "home").start()
    tenants = f"{process.url}/api/tenants"
    assert httpx.post(tenants, headers=process.headers, json={"name": "survivor"}).status_code == 201
    postgres_pid = _postmaster_pid(process.home)
    children = psutil.Process(process.process.pid).children(recursive=True)
    models = [c.pid for c in children if "llama_cpp.server" in " ".join(c.cmdline())]
    assert models

    process.stop(signal.SIGKILL)  # nothing of Inferhub runs its shutdown
    assert psutil.pid_exists(postgres_pid)  # PostgreSQL runs detached: it outlives the kill

    process.start()  # same home: the running server is adopted, not started again
    assert _postmaster_pid(process.home) == postgres_pid
    assert all(not psutil.pid_exists(pid) for pid in models), "the killed run's llama.cpp still runs"
    names = [t["name"] for t in httpx.get(tenants, headers=process.headers).json()["data"]]
    assert "survivor" in names
    assert process.stop(signal.SIGTERM) == 0
    _wait_for(lambda: not psutil.pid_exists(postgres_pid), timeout=30)
    assert _postgres_processes(process.home) == []

    with process:  # a third start finds the data
        names = [t["name"] for t in httpx.get(tenants, headers=process.headers).json()["data"]]
        assert "survivor" in names
    assert _postgres_processes(process.home) == []
