"""Tenant isolation: a tenant admin (an admin-scoped key of the tenant, or a tenant_admin login) sees and
changes only its own tenant.

Another tenant's tenant record, keys, usage, statements, request log and admin users answer 404 exactly as
an id that does not exist would; platform-only endpoints answer 403; nothing returned to tenant A carries
tenant B's ids or names. The platform admin (key without tenant, or platform_admin login) sees both.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from support import InferhubProcess

MODEL = "llama3.1:8b"
MISSING = 999999
MONTH = datetime.now(UTC).strftime("%Y-%m")
TEXTS = ("one two", "three four five", "six")


@pytest.fixture(scope="module")
def fake(kit) -> Iterator[Any]:
    server = kit.start_fake_ollama([MODEL])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, fake, kit) -> Iterator[InferhubProcess]:
    process = InferhubProcess(
        tmp_path_factory.mktemp("isolation"),
        api_key=kit.PLATFORM_KEY,
        local_models=False,
        config={"backends": kit.ollama_backends(fake.url, [MODEL])},
        env=kit.fast_env(INFERHUB_BOOTSTRAP_ADMIN_PASSWORD=kit.PASSWORD),
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def platform(hub, kit) -> Iterator[Any]:
    api = kit.Api(hub.url, hub.api_key)
    yield api
    api.close()


@pytest.fixture(scope="module")
def world(hub, platform, kit) -> dict[str, dict[str, Any]]:
    """Two tenants, each with an inference key, an admin key, a spare key, a tenant admin user and usage."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("team-a", "team-b"):
        tenant = platform.tenant(name, description=f"{name} description")
        inference = platform.key(tenant["id"], f"{name}-inference")
        admin = platform.key(tenant["id"], f"{name}-admin", scopes=["admin"])
        spare = platform.key(tenant["id"], f"{name}-spare", wait=False)
        user = platform.user(f"{name}-owner", tenant["id"])
        for text in TEXTS:
            assert kit.chat(hub.url, inference["key"], text).status_code == 200
        kit.assert_openai_error(kit.chat(hub.url, inference["key"], model="no-such-model"), 404)
        out[name] = {
            "tenant": tenant,
            "inference": inference,
            "admin": admin,
            "spare": spare,
            "user": user,
            "requests": len(TEXTS) + 1,
        }
    for name, item in out.items():
        kit.wait_until(
            lambda item=item: len(platform.request_log(tenant_id=item["tenant"]["id"])) == item["requests"],
            f"the usage records of {name}",
        )
    return out


@pytest.fixture(scope="module")
def logins(hub, kit, world) -> dict[str, str]:
    anonymous = kit.Api(hub.url)
    tokens = {"team-a": anonymous.login("team-a-owner"), "platform": anonymous.login("admin")}
    anonymous.close()
    return tokens


@pytest.fixture(params=["admin-key", "tenant-admin-login"])
def tenant_a(request, hub, kit, world, logins) -> Iterator[Any]:
    token = world["team-a"]["admin"]["key"] if request.param == "admin-key" else logins["team-a"]
    api = kit.Api(hub.url, token)
    yield api
    api.close()


@pytest.fixture(params=["platform-key", "platform-login"])
def platform_admin(request, hub, kit, logins) -> Iterator[Any]:
    api = kit.Api(hub.url, hub.api_key if request.param == "platform-key" else logins["platform"])
    yield api
    api.close()


def b_ids(world: dict[str, Any]) -> dict[str, Any]:
    b = world["team-b"]
    return {
        "tenant": b["tenant"]["id"],
        "keys": {b[k]["id"] for k in ("inference", "admin", "spare")},
        "user": b["user"]["id"],
        "strings": ["team-b", *(b[k]["prefix"] for k in ("inference", "admin", "spare"))],
    }


def assert_no_trace_of_b(body: Any, world: dict[str, Any], text: str) -> None:
    """Nothing in a response to tenant A names tenant B, its keys or its users."""
    b = b_ids(world)
    for needle in b["strings"]:
        assert needle not in text, f"{needle!r} leaked: {text[:500]}"

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert node.get("tenant_id") != b["tenant"], node
            assert node.get("tenant") != b["tenant"], node
            assert node.get("key_id") not in b["keys"], node
            assert node.get("key") not in b["keys"], node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)


# -- another tenant's resources: 404 like a missing id; platform-only endpoints: 403 -------------------

OTHER_TENANT = [
    ("GET", "/api/tenants/{tb}", None),
    ("GET", "/api/tenants/{tb}/keys", None),
    ("POST", "/api/tenants/{tb}/keys", {"name": "intruder", "scopes": ["inference", "admin"]}),
    ("GET", "/api/tenants/{tb}/statement?month={month}", None),
    ("GET", "/api/keys/{kb}", None),
    ("PATCH", "/api/keys/{kb}", {"name": "pwned", "scopes": ["admin"]}),
    ("DELETE", "/api/keys/{kb}", None),
    ("POST", "/api/keys/{kb}/rotate", {"grace_seconds": 0}),
    ("GET", "/api/usage?tenant_id={tb}", None),
    ("GET", "/api/usage?tenant_id={tb}&group_by=key", None),
    ("GET", "/api/usage?tenant_id={tb}&group_by=model", None),
    ("GET", "/api/usage?tenant_id={tb}&group_by=day", None),
    ("GET", "/api/usage?tenant_id={tb}&format=csv", None),
    ("GET", "/api/usage.csv?tenant_id={tb}&group_by=key", None),
    ("GET", "/api/request-log?tenant_id={tb}", None),
    ("PATCH", "/api/admin-users/{ub}", {"disabled": True}),
    ("PATCH", "/api/admin-users/{ub}", {"password": "pwned-pwned-pwned"}),
    ("DELETE", "/api/admin-users/{ub}", None),
    (
        "POST",
        "/api/admin-users",
        {"username": "intruder", "password": "intruder-password", "role": "tenant_admin", "tenant_id": "{tb}"},
    ),
]

PLATFORM_ONLY = [
    ("POST", "/api/tenants", {"name": "intruder"}),
    ("PATCH", "/api/tenants/{tb}", {"description": "pwned"}),
    ("PATCH", "/api/tenants/{ta}", {"limits": {"rpm": 100000}}),
    ("DELETE", "/api/tenants/{tb}", None),
    ("PUT", "/api/prices/" + MODEL, {"prompt_per_million": "0", "completion_per_million": "0"}),
    ("GET", "/api/llm-backends", None),
    ("POST", "/api/llm-backends", {"model_name": "intruder", "backend_type": "ollama", "endpoint_url": "http://h:1"}),
    ("GET", "/api/llm-backends/1", None),
    ("PATCH", "/api/llm-backends/1", {"weight": 7}),
    ("POST", "/api/llm-backends/1/disable", None),
    ("DELETE", "/api/llm-backends/1", None),
    ("GET", "/api/model-routes", None),
    ("PUT", "/api/model-routes/" + MODEL, {"strategy": "priority"}),
    ("GET", "/api/model-aliases", None),
    ("PUT", "/api/model-aliases/intruder", {"model": MODEL}),
    ("GET", "/api/audit-log", None),
    ("GET", "/api/queue", None),
]


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        filled = value.format(**ids)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _ids(world: dict[str, Any], missing: bool = False) -> dict[str, Any]:
    b = world["team-b"]
    return {
        "ta": world["team-a"]["tenant"]["id"],
        "month": MONTH,
        "tb": MISSING if missing else b["tenant"]["id"],
        "kb": MISSING if missing else b["spare"]["id"],
        "ub": MISSING if missing else b["user"]["id"],
    }


@pytest.mark.parametrize(("method", "path", "body"), OTHER_TENANT, ids=[f"{m} {p}" for m, p, _ in OTHER_TENANT])
def test_other_tenants_resources_are_not_found(tenant_a, world, kit, method, path, body):
    response = tenant_a.request(method, _fill(path, _ids(world)), json=_fill(body, _ids(world)))
    error = kit.assert_openai_error(response, 404, "not_found")
    assert error["type"] == "invalid_request_error"
    assert_no_trace_of_b(response.json(), world, response.text)
    # Indistinguishable from an id that does not exist: same status, same body (but for the id itself).
    missing = tenant_a.request(method, _fill(path, _ids(world, missing=True)), json=_fill(body, _ids(world, True)))
    assert missing.status_code == response.status_code
    ids = _ids(world)
    asked = next((ids[k] for k in ("tb", "kb", "ub") if "{" + k + "}" in path + str(body)), None)
    assert _anonymous(missing.text, MISSING) == _anonymous(response.text, asked)


def _anonymous(text: str, resource_id: int | None) -> str:
    return re.sub(rf"\b{resource_id}\b", "<id>", text) if resource_id is not None else text


@pytest.mark.parametrize(("method", "path", "body"), PLATFORM_ONLY, ids=[f"{m} {p}" for m, p, _ in PLATFORM_ONLY])
def test_platform_only_endpoints_are_forbidden(tenant_a, world, kit, method, path, body):
    response = tenant_a.request(method, _fill(path, _ids(world)), json=_fill(body, _ids(world)))
    error = kit.assert_openai_error(response, 403, "platform_admin_required")
    assert error["type"] == "permission_error"
    assert_no_trace_of_b(response.json(), world, response.text)


def test_platform_users_and_keys_are_not_visible(tenant_a, hub, platform, world, kit):
    """The platform admin user and the platform key are nobody's tenant: a tenant admin cannot see or touch them."""
    admin_user = next(u for u in platform.ok("GET", "/api/admin-users")["data"] if u["username"] == "admin")
    for method, body in (("PATCH", {"disabled": True}), ("DELETE", None)):
        kit.assert_openai_error(tenant_a.request(method, f"/api/admin-users/{admin_user['id']}", json=body), 404)
    kit.assert_openai_error(
        tenant_a.request(
            "POST",
            "/api/admin-users",
            json={"username": "intruder", "password": "intruder-password", "role": "platform_admin", "tenant_id": None},
        ),
        404,
    )
    platform_key = hub.api_key[:10]
    bootstrap = next(
        k
        for k in platform.ok("GET", "/api/audit-log", params={"entity_type": "api_key"})["data"]
        if (k["after"] or {}).get("prefix") == platform_key
    )
    for method, path, body in (
        ("GET", "/api/keys/{}", None),
        ("PATCH", "/api/keys/{}", {"name": "pwned"}),
        ("DELETE", "/api/keys/{}", None),
        ("POST", "/api/keys/{}/rotate", {}),
    ):
        response = tenant_a.request(method, path.format(bootstrap["entity_id"]), json=body)
        kit.assert_openai_error(response, 404, "not_found")
        missing = tenant_a.request(method, path.format(MISSING), json=body)
        assert _anonymous(response.text, int(bootstrap["entity_id"])) == _anonymous(missing.text, MISSING)
    assert platform.ok("GET", f"/api/keys/{bootstrap['entity_id']}")["active"] is True


# -- what tenant A does see ----------------------------------------------------------------------------


def test_tenant_admin_sees_only_its_own_data(tenant_a, platform, world, kit):
    a, b = world["team-a"], world["team-b"]
    ta = a["tenant"]["id"]
    seen: list[tuple[str, Any, str]] = []

    def get(path: str, **params: Any) -> Any:
        response = tenant_a.get(path, params=params)
        assert response.status_code == 200, f"{path}: {response.text}"
        body = response.json() if "json" in response.headers.get("content-type", "") else response.text
        seen.append((path, body, response.text))
        return body

    assert [t["id"] for t in get("/api/tenants")["data"]] == [ta]
    record = get(f"/api/tenants/{ta}")
    assert record["name"] == "team-a" and "budget_used" in record
    keys = get(f"/api/tenants/{ta}/keys")["data"]
    assert {k["id"] for k in keys} >= {a["inference"]["id"], a["admin"]["id"], a["spare"]["id"]}
    assert all(k["tenant_id"] == ta for k in keys)
    assert get(f"/api/keys/{a['spare']['id']}")["tenant_id"] == ta
    users = get("/api/admin-users")["data"]
    assert [u["username"] for u in users] == ["team-a-owner"]
    assert get("/api/auth/me")["tenant_id"] == ta
    get("/api/prices")

    # Usage, every grouping, JSON and CSV: only tenant A's records, equal to what the platform sees for A.
    for group in ("tenant", "key", "model", "day"):
        rows = get("/api/usage", group_by=group)["data"]
        assert rows == platform.usage(group_by=group, tenant_id=ta), group
        assert rows == get("/api/usage", group_by=group, tenant_id=ta)["data"]
        assert sum(r["requests"] for r in rows) == a["requests"]
        if group == "tenant":
            assert [r["tenant"] for r in rows] == [ta]
        if group == "key":
            assert {r["key"] for r in rows} == {a["inference"]["id"]}
        for text in (get("/api/usage", group_by=group, format="csv"), get("/api/usage.csv", group_by=group)):
            parsed = list(csv.DictReader(io.StringIO(text)))
            assert [row[group] for row in parsed] == [str(r[group]) for r in rows]
    statement = get(f"/api/tenants/{ta}/statement", month=MONTH)
    assert statement["tenant"] == {"id": ta, "name": "team-a"}
    assert statement["totals"]["requests"] == a["requests"]

    log = get("/api/request-log")["data"]
    assert len(log) == a["requests"] and {r["tenant_id"] for r in log} == {ta}
    assert get("/api/request-log", tenant_id=ta)["data"] == log
    # Filtering by tenant B's key is not a way in: it finds nothing.
    assert get("/api/request-log", key_id=b["inference"]["id"])["data"] == []

    for path, body, text in seen:
        if path.endswith("/statement"):
            assert body["tenant"]["id"] == ta
        assert_no_trace_of_b(body, world, text if isinstance(text, str) else "")
        if "/keys" in path:
            items = body["data"] if isinstance(body, dict) and "data" in body else [body]
            assert not {k["id"] for k in items} & b_ids(world)["keys"], path
        if path == "/api/admin-users":
            assert b["user"]["id"] not in {u["id"] for u in body["data"]}


def test_platform_admin_sees_both_tenants(platform_admin, world):
    a, b = world["team-a"], world["team-b"]
    ta, tb = a["tenant"]["id"], b["tenant"]["id"]
    assert {ta, tb} <= {t["id"] for t in platform_admin.ok("GET", "/api/tenants")["data"]}
    for item in (a, b):
        tid = item["tenant"]["id"]
        assert platform_admin.ok("GET", f"/api/tenants/{tid}")["name"] == item["tenant"]["name"]
        assert item["spare"]["id"] in {k["id"] for k in platform_admin.ok("GET", f"/api/tenants/{tid}/keys")["data"]}
        assert platform_admin.ok("GET", f"/api/keys/{item['spare']['id']}")["tenant_id"] == tid
        statement = platform_admin.ok("GET", f"/api/tenants/{tid}/statement", params={"month": MONTH})
        assert statement["totals"]["requests"] == item["requests"]
    by_tenant = {r["tenant"]: r for r in platform_admin.usage(group_by="tenant")}
    assert by_tenant[ta]["requests"] == a["requests"] and by_tenant[tb]["requests"] == b["requests"]
    by_key = {r["key"] for r in platform_admin.usage(group_by="key")}
    assert {a["inference"]["id"], b["inference"]["id"]} <= by_key
    assert {ta, tb} <= {r["tenant_id"] for r in platform_admin.request_log()}
    users = {u["username"] for u in platform_admin.ok("GET", "/api/admin-users")["data"]}
    assert {"team-a-owner", "team-b-owner", "admin"} <= users


def test_tenant_b_was_not_affected(hub, platform, world, kit):
    """After every attempt above, tenant B's record, keys and users are as they were, and its key still works."""
    b = world["team-b"]
    tb = b["tenant"]["id"]
    tenant = platform.ok("GET", f"/api/tenants/{tb}")
    assert tenant["description"] == "team-b description" and tenant["limits"] == {}
    keys = {k["id"]: k for k in platform.ok("GET", f"/api/tenants/{tb}/keys")["data"]}
    assert set(keys) == {b["inference"]["id"], b["admin"]["id"], b["spare"]["id"]}  # no intruder key, no rotation
    spare = keys[b["spare"]["id"]]
    assert spare["name"] == "team-b-spare" and spare["scopes"] == ["inference"]
    assert spare["active"] is True and spare["revoked_at"] is None and spare["expires_at"] is None
    assert kit.chat(hub.url, b["spare"]["key"]).status_code == 200
    users = platform.ok("GET", "/api/admin-users")["data"]
    assert "intruder" not in {u["username"] for u in users}
    owner = next(u for u in users if u["id"] == b["user"]["id"])
    assert owner["disabled"] is False
    kit.Api(hub.url).login("team-b-owner")  # the password was not changed
    admin = next(u for u in users if u["username"] == "admin")
    assert admin["disabled"] is False
    assert [t["name"] for t in platform.ok("GET", "/api/tenants")["data"]] == ["team-a", "team-b"]
    audit = platform.ok("GET", "/api/audit-log", params={"limit": 1000})["data"]
    assert not [r for r in audit if r["actor"].startswith(("user:team-a", f"key:{world['team-a']['admin']['prefix']}"))]
