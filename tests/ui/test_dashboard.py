"""The /ui dashboard in a real browser: Debian's Chromium driven by Playwright, against `inferhub serve`.

One module-scoped server with the embedded models (SmolLM2 for the playground, MiniLM for collections)
and a bootstrap admin password; a fake Ollama as the backend added through the UI. Each test makes its
own tenants, keys and users. Screenshots of each page go to tests/ui/artifacts/ (set
INFERHUB_UI_DOCS_SCREENSHOTS=1 to refresh docs/ui/screenshots/ too).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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
DOC_PAGES = ("login", "overview", "backends", "backend-edit", "tenants", "tenant-key-created", "key-edit",
             "key-rotated", "playground", "collections", "usage", "jobs", "job-details", "requests",
             "tenant-admin-404", "tenant-phone")  # fmt: skip
EMBEDDING_MODEL = "all-minilm-l6-v2"

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
    if os.environ.get("INFERHUB_UI_DOCS_SCREENSHOTS"):
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        for name in DOC_PAGES:
            if (ARTIFACTS / f"{name}.png").exists():
                shutil.copy(ARTIFACTS / f"{name}.png", DOCS_SHOTS / f"{name}.png")


@pytest.fixture(scope="module")
def api(server: InferhubProcess) -> Iterator[httpx.Client]:
    """The JSON admin API with the platform admin key: test data, and checks that a form changed the store."""
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        yield client


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
    """A browser context with console-error collection, accepted confirmations and screenshots."""

    def __init__(self, browser, base: str, **options) -> None:
        self.base = base
        self.context = browser.new_context(base_url=base, **options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("dialog", lambda dialog: dialog.accept())

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

    def page_errors(self, *expected_statuses: int) -> list[str]:
        """Console errors, less the browser's own line for each document answered with an expected status."""
        expected = tuple(f"status of {status}" for status in expected_statuses)
        return [e for e in self.errors if not (expected and "Failed to load resource" in e and any(
            s in e for s in expected))]  # fmt: skip

    def close(self) -> None:
        self.context.close()


def submit(page, button):
    """Click a form's submit button and wait for the page it navigates to; returns that response."""
    with page.expect_navigation() as navigation:
        button.click()
    return navigation.value


def without_browser_checks(form) -> None:
    """Skip the browser's own checks (min, max, required) so the server's validation answers."""
    form.evaluate("f => { f.noValidate = true; }")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.2)


def _reload_until(session: Session, path: str, predicate, timeout: float = 60.0) -> None:
    def reloaded() -> bool:
        session.goto(path)
        return predicate(session.page)

    wait_until(reloaded, f"{path}: condition", timeout)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _tenant(api: httpx.Client, **body) -> dict:
    response = api.post("/api/tenants", json={"name": _unique("t"), **body})
    assert response.status_code == 201, response.text
    return response.json()


def _key(server: InferhubProcess, api: httpx.Client, tenant_id: int, **body) -> dict:
    """A tenant key, once the server's key cache knows it (new keys arrive through NOTIFY)."""
    response = api.post(f"/api/tenants/{tenant_id}/keys", json={"name": _unique("key"), **body})
    assert response.status_code == 201, response.text
    created = response.json()
    wait_until(lambda: _status(server, created["key"]) != 401, "the new key to be accepted")
    return created


def _user(api: httpx.Client, tenant_id: int) -> str:
    username = _unique("ops")
    response = api.post("/api/admin-users", json={"username": username, "password": PASSWORD,
                                                   "role": "tenant_admin", "tenant_id": tenant_id})  # fmt: skip
    assert response.status_code == 201, response.text
    return username


def _status(server: InferhubProcess, key: str) -> int:
    return httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code


def _embed_status(server: InferhubProcess, key: str) -> int:
    response = httpx.post(f"{server.url}/v1/embeddings", headers={"Authorization": f"Bearer {key}"},
                          json={"model": EMBEDDING_MODEL, "input": "hello"}, timeout=60)  # fmt: skip
    return response.status_code


def _chart_data(page, canvas_id: str) -> list:
    return page.evaluate(f"() => Chart.getChart('{canvas_id}').data.datasets.map(d => d.data)")


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


def test_admin_flow(server: InferhubProcess, api: httpx.Client, fake_ollama: BackgroundServer, browser,
                    tmp_path: Path) -> None:  # fmt: skip
    # Prices make the cost charts non-zero: 1000 per million tokens of smollm2.
    price = api.put("/api/prices/smollm2", json={"prompt_per_million": "1000", "completion_per_million": "1000"})
    assert price.status_code == 200, price.text
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
        row = page.locator("#registered-backends tr", has_text=fake_ollama.url)
        submit(page, row.get_by_role("button", name=re.compile("^Drain backend")))
        assert "drain done" in page.locator(".flash").inner_text()
        row = page.locator("#registered-backends tr", has_text=fake_ollama.url)
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
        tenant_name = _unique("acme")
        session.goto("/ui/tenants")
        page.locator("#t-name").fill(tenant_name)
        page.get_by_label("Description").fill("Acme search team")
        page.get_by_label("rpm").fill("600")
        submit(page, page.get_by_role("button", name="Create tenant"))
        assert page.get_by_role("heading", name=re.compile(f"Tenant {tenant_name}")).is_visible()
        tenant_id = int(re.search(r"/ui/tenants/(\d+)", page.url).group(1))
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
        wait_until(lambda: _status(server, key) == 200, "the new key to work")
        session.goto(f"/ui/tenants/{tenant_id}")
        assert key not in page.content()  # shown only once
        assert "search-backend" in page.locator("section", has_text="API keys").inner_text()
        session.goto("/ui/tenants")
        assert tenant_name in page.locator("table").inner_text()
        session.shot("tenants")

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

        # Collections: create one; paste a document and upload a Markdown file; both are found by search.
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
        word = "zq" + uuid.uuid4().hex[:8]
        upload = tmp_path / "offsite-plan.md"
        upload.write_text(f"# Offsite plan\n\nThe spring offsite meets at the {word} lighthouse on the harbour.\n")
        page.get_by_label(re.compile("^Upload a document")).set_input_files(upload)
        submit(page, page.get_by_role("button", name="Add document"))
        assert "'offsite-plan.md' queued for ingestion" in page.locator(".flash").inner_text()
        documents = page.locator("article.collection tbody")
        assert "offsite-plan.md" in documents.inner_text()
        _reload_until(session, f"/ui/tenants/{tenant_id}",
                      lambda p: p.locator("article.collection tbody .badge.ready").count() == 2,
                      timeout=120)  # fmt: skip
        page.get_by_label("Search handbook").fill("on-call codename")
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_selector(".hits li")
        assert "On-call handbook" in page.locator(".hits").inner_text()
        page.get_by_label("Search handbook").fill(f"where does the spring offsite meet? {word}")
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_function(f"() => document.querySelector('.hits') && "
                               f"document.querySelector('.hits').textContent.includes('{word}')")  # fmt: skip
        hit = page.locator(".hits li", has_text=word).inner_text()
        assert hit.startswith("offsite-plan.md") and "lighthouse" in hit, hit
        session.shot("collections")

        # Usage: the tenant's requests and cost show up in the table and in both charts.
        def has_usage(p) -> bool:
            row = p.locator("#usage-table tr", has_text=tenant_name)
            return row.count() == 1 and int(row.locator("td").nth(1).inner_text()) > 0

        _reload_until(session, "/ui/usage", has_usage, timeout=60)
        chart = page.evaluate("() => JSON.parse(document.getElementById('usage-data').textContent)")
        index = chart["labels"].index(tenant_name)
        assert chart["requests"][index] > 0 and chart["cost"][index] > 0, chart
        row = page.locator("#usage-table tr", has_text=tenant_name)
        assert float(row.locator("td").nth(4).inner_text()) == pytest.approx(chart["cost"][index])
        assert _chart_data(page, "usage-chart")[0][index] > 0
        assert _chart_data(page, "cost-chart")[0][index] == pytest.approx(chart["cost"][index])
        csv = page.request.get(page.get_by_role("link", name="Download CSV").get_attribute("href"))
        assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
        session.goto(f"/ui/usage?statement_tenant={tenant_id}")
        assert "smollm2" in page.locator("section", has_text="Monthly statement").inner_text()
        session.shot("usage")

        session.goto("/ui/jobs")
        assert "rag.ingest" in page.locator("table").first.inner_text()
        session.goto("/ui/jobs?status=succeeded")
        session.shot("jobs")

        # Overview again: wait until the charts hold the traffic just made (requests/s and latency percentiles).
        session.goto("/ui")
        page.wait_for_function(
            "() => { const rps = Chart.getChart('chart-rps'), latency = Chart.getChart('chart-latency');"
            " return rps && latency && rps.data.datasets[0].data.some(v => v > 0)"
            " && latency.data.datasets.every(d => d.data.some(v => v !== null && v > 0)); }",
            timeout=30000,
        )
        p50, p95, p99 = (max(v for v in series if v is not None) for series in _chart_data(page, "chart-latency"))
        assert 0 < p50 <= p95 <= p99
        session.shot("overview")
        session.goto(f"/ui/requests?tenant_id={tenant_id}")
        assert "smollm2" in page.locator("table").inner_text()
        session.shot("requests")

        # The tenant page: request count, the cost chart has the day's cost.
        session.goto(f"/ui/tenants/{tenant_id}")
        assert int(page.locator("#tenant-requests").inner_text()) > 0
        assert float(page.locator("#tenant-cost").inner_text()) > 0
        assert sum(_chart_data(page, "tenant-cost-chart")[0]) > 0
        assert session.errors == [], session.errors
    finally:
        session.close()


def test_backend_edit_aliases_and_routes(server: InferhubProcess, api: httpx.Client, fake_ollama, browser) -> None:
    model = _unique("edit-model")
    created = api.post(
        "/api/llm-backends",
        json={"model_name": model, "backend_type": "ollama", "endpoint_url": fake_ollama.url, "discover_models": False},
    )
    assert created.status_code == 201, created.text
    backend_id = created.json()["id"]
    session = Session(browser, server.url)
    page = session.page
    try:
        session.login("admin", PASSWORD)
        session.goto("/ui/backends")
        submit(page, page.get_by_role("link", name=f"Edit backend {backend_id} ({model})"))
        assert page.get_by_role("heading", name=re.compile(f"Backend {backend_id}: {model}")).is_visible()

        # Save: the changes reach the registry through the same service as PATCH /api/llm-backends/{id}.
        page.get_by_label("Weight").fill("7")
        page.get_by_label("Priority").fill("5")
        page.get_by_label("Max concurrency").fill("3")
        page.get_by_label("Timeout (seconds)").fill("45")
        page.get_by_label("Max tokens").fill("512")
        page.get_by_label("Default temperature").fill("0.3")
        page.get_by_label("Description", exact=True).fill("GPU box 2")
        submit(page, page.get_by_role("button", name="Save changes"))
        flash = page.get_by_role("status").first.inner_text()
        assert "saved" in flash and "weight" in flash and "temperature_default" in flash, flash
        stored = api.get(f"/api/llm-backends/{backend_id}").json()
        assert (stored["weight"], stored["priority"], stored["max_concurrency"], stored["timeout_seconds"],
                stored["max_tokens"], stored["temperature_default"], stored["description"]) == (
                7, 5, 3, 45.0, 512, 0.3, "GPU box 2")  # fmt: skip
        history = page.locator("section", has_text="Changes to this backend").inner_text()
        assert "user:admin" in history and "update" in history and "weight 1 → 7" in history, history
        assert page.get_by_label("Weight").input_value() == "7"
        session.shot("backend-edit")

        # Clearing an optional field stores no value; nothing changed says so.
        page.get_by_label("Max tokens").fill("")
        submit(page, page.get_by_role("button", name="Save changes"))
        assert api.get(f"/api/llm-backends/{backend_id}").json()["max_tokens"] is None
        submit(page, page.get_by_role("button", name="Save changes"))
        assert "Nothing changed." in page.get_by_role("status").first.inner_text()

        # Bad input: the form again with the message and what was typed; nothing is stored.
        form = page.locator("form", has=page.get_by_role("button", name="Save changes"))
        without_browser_checks(form)
        page.get_by_label("Default temperature").fill("3")
        response = submit(page, page.get_by_role("button", name="Save changes"))
        assert response.status == 422
        assert page.get_by_role("alert").inner_text() == "Default temperature: must be at most 2"
        assert page.get_by_label("Default temperature").input_value() == "3"
        assert page.get_by_label("Default temperature").get_attribute("aria-invalid") == "true"
        without_browser_checks(page.locator("form", has=page.get_by_role("button", name="Save changes")))
        page.get_by_label("Default temperature").fill("0.3")
        page.get_by_label("Endpoint URL").fill("ftp://gpu-2.internal")
        assert submit(page, page.get_by_role("button", name="Save changes")).status == 422
        assert "Endpoint URL: must start with http:// or https://" in page.get_by_role("alert").inner_text()
        assert api.get(f"/api/llm-backends/{backend_id}").json()["endpoint_url"] == fake_ollama.url

        # Aliases: add one (it routes), refuse one that would hide a served model, remove it.
        alias = _unique("fast")
        session.goto("/ui/backends")
        page.get_by_label("Alias", exact=True).fill(alias)
        page.locator("#a-model").fill(model)
        submit(page, page.get_by_role("button", name="Save alias"))
        assert f"Alias {alias} → {model} saved." in page.get_by_role("status").first.inner_text()
        assert page.locator("#aliases tr", has_text=alias).count() == 1
        assert api.get("/api/model-aliases").json()["data"][alias] == model
        page.get_by_label("Alias", exact=True).fill("smollm2")
        page.locator("#a-model").fill(model)
        assert submit(page, page.get_by_role("button", name="Save alias")).status == 422
        assert "smollm2 is a model a backend serves" in page.get_by_role("alert").inner_text()
        assert "smollm2" not in api.get("/api/model-aliases").json()["data"]

        # Fallback chains: set one, refuse an unknown fallback, remove it.
        page.locator("#r-model").fill(model)
        page.get_by_label("Strategy").select_option("round-robin")
        page.get_by_label(re.compile("^Fallbacks")).fill("smollm2")
        submit(page, page.get_by_role("button", name="Save route"))
        assert f"{model} → smollm2" in page.get_by_role("status").first.inner_text()
        routes = {r["model"]: r for r in api.get("/api/model-routes").json()["data"]}
        assert routes[model]["strategy"] == "round-robin" and routes[model]["fallbacks"] == ["smollm2"]
        page.locator("#r-model").fill(model)
        page.get_by_label(re.compile("^Fallbacks")).fill("smollm2, no-such-model")
        assert submit(page, page.get_by_role("button", name="Save route")).status == 422
        assert "Fallbacks: no backend or alias for no-such-model" in page.get_by_role("alert").inner_text()
        assert page.get_by_label(re.compile("^Fallbacks")).input_value() == "smollm2, no-such-model"
        session.goto("/ui/backends")
        assert "smollm2" in page.locator("#routes tr", has_text=model).inner_text()
        submit(page, page.get_by_role("button", name=f"Remove the route for {model}"))
        assert model not in {r["model"] for r in api.get("/api/model-routes").json()["data"]}
        submit(page, page.get_by_role("button", name=f"Remove alias {alias}"))
        assert alias not in api.get("/api/model-aliases").json()["data"]
        assert page.locator("#aliases tr", has_text=alias).count() == 0
        audit = page.locator("section", has_text="Recent audit log").inner_text()
        assert f"model alias {alias}" in audit and f"model route {model}" in audit
        assert session.page_errors(422) == [], session.errors
    finally:
        session.close()


def test_tenant_and_key_edit_and_rotation(server: InferhubProcess, api: httpx.Client, browser) -> None:
    tenant = _tenant(api, limits={"rpm": 600})
    other = _tenant(api)
    other_key = _key(server, api, other["id"])
    kept = _key(server, api, tenant["id"], name="reporting", scopes=["inference"])
    username = _user(api, tenant["id"])
    session = Session(browser, server.url)
    page = session.page
    try:
        # A platform admin changes the tenant's limits and budgets.
        session.login("admin", PASSWORD)
        session.goto(f"/ui/tenants/{tenant['id']}")
        page.locator("#tenant-edit summary").click()
        assert page.locator("#te-limit-rpm").input_value() == "600"
        page.locator("#te-limit-rpm").fill("120")
        page.locator("#te-limit-monthly_cost").fill("25.5")
        page.locator("#te-desc").fill("Reporting team")
        submit(page, page.get_by_role("button", name="Save tenant"))
        assert f"Tenant {tenant['name']} saved." in page.get_by_role("status").first.inner_text()
        stored = api.get(f"/api/tenants/{tenant['id']}").json()
        assert stored["limits"] == {"rpm": 120, "monthly_cost": 25.5} and stored["description"] == "Reporting team"
        budget = page.locator("section", has_text="Limits and remaining budget").locator("table").inner_text()
        assert "monthly cost\t25.5" in budget and "rpm\t120" in budget, budget
        page.locator("#tenant-edit summary").click()
        without_browser_checks(page.locator("#tenant-edit form"))
        page.locator("#te-limit-rpm").fill("-5")
        assert submit(page, page.get_by_role("button", name="Save tenant")).status == 422
        assert page.get_by_role("alert").inner_text() == "rpm: must be at least 0"
        assert page.locator("#te-limit-rpm").input_value() == "-5"
        assert api.get(f"/api/tenants/{tenant['id']}").json()["limits"]["rpm"] == 120

        # The key: scopes, model allow-list, limits and priority; the allow-list takes effect.
        assert _embed_status(server, kept["key"]) == 200
        session.goto(f"/ui/tenants/{tenant['id']}")
        submit(page, page.get_by_role("link", name="Edit key reporting"))
        page.get_by_label("jobs").check()
        page.get_by_label(re.compile("^Allowed models")).fill("smollm2")
        page.locator("#ke-limit-rpm").fill("30")
        page.get_by_label(re.compile("^Priority")).fill("10")
        submit(page, page.get_by_role("button", name="Save key"))
        assert "Key reporting saved." in page.get_by_role("status").first.inner_text()
        stored = api.get(f"/api/keys/{kept['id']}").json()
        assert (sorted(stored["scopes"]), stored["allowed_models"], stored["limits"], stored["priority"]) == (
            ["inference", "jobs"], ["smollm2"], {"rpm": 30}, 10)  # fmt: skip
        wait_until(lambda: _embed_status(server, kept["key"]) == 403, "the allow-list to refuse the embedding model")
        assert "allowed_models" in page.locator("section", has_text="Changes to this key").inner_text()
        session.shot("key-edit")
        page.get_by_label("inference").uncheck()
        page.get_by_label("jobs").uncheck()
        assert submit(page, page.get_by_role("button", name="Save key")).status == 422
        assert page.get_by_role("alert").inner_text() == "Scopes: pick at least one"
        past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
        page.get_by_label("inference").check()
        page.get_by_label(re.compile("^Expires at")).fill(past)
        assert submit(page, page.get_by_role("button", name="Save key")).status == 422
        assert "Expires at: must be in the future" in page.get_by_role("alert").inner_text()
        assert api.get(f"/api/keys/{kept['id']}").json()["expires_at"] is None

        # Rotation: the new key is shown once and works; the old one lives for the grace period.
        session.goto(f"/ui/keys/{kept['id']}")
        page.get_by_label("Grace period for the old key").select_option(label="1 hour")
        submit(page, page.get_by_role("button", name="Rotate key"))
        new_key = page.locator("#new-key-value").input_value()
        assert new_key.startswith("ih-") and new_key != kept["key"]
        assert page.get_by_role("button", name="Copy the new API key to the clipboard").is_visible()
        assert "reporting" in page.locator(".new-key").inner_text() and "keeps working until" in page.locator(
            ".new-key").inner_text()  # fmt: skip
        session.shot("key-rotated")
        wait_until(lambda: _status(server, new_key) == 200, "the rotated key to work")
        assert _status(server, kept["key"]) == 200  # within its grace period
        old = api.get(f"/api/keys/{kept['id']}").json()
        left = datetime.fromisoformat(old["expires_at"]) - datetime.now(UTC)
        assert timedelta(minutes=55) < left <= timedelta(hours=1), left
        rotated = next(k for k in api.get(f"/api/tenants/{tenant['id']}/keys").json()["data"]
                       if k["name"] == "reporting (rotated)")  # fmt: skip
        assert rotated["allowed_models"] == ["smollm2"] and rotated["limits"] == {"rpm": 30}
        # Without grace the old key stops at once.
        session.goto(f"/ui/keys/{rotated['id']}")
        page.get_by_label("Grace period for the old key").select_option("0")
        submit(page, page.get_by_role("button", name="Rotate key"))
        wait_until(lambda: _status(server, new_key) == 401, "the key rotated without grace to stop")
        assert session.page_errors(422) == [], session.errors
        session.close()

        # A tenant admin edits their own tenant's keys, but not the tenant's limits or another tenant's keys.
        session = Session(browser, server.url)
        page = session.page
        session.login(username, PASSWORD)
        assert page.locator("#tenant-edit").count() == 0
        assert "set by a platform admin" in page.locator("section", has_text="Limits and remaining budget").inner_text()
        refused = page.request.post(
            f"/ui/tenants/{tenant['id']}",
            form={"csrf_token": page.locator("meta[name=csrf-token]").get_attribute("content"), "limit_rpm": "1"},
        )
        assert refused.status == 403
        assert api.get(f"/api/tenants/{tenant['id']}").json()["limits"]["rpm"] == 120
        session.goto(f"/ui/keys/{kept['id']}")
        page.get_by_label("Name", exact=True).fill("reporting-old")
        submit(page, page.get_by_role("button", name="Save key"))
        assert api.get(f"/api/keys/{kept['id']}").json()["name"] == "reporting-old"
        assert session.goto(f"/ui/keys/{other_key['id']}").status == 404
        csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
        assert page.request.post(f"/ui/keys/{other_key['id']}/rotate", form={"csrf_token": csrf}).status == 404
        assert _status(server, other_key["key"]) == 200
        assert session.page_errors(404) == [], session.errors
    finally:
        session.close()


def test_job_details(server: InferhubProcess, api: httpx.Client, browser) -> None:
    tenant, other = _tenant(api), _tenant(api)
    key = _key(server, api, tenant["id"], scopes=["inference", "jobs"])
    prompt = f"Say hello to {uuid.uuid4().hex[:6]}."
    submitted = httpx.post(f"{server.url}/v1/jobs", headers={"Authorization": f"Bearer {key['key']}"}, json={
        "type": "chat.completions", "metadata": {"ticket": "OPS-7"},
        "body": {"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": prompt}]}},
        timeout=30)  # fmt: skip
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    owner, stranger = _user(api, tenant["id"]), _user(api, other["id"])
    session = Session(browser, server.url)
    page = session.page
    try:
        session.login(owner, PASSWORD)
        session.goto("/ui/jobs")
        submit(page, page.get_by_role("link", name=f"Details of job {job_id}"))
        assert page.url.endswith(f"/ui/jobs/{job_id}")
        _reload_until(session, f"/ui/jobs/{job_id}",
                      lambda p: p.locator("#job-status").inner_text() == "succeeded", timeout=120)  # fmt: skip
        assert page.get_by_role("heading", name=f"Job {job_id}").is_visible()
        assert prompt in page.locator("#job-body").inner_text()
        assert '"chat.completion"' in page.locator("#job-result").inner_text()
        assert page.locator("#job-attempts").inner_text().startswith("1 of ")
        usage = page.locator("#job-usage").inner_text()
        assert "completion tokens" in usage and "total tokens" in usage, usage
        assert "OPS-7" in page.locator("section", has_text="Metadata").inner_text()
        summary = page.locator("dl.facts").inner_text()
        assert tenant["name"] in summary and "Finished" in summary
        session.shot("job-details")
        session.close()

        # Another tenant's admin: the job does not exist for them.
        session = Session(browser, server.url)
        session.login(stranger, PASSWORD)
        assert session.goto(f"/ui/jobs/{job_id}").status == 404
        assert prompt not in session.page.content() and "OPS-7" not in session.page.content()
        assert session.goto("/ui/jobs/job_does_not_exist").status == 404
        assert session.page_errors(404) == [], session.errors
    finally:
        session.close()


def test_tenant_admin_sees_only_their_tenant(server: InferhubProcess, api: httpx.Client, browser) -> None:
    mine, other = _tenant(api, limits={"daily_tokens": 50000}), _tenant(api)
    _key(server, api, mine["id"], name="team-app")
    username = _user(api, mine["id"])
    session = Session(browser, server.url, viewport={"width": 390, "height": 844})
    page = session.page
    try:
        session.login(username, PASSWORD)
        assert page.url.endswith(f"/ui/tenants/{mine['id']}")
        assert page.get_by_role("link", name="Backends").count() == 0
        assert "team-app" in page.locator("section", has_text="API keys").inner_text()
        session.shot("tenant-phone")
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        response = session.goto(f"/ui/tenants/{other['id']}")
        assert response.status == 404
        session.shot("tenant-admin-404")
        assert session.goto(f"/ui/usage?tenant_id={other['id']}").status == 404
        assert session.goto("/ui/backends").status == 403
        assert session.goto("/ui/tenants").url.endswith(f"/ui/tenants/{mine['id']}")
        session.goto("/ui/playground")
        assert page.locator("#pg-tenant option").all_inner_texts() == [mine["name"]]
        # Console errors from the expected 404/403 document loads are the browser's own, not the pages'.
        assert session.page_errors(403, 404) == [], session.errors
    finally:
        session.close()
