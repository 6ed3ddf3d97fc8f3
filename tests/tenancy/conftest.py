"""Shared helpers for the tenancy tests, offered as the ``kit`` fixture.

With ``--import-mode=importlib`` this directory is not on ``sys.path``, so helpers cannot be imported from a
sibling module; the ``kit`` fixture hands out this module's helpers instead (``kit.chat(...)``, ``kit.Api``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from fakes import BackgroundServer, create_fake_ollama_app

PLATFORM_KEY = "ih-test-admin-key-tenancy"
PASSWORD = "correct-horse-battery-staple"
T = TypeVar("T")


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)
    return result


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    error = response.json()["error"]
    assert isinstance(error, dict), response.text
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    if code is not None:
        assert error["code"] == code, error
    return error


def chat(
    url: str,
    key: str,
    text: str = "hello there",
    *,
    model: str = "llama3.1:8b",
    stream: bool = False,
    timeout: float = 30,
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
    )


def key_known(url: str, key: str) -> bool:
    """True once the process has the key in its cache (a created key arrives through NOTIFY)."""
    response = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return not (response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key")


def wait_key(url: str, key: str, timeout: float = 10.0) -> None:
    wait_until(lambda: key_known(url, key), f"the new key to reach {url}", timeout)


def ollama_backends(fake_url: str, models: list[str]) -> list[dict[str, Any]]:
    return [
        {"model_name": m, "backend_type": "ollama", "endpoint_url": fake_url, "discover_models": False} for m in models
    ]


def start_fake_ollama(models: list[str]) -> BackgroundServer:
    return BackgroundServer(create_fake_ollama_app(models=models)).start()


def fast_env(**extra: str) -> dict[str, str]:
    """Settings that keep the tests quick: usage flushed often, no periodic refresh hiding NOTIFY bugs."""
    env = {
        "INFERHUB_USAGE_FLUSH_SECONDS": "0.2",
        "INFERHUB_CACHE_REFRESH_SECONDS": "600",
        "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0",
    }
    env.update(extra)
    return env


def avoid_minute_boundary(margin: float = 20.0) -> None:
    """Fixed one-minute windows reset at the full minute: start a per-minute test with ``margin`` s left."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.2)


def database(hub: Any, **options: Any) -> psycopg.Connection:
    """A connection to the embedded PostgreSQL of an ``InferhubProcess``."""
    return psycopg.connect(f"postgresql://postgres@/inferhub?host={hub.home / 'postgres'}", **options)


@contextmanager
def reloads_held(hub: Any, cached_table: str, row: tuple[str, int], change: Callable[[], T]) -> Iterator[T]:
    """Run ``change`` (an admin call) so that it commits while the replica cannot reload ``cached_table``.

    The replica hears the change's NOTIFY at once, but its reload waits behind an ``ACCESS EXCLUSIVE`` lock
    on the table, granted the moment the change commits and held until the block ends. Inside the block the
    replica knows of the change only if it applied its own write to its cache; NOTIFY cannot have done it.
    To pause the change between taking its table lock and committing, ``row`` (table, id), a row the change
    must lock, is held ``FOR UPDATE`` until the table lock is queued behind it. No step depends on timing.
    """
    table, row_id = row

    def waiting(observer: psycopg.Connection) -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        return observer.execute(query).fetchone()[0]

    with (
        database(hub) as holder,
        database(hub) as locker,
        database(hub, autocommit=True) as observer,
        ThreadPoolExecutor(2) as pool,
    ):
        holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", (row_id,))
        changed = pool.submit(change)
        wait_until(lambda: changed.done() or waiting(observer) >= 1, f"the change to wait for the {table} row", 30)
        assert not changed.done(), f"the change did not touch {table} {row_id}: {changed.result()}"
        locked = pool.submit(locker.execute, f"LOCK TABLE {cached_table} IN ACCESS EXCLUSIVE MODE")
        wait_until(lambda: waiting(observer) >= 2, f"the lock on {cached_table} to queue behind the change", 30)
        holder.rollback()  # the change goes on and commits; the table lock is granted before any reload
        result = changed.result(timeout=60)
        locked.result(timeout=60)
        try:
            yield result
        finally:
            locker.rollback()


class Api:
    """The admin API as one principal sees it (an admin-scoped key or a login JWT)."""

    def __init__(self, url: str, token: str | None = None, *, cookies: dict[str, str] | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self.token = token
        self.http = httpx.Client(base_url=url, headers=headers, cookies=cookies, timeout=30)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def tenant(self, name: str, **body: Any) -> dict[str, Any]:
        return self.ok("POST", "/api/tenants", 201, json={"name": name, **body})

    def key(self, tenant_id: int, name: str = "key", *, wait: bool = True, **body: Any) -> dict[str, Any]:
        """Create a key of the tenant; by default wait until the process accepts it."""
        created = self.ok("POST", f"/api/tenants/{tenant_id}/keys", 201, json={"name": name, **body})
        if wait:
            wait_key(self.url, created["key"])
        return created

    def user(self, username: str, tenant_id: int | None, role: str = "tenant_admin") -> dict[str, Any]:
        return self.ok(
            "POST",
            "/api/admin-users",
            201,
            json={"username": username, "password": PASSWORD, "role": role, "tenant_id": tenant_id},
        )

    def login(self, username: str, password: str = PASSWORD) -> str:
        return self.ok("POST", "/api/auth/login", json={"username": username, "password": password})["access_token"]

    def usage(self, **params: Any) -> list[dict[str, Any]]:
        return self.ok("GET", "/api/usage", params=params)["data"]

    def request_log(self, **params: Any) -> list[dict[str, Any]]:
        return self.ok("GET", "/api/request-log", params={"limit": 1000, **params})["data"]


class _Kit:
    PLATFORM_KEY = PLATFORM_KEY
    PASSWORD = PASSWORD
    Api = Api
    wait_until = staticmethod(wait_until)
    assert_openai_error = staticmethod(assert_openai_error)
    chat = staticmethod(chat)
    key_known = staticmethod(key_known)
    wait_key = staticmethod(wait_key)
    ollama_backends = staticmethod(ollama_backends)
    start_fake_ollama = staticmethod(start_fake_ollama)
    fast_env = staticmethod(fast_env)
    avoid_minute_boundary = staticmethod(avoid_minute_boundary)
    database = staticmethod(database)
    reloads_held = staticmethod(reloads_held)


@pytest.fixture(scope="session")
def kit() -> type[_Kit]:
    return _Kit
