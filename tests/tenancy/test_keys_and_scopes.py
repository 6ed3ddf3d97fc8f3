"""API keys of a tenant: scopes, model allow-lists (globs), expiry, revocation and rotation with a grace period.

Changes apply to the very next request on the replica that made them, without polling: expiry is checked on
every request, and the process applies its own key writes (create, change, revoke) to its cache at once
(NOTIFY carries them to the other replicas). Expiry is tested with moments in the past, never by waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from support import InferhubProcess

MODELS = ["llama3.1:8b", "llama3.2:1b", "phi3:mini"]


@pytest.fixture(scope="module")
def fake(kit) -> Iterator[Any]:
    server = kit.start_fake_ollama(MODELS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, fake, kit) -> Iterator[InferhubProcess]:
    process = InferhubProcess(
        tmp_path_factory.mktemp("keys"),
        api_key=kit.PLATFORM_KEY,
        local_models=False,
        config={"backends": kit.ollama_backends(fake.url, MODELS)},
        env=kit.fast_env(),
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def platform(hub, kit) -> Iterator[Any]:
    api = kit.Api(hub.url, hub.api_key)
    yield api
    api.close()


@pytest.fixture(scope="module")
def tenant(platform) -> dict[str, Any]:
    return platform.tenant("keys-team")


def _get(url: str, path: str, key: str | None) -> httpx.Response:
    return httpx.get(url + path, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)


def test_missing_and_unknown_keys_are_401(hub, kit):
    kit.assert_openai_error(
        httpx.post(f"{hub.url}/v1/chat/completions", json={"model": MODELS[0]}), 401, "missing_api_key"
    )
    error = kit.assert_openai_error(kit.chat(hub.url, "ih-not-a-real-key"), 401, "invalid_api_key")
    assert error["type"] == "authentication_error"
    kit.assert_openai_error(_get(hub.url, "/api/tenants", "ih-not-a-real-key"), 401, "invalid_api_key")


def test_jobs_scope_cannot_call_inference(hub, platform, tenant, kit):
    jobs = platform.key(tenant["id"], "jobs-only", scopes=["jobs"], wait=False)
    error = kit.assert_openai_error(kit.chat(hub.url, jobs["key"]), 403, "insufficient_scope")
    assert error["type"] == "permission_error" and "'inference'" in error["message"]
    kit.assert_openai_error(kit.chat(hub.url, jobs["key"], stream=True), 403, "insufficient_scope")
    kit.assert_openai_error(_get(hub.url, "/v1/models", jobs["key"]), 403, "insufficient_scope")
    ollama = httpx.post(
        f"{hub.url}/api/chat",
        headers={"Authorization": f"Bearer {jobs['key']}"},
        json={"model": MODELS[0], "messages": [{"role": "user", "content": "hi"}]},
    )
    assert ollama.status_code == 403 and "inference" in ollama.json()["error"]  # Ollama's error shape
    kit.assert_openai_error(_get(hub.url, "/api/tenants", jobs["key"]), 403, "insufficient_scope")


@pytest.mark.parametrize(
    "path",
    [
        "/api/tenants",
        "/api/tenants/{tenant}",
        "/api/tenants/{tenant}/keys",
        "/api/keys/{key}",
        "/api/usage",
        "/api/request-log",
        "/api/admin-users",
        "/api/prices",
        "/api/llm-backends",
        "/api/audit-log",
        "/api/auth/me",
    ],
)
def test_inference_key_cannot_call_admin_endpoints(hub, platform, tenant, kit, path):
    inference = platform.key(tenant["id"], "inference-only", wait=False)
    assert kit.chat(hub.url, inference["key"]).status_code == 200
    response = _get(hub.url, path.format(tenant=tenant["id"], key=inference["id"]), inference["key"])
    error = kit.assert_openai_error(response, 403, "insufficient_scope")
    assert "'admin'" in error["message"]
    assert inference["key"] not in response.text


def test_admin_scope_of_a_tenant_is_needed_for_writes(hub, platform, tenant, kit):
    inference = platform.key(tenant["id"], "inference-writer", wait=False)
    headers = {"Authorization": f"Bearer {inference['key']}"}
    for method, path, body in (
        ("POST", f"/api/tenants/{tenant['id']}/keys", {"name": "x", "scopes": ["admin"]}),
        ("PATCH", f"/api/keys/{inference['id']}", {"scopes": ["admin"]}),
        ("POST", f"/api/keys/{inference['id']}/rotate", {"grace_seconds": 0}),
        ("DELETE", f"/api/keys/{inference['id']}", None),
    ):
        response = httpx.request(method, hub.url + path, headers=headers, json=body, timeout=30)
        kit.assert_openai_error(response, 403, "insufficient_scope")
    record = platform.ok("GET", f"/api/keys/{inference['id']}")
    assert record["scopes"] == ["inference"] and record["active"] is True


def test_model_globs(hub, platform, tenant, kit):
    key = platform.key(tenant["id"], "llamas-only", allowed_models=["llama*"], wait=False)
    for model in ("llama3.1:8b", "llama3.2:1b"):
        response = kit.chat(hub.url, key["key"], model=model)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "echo: hello there"
    error = kit.assert_openai_error(kit.chat(hub.url, key["key"], model="phi3:mini"), 403, "model_not_allowed")
    assert error["param"] == "model" and "phi3:mini" in error["message"] and "llama*" in error["message"]
    kit.assert_openai_error(kit.chat(hub.url, key["key"], model="phi3:mini", stream=True), 403, "model_not_allowed")
    ollama = httpx.post(
        f"{hub.url}/api/chat",
        headers={"Authorization": f"Bearer {key['key']}"},
        timeout=30,
        json={"model": "phi3:mini", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    )
    assert ollama.status_code == 403 and "phi3:mini" in ollama.json()["error"]
    streamed = kit.chat(hub.url, key["key"], model="llama3.1:8b", stream=True)
    assert streamed.status_code == 200 and "echo:" in streamed.text

    # A suffix glob, and an empty list (every model).
    tagged = platform.key(tenant["id"], "mini-only", allowed_models=["*:mini"], wait=False)
    assert kit.chat(hub.url, tagged["key"], model="phi3:mini").status_code == 200
    kit.assert_openai_error(kit.chat(hub.url, tagged["key"], model="llama3.1:8b"), 403, "model_not_allowed")
    anything = platform.key(tenant["id"], "any-model", wait=False)
    assert all(kit.chat(hub.url, anything["key"], model=m).status_code == 200 for m in MODELS)


def test_a_created_key_works_on_the_very_next_request(hub, platform, tenant, kit):
    create = lambda: platform.key(tenant["id"], "fresh", wait=False)  # noqa: E731
    with kit.reloads_held(hub, "api_keys", ("tenants", tenant["id"]), create) as key:
        response = kit.chat(hub.url, key["key"])
        assert response.status_code == 200, response.text


def test_changing_scopes_applies_to_the_next_request(hub, platform, tenant, kit):
    key = platform.key(tenant["id"], "demoted", wait=False)
    assert kit.chat(hub.url, key["key"]).status_code == 200
    demote = lambda: platform.ok("PATCH", f"/api/keys/{key['id']}", json={"scopes": ["jobs"]})  # noqa: E731
    with kit.reloads_held(hub, "api_keys", ("api_keys", key["id"]), demote):
        kit.assert_openai_error(kit.chat(hub.url, key["key"]), 403, "insufficient_scope")


def test_expired_key_is_refused(hub, platform, tenant, kit):
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = platform.key(tenant["id"], "born-expired", expires_at=past.isoformat(), wait=False)
    assert datetime.fromisoformat(expired["expires_at"]) == past
    error = kit.assert_openai_error(kit.chat(hub.url, expired["key"]), 401, "key_expired")
    assert expired["prefix"] in error["message"] and "expired" in error["message"]

    # A working key whose expiry is moved into the past is refused from the next request on.
    key = platform.key(tenant["id"], "short-lived", expires_at=(datetime.now(UTC) + timedelta(days=1)).isoformat(),
                       wait=False)  # fmt: skip
    first = kit.chat(hub.url, key["key"])
    assert first.status_code == 200, first.text
    expire = lambda: platform.ok("PATCH", f"/api/keys/{key['id']}", json={"expires_at": past.isoformat()})  # noqa: E731
    with kit.reloads_held(hub, "api_keys", ("api_keys", key["id"]), expire):
        error = kit.assert_openai_error(kit.chat(hub.url, key["key"]), 401, "key_expired")
    assert key["prefix"] in error["message"] and "expired" in error["message"]
    kit.assert_openai_error(kit.chat(hub.url, key["key"], stream=True), 401, "key_expired")
    kit.assert_openai_error(_get(hub.url, "/v1/models", key["key"]), 401, "key_expired")
    record = platform.ok("GET", f"/api/keys/{key['id']}")
    assert record["active"] is False and record["revoked_at"] is None


def test_expiry_in_days(platform, tenant):
    key = platform.key(tenant["id"], "ninety-days", expires_in_days=90, wait=False)
    left = datetime.fromisoformat(key["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=89) < left <= timedelta(days=90)


def test_revoked_key_is_refused_on_the_next_request(hub, platform, tenant, kit):
    key = platform.key(tenant["id"], "to-revoke", wait=False)
    assert kit.chat(hub.url, key["key"]).status_code == 200
    revoke = lambda: platform.ok("DELETE", f"/api/keys/{key['id']}")  # noqa: E731
    with kit.reloads_held(hub, "api_keys", ("api_keys", key["id"]), revoke) as revoked:
        kit.assert_openai_error(kit.chat(hub.url, key["key"]), 401, "key_revoked")
        kit.assert_openai_error(kit.chat(hub.url, key["key"], stream=True), 401, "key_revoked")
    assert revoked["active"] is False and revoked["revoked_at"]
    # Revoking twice is harmless; the key stays revoked.
    assert platform.ok("DELETE", f"/api/keys/{key['id']}")["revoked_at"] == revoked["revoked_at"]


def test_revoked_admin_key_loses_admin_access(hub, platform, tenant, kit):
    admin = platform.key(tenant["id"], "tenant-admin-key", scopes=["admin"], wait=False)
    assert _get(hub.url, f"/api/tenants/{tenant['id']}", admin["key"]).status_code == 200
    revoke = lambda: platform.ok("DELETE", f"/api/keys/{admin['id']}")  # noqa: E731
    with kit.reloads_held(hub, "api_keys", ("api_keys", admin["id"]), revoke):
        kit.assert_openai_error(_get(hub.url, "/api/tenants", admin["key"]), 401, "key_revoked")


def test_a_key_revoked_by_its_own_tenant_admin_is_refused_next(hub, platform, tenant, kit):
    admin = kit.Api(hub.url, platform.key(tenant["id"], "self-service-admin", scopes=["admin"], wait=False)["key"])
    try:
        app = admin.key(tenant["id"], "self-service-app", wait=False)
        assert kit.chat(hub.url, app["key"]).status_code == 200
        revoke = lambda: admin.ok("DELETE", f"/api/keys/{app['id']}")  # noqa: E731
        with kit.reloads_held(hub, "api_keys", ("api_keys", app["id"]), revoke):
            kit.assert_openai_error(kit.chat(hub.url, app["key"]), 401, "key_revoked")
    finally:
        admin.close()


def test_deleting_a_tenant_refuses_its_keys_next(hub, platform, kit):
    doomed = platform.tenant("doomed-team")
    key = platform.key(doomed["id"], "doomed-app", wait=False)
    assert kit.chat(hub.url, key["key"]).status_code == 200
    delete = lambda: platform.request("DELETE", f"/api/tenants/{doomed['id']}")  # noqa: E731
    with kit.reloads_held(hub, "api_keys", ("api_keys", key["id"]), delete) as deleted:
        kit.assert_openai_error(kit.chat(hub.url, key["key"]), 401, "invalid_api_key")
    assert deleted.status_code == 204


def test_rotation_keeps_the_old_key_during_the_grace_period(hub, platform, tenant, kit):
    old = platform.key(tenant["id"], "rotating", allowed_models=["llama*"], limits={"rpm": 1000}, priority=5,
                       wait=False)  # fmt: skip
    assert kit.chat(hub.url, old["key"]).status_code == 200
    before = datetime.now(UTC)
    new = platform.ok("POST", f"/api/keys/{old['id']}/rotate", 201, json={"grace_seconds": 86400})
    assert new["key"] != old["key"] and new["id"] != old["id"]
    assert (new["tenant_id"], new["scopes"], new["allowed_models"], new["limits"], new["priority"]) == (
        tenant["id"],
        ["inference"],
        ["llama*"],
        {"rpm": 1000},
        5,
    )
    # The old key works during the grace period, which ends a day from now; the new key works at once.
    assert kit.chat(hub.url, old["key"]).status_code == 200
    assert kit.chat(hub.url, new["key"]).status_code == 200
    kit.assert_openai_error(kit.chat(hub.url, new["key"], model="phi3:mini"), 403, "model_not_allowed")
    grace_end = datetime.fromisoformat(platform.ok("GET", f"/api/keys/{old['id']}")["expires_at"])
    assert before + timedelta(seconds=86400) <= grace_end <= datetime.now(UTC) + timedelta(seconds=86400)
    assert new["expires_at"] is None  # the new key does not inherit the grace period
    # Once the grace period is over (moved into the past here, rather than waited for) the old key is refused.
    platform.ok("PATCH", f"/api/keys/{old['id']}", json={"expires_at": (before - timedelta(seconds=1)).isoformat()})
    kit.assert_openai_error(kit.chat(hub.url, old["key"]), 401, "key_expired")
    assert kit.chat(hub.url, new["key"]).status_code == 200
    record = platform.ok("GET", f"/api/keys/{old['id']}")
    assert record["active"] is False and record["revoked_at"] is None
    audit = platform.ok("GET", "/api/audit-log", params={"entity_type": "api_key", "entity_id": str(old["id"])})
    assert [r["action"] for r in audit["data"]][:2] == ["update", "rotate"]


def test_listing_shows_the_state_of_each_key(platform, tenant):
    keys = platform.ok("GET", f"/api/tenants/{tenant['id']}/keys")["data"]
    by_name = {k["name"]: k for k in keys}
    assert by_name["to-revoke"]["active"] is False
    assert by_name["short-lived"]["active"] is False
    assert by_name["born-expired"]["active"] is False
    assert by_name["rotating (rotated)"]["active"] is True
    assert by_name["llamas-only"]["allowed_models"] == ["llama*"]
    assert all("key" not in k and "key_hash" not in k for k in keys)
