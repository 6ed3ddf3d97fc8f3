"""Shared helpers for the tenancy tests, offered as the ``kit`` fixture.

With ``--import-mode=importlib`` this directory is not on ``sys.path``, so helpers cannot be imported from a
sibling module; the ``kit`` fixture hands out this module's helpers instead (``kit.chat(...)``, ``kit.Api``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app

PLATFORM_KEY = "ih-test-admin-key-tenancy"
PASSWORD = "correct-horse-battery-staple"


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


@pytest.fixture(scope="session")
def kit() -> type[_Kit]:
    return _Kit
