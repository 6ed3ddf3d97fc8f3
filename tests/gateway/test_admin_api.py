"""The admin API for the registry, on two real Inferhub replicas sharing one external PostgreSQL.

Replica A takes every change; the audit log records it; replica B must see it within one second
(the change reaches it through NOTIFY, not through its periodic refresh).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from inferhub.tenancy.keys import display_prefix
from support import InferhubProcess

ADMIN_KEY = "ih-test-admin-key-replicas"
# A deadline, not a speed target: the periodic refresh is 600 s, so a change seen well before that came by
# NOTIFY. How long it took is printed (pytest -s); the "within a second" is read from that output.
REPLICATION_DEADLINE = 30.0
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def fake() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_ollama_app(models=["m-crud", "m-repl", "m-renamed", "m-other"])).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    postgres = EmbeddedPostgres(Path(tmp_path_factory.mktemp("shared-pg")) / "pg")
    url = postgres.start()
    yield url
    postgres.stop()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[dict[str, InferhubProcess]]:
    # Long periodic refresh, so only NOTIFY can bring a change to the other replica in time.
    env = {"INFERHUB_DATABASE_URL": database_url, "INFERHUB_CACHE_REFRESH_SECONDS": "600",
           "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0"}  # fmt: skip
    started: dict[str, InferhubProcess] = {}
    try:
        for name in ("a", "b"):
            started[name] = InferhubProcess(
                tmp_path_factory.mktemp(f"inferhub-replica-{name}"), api_key=ADMIN_KEY, local_models=False, env=env
            ).start()
        yield started
    finally:
        for process in started.values():
            process.stop()


@pytest.fixture(scope="module")
def hub(replicas: dict[str, InferhubProcess]) -> InferhubProcess:
    return replicas["a"]


@pytest.fixture(scope="module")
def http(hub: InferhubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def http_b(replicas: dict[str, InferhubProcess]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=replicas["b"].url, headers=replicas["b"].headers, timeout=30) as client:
        yield client


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return result


def audit(http: httpx.Client, entity_type: str, entity_id: Any) -> list[dict[str, Any]]:
    response = http.get("/api/audit-log", params={"entity_type": entity_type, "entity_id": str(entity_id)})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) >= {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    return error


# -- backends ---------------------------------------------------------------------------------------


def test_backend_crud_is_audited(http, hub, fake):
    actor = f"key:{display_prefix(hub.api_key)}"
    created = http.post("/api/llm-backends", json={"model_name": "m-crud", "backend_type": "ollama",
                                                  "endpoint_url": fake.url + "/", "weight": 2})  # fmt: skip
    assert created.status_code == 201, created.text
    body = created.json()
    backend_id = body["id"]
    assert body["endpoint_url"] == fake.url  # trailing slash removed
    assert body["weight"] == 2 and body["enabled"] is True and body["source"] == "api"
    assert {"health", "live"} <= set(body)
    assert any(b["id"] == backend_id for b in http.get("/api/llm-backends").json()["data"])

    # The registry picks it up: it is listed with live state, and it serves.
    got = wait_for(lambda: (r := http.get(f"/api/llm-backends/{backend_id}").json())["live"] and r, "live state")
    assert got["health"] == "healthy"
    assert got["live"]["circuit"] == "closed"
    assert got["live"]["max_concurrency"] == 8
    chat = http.post("/v1/chat/completions", json={"model": "m-crud", "messages": MESSAGES})
    assert chat.status_code == 200
    assert chat.headers["x-inferhub-backend"] == str(backend_id)

    patched = http.patch(f"/api/llm-backends/{backend_id}", json={"weight": 5, "max_concurrency": 3})
    assert patched.status_code == 200, patched.text
    assert patched.json()["weight"] == 5 and patched.json()["max_concurrency"] == 3
    assert http.post(f"/api/llm-backends/{backend_id}/disable").json()["health"] == "disabled"
    assert http.post(f"/api/llm-backends/{backend_id}/drain").json()["draining"] is True
    assert http.post(f"/api/llm-backends/{backend_id}/enable").json()["enabled"] is True
    assert http.delete(f"/api/llm-backends/{backend_id}").status_code == 204
    assert_openai_error(http.get(f"/api/llm-backends/{backend_id}"), 404, "backend_not_found")

    rows = audit(http, "backend", backend_id)
    assert [r["action"] for r in rows] == ["delete", "enable", "drain", "disable", "update", "create"]
    assert all(r["actor"] == actor and r["entity_type"] == "backend" for r in rows)
    assert all(r["entity_id"] == str(backend_id) and r["at"] for r in rows)
    delete, enable, drain, disable, update, create = rows
    assert create["before"] is None and create["after"]["weight"] == 2
    assert create["after"]["endpoint_url"] == fake.url
    assert update["before"]["weight"] == 2 and update["after"]["weight"] == 5
    assert update["before"]["max_concurrency"] is None and update["after"]["max_concurrency"] == 3
    assert disable["before"]["enabled"] is True and disable["after"]["enabled"] is False
    assert drain["before"]["draining"] is False and drain["after"]["draining"] is True
    assert enable["after"]["enabled"] is True and enable["after"]["draining"] is False
    assert delete["before"]["model_name"] == "m-crud" and delete["after"] is None
    assert audit(http, "backend", backend_id)[0]["id"] > audit(http, "backend", backend_id)[-1]["id"]


def test_duplicate_backend_is_409(http, fake):
    body = {"model_name": "m-other", "backend_type": "ollama", "endpoint_url": fake.url}
    first = http.post("/api/llm-backends", json=body)
    assert first.status_code == 201
    try:
        error = assert_openai_error(http.post("/api/llm-backends", json=body), 409, "conflict")
        assert "m-other" in error["message"]
        other = http.post("/api/llm-backends", json={**body, "model_name": "m-renamed"})
        assert other.status_code == 201
        assert_openai_error(http.patch(f"/api/llm-backends/{other.json()['id']}", json={"model_name": "m-other"}),
                            409, "conflict")  # fmt: skip
        assert http.delete(f"/api/llm-backends/{other.json()['id']}").status_code == 204
    finally:
        http.delete(f"/api/llm-backends/{first.json()['id']}")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/llm-backends/987654", None),
        ("PATCH", "/api/llm-backends/987654", {"weight": 2}),
        ("DELETE", "/api/llm-backends/987654", None),
        ("POST", "/api/llm-backends/987654/enable", None),
        ("POST", "/api/llm-backends/987654/disable", None),
        ("POST", "/api/llm-backends/987654/drain", None),
        ("DELETE", "/api/model-routes/no-such-model", None),
        ("DELETE", "/api/model-aliases/no-such-alias", None),
    ],
)
def test_unknown_ids_are_404_with_an_openai_error(http, method, path, body):
    error = assert_openai_error(http.request(method, path, json=body), 404)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("POST", "/api/llm-backends", {"model_name": "x", "endpoint_url": "http://h:1", "weight": 0}, "weight"),
        ("POST", "/api/llm-backends", {"model_name": "x", "endpoint_url": "http://h:1", "colour": "red"}, "colour"),
        ("POST", "/api/llm-backends", {"model_name": "x", "endpoint_url": "ftp://h:1"}, "endpoint_url"),
        ("POST", "/api/llm-backends", {"model_name": "x", "endpoint_url": "h:1"}, "endpoint_url"),
        ("POST", "/api/llm-backends", {"endpoint_url": "http://h:1"}, "model_name"),
        ("POST", "/api/llm-backends", {"model_name": "x", "endpoint_url": "http://h:1", "backend_type": "zzz"},
         "backend_type"),
        ("PATCH", "/api/llm-backends/1", {"weight": 0}, "weight"),
        ("PATCH", "/api/llm-backends/1", {"id": 7}, "id"),
        ("PATCH", "/api/llm-backends/1", {"endpoint_url": "unix:///tmp/x"}, "endpoint_url"),
        ("PATCH", "/api/llm-backends/1", {}, None),
        ("PUT", "/api/model-routes/x", {"strategy": "random"}, "strategy"),
        ("PUT", "/api/model-routes/x", {"strategy": "priority", "extra": 1}, "extra"),
        ("PUT", "/api/model-aliases/x", {"model": ""}, "model"),
        ("PUT", "/api/model-aliases/x", {}, "model"),
    ],
)  # fmt: skip
def test_bad_bodies_are_400(http, method, path, body, param):
    error = assert_openai_error(http.request(method, path, json=body), 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param or param in error["message"], error


def test_bad_bodies_change_nothing(http):
    def newest() -> int:
        return max((r["id"] for r in http.get("/api/audit-log", params={"limit": 1}).json()["data"]), default=0)

    before = newest()
    http.post("/api/llm-backends", json={"model_name": "x", "endpoint_url": "ftp://h:1"})
    http.post("/api/llm-backends", json={"model_name": "x", "endpoint_url": "http://h:1", "weight": 0})
    http.patch("/api/llm-backends/1", json={"weight": 0})
    assert newest() == before
    assert all(b["model_name"] != "x" for b in http.get("/api/llm-backends").json()["data"])


def test_inference_key_is_403_and_no_key_is_401(hub):
    key = hub.cli("keys", "create", "inference-only").stdout.strip()
    inference = {"Authorization": f"Bearer {key}"}
    wait_for(lambda: httpx.get(f"{hub.url}/v1/models", headers=inference).status_code == 200, "the key to work")
    requests = [
        ("GET", "/api/llm-backends", None),
        ("POST", "/api/llm-backends", {"model_name": "x", "endpoint_url": "http://h:1"}),
        ("PATCH", "/api/llm-backends/1", {"weight": 2}),
        ("POST", "/api/llm-backends/1/disable", None),
        ("DELETE", "/api/llm-backends/1", None),
        ("GET", "/api/model-routes", None),
        ("PUT", "/api/model-routes/x", {"strategy": "priority"}),
        ("GET", "/api/model-aliases", None),
        ("PUT", "/api/model-aliases/x", {"model": "y"}),
        ("GET", "/api/audit-log", None),
        ("GET", "/api/queue", None),
    ]
    for method, path, body in requests:
        forbidden = httpx.request(method, hub.url + path, headers=inference, json=body)
        assert assert_openai_error(forbidden, 403)["type"] == "permission_error", (method, path)
        anonymous = httpx.request(method, hub.url + path, json=body)
        assert assert_openai_error(anonymous, 401)["type"] == "authentication_error", (method, path)


# -- routes and aliases -----------------------------------------------------------------------------


def test_model_routes_crud_is_audited(http, hub):
    actor = f"key:{display_prefix(hub.api_key)}"
    created = http.put("/api/model-routes/m-route", json={"strategy": "priority", "fallbacks": ["m-other"]})
    assert created.status_code == 200, created.text
    assert created.json() == {"model": "m-route", "strategy": "priority", "fallbacks": ["m-other"], "source": "api"}
    listed = http.get("/api/model-routes").json()
    assert {"model": "m-route", "strategy": "priority", "fallbacks": ["m-other"], "source": "api"} in listed["data"]
    assert listed["default_strategy"] == "least-busy"
    assert http.put("/api/model-routes/m-route", json={"strategy": "round-robin"}).json()["fallbacks"] == []
    assert http.delete("/api/model-routes/m-route").status_code == 204
    assert all(r["model"] != "m-route" for r in http.get("/api/model-routes").json()["data"])

    rows = audit(http, "model_route", "m-route")
    assert [r["action"] for r in rows] == ["delete", "update", "create"]
    assert all(r["actor"] == actor for r in rows)
    delete, update, create = rows
    assert create["before"] is None
    assert create["after"] == {"strategy": "priority", "fallbacks": ["m-other"]}
    assert update["before"] == {"strategy": "priority", "fallbacks": ["m-other"]}
    assert update["after"] == {"strategy": "round-robin", "fallbacks": []}
    assert delete["before"] == {"strategy": "round-robin", "fallbacks": []} and delete["after"] is None


def test_model_aliases_crud_is_audited(http, hub):
    actor = f"key:{display_prefix(hub.api_key)}"
    assert http.put("/api/model-aliases/my-alias", json={"model": "m-other"}).json() == {
        "alias": "my-alias", "model": "m-other",
    }  # fmt: skip
    assert http.get("/api/model-aliases").json()["data"]["my-alias"] == "m-other"
    assert http.get("/api/model-routes").json()["aliases"]["my-alias"] == "m-other"
    assert http.put("/api/model-aliases/my-alias", json={"model": "m-renamed"}).status_code == 200
    assert http.delete("/api/model-aliases/my-alias").status_code == 204
    assert "my-alias" not in http.get("/api/model-aliases").json()["data"]

    rows = audit(http, "model_alias", "my-alias")
    assert [r["action"] for r in rows] == ["delete", "update", "create"]
    assert all(r["actor"] == actor for r in rows)
    assert rows[2]["before"] is None and rows[2]["after"] == {"model": "m-other"}
    assert rows[1]["before"] == {"model": "m-other"} and rows[1]["after"] == {"model": "m-renamed"}
    assert rows[0]["before"] == {"model": "m-renamed"} and rows[0]["after"] is None


def test_audit_log_filters_and_pages(http):
    everything = http.get("/api/audit-log", params={"limit": 1000}).json()["data"]
    assert len(everything) >= 10
    ids = [r["id"] for r in everything]
    assert ids == sorted(ids, reverse=True)
    page = http.get("/api/audit-log", params={"limit": 3}).json()
    assert [r["id"] for r in page["data"]] == ids[:3]
    assert page["next_before_id"] == ids[2]
    following = http.get("/api/audit-log", params={"limit": 3, "before_id": page["next_before_id"]}).json()
    assert [r["id"] for r in following["data"]] == ids[3:6]
    assert {r["entity_type"] for r in http.get("/api/audit-log", params={"entity_type": "model_alias"}).json()[
        "data"]} == {"model_alias"}  # fmt: skip


# -- two replicas -----------------------------------------------------------------------------------


def model_ids(client: httpx.Client) -> list[str]:
    return [m["id"] for m in client.get("/v1/models").json()["data"]]


def visible_on_replica_b(condition: Callable[[], bool], what: str) -> float:
    """Poll ``condition`` until it holds (by NOTIFY: long before the 600 s refresh); return how long it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < REPLICATION_DEADLINE, f"replica B never saw {what} (no NOTIFY?)"
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    print(f"replica B saw {what} after {elapsed * 1000:.0f} ms")
    return elapsed


def test_changes_on_replica_a_reach_replica_b_by_notify(http, http_b, fake):
    assert "m-repl" not in model_ids(http_b)
    created = http.post("/api/llm-backends", json={"model_name": "m-repl", "backend_type": "ollama",
                                                  "endpoint_url": fake.url})  # fmt: skip
    assert created.status_code == 201
    backend_id = str(created.json()["id"])
    try:
        visible_on_replica_b(lambda: "m-repl" in model_ids(http_b), "a created backend in /v1/models")
        routed = http_b.post("/v1/chat/completions", json={"model": "m-repl", "messages": MESSAGES})
        assert routed.status_code == 200
        assert routed.headers["x-inferhub-backend"] == backend_id

        assert http.patch(f"/api/llm-backends/{backend_id}", json={"model_name": "m-renamed"}).status_code == 200
        visible_on_replica_b(lambda: "m-renamed" in model_ids(http_b) and "m-repl" not in model_ids(http_b),
                             "a PATCHed model name")  # fmt: skip
        routed = http_b.post("/v1/chat/completions", json={"model": "m-renamed", "messages": MESSAGES})
        assert routed.status_code == 200
        assert fake.app.state.requests[-1]["model"] == "m-renamed"

        assert http.post(f"/api/llm-backends/{backend_id}/disable").status_code == 200
        visible_on_replica_b(lambda: "m-renamed" not in model_ids(http_b), "a disabled backend")
        assert http.post(f"/api/llm-backends/{backend_id}/enable").status_code == 200
        visible_on_replica_b(lambda: "m-renamed" in model_ids(http_b), "an enabled backend")

        assert http.put("/api/model-aliases/repl-alias", json={"model": "m-renamed"}).status_code == 200

        def alias_routes() -> bool:
            response = http_b.post("/v1/chat/completions", json={"model": "repl-alias", "messages": MESSAGES})
            return response.headers.get("x-inferhub-backend") == backend_id

        visible_on_replica_b(alias_routes, "a new alias in routing")
        # Replica B's own admin view reads the shared tables.
        assert any(str(b["id"]) == backend_id for b in http_b.get("/api/llm-backends").json()["data"])
        assert http_b.get("/api/model-aliases").json()["data"]["repl-alias"] == "m-renamed"
    finally:
        http.delete("/api/model-aliases/repl-alias")
        http.delete(f"/api/llm-backends/{backend_id}")
    visible_on_replica_b(lambda: "m-renamed" not in model_ids(http_b), "a deleted backend")
