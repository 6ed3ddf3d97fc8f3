"""The /ui dashboard in a real browser: Debian's Chromium driven by Playwright, against `inferhub serve`.

One module-scoped server with the embedded models (SmolLM2 for the playground, MiniLM for collections)
and a bootstrap admin password; a fake Ollama as the backend added through the UI. Screenshots of each
page go to tests/ui/artifacts/ (set INFERHUB_UI_DOCS_SCREENSHOTS=1 to refresh docs/ui/screenshots/ too).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fakes import BackgroundServer
from fakes.ollama import create_fake_ollama_app
from support import InferhubProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]  # fmt: skip
PASSWORD = "correct-horse-battery-staple"
ARTIFACTS = Path(__file__).parent / "artifacts"
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "ui" / "screenshots"
DOC_PAGES = ("login", "overview", "backends", "tenant-key-created", "playground", "collections", "usage", "jobs",
             "requests", "tenant-admin-404", "tenant-phone")  # fmt: skip

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing: run scripts/ensure-ui-tools.sh (apt-get install chromium)",
                allow_module_level=True)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferhubProcess]:
    process = InferhubProcess(tmp_path_factory.mktemp("inferhub-ui"),
                              env={"INFERHUB_BOOTSTRAP_ADMIN_PASSWORD": PASSWORD})  # fmt: skip
    with process:
        yield process


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_fake_ollama_app(["llama3.1:8b"])) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Session:
    """A browser context with console-error collection and screenshots."""

    def __init__(self, browser, base: str, **options) -> None:
        self.base = base
        self.context = browser.new_context(base_url=base, **options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def goto(self, path: str):
        return self.page.goto(path)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def login(self, username: str, password: str) -> None:
        self.goto("/ui/login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        submit(self.page, self.page.get_by_role("button", name="Log in"))

    def close(self) -> None:
        self.context.close()


def submit(page, button) -> None:
    """Click a form's submit button and wait for the page it navigates to."""
    with page.expect_navigation():
        button.click()


def _reload_until(session: Session, path: str, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        session.goto(path)
        if predicate(session.page):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: condition not met within {timeout}s")
        time.sleep(1)


@pytest.fixture(scope="module")
def state() -> dict:
    return {}


def test_login_required_and_wrong_password(server: InferhubProcess, browser) -> None:
    session = Session(browser, server.url)
    try:
        session.goto("/ui/backends")
        assert session.page.url.endswith("/ui/login?next=/ui/backends")
        session.login("admin", "wrong-password-123")
        assert session.page.get_by_role("alert").inner_text() == "Wrong username or password."
        # A form post without the CSRF token is refused even with a valid session.
        session.login("admin", PASSWORD)
        refused = session.page.request.post("/ui/tenants", form={"name": "nocsrf"})
        assert refused.status == 403
        assert session.errors == []
    finally:
        session.close()


def test_admin_flow(server: InferhubProcess, fake_ollama: BackgroundServer, browser, state: dict) -> None:
    session = Session(browser, server.url)
    page = session.page
    try:
        session.goto("/ui")
        session.shot("login")
        session.login("admin", PASSWORD)
        assert page.url.rstrip("/").endswith("/ui")
        assert page.get_by_role("heading", name="Overview").is_visible()
        cookies = {c["name"]: c for c in session.context.cookies()}
        assert cookies["inferhub_session"]["httpOnly"] and cookies["inferhub_session"]["sameSite"] == "Strict"

        # Backends: add the fake Ollama, drain it, enable it again; the audit log names the user.
        session.goto("/ui/backends")
        page.get_by_label("Model name").fill("llama3.1:8b")
        page.get_by_label("Type").select_option("ollama")
        page.get_by_label("Endpoint URL").fill(fake_ollama.url)
        submit(page, page.get_by_role("button", name="Add backend"))
        assert "Backend llama3.1:8b added." in page.get_by_role("status").first.inner_text()
        row = page.locator("tr", has_text=fake_ollama.url)
        submit(page, row.get_by_role("button", name=re.compile("^Drain backend")))
        assert "drain done" in page.locator(".flash").inner_text()
        row = page.locator("tr", has_text=fake_ollama.url)
        assert "draining" in row.inner_text()
        submit(page, row.get_by_role("button", name=re.compile("^Enable backend")))
        audit = page.locator("section", has_text="Recent audit log").inner_text()
        assert "user:admin" in audit and "drain" in audit and "enable" in audit
        session.shot("backends")

        # Overview: the live charts fill in from /ui/api/live.
        session.goto("/ui")
        page.wait_for_selector("#live-charts[data-points]:not([data-points='0'])", timeout=20000)
        assert page.locator("#fleet").inner_text().count("llama3.1:8b") >= 1

        # Tenants and keys: the plaintext key is shown once and works.
        tenant_name = f"acme-{uuid.uuid4().hex[:6]}"
        session.goto("/ui/tenants")
        page.locator("#t-name").fill(tenant_name)
        page.get_by_label("Description").fill("Acme search team")
        page.get_by_label("rpm").fill("600")
        submit(page, page.get_by_role("button", name="Create tenant"))
        assert page.get_by_role("heading", name=re.compile(f"Tenant {tenant_name}")).is_visible()
        tenant_id = int(re.search(r"/ui/tenants/(\d+)", page.url).group(1))
        state["tenant_id"], state["tenant_name"] = tenant_id, tenant_name
        page.locator("details", has_text="Create a key").evaluate("d => { d.open = true; }")
        page.locator("#k-name").fill("search-backend")
        page.get_by_label("rag").check()
        page.get_by_label("Allowed models").fill("smollm2, llama*")
        page.locator("#k-limit-tpm").fill("100000")
        submit(page, page.get_by_role("button", name="Create key"))
        key = page.locator("#new-key-value").input_value()
        assert key.startswith("ih-")
        assert page.get_by_role("button", name="Copy the new API key to the clipboard").is_visible()
        session.shot("tenant-key-created")
        models = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert models.status_code == 200
        session.goto(f"/ui/tenants/{tenant_id}")
        assert key not in page.content()  # shown only once
        assert "search-backend" in page.locator("section", has_text="API keys").inner_text()

        # Playground: a streamed answer from smollm2 appears piece by piece.
        session.goto(f"/ui/playground?tenant_id={tenant_id}")
        page.get_by_label("Model").select_option("smollm2")
        page.get_by_label("Max tokens").fill("96")
        page.get_by_label("Message").fill("Write three sentences about the sea.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_function(
            "() => { const m = document.querySelector('.msg.assistant');"
            " return m && m.dataset.streaming === 'true' && Number(m.dataset.chunks || 0) >= 1; }",
            timeout=60000,
        )
        partial = page.locator(".msg.assistant .content").inner_text()
        page.wait_for_function("() => document.querySelector('.msg.assistant').dataset.streaming === 'false'",
                               timeout=120000)  # fmt: skip
        final = page.locator(".msg.assistant .content").inner_text()
        chunks = int(page.locator(".msg.assistant").get_attribute("data-chunks"))
        assert chunks > 1 and len(final) > len(partial) > 0, (partial, final, chunks)
        assert final.startswith(partial)
        assert "completion tokens" in page.locator("#pg-status").inner_text()
        session.shot("playground")

        # Collections: create one, paste a document, wait for ingestion, search it.
        session.goto(f"/ui/tenants/{tenant_id}")
        page.locator("details", has_text="Create a collection").evaluate("d => { d.open = true; }")
        page.locator("#c-name").fill("handbook")
        submit(page, page.get_by_role("button", name="Create collection"))
        assert "Collection handbook created." in page.locator(".flash").inner_text()
        page.get_by_label("…or paste text").fill(
            "Inferhub handbook\n\nThe on-call rotation codename is BLUEFIN. Escalate outages to the platform team."
        )
        page.get_by_label("Title").fill("On-call handbook")
        submit(page, page.get_by_role("button", name="Add document"))
        assert "queued for ingestion" in page.locator(".flash").inner_text()
        _reload_until(session, f"/ui/tenants/{tenant_id}",
                      lambda p: "ready" in p.locator("article.collection").inner_text(), timeout=120)  # fmt: skip
        page.get_by_label("Search handbook").fill("on-call codename")
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_selector(".hits li")
        assert "On-call handbook" in page.locator(".hits").inner_text()
        session.shot("collections")

        # Usage: the tenant's requests show up in the table and in the chart's data.
        def has_usage(p) -> bool:
            row = p.locator("#usage-table tr", has_text=tenant_name)
            return row.count() == 1 and int(row.locator("td").nth(1).inner_text()) > 0

        _reload_until(session, "/ui/usage", has_usage, timeout=60)
        chart = page.evaluate("() => JSON.parse(document.getElementById('usage-data').textContent)")
        assert chart["requests"][chart["labels"].index(tenant_name)] > 0
        assert page.evaluate("() => Chart.getChart('usage-chart').data.datasets[0].data.some(v => v > 0)")
        csv = page.request.get(page.get_by_role("link", name="Download CSV").get_attribute("href"))
        assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
        page.get_by_label("Tenant", exact=True).first.select_option(str(tenant_id))
        session.goto(f"/ui/usage?statement_tenant={tenant_id}")
        assert "smollm2" in page.locator("section", has_text="Monthly statement").inner_text()
        session.shot("usage")

        session.goto("/ui/jobs")
        assert "rag.ingest" in page.locator("table").first.inner_text()
        session.goto("/ui/jobs?status=succeeded")
        session.shot("jobs")
        session.goto("/ui")  # the live charts now have the playground's traffic in them
        page.wait_for_selector("#live-charts[data-points]:not([data-points='0'])", timeout=20000)
        time.sleep(4)
        session.shot("overview")
        session.goto(f"/ui/requests?tenant_id={tenant_id}")
        assert "smollm2" in page.locator("table").inner_text()
        session.shot("requests")
        session.goto(f"/ui/tenants/{tenant_id}")
        assert int(page.locator("#tenant-requests").inner_text()) > 0
        assert session.errors == [], session.errors
    finally:
        session.close()


def test_tenant_admin_sees_only_their_tenant(server: InferhubProcess, browser, state: dict) -> None:
    if "tenant_id" not in state:
        pytest.skip("needs the tenant made by test_admin_flow")
    api = httpx.Client(base_url=server.url, headers=server.headers, timeout=30)
    other = api.post("/api/tenants", json={"name": f"other-{uuid.uuid4().hex[:6]}"}).json()
    username = f"ops-{uuid.uuid4().hex[:6]}"
    created = api.post("/api/admin-users", json={"username": username, "password": PASSWORD,
                                                  "role": "tenant_admin", "tenant_id": state["tenant_id"]})  # fmt: skip
    assert created.status_code == 201, created.text
    session = Session(browser, server.url, viewport={"width": 390, "height": 844})
    page = session.page
    try:
        session.login(username, PASSWORD)
        assert page.url.endswith(f"/ui/tenants/{state['tenant_id']}")
        assert page.get_by_role("link", name="Backends").count() == 0
        session.shot("tenant-phone")
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        response = session.goto(f"/ui/tenants/{other['id']}")
        assert response.status == 404
        session.shot("tenant-admin-404")
        assert session.goto(f"/ui/usage?tenant_id={other['id']}").status == 404
        assert session.goto("/ui/backends").status == 403
        session.goto("/ui/playground")
        assert page.locator("#pg-tenant option").all_inner_texts() == [state["tenant_name"]]
        # Console errors from the expected 404/403 document loads are the browser's own, not the pages'.
        assert [e for e in session.errors if "status of 40" not in e] == []
    finally:
        session.close()
        api.close()
    if os.environ.get("INFERHUB_UI_DOCS_SCREENSHOTS"):
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        for name in DOC_PAGES:
            if (ARTIFACTS / f"{name}.png").exists():
                shutil.copy(ARTIFACTS / f"{name}.png", DOCS_SHOTS / f"{name}.png")
