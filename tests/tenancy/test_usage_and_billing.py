"""Usage records and billing: one record per request (also refused and failed ones), cost fixed at record time,
aggregates, CSV, monthly statements, the request log, and no lost records when the server stops under load.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from support import InferhubProcess

MODEL = "llama3.1:8b"
OTHER = "phi3:mini"
BROKEN = "broken:1b"
PRICES = {MODEL: (Decimal(1000), Decimal(2000)), OTHER: (Decimal(300), Decimal(600))}  # per million tokens
NEW_PRICE = (Decimal(5000), Decimal(7000))
MONTH = datetime.now(UTC).strftime("%Y-%m")


@dataclass
class Sent:
    """What the client sent and got back; the usage record must say the same."""

    tenant: int
    key: int
    model: str
    status: int
    prompt: int
    completion: int
    cost: Decimal
    backend: str | None
    request_bytes: int
    response_bytes: int | None
    messages: list[dict[str, str]]
    completion_text: str | None


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> Iterator[str]:
    postgres = EmbeddedPostgres(Path(tmp_path_factory.mktemp("usage-pg")) / "pg")
    url = postgres.start()
    yield url
    postgres.stop()


@pytest.fixture(scope="module")
def fakes(kit) -> Iterator[dict[str, BackgroundServer]]:
    servers = {
        "ok": kit.start_fake_ollama([MODEL, OTHER]),
        "broken": BackgroundServer(create_fake_ollama_app(models=[BROKEN])).start(),
    }
    servers["broken"].app.state.fail_mode = "500"
    yield servers
    for server in servers.values():
        server.stop()


def _config(kit, fakes: dict[str, BackgroundServer]) -> dict[str, Any]:
    return {
        "backends": kit.ollama_backends(fakes["ok"].url, [MODEL, OTHER])
        + kit.ollama_backends(fakes["broken"].url, [BROKEN]),
        "prices": {m: {"prompt": float(p), "completion": float(c)} for m, (p, c) in PRICES.items()},
    }


@pytest.fixture(scope="module")
def hub(tmp_path_factory, kit, fakes, database_url) -> Iterator[InferhubProcess]:
    process = InferhubProcess(
        tmp_path_factory.mktemp("usage"),
        api_key=kit.PLATFORM_KEY,
        local_models=False,
        config=_config(kit, fakes),
        env=kit.fast_env(INFERHUB_DATABASE_URL=database_url),
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def platform(hub, kit) -> Iterator[Any]:
    api = kit.Api(hub.url, hub.api_key)
    yield api
    api.close()


@pytest.fixture(scope="module")
def world(platform) -> dict[str, Any]:
    a = platform.tenant("usage-a")
    b = platform.tenant("usage-b", store_payloads=True)
    return {
        "a": a,
        "b": b,
        "a_main": platform.key(a["id"], "a-main"),
        "a_llama": platform.key(a["id"], "a-llama", allowed_models=["llama*"]),
        "a_zero": platform.key(a["id"], "a-zero-rpm", limits={"rpm": 0}),
        "b_main": platform.key(b["id"], "b-main"),
    }


@pytest.fixture(scope="module")
def ledger() -> list[Sent]:
    return []


def _cost(model: str, prompt: int, completion: int, price: tuple[Decimal, Decimal] | None = None) -> Decimal:
    p, c = price or PRICES.get(model, (Decimal(0), Decimal(0)))
    return (p * prompt + c * completion) / 1_000_000


def send(
    hub: InferhubProcess,
    ledger: list[Sent],
    key: dict[str, Any],
    text: str,
    *,
    model: str = MODEL,
    stream: bool = False,
    price: tuple[Decimal, Decimal] | None = None,
) -> Sent:
    messages = [{"role": "user", "content": text}]
    body: dict[str, Any] = {"model": model, "messages": messages}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    raw = json.dumps(body).encode()
    response = httpx.post(
        f"{hub.url}/v1/chat/completions",
        content=raw,
        timeout=30,
        headers={"Authorization": f"Bearer {key['key']}", "content-type": "application/json"},
    )
    prompt = completion = 0
    content: str | None = None
    if response.status_code == 200 and stream:
        chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        usage = next(c["usage"] for c in chunks if c.get("usage"))
        content = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    elif response.status_code == 200:
        usage = response.json()["usage"]
        content = response.json()["choices"][0]["message"]["content"]
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    else:
        assert "error" in response.json()
    sent = Sent(
        key["tenant_id"],
        key["id"],
        model,
        response.status_code,
        prompt,
        completion,
        _cost(model, prompt, completion, price),
        response.headers.get("x-inferhub-backend"),
        len(raw),
        len(response.content) if not stream else None,
        messages,
        content,
    )
    ledger.append(sent)
    return sent


def records(platform, key_id: int) -> list[dict[str, Any]]:
    """The key's request log, oldest first."""
    return sorted(platform.request_log(key_id=key_id), key=lambda r: r["id"])


def settled(platform, kit, key_id: int, count: int) -> list[dict[str, Any]]:
    """Wait for ``count`` records of the key, then make sure no more arrive (a few flush intervals)."""
    kit.wait_until(lambda: len(records(platform, key_id)) >= count, f"{count} usage records of key {key_id}")
    time.sleep(0.6)  # three flush intervals: a duplicate would show up by now
    rows = records(platform, key_id)
    assert len(rows) == count, rows
    return rows


def test_every_request_leaves_exactly_one_record(hub, platform, world, ledger, kit):
    a_main, a_llama, a_zero, b_main = (world[k] for k in ("a_main", "a_llama", "a_zero", "b_main"))
    expected = {
        (a_main["id"], 200): [
            send(hub, ledger, a_main, "one two"),
            send(hub, ledger, a_main, "three", stream=True),
            send(hub, ledger, a_main, "four five six", model=OTHER),
        ],
        (a_main["id"], 502): [send(hub, ledger, a_main, "upstream fails", model=BROKEN)],
        (a_main["id"], 404): [send(hub, ledger, a_main, "no such model", model="nope:1b")],
        (a_llama["id"], 200): [send(hub, ledger, a_llama, "seven eight")],
        (a_llama["id"], 403): [send(hub, ledger, a_llama, "not allowed", model=OTHER)],
        (a_zero["id"], 429): [send(hub, ledger, a_zero, "refused"), send(hub, ledger, a_zero, "refused again")],
        (b_main["id"], 200): [
            send(hub, ledger, b_main, "nine ten eleven"),
            send(hub, ledger, b_main, "twelve", stream=True),
        ],
        (b_main["id"], 502): [send(hub, ledger, b_main, "upstream fails", model=BROKEN)],
    }
    for (_, status), sent in expected.items():
        assert [s.status for s in sent] == [status] * len(sent), sent
    for key in (a_main, a_llama, a_zero, b_main):
        mine = [s for s in ledger if s.key == key["id"]]
        rows = settled(platform, kit, key["id"], len(mine))
        for row, sent in zip(rows, mine, strict=True):
            assert (row["tenant_id"], row["key_id"], row["model"], row["status"]) == (
                sent.tenant,
                sent.key,
                sent.model,
                sent.status,
            ), row
            assert (row["prompt_tokens"], row["completion_tokens"]) == (sent.prompt, sent.completion), row
            assert Decimal(row["cost"]) == sent.cost, row
            assert row["backend"] == sent.backend, row
            assert row["endpoint"] == "/v1/chat/completions"
            if sent.status == 200:
                assert sent.prompt > 0 and sent.completion > 0 and sent.backend
                assert sent.cost > 0
            else:
                assert row["prompt_tokens"] == row["completion_tokens"] == 0 and Decimal(row["cost"]) == 0


def test_cost_is_fixed_at_record_time(hub, platform, world, ledger, kit):
    key = world["a_main"]
    before = {r["id"]: r for r in records(platform, key["id"])}
    assert any(Decimal(r["cost"]) > 0 for r in before.values())
    platform.ok(
        "PUT",
        f"/api/prices/{MODEL}",
        json={"prompt_per_million": str(NEW_PRICE[0]), "completion_per_million": str(NEW_PRICE[1])},
    )
    listed = {p["model"]: p for p in platform.ok("GET", "/api/prices")["data"]}
    assert Decimal(listed[MODEL]["prompt_per_million"]) == NEW_PRICE[0]

    def new_price_applied() -> bool:
        sent = send(hub, ledger, key, "after the change")
        row = settled(platform, kit, key["id"], len([s for s in ledger if s.key == key["id"]]))[-1]
        old, new = _cost(MODEL, sent.prompt, sent.completion), _cost(MODEL, sent.prompt, sent.completion, NEW_PRICE)
        assert Decimal(row["cost"]) in (old, new), row  # the price reaches the process through NOTIFY
        sent.cost = Decimal(row["cost"])
        return sent.cost == new

    kit.wait_until(new_price_applied, "the new price to be used", timeout=5)
    # Records written before the change keep their cost; the next ones use the new price.
    after = {r["id"]: r for r in records(platform, key["id"])}
    for record_id, row in before.items():
        assert after[record_id]["cost"] == row["cost"]
    latest = send(hub, ledger, key, "one more at the new price", price=NEW_PRICE)
    row = settled(platform, kit, key["id"], len([s for s in ledger if s.key == key["id"]]))[-1]
    assert Decimal(row["cost"]) == latest.cost == _cost(MODEL, latest.prompt, latest.completion, NEW_PRICE)


def _expected(ledger: list[Sent], group: str, tenant: int | None = None) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost": Decimal(0),
            "errors": 0,
        }
    )
    for sent in ledger:
        if tenant is not None and sent.tenant != tenant:
            continue
        name = {
            "tenant": sent.tenant,
            "key": sent.key,
            "model": sent.model,
            "day": datetime.now(UTC).strftime("%Y-%m-%d"),
        }[group]
        row = out[name]
        row["requests"] += 1
        row["prompt_tokens"] += sent.prompt
        row["completion_tokens"] += sent.completion
        row["total_tokens"] += sent.prompt + sent.completion
        row["cost"] += sent.cost
        row["errors"] += sent.status >= 400
    return {k: {**v, "cost": str(v["cost"].quantize(Decimal("0.000001")))} for k, v in out.items()}


@pytest.mark.parametrize("group", ["tenant", "key", "model", "day"])
def test_usage_totals_match_what_was_sent(platform, world, ledger, group):
    for tenant in (world["a"]["id"], world["b"]["id"]):
        rows = platform.usage(group_by=group, tenant_id=tenant)
        got = {r[group]: {k: v for k, v in r.items() if k != group} for r in rows}
        assert got == _expected(ledger, group, tenant), group
    if group == "tenant":  # without a filter the platform sees both tenants (and the numbers are the same)
        both = {r["tenant"]: r for r in platform.usage(group_by="tenant")}
        for tenant in (world["a"]["id"], world["b"]["id"]):
            assert {k: v for k, v in both[tenant].items() if k != "tenant"} == _expected(ledger, "tenant")[tenant]
    # An interval that ends before the first request holds nothing.
    assert platform.usage(group_by=group, tenant_id=world["a"]["id"], to="2000-01-01") == []


@pytest.mark.parametrize("group", ["tenant", "key", "model", "day"])
def test_csv_export_matches_json(platform, world, group):
    params = {"group_by": group, "tenant_id": world["a"]["id"]}
    rows = platform.usage(**params)
    assert rows
    for response in (
        platform.get("/api/usage", params={**params, "format": "csv"}),
        platform.get("/api/usage.csv", params=params),
    ):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert f"usage-by-{group}.csv" in response.headers["content-disposition"]
        parsed = list(csv.DictReader(io.StringIO(response.text)))
        assert parsed == [{k: str(v) for k, v in row.items()} for row in rows]


def test_monthly_statement(platform, world, ledger):
    for tenant in (world["a"], world["b"]):
        statement = platform.ok("GET", f"/api/tenants/{tenant['id']}/statement", params={"month": MONTH})
        assert statement["tenant"] == {"id": tenant["id"], "name": tenant["name"]} and statement["month"] == MONTH
        by_model = _expected(ledger, "model", tenant["id"])
        assert {
            line["model"]: {k: v for k, v in line.items() if k != "model"} for line in statement["lines"]
        } == by_model
        mine = [s for s in ledger if s.tenant == tenant["id"]]
        totals = statement["totals"]
        assert totals["requests"] == len(mine)
        assert totals["prompt_tokens"] == sum(s.prompt for s in mine)
        assert totals["completion_tokens"] == sum(s.completion for s in mine)
        assert Decimal(totals["cost"]) == sum((s.cost for s in mine), Decimal(0)).quantize(Decimal("0.000001"))
        first = datetime.strptime(MONTH, "%Y-%m").replace(tzinfo=UTC)
        earlier = (first - timedelta(days=1)).strftime("%Y-%m")
        empty = platform.ok("GET", f"/api/tenants/{tenant['id']}/statement", params={"month": earlier})
        assert empty["lines"] == [] and empty["totals"]["requests"] == 0 and Decimal(empty["totals"]["cost"]) == 0
    bad = platform.get(f"/api/tenants/{world['a']['id']}/statement", params={"month": "2026-13"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_value"


def test_request_log_shows_client_and_sizes_and_payloads_only_when_stored(platform, world, ledger):
    for name in ("a_main", "b_main"):
        key = world[name]
        rows = records(platform, key["id"])
        mine = [s for s in ledger if s.key == key["id"]]
        assert len(rows) == len(mine)
        for row, sent in zip(rows, mine, strict=True):
            assert row["client_ip"] == "127.0.0.1"
            assert row["request_bytes"] == sent.request_bytes
            assert row["latency_ms"] >= 0 and row["at"]
            if sent.status == 200 and sent.response_bytes is not None:
                assert row["response_bytes"] == sent.response_bytes, row
            elif sent.status == 200:
                assert row["response_bytes"] > 0, row
            if name == "b_main" and sent.status == 200:  # store_payloads=true
                assert row["prompt"] == sent.messages
                assert row["completion"] == sent.completion_text and row["completion"].startswith("echo: ")
            elif name == "b_main":  # a failed request has no completion; its prompt may be kept
                assert row.get("prompt") in (None, sent.messages) and row.get("completion") is None
            else:
                assert "prompt" not in row and "completion" not in row
    # Filters: by status and by model.
    failed = platform.request_log(tenant_id=world["b"]["id"], status=502)
    assert [r["model"] for r in failed] == [BROKEN]
    assert all(r["model"] == OTHER for r in platform.request_log(model=OTHER))


# -- graceful stop under load ---------------------------------------------------------------------------


def test_sigterm_under_load_loses_no_usage_record(tmp_path_factory, kit, fakes, database_url, platform):
    """Requests keep coming while the server stops; every 200 a client received has exactly one record."""
    tenant = platform.tenant("sigterm-team")
    slow = BackgroundServer(create_fake_ollama_app(models=["slowish:1b"])).start()
    slow.app.state.fail_paths, slow.app.state.hang_seconds, slow.app.state.fail_mode = {"/api/chat"}, 0.2, "hang"
    slow.app.state.chunk_delay = 0.02
    config = _config(kit, fakes)
    config["backends"] += kit.ollama_backends(slow.url, ["slowish:1b"])
    home = tmp_path_factory.mktemp("sigterm")
    env = kit.fast_env(INFERHUB_DATABASE_URL=database_url, INFERHUB_USAGE_FLUSH_SECONDS="5")  # flushed at stop
    process = InferhubProcess(home, api_key=kit.PLATFORM_KEY, local_models=False, config=config, env=env).start()
    try:
        key = platform.key(tenant["id"], "under-load", wait=False)
        kit.wait_key(process.url, key["key"])
        ok = 0
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            nonlocal ok
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = kit.chat(
                        process.url, key["key"], f"load {n}", model="slowish:1b", stream=n % 2 == 0, timeout=30
                    )
                except httpx.HTTPError:
                    continue  # refused: the server no longer listens
                if response.status_code == 200 and (n % 2 or response.text.endswith("data: [DONE]\n\n")):
                    with lock:
                        ok += 1

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(12)]
        for thread in threads:
            thread.start()
        kit.wait_until(lambda: ok >= 30, "some requests to complete", timeout=30)
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)  # threads are still sending
        assert process.process.wait(60) == 0
        stop.set()
        for thread in threads:
            thread.join(30)
        process.stop()
        assert ok >= 30
        assert any(e.get("event") == "usage_flushed" and e.get("pending") == 0 for e in process.log_events())
    finally:
        process.stop()
        slow.stop()

    # Restart: the usage table holds exactly one 200 record per 200 response received.
    restarted = InferhubProcess(home, api_key=kit.PLATFORM_KEY, local_models=False, config=config, env=env).start()
    try:
        own = kit.Api(restarted.url, restarted.api_key)
        rows = own.request_log(key_id=key["id"])
        own.close()
    finally:
        restarted.stop()
    statuses = [r["status"] for r in rows]
    assert statuses.count(200) == ok, (ok, sorted(set(statuses)))
    assert len(rows) >= ok
    with psycopg.connect(database_url) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM usage_records WHERE key_id = %s", (key["id"],)
        ).fetchone()
    assert total == distinct == len(rows)
