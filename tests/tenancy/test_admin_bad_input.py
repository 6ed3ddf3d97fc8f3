"""Bad input to the admin API is a 4xx with the OpenAI error body, never a 500.

Every query parameter of the admin and tenancy endpoints gets values that do not parse, do not fit their
database column (ids beyond ``integer``, text with a NUL byte, names longer than the column) or lie outside
what PostgreSQL and Python can hold; every body gets fields the database could not store. A model name the
usage table cannot store must not stop usage records from being written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from support import InferhubProcess

MODEL = "llama3.1:8b"
HUGE = "99999999999999999999"
BEYOND_INTEGER = "3000000000"  # fits bigint, not integer


@pytest.fixture(scope="module")
def fake(kit) -> Iterator[Any]:
    server = kit.start_fake_ollama([MODEL])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, fake, kit) -> Iterator[InferhubProcess]:
    process = InferhubProcess(
        tmp_path_factory.mktemp("bad-input"),
        api_key=kit.PLATFORM_KEY,
        local_models=False,
        config={"backends": kit.ollama_backends(fake.url, [MODEL])},
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
    return platform.tenant("bad-input-team")


def _refused(kit, response: httpx.Response) -> dict[str, Any]:
    """A 4xx in the OpenAI shape: the server neither failed nor hid the problem."""
    assert 400 <= response.status_code < 500, f"{response.request.url}: {response.status_code} {response.text}"
    return kit.assert_openai_error(response, response.status_code)


def test_request_log_with_an_unparsable_moment_is_400(platform, kit):
    for name in ("from", "to"):
        response = platform.get("/api/request-log", params={name: "garbage"})
        error = kit.assert_openai_error(response, 400, "invalid_value")
        assert error["param"] == name and "garbage" in error["message"]
    assert platform.get("/api/request-log", params={"from": "2026-01-01", "to": "2026-01-02T00:00:00Z"}).is_success


GARBAGE = [
    "garbage",
    "\x00",
    HUGE,
    "-" + HUGE,
    BEYOND_INTEGER,
    "2026-13-01",
    "2026-11-01T25:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+05:00",
    "1e9",
    "%",
    "x" * 300,
]
QUERY_PARAMETERS = {
    "/api/request-log": ["tenant_id", "key_id", "model", "status", "from", "to", "limit", "before_id"],
    "/api/usage": ["group_by", "from", "to", "tenant_id", "format"],
    "/api/usage.csv": ["group_by", "from", "to", "tenant_id"],
    "/api/audit-log": ["entity_type", "entity_id", "actor", "limit", "before_id"],
    "/api/tenants/{tenant}/statement": ["month"],
}


@pytest.mark.parametrize(("path", "name"), [(p, n) for p, names in QUERY_PARAMETERS.items() for n in names])
def test_every_admin_query_parameter_answers_garbage_with_a_4xx(platform, tenant, kit, path, name):
    path = path.format(tenant=tenant["id"])
    values = GARBAGE + (["9999-12", "0000-01", "2026-00"] if name == "month" else [])
    for value in values:
        params = {name: value}
        if path.endswith("/statement") and name != "month":
            params["month"] = "2026-11"
        response = platform.get(path, params=params)
        if response.is_success:  # e.g. model=garbage is a valid filter that matches nothing
            continue
        _refused(kit, response)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/tenants/{}"),
        ("PATCH", "/api/tenants/{}"),
        ("DELETE", "/api/tenants/{}"),
        ("GET", "/api/tenants/{}/keys"),
        ("POST", "/api/tenants/{}/keys"),
        ("GET", "/api/tenants/{}/statement?month=2026-11"),
        ("GET", "/api/keys/{}"),
        ("PATCH", "/api/keys/{}"),
        ("DELETE", "/api/keys/{}"),
        ("POST", "/api/keys/{}/rotate"),
        ("PATCH", "/api/admin-users/{}"),
        ("DELETE", "/api/admin-users/{}"),
        ("GET", "/api/llm-backends/{}"),
        ("PATCH", "/api/llm-backends/{}"),
        ("POST", "/api/llm-backends/{}/drain"),
        ("DELETE", "/api/llm-backends/{}"),
    ],
)
def test_ids_beyond_their_column_are_a_4xx(platform, kit, method, path):
    for value in (HUGE, BEYOND_INTEGER, "-1", "0"):
        if method == "POST" and path.endswith("/keys"):
            body: dict[str, Any] = {"name": "k"}
        elif method == "PATCH" and path.startswith(("/api/tenants", "/api/llm-backends")):
            body = {"description": "x"}
        else:
            body = {}
        _refused(kit, platform.request(method, path.format(value), json=body))


def test_bodies_the_database_cannot_store_are_400(platform, tenant, kit):
    keys = f"/api/tenants/{tenant['id']}/keys"
    key = platform.ok("POST", keys, 201, json={"name": "patched"})
    cases = [
        ("POST", "/api/tenants", {"name": "nul-description", "description": "a\x00b"}),
        ("POST", "/api/tenants", {"name": "huge-rpm", "limits": {"rpm": 10**30}}),
        ("POST", "/api/tenants", {"name": "nan-cost", "limits": {"daily_cost": "nan"}}),
        ("POST", "/api/tenants", {"name": "inf-cost", "limits": {"daily_cost": "inf"}}),
        ("POST", "/api/tenants", {"name": "big-cost", "limits": {"daily_cost": 1e308}}),
        ("PATCH", f"/api/tenants/{tenant['id']}", {"description": "a\x00"}),
        ("PATCH", f"/api/tenants/{tenant['id']}", {"limits": {"rpm": 10**30}}),
        ("POST", keys, {"name": "a\x00b"}),
        ("POST", keys, {"name": "k", "allowed_models": ["a\x00"]}),
        ("POST", keys, {"name": "k", "expires_at": "9999-12-31T23:59:59-05:00"}),
        ("POST", keys, {"name": "k", "expires_in_days": 10**9}),
        ("POST", keys, {"name": "k", "expires_in_days": 10**30}),
        ("POST", keys, {"name": "k", "priority": 10**30}),
        ("POST", keys, {"name": "k", "limits": {"tpm": 10**30}}),
        ("PATCH", f"/api/keys/{key['id']}", {"name": "a\x00"}),
        ("PATCH", f"/api/keys/{key['id']}", {"limits": {"tpm": 10**30}}),
        ("PATCH", f"/api/keys/{key['id']}", {"expires_at": "0001-01-01T00:00:00+05:00"}),
        ("POST", "/api/admin-users", {"username": "a\x00b", "password": "x" * 12, "role": "platform_admin"}),
        ("POST", "/api/admin-users", {"username": "u", "password": "x" * 12, "tenant_id": 10**12}),
        ("POST", "/api/auth/login", {"username": "a\x00", "password": "b"}),
        ("POST", "/api/llm-backends", {"model_name": "m\x00", "endpoint_url": "http://127.0.0.1:9"}),
        ("POST", "/api/llm-backends", {"model_name": "m" * 300, "endpoint_url": "http://127.0.0.1:9"}),
        ("POST", "/api/llm-backends", {"model_name": "m", "endpoint_url": "http://127.0.0.1:9/" + "a" * 600}),
        ("POST", "/api/llm-backends", {"model_name": "m", "endpoint_url": "http://127.0.0.1:9", "priority": 10**30}),
        ("PUT", "/api/model-aliases/a%00", {"model": "x"}),
        ("PUT", "/api/prices/a%00b", {"prompt_per_million": 1, "completion_per_million": 1}),
        ("PUT", "/api/prices/" + "m" * 300, {"prompt_per_million": 1, "completion_per_million": 1}),
        ("PUT", "/api/prices/m", {"prompt_per_million": 1e30, "completion_per_million": 1}),
    ]
    for method, path, body in cases:
        _refused(kit, platform.request(method, path, json=body))
    assert platform.ok("GET", f"/api/keys/{key['id']}")["name"] == "patched"


def test_a_model_name_the_usage_table_cannot_store_does_not_stop_usage_records(hub, platform, tenant, kit):
    key = platform.key(tenant["id"], "odd-models")
    for model, status, code in (("a\x00b", 400, "invalid_value"), ("m" * 5000, 404, "model_not_found")):
        response = kit.chat(hub.url, key["key"], model=model)
        error = kit.assert_openai_error(response, status, code)  # a NUL byte is refused as such: 400
        assert error["param"] == "model"
    assert kit.chat(hub.url, key["key"]).status_code == 200
    records = kit.wait_until(
        lambda: platform.request_log(key_id=key["id"], status=200), "the usage record of the good request", 15
    )
    assert [r["model"] for r in records] == [MODEL]


def test_an_inference_request_refused_by_validation_leaves_a_usage_record(hub, platform, tenant, kit):
    """Once the key is known, every inference request leaves one record, even one refused before the meter."""
    key = platform.key(tenant["id"], "sloppy-client")
    auth = {"Authorization": f"Bearer {key['key']}"}
    jobs_only = platform.key(tenant["id"], "jobs-only", scopes=["jobs"])
    hi = [{"role": "user", "content": "hi"}]
    sent = [
        ("/v1/chat/completions", {"model": MODEL, "messages": []}, auth, 400),
        ("/v1/chat/completions", {"model": MODEL, "messages": hi, "temperature": 9}, auth, 400),
        ("/v1/chat/completions", {"messages": hi}, auth, 400),
        ("/v1/completions", {"model": MODEL, "prompt": 5}, auth, 400),
        ("/v1/embeddings", {"model": MODEL}, auth, 400),
        ("/api/chat", {"model": MODEL, "messages": "hi"}, auth, 400),
        ("/api/generate", {"model": MODEL, "prompt": ["x"]}, auth, 400),
        ("/api/embed", {"model": MODEL, "input": 5}, auth, 400),
        ("/generate", {"prompt": ""}, auth, 400),
        (
            "/v1/chat/completions",
            {"model": MODEL, "messages": hi},
            {"Authorization": f"Bearer {jobs_only['key']}"},
            403,
        ),
    ]
    for path, body, headers, status in sent:
        response = httpx.post(hub.url + path, json=body, headers=headers, timeout=30)
        assert response.status_code == status, (path, response.text)
    malformed = httpx.post(f"{hub.url}/v1/chat/completions", content=b"{not json", headers=auth, timeout=30)
    assert malformed.status_code == 400
    unknown = httpx.post(f"{hub.url}/v1/chat/completions", json=sent[0][1], headers={"Authorization": "Bearer ih-x"})
    assert unknown.status_code == 401  # no key known: nobody to bill, no record

    expected = len(sent) - 1 + 1  # the sloppy key's requests, the malformed one included
    rows = kit.wait_until(
        lambda: len(r := platform.request_log(key_id=key["id"])) >= expected and r, "the refused requests' records"
    )
    assert len(rows) == expected, rows
    assert sorted(r["endpoint"] for r in rows) == sorted([path for path, *_ in sent[:-1]] + ["/v1/chat/completions"])
    assert all(r["status"] == 400 and r["tenant_id"] == tenant["id"] for r in rows), rows
    assert {r["model"] for r in rows} == {MODEL, ""}  # the model named in the body, or none
    scoped = kit.wait_until(lambda: platform.request_log(key_id=jobs_only["id"]), "the scope refusal's record")
    assert [(r["status"], r["endpoint"]) for r in scoped] == [(403, "/v1/chat/completions")]


# -- null in a PATCH body -----------------------------------------------------------------------------


def _nullable(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(_nullable(s) for s in schema.get("anyOf", ()))


def _patch_fields(openapi: dict[str, Any], path: str) -> dict[str, bool]:
    """Each field of the PATCH body at ``path`` and whether its schema allows null."""
    ref = openapi["paths"][path]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return {name: _nullable(field) for name, field in schema["properties"].items()}


PATCH_PATHS = {
    "/api/llm-backends/{backend_id}": "backend",
    "/api/tenants/{tenant_id}": "tenant",
    "/api/keys/{key_id}": "key",
    "/api/admin-users/{user_id}": "user",
}


def test_every_admin_patch_model_is_covered(platform):
    paths = platform.ok("GET", "/openapi.json")["paths"]
    assert {p for p, ops in paths.items() if "patch" in ops and p.startswith("/api/")} == set(PATCH_PATHS)


def test_null_for_a_field_that_cannot_be_empty_is_400_naming_it_and_null_clears_the_others(platform, tenant, fake, kit):
    """Every field of every admin PATCH body, sent as null: a 400 naming it (never a 500 or a false 409),
    or, where the schema says the field may be null, a 200 that clears it."""
    openapi = platform.ok("GET", "/openapi.json")
    backend = platform.ok("POST", "/api/llm-backends", 201, json={
        "model_name": "nullable-model", "backend_type": "ollama", "endpoint_url": fake.url, "upstream_model": MODEL,
        "discover_models": False, "enabled": False, "api_key": "sk-upstream", "max_tokens": 100})  # fmt: skip
    user = platform.user("null-patcher", tenant["id"])
    key = platform.ok("POST", f"/api/tenants/{tenant['id']}/keys", 201, json={"name": "nulls", "expires_in_days": 3})
    ids = {"backend": backend["id"], "tenant": tenant["id"], "key": key["id"], "user": user["id"]}
    cleared = []
    for path, kind in PATCH_PATHS.items():
        url = path.split("{")[0] + str(ids[kind])
        before = platform.ok("GET", url) if kind != "user" else None
        for name, nullable in _patch_fields(openapi, path).items():
            response = platform.request("PATCH", url, json={name: None})
            if nullable:
                assert response.status_code == 200, f"PATCH {url} {{{name}: null}}: {response.text}"
                cleared.append((kind, name))
                continue
            error = kit.assert_openai_error(response, 400, "invalid_value")
            assert error["param"] == name and name in error["message"], error
        if before is not None:  # a refused null changed nothing
            after = platform.ok("GET", url)
            for name, nullable in _patch_fields(openapi, path).items():
                if not nullable and name in before:
                    assert after[name] == before[name], (url, name)
    assert {("backend", "upstream_model"), ("backend", "api_key"), ("tenant", "limits"),
            ("key", "expires_at")} <= set(cleared)  # fmt: skip
    patched = platform.ok("GET", f"/api/llm-backends/{backend['id']}")
    assert patched["upstream_model"] is None and patched["max_tokens"] is None
    assert patched["has_credentials"] is False  # api_key: null cleared the only credential
    assert platform.ok("GET", f"/api/keys/{key['id']}")["expires_at"] is None


NOT_NULL_BACKEND_FIELDS = ["endpoint_url", "model_name", "backend_type", "enabled", "weight", "priority", "draining",
                           "timeout_seconds"]  # fmt: skip


@pytest.mark.parametrize("field", NOT_NULL_BACKEND_FIELDS)
def test_issue_reproductions_null_backend_fields(platform, fake, kit, field):
    backend = platform.ok("POST", "/api/llm-backends", 201, json={
        "model_name": f"null-{field}", "backend_type": "ollama", "endpoint_url": fake.url,
        "discover_models": False, "enabled": False})  # fmt: skip
    error = kit.assert_openai_error(platform.request("PATCH", f"/api/llm-backends/{backend['id']}",
                                                     json={field: None}), 400, "invalid_value")  # fmt: skip
    assert error["param"] == field


def test_issue_reproduction_null_tenant_description(platform, tenant, kit):
    response = platform.request("PATCH", f"/api/tenants/{tenant['id']}", json={"description": None})
    assert kit.assert_openai_error(response, 400, "invalid_value")["param"] == "description"


# -- NUL bytes in paths, query strings and stored JSON ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/files?purpose=a%00b", "purpose"),
        ("/v1/jobs?after=a%00b", "after"),
        ("/v1/jobs?status=queued&after=%00", "after"),
        ("/v1/batches?after=a%00b", "after"),
        ("/v1/jobs/a%00b", "path"),
        ("/v1/files/a%00b", "path"),
        ("/v1/files/a%00b/content", "path"),
        ("/v1/batches/a%00b", "path"),
        ("/v1/collections/a%00b", "path"),
        ("/v1/collections/a%00b/documents", "path"),
        ("/api/keys/1?x=%00", "x"),
        ("/ui/keys?q=%00", "q"),
    ],
)
def test_a_nul_byte_in_the_path_or_query_is_400(hub, kit, path, param):
    response = httpx.get(hub.url + path, headers=hub.headers, timeout=30)
    error = kit.assert_openai_error(response, 400, "invalid_value")
    assert error["param"] == param and "NUL" in error["message"]
    assert response.headers["x-request-id"]


def test_a_nul_byte_in_a_json_body_that_would_be_stored_is_400_naming_the_field(hub, platform, kit):
    hi = [{"role": "user", "content": "hi"}]
    cases = [
        ("/v1/jobs", {"type": "chat.completions", "body": {"model": MODEL, "messages": hi}, "metadata": {"a": "b\x00"}},
         "metadata.a"),
        ("/v1/jobs", {"type": "chat.completions", "body": {"model": MODEL, "messages": [
            {"role": "user", "content": "a\x00b"}]}}, "body.messages[0].content"),
        ("/v1/jobs", {"type": "chat.completions", "body": {"model": MODEL, "messages": hi}, "metadata": {"\x00": 1}},
         "metadata.\x00"),
        ("/v1/batches", {"endpoint": "/v1/chat/completions", "input_file_id": "file-x", "metadata": {"k": "\x00"}},
         "metadata.k"),
        ("/v1/collections", {"name": "docs", "description": "a\x00b"}, "description"),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "a\x00b"}]},
         "messages[0].content"),
    ]  # fmt: skip
    for path, body, param in cases:
        response = httpx.post(hub.url + path, json=body, headers=hub.headers, timeout=30)
        assert 400 <= response.status_code < 500, f"{path}: {response.status_code} {response.text}"
        if response.status_code == 400 and path != "/v1/collections":  # collections: 503 here, no embedder
            assert kit.assert_openai_error(response, 400, "invalid_value")["param"] == param
    nul_chat = {"model": MODEL, "messages": [{"role": "user", "content": "\x00"}], "stream": False}
    reply = httpx.post(f"{hub.url}/api/chat", headers=hub.headers, json=nul_chat, timeout=30)
    assert reply.status_code == 400 and "NUL" in reply.json()["error"]  # Ollama's error shape
    assert platform.request("POST", "/api/tenants", json={"name": "t", "description": "\x00"}).status_code == 400


def test_a_batch_line_with_a_nul_byte_is_an_invalid_line_not_a_500(hub):
    good = {"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
    bad = {**good, "custom_id": "nul", "body": {"model": MODEL, "messages": [{"role": "user", "content": "\x00"}]}}
    lines = b"\n".join(orjson.dumps(line) for line in (good, bad))
    uploaded = httpx.post(f"{hub.url}/v1/files", headers=hub.headers, data={"purpose": "batch"},
                          files={"file": ("input.jsonl", lines)}, timeout=30)  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    batch = httpx.post(f"{hub.url}/v1/batches", headers=hub.headers, timeout=30,
                       json={"endpoint": "/v1/chat/completions", "input_file_id": uploaded.json()["id"]})  # fmt: skip
    assert batch.status_code == 200, batch.text
    assert batch.json()["request_counts"]["total"] == 2


def test_a_file_name_with_a_nul_byte_is_400(hub, kit):
    """The database refuses it; the last line of defence (PostgreSQL's DataError) makes that a 400."""
    body = (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.jsonl"\r\n'
            b'Content-Type: application/octet-stream\r\n\r\n{"x": 1}\r\n--b--\r\n')  # fmt: skip
    response = httpx.post(f"{hub.url}/v1/files", content=body, timeout=30,
                          headers={**hub.headers, "content-type": "multipart/form-data; boundary=b"})  # fmt: skip
    kit.assert_openai_error(response, 400, "invalid_value")
