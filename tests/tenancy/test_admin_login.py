"""Admin users: password login (argon2id hashes), the session JWT as Bearer token or cookie, tampered and
expired sessions, disabled and deleted users (whose sessions end at once), and a tenant_admin session limited
to its tenant.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from cryptography.fernet import Fernet

from inferhub.store.secrets import SecretBox
from support import InferhubProcess

ADMIN_PASSWORD = "platform-admin-password-1"
TOKEN_MINUTES = 5


@pytest.fixture(scope="module")
def master_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, kit, master_key) -> Iterator[InferhubProcess]:
    env = kit.fast_env(
        INFERHUB_SECRET_KEY=master_key,
        INFERHUB_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        INFERHUB_ADMIN_TOKEN_MINUTES=str(TOKEN_MINUTES),
    )
    process = InferhubProcess(tmp_path_factory.mktemp("login"), api_key=kit.PLATFORM_KEY, local_models=False, env=env)
    with process:
        yield process


@pytest.fixture(scope="module")
def platform(hub, kit) -> Iterator[Any]:
    api = kit.Api(hub.url, hub.api_key)
    yield api
    api.close()


@pytest.fixture(scope="module")
def tenants(platform, kit) -> dict[str, dict[str, Any]]:
    out = {name: platform.tenant(name) for name in ("login-a", "login-b")}
    out["login-a"]["owner"] = platform.user("owner-a", out["login-a"]["id"])
    out["login-b"]["owner"] = platform.user("owner-b", out["login-b"]["id"])
    return out


def login(hub: InferhubProcess, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{hub.url}/api/auth/login", json={"username": username, "password": password}, timeout=30)


def me(hub: InferhubProcess, token: str | None = None, cookie: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cookies = {"inferhub_session": cookie} if cookie else None
    with httpx.Client(base_url=hub.url, cookies=cookies, timeout=30) as client:
        return client.get("/api/auth/me", headers=headers)


def test_wrong_password_and_unknown_user_are_401(hub, kit, tenants):
    wrong = kit.assert_openai_error(login(hub, "admin", "not-the-password"), 401, "invalid_credentials")
    unknown = kit.assert_openai_error(login(hub, "nobody-here", "not-the-password"), 401, "invalid_credentials")
    assert wrong == unknown  # the answer does not tell which usernames exist
    assert wrong["type"] == "authentication_error"
    kit.assert_openai_error(login(hub, "owner-a", ADMIN_PASSWORD), 401, "invalid_credentials")
    bad = httpx.post(f"{hub.url}/api/auth/login", json={"username": "admin"}, timeout=30)
    kit.assert_openai_error(bad, 400)
    assert ADMIN_PASSWORD not in hub.output() and "not-the-password" not in hub.output()


def test_login_gives_a_jwt_usable_as_bearer_and_as_cookie(hub, kit):
    response = login(hub, "admin", ADMIN_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == TOKEN_MINUTES * 60
    assert body["user"]["username"] == "admin" and body["user"]["role"] == "platform_admin"
    assert "password" not in json.dumps(body["user"]) and "password_hash" not in response.text
    token = body["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "admin" and claims["role"] == "platform_admin" and claims["tenant_id"] is None
    assert claims["exp"] - claims["iat"] == TOKEN_MINUTES * 60
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"inferhub_session={token}")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "secure" not in cookie.lower().replace("samesite", "")  # plain http here

    for answer in (me(hub, token=token), me(hub, cookie=token)):
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"actor": "user:admin", "role": "platform_admin", "tenant_id": None}
    with httpx.Client(base_url=hub.url, cookies={"inferhub_session": token}, timeout=30) as browser:
        assert browser.get("/api/llm-backends").status_code == 200
        assert browser.get("/api/tenants").status_code == 200
    # A session is for the admin API, not an API key.
    kit.assert_openai_error(kit.chat(hub.url, token), 401, "invalid_api_key")
    kit.assert_openai_error(me(hub), 401, "missing_api_key")


def _tamper(token: str, **claims: Any) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_tampered_and_foreign_tokens_are_refused(hub, kit, tenants):
    owner = login(hub, "owner-a", kit.PASSWORD).json()["access_token"]
    head, payload, signature = owner.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    now = int(time.time())
    claims = {
        "sub": "admin",
        "uid": 1,
        "role": "platform_admin",
        "tenant_id": None,
        "iat": now,
        "exp": now + 600,
        "iss": "inferhub",
    }
    forgeries = {
        "bad signature": f"{head}.{payload}.{flipped}",
        "escalated role": _tamper(owner, role="platform_admin", tenant_id=None),
        "other tenant": _tamper(owner, tenant_id=tenants["login-b"]["id"]),
        "other key": jwt.encode(claims, b"not-the-signing-key-of-this-server", algorithm="HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
    }
    for name, token in forgeries.items():
        for response in (me(hub, token=token), me(hub, cookie=token)):
            error = kit.assert_openai_error(response, 401, "invalid_session")
            assert error["type"] == "authentication_error", name
        kit.assert_openai_error(
            httpx.get(f"{hub.url}/api/tenants", headers={"Authorization": f"Bearer {token}"}), 401, "invalid_session"
        )
    assert me(hub, token=owner).status_code == 200  # the genuine token still works


def test_expired_session_is_refused(hub, kit, master_key, tenants):
    """The session key derives from the master key, which this test set; so it can mint an expired session."""
    signing_key = SecretBox([master_key]).signing_key
    now = int(time.time())
    claims = {"sub": "admin", "uid": 1, "role": "platform_admin", "tenant_id": None, "iss": "inferhub"}
    fresh = jwt.encode({**claims, "iat": now, "exp": now + 60}, signing_key, algorithm="HS256")
    assert me(hub, token=fresh).status_code == 200  # the derivation matches the server's
    expired = jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, signing_key, algorithm="HS256")
    for response in (me(hub, token=expired), me(hub, cookie=expired)):
        error = kit.assert_openai_error(response, 401, "session_expired")
        assert "log in again" in error["message"]
    wrong_issuer = jwt.encode(
        {**claims, "iat": now, "exp": now + 60, "iss": "someone-else"}, signing_key, algorithm="HS256"
    )
    kit.assert_openai_error(me(hub, token=wrong_issuer), 401, "invalid_session")


def test_passwords_are_stored_as_argon2id(hub, platform, tenants):
    with psycopg.connect(f"postgresql://postgres@/inferhub?host={hub.home / 'postgres'}") as conn:
        rows = dict(conn.execute("SELECT username, password_hash FROM admin_users").fetchall())
        (audit,) = conn.execute(
            "SELECT coalesce(string_agg(row_to_json(a)::text, ' '), '') "
            "FROM config_audit_log a WHERE entity_type = 'admin_user'"
        ).fetchone()
    assert {"admin", "owner-a", "owner-b"} <= set(rows)
    for username, stored in rows.items():
        assert stored.startswith("$argon2id$"), username
        assert ADMIN_PASSWORD not in stored and "correct-horse" not in stored
    assert len({rows["owner-a"], rows["owner-b"]}) == 2  # same password, different salts
    assert "argon2" not in audit and "correct-horse" not in audit and ADMIN_PASSWORD not in audit
    listed = platform.ok("GET", "/api/admin-users")
    assert "argon2" not in json.dumps(listed) and "password" not in json.dumps(listed)
    short = platform.request(
        "POST",
        "/api/admin-users",
        json={"username": "shorty", "password": "short", "role": "tenant_admin", "tenant_id": None},
    )
    assert short.status_code == 400


def test_disabled_or_deleted_user_cannot_log_in(hub, platform, tenants, kit):
    user = platform.user("soon-disabled", tenants["login-a"]["id"])
    assert login(hub, "soon-disabled", kit.PASSWORD).status_code == 200
    assert platform.ok("PATCH", f"/api/admin-users/{user['id']}", json={"disabled": True})["disabled"] is True
    kit.assert_openai_error(login(hub, "soon-disabled", kit.PASSWORD), 401, "invalid_credentials")
    platform.ok("PATCH", f"/api/admin-users/{user['id']}", json={"disabled": False, "password": "a-brand-new-password"})
    kit.assert_openai_error(login(hub, "soon-disabled", kit.PASSWORD), 401, "invalid_credentials")
    assert login(hub, "soon-disabled", "a-brand-new-password").status_code == 200
    assert platform.request("DELETE", f"/api/admin-users/{user['id']}").status_code == 204
    kit.assert_openai_error(login(hub, "soon-disabled", "a-brand-new-password"), 401, "invalid_credentials")


def _session_refused(hub: InferhubProcess, kit, token: str) -> None:
    for response in (
        me(hub, token=token),
        me(hub, cookie=token),
        httpx.get(f"{hub.url}/api/tenants", headers={"Authorization": f"Bearer {token}"}, timeout=30),
    ):
        error = kit.assert_openai_error(response, 401, "session_revoked")
        assert "log in again" in error["message"]


def test_a_disabled_or_deleted_user_loses_their_session_on_the_next_request(hub, platform, kit):
    user = platform.user("session-holder", platform.tenant("login-sessions")["id"])
    token = login(hub, "session-holder", kit.PASSWORD).json()["access_token"]
    assert me(hub, token=token).status_code == 200
    path = f"/api/admin-users/{user['id']}"
    disable = lambda: platform.ok("PATCH", path, json={"disabled": True})  # noqa: E731
    with kit.reloads_held(hub, "admin_users", ("admin_users", user["id"]), disable):
        _session_refused(hub, kit, token)  # this replica disabled the user: no wait for NOTIFY
    platform.ok("PATCH", path, json={"disabled": False})
    assert me(hub, token=token).status_code == 200  # enabled again, the unexpired session is good again
    delete = lambda: platform.request("DELETE", path)  # noqa: E731
    with kit.reloads_held(hub, "admin_users", ("admin_users", user["id"]), delete) as deleted:
        _session_refused(hub, kit, token)
    assert deleted.status_code == 204


def test_a_user_disabled_elsewhere_loses_their_session_once_notified(hub, platform, kit):
    """Another replica's change arrives by NOTIFY (simulated: the row changed in SQL, then the notification)."""
    user = platform.user("far-away", platform.tenant("login-far-away")["id"])
    token = login(hub, "far-away", kit.PASSWORD).json()["access_token"]
    assert me(hub, token=token).status_code == 200
    with kit.database(hub) as conn:
        conn.execute("UPDATE admin_users SET disabled = true WHERE id = %s", (user["id"],))
        conn.execute("SELECT pg_notify('inferhub_changes', 'admin_users')")
    kit.wait_until(lambda: me(hub, token=token).status_code == 401, "the NOTIFY to reach the replica", 15)
    _session_refused(hub, kit, token)


def test_deleting_a_tenant_ends_its_admins_sessions(hub, platform, kit):
    doomed = platform.tenant("login-doomed")
    user = platform.user("doomed-owner", doomed["id"])
    token = login(hub, "doomed-owner", kit.PASSWORD).json()["access_token"]
    assert me(hub, token=token).status_code == 200
    delete = lambda: platform.request("DELETE", f"/api/tenants/{doomed['id']}")  # noqa: E731
    with kit.reloads_held(hub, "admin_users", ("admin_users", user["id"]), delete) as deleted:
        _session_refused(hub, kit, token)
    assert deleted.status_code == 204


def test_tenant_admin_session_is_limited_to_its_tenant(hub, tenants, kit):
    a, b = tenants["login-a"], tenants["login-b"]
    token = login(hub, "owner-a", kit.PASSWORD).json()["access_token"]
    assert me(hub, token=token).json() == {"actor": "user:owner-a", "role": "tenant_admin", "tenant_id": a["id"]}
    for session in (kit.Api(hub.url, token), kit.Api(hub.url, cookies={"inferhub_session": token})):
        try:
            assert [t["id"] for t in session.ok("GET", "/api/tenants")["data"]] == [a["id"]]
            assert session.ok("GET", f"/api/tenants/{a['id']}")["name"] == "login-a"
            kit.assert_openai_error(session.get(f"/api/tenants/{b['id']}"), 404, "not_found")
            kit.assert_openai_error(session.get(f"/api/tenants/{b['id']}/keys"), 404, "not_found")
            kit.assert_openai_error(session.get("/api/usage", params={"tenant_id": b["id"]}), 404, "not_found")
            kit.assert_openai_error(session.get("/api/llm-backends"), 403, "platform_admin_required")
            kit.assert_openai_error(session.request("POST", "/api/tenants", json={"name": "mine"}), 403)
            assert [u["username"] for u in session.ok("GET", "/api/admin-users")["data"]] == ["owner-a"]
            # Within its tenant it administers: keys, and users of its own tenant.
            key = session.key(a["id"], "made-by-owner")
            assert key["tenant_id"] == a["id"]
            assert kit.key_known(hub.url, key["key"])
        finally:
            session.close()
    audit = kit.Api(hub.url, hub.api_key)
    rows = audit.ok("GET", "/api/audit-log", params={"actor": "user:owner-a", "entity_type": "api_key"})["data"]
    audit.close()
    assert len(rows) == 2 and all(r["after"]["tenant_id"] == a["id"] for r in rows)
