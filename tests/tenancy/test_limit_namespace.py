"""Limiter counters in Redis belong to one installation (its database), not to the Redis database.

Two installations (two homes, two embedded PostgreSQL databases) share one Redis database. Their first
tenants have the same id; before the counters were namespaced by installation, the second installation's
tenant started with the first one's spent budget, and so did the tenant of a database made afresh later.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes import BackgroundServer
from support import InferhubProcess

REDIS_URL = "redis://127.0.0.1:6379/13"
MODEL = "llama3.1:8b"
BUDGET = 15  # "one two three" costs 7 tokens at the fake: three requests are admitted, the fourth is refused


@pytest.fixture(scope="module")
def redis_db() -> Iterator[None]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc})")
    client.flushdb()  # once, for this module: the test itself must not need it
    yield
    client.close()


@pytest.fixture(scope="module")
def fake(kit) -> Iterator[BackgroundServer]:
    server = kit.start_fake_ollama([MODEL])
    yield server
    server.stop()


def _install(kit, home: Path, fake: BackgroundServer) -> InferhubProcess:
    return InferhubProcess(
        home, api_key=kit.PLATFORM_KEY, local_models=False,
        config={"backends": kit.ollama_backends(fake.url, [MODEL])},
        env=kit.fast_env(INFERHUB_REDIS_URL=REDIS_URL),
    ).start()  # fmt: skip


def _spend_budget(kit, hub: InferhubProcess) -> tuple[int, list[int]]:
    """A new tenant with a daily token budget; its key spends until refused. Returns (tenant id, statuses)."""
    api = kit.Api(hub.url, hub.api_key)
    try:
        tenant = api.tenant("spender", limits={"daily_tokens": BUDGET})
        key = api.key(tenant["id"], "spend")["key"]
        statuses = []
        for _ in range(6):
            statuses.append(kit.chat(hub.url, key, "one two three").status_code)
            if statuses[-1] != 200:
                break
        return tenant["id"], statuses
    finally:
        api.close()


def test_installations_sharing_a_redis_database_do_not_share_counts(tmp_path: Path, kit, redis_db, fake) -> None:
    first = _install(kit, tmp_path / "first", fake)
    second = _install(kit, tmp_path / "second", fake)
    try:
        first_id, first_statuses = _spend_budget(kit, first)
        second_id, second_statuses = _spend_budget(kit, second)
    finally:
        first.stop()
        second.stop()
    assert first_id == second_id  # the same tenant id in both databases: the case that shared a counter
    assert first_statuses == [200, 200, 200, 429]
    assert second_statuses == [200, 200, 200, 429]  # its own budget, not what is left of the first's


def test_a_new_database_does_not_inherit_the_counts_of_an_old_one(tmp_path: Path, kit, redis_db, fake) -> None:
    old = _install(kit, tmp_path / "old", fake)
    try:
        old_id, old_statuses = _spend_budget(kit, old)
    finally:
        old.stop()
    assert old_statuses[-1] == 429
    new = _install(kit, tmp_path / "new", fake)  # a fresh database; the old one's counters are still in Redis
    try:
        new_id, new_statuses = _spend_budget(kit, new)
    finally:
        new.stop()
    assert new_id == old_id
    assert new_statuses == [200, 200, 200, 429]
