"""What the README creates has no tenant: its keys and collections are usable in the dashboard.

Plain HTTP against the rendered pages (the login form, then the session cookie), with the embedded
models: the bootstrap key opens at /ui/keys/{id} and is listed at /ui/keys, the backends page lists the
two embedded models as such, and the playground answers from a collection made by a tenant-less key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from support import InferhubProcess

PASSWORD = "first-day-dashboard-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferhubProcess]:
    process = InferhubProcess(
        tmp_path_factory.mktemp("inferhub-platform-keys"), env={"INFERHUB_BOOTSTRAP_ADMIN_PASSWORD": PASSWORD}
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def browser(server: InferhubProcess) -> Iterator[httpx.Client]:
    """A logged-in dashboard session (cookies as a browser keeps them)."""
    with httpx.Client(base_url=server.url, timeout=120) as client:
        client.get("/ui/login").raise_for_status()
        reply = client.post(
            "/ui/login", data={"csrf_token": client.cookies["inferhub_csrf"], "username": "admin", "password": PASSWORD}
        )
        assert reply.status_code == 303, reply.text
        yield client


def _csrf(client: httpx.Client) -> str:
    return client.cookies["inferhub_csrf"]


def test_a_key_without_tenant_opens_and_is_listed(server: InferhubProcess, browser: httpx.Client) -> None:
    keys = orjson.loads(server.cli("keys", "list", "--json").stdout)
    bootstrap = next(k for k in keys if k["tenant_id"] is None)
    page = browser.get(f"/ui/keys/{bootstrap['id']}")
    assert page.status_code == 200, page.text[:300]
    assert bootstrap["prefix"] in page.text and 'href="/ui/keys"' in page.text

    listing = browser.get("/ui/keys")
    assert listing.status_code == 200
    assert f'href="/ui/keys/{bootstrap["id"]}"' in listing.text

    cli_key = server.cli("keys", "create", "readme-app").stdout.strip()  # as the README does
    created = next(k for k in orjson.loads(server.cli("keys", "list", "--json").stdout) if k["name"] == "readme-app")
    saved = browser.post(
        f"/ui/keys/{created['id']}",
        data={"csrf_token": _csrf(browser), "name": "readme-app-2", "scopes": ["inference", "rag"], "priority": "0"},
    )
    assert saved.status_code == 303, saved.text[:500]
    assert httpx.get(f"{server.url}/api/keys/{created['id']}", headers=server.headers).json()["name"] == "readme-app-2"

    rotated = browser.post(
        f"/ui/keys/{created['id']}/rotate", data={"csrf_token": _csrf(browser), "grace_seconds": "0"}
    )
    assert rotated.status_code == 200 and "Keys without a tenant" in rotated.text
    new_key = re.search(r'id="new-key-value" class="mono" readonly value="(ih-[^"]+)"', rotated.text).group(1)
    assert new_key != cli_key
    assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200

    revoked = browser.post(f"/ui/keys/{created['id']}/revoke", data={"csrf_token": _csrf(browser)})
    assert revoked.status_code == 303 and revoked.headers["location"].startswith("/ui/keys")


def test_the_backends_page_lists_the_embedded_models(browser: httpx.Client) -> None:
    page = browser.get("/ui/backends")
    assert page.status_code == 200
    rows = re.findall(r'<tr class="local" data-embedded="true">(.*?)</tr>', page.text, re.DOTALL)
    assert len(rows) == 2 and all("embedded" in row for row in rows)
    assert any("smollm2" in row for row in rows) and any("all-minilm-l6-v2" in row for row in rows)
    assert "No registered backends" not in page.text and "No backends" not in page.text


def _wait_ready(server: InferhubProcess, name: str, document_id: str) -> None:
    for _ in range(600):
        doc = httpx.get(f"{server.url}/v1/collections/{name}/documents/{document_id}", headers=server.headers).json()
        if doc["status"] in ("ready", "failed"):
            assert doc["status"] == "ready", doc
            return
        time.sleep(0.1)
    raise AssertionError("the document was not ingested")


def test_the_playground_answers_from_a_collection_without_tenant(
    server: InferhubProcess, browser: httpx.Client
) -> None:
    api = httpx.Client(base_url=f"{server.url}/v1", headers=server.headers, timeout=120)
    assert api.post("/collections", json={"name": "platform-notes"}).status_code == 201
    doc = api.post(
        "/collections/platform-notes/documents",
        json={"text": "The staff canteen on floor two serves pancakes every Friday.", "title": "Canteen"},
    )
    assert doc.status_code == 202, doc.text
    _wait_ready(server, "platform-notes", doc.json()["id"])
    collection_id = api.get("/collections/platform-notes").json()["id"]

    tenant = httpx.post(f"{server.url}/api/tenants", json={"name": "beside-the-platform"}, headers=server.headers)
    assert tenant.status_code == 201, tenant.text  # tenants' collections are offered beside the platform's
    page = browser.get("/ui/playground")
    assert page.status_code == 200, page.text[:300]
    assert '<option value="" selected>no tenant (platform keys)</option>' in page.text
    offered = orjson.loads(
        re.search(r'<script type="application/json" id="pg-collections">(.*?)</script>', page.text, re.DOTALL).group(1)
    )
    choice = next(c for c in offered[""] if c["label"].startswith("platform-notes"))
    assert choice["value"] == f"#{collection_id}"
    assert offered[str(tenant.json()["id"])] == []

    body = {
        "tenant_id": "",
        "model": "smollm2",
        "collection": choice["value"],
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "When does the canteen serve pancakes?"}],
    }
    with browser.stream(
        "POST",
        "/ui/playground/chat",
        content=orjson.dumps(body),
        headers={"X-CSRF-Token": _csrf(browser), "Content-Type": "application/json"},
    ) as reply:
        assert reply.status_code == 200, reply.read()
        events = [orjson.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
    assert any(e.get("choices") for e in events)
    citations = next(e for e in events if e.get("object") == "rag.citations")["citations"]
    assert citations and citations[0]["title"] == "Canteen"

    other = browser.post(
        "/ui/playground/chat",
        content=orjson.dumps(body | {"collection": "#999999"}),
        headers={"X-CSRF-Token": _csrf(browser), "Content-Type": "application/json"},
    )
    assert other.status_code == 404 and other.json()["error"]["message"]

    # The playground parses its body as the API does: not an object, or a NUL byte, is a 400, never a 500.
    for bad in (b"[1, 2]", b'"text"', orjson.dumps(body | {"messages": [{"role": "user", "content": "a\u0000b"}]})):
        headers = {"X-CSRF-Token": _csrf(browser), "Content-Type": "application/json"}
        refused = browser.post("/ui/playground/chat", content=bad, headers=headers)
        assert refused.status_code == 400, (bad, refused.status_code, refused.text[:200])
        assert refused.json()["error"]["code"] in ("invalid_json", "invalid_value"), refused.text


def test_the_playground_in_a_browser_offers_and_cites_the_platform_collection(server: InferhubProcess) -> None:
    """Debian's Chromium (scripts/ensure-ui-tools.sh): the collection select and the cited answer, by ui.js."""
    import os

    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("/usr/bin/chromium is missing: run scripts/ensure-ui-tools.sh (apt-get install chromium)")
    api = httpx.Client(base_url=f"{server.url}/v1", headers=server.headers, timeout=120)
    if api.get("/collections/browser-notes").status_code == 404:
        assert api.post("/collections", json={"name": "browser-notes"}).status_code == 201
        doc = api.post("/collections/browser-notes/documents", json={"text": "The lift is serviced every Tuesday.",
                                                                     "title": "Lift"})  # fmt: skip
        _wait_ready(server, "browser-notes", doc.json()["id"])
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            page = chromium.new_context(base_url=server.url).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto("/ui/login")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(PASSWORD)
            with page.expect_navigation():
                page.get_by_role("button", name="Log in").click()
            page.goto("/ui/playground")
            assert page.locator("#pg-tenant").input_value() == ""  # no tenant: the platform's keys
            option = page.locator("#pg-collection option", has_text="browser-notes")
            assert option.count() == 1 and option.get_attribute("value").startswith("#")
            page.locator("#pg-collection").select_option(option.get_attribute("value"))
            page.get_by_label("Max tokens").fill("16")
            page.get_by_label("Message").fill("When is the lift serviced?")
            page.get_by_role("button", name="Send").click()
            page.wait_for_selector(".citations", timeout=120000)
            assert "Lift" in page.locator(".citations").inner_text()
            assert errors == []
        finally:
            chromium.close()


def test_the_playground_meters_its_retrieval_like_the_api(server: InferhubProcess, browser: httpx.Client) -> None:
    """The playground goes through the same service as the API: its retrieval leaves a ``rag.retrieval``
    usage record on the dashboard's key, as chat with ``collections`` does on the caller's."""
    api = httpx.Client(base_url=f"{server.url}/v1", headers=server.headers, timeout=120)
    if api.get("/collections/metered-notes").status_code == 404:
        assert api.post("/collections", json={"name": "metered-notes"}).status_code == 201
        text = "The bike shed is swept every Wednesday morning."
        doc = api.post("/collections/metered-notes/documents", json={"text": text, "title": "Bike shed"})
        _wait_ready(server, "metered-notes", doc.json()["id"])
    collection_id = api.get("/collections/metered-notes").json()["id"]
    admin = httpx.Client(base_url=server.url, headers=server.headers, timeout=30)
    latest = admin.get("/api/request-log", params={"limit": 1}).json()["data"]
    since = latest[0]["id"] if latest else 0
    question = [{"role": "user", "content": "When is the bike shed swept?"}]

    answered = api.post("/chat/completions", json={"model": "smollm2", "max_tokens": 8, "messages": question,
                                                   "collections": ["metered-notes"]})  # fmt: skip
    assert answered.status_code == 200, answered.text
    body = {"tenant_id": "", "model": "smollm2", "collection": f"#{collection_id}", "max_tokens": 8,
            "messages": question}  # fmt: skip
    headers = {"X-CSRF-Token": _csrf(browser), "Content-Type": "application/json"}
    with browser.stream("POST", "/ui/playground/chat", content=orjson.dumps(body), headers=headers) as reply:
        assert reply.status_code == 200, reply.read()
        assert any(line.startswith("data: [DONE]") for line in reply.iter_lines())

    keys = orjson.loads(server.cli("keys", "list", "--json").stdout)
    playground = next(k for k in keys if k["name"] == "ui-playground" and k["tenant_id"] is None)
    caller = next(k for k in keys if server.api_key.startswith(k["prefix"]))

    def retrievals() -> dict[int, list[dict]] | None:
        rows = [r for r in admin.get("/api/request-log", params={"limit": 1000}).json()["data"] if r["id"] > since]
        found = {key["id"]: [r for r in rows if r["key_id"] == key["id"] and r["endpoint"] == "rag.retrieval"]
                 for key in (playground, caller)}  # fmt: skip
        chats = [r for r in rows if r["key_id"] == playground["id"] and r["endpoint"] == "/v1/chat/completions"]
        return found if all(found.values()) and chats else None

    found = _poll(retrievals, "the retrieval usage records of the API and of the playground")
    for key in (playground, caller):
        (record,) = found[key["id"]]
        assert (record["status"], record["model"]) == (200, "all-minilm-l6-v2"), record
        assert record["prompt_tokens"] > 0, record  # the query's embedding is billed
    assert found[playground["id"]][0]["prompt_tokens"] == found[caller["id"]][0]["prompt_tokens"]  # same question


def _poll(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result
