"""The stored Responses (``ResponseRepository``) against a real PostgreSQL migrated to head."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, update

from inferhub.errors import InvalidRequest
from inferhub.protocols import responses as protocol
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from inferhub.store import migrate
from inferhub.store.database import Database
from inferhub.store.models import ResponseRow
from inferhub.store.responses import NewResponse, PreviousResponseNotFound, ResponseRepository

run = asyncio.run


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Database]]:
    pg = EmbeddedPostgres(Path(tmp_path_factory.mktemp("responses-pg")) / "pg")
    url = pg.start()
    migrate.upgrade(url)
    db = Database(url)
    yield url, db
    db.dispose()
    pg.stop()


@pytest.fixture(scope="module")
def repo(database: tuple[str, Database]) -> ResponseRepository:
    return ResponseRepository(database[1])


def _tenant() -> int:
    return uuid.uuid4().int % 1_000_000_000


def _item(role: str, text: str) -> dict[str, Any]:
    part = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "id": protocol.new_id("msg"), "role": role, "status": "completed",
            "content": [{"type": part, "text": text}]}  # fmt: skip


def _new(tenant_id: int | None, *, key_id: int = 1, items: list[dict[str, Any]] | None = None,
         previous: str | None = None, background: bool = False, status: str = "in_progress",
         expires_at: datetime | None = None) -> NewResponse:  # fmt: skip
    response_id = protocol.new_id("resp")
    body = {"model": "m", "input": "hi", "background": background, "previous_response_id": previous}
    shell = protocol.response_shell(body, response_id, datetime.now(UTC).timestamp(), status)
    return NewResponse(id=response_id, tenant_id=tenant_id, key_id=key_id, model="m", request=body,
                       input_items=items if items is not None else [_item("user", "hi")], status=status,
                       background=background, response=shell, previous_response_id=previous,
                       expires_at=expires_at)  # fmt: skip


def _finished(record: NewResponse, *outputs: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    assert record.response is not None
    return {**record.response, "status": status, "output": list(outputs)}


def _turn(repo: ResponseRepository, tenant: int, said: str, answer: str, previous: str | None = None):
    new = _new(tenant, items=[_item("user", said)], previous=previous)
    run(repo.create(new))
    reply = _item("assistant", answer)
    run(repo.complete(new.id, _finished(new, reply)))
    return new, reply


def test_create_get_complete_once(repo: ResponseRepository) -> None:
    tenant = _tenant()
    new = _new(tenant)
    created = run(repo.create(new))
    assert (created.id, created.status, created.tenant_id, created.background) == (new.id, "in_progress", tenant, False)
    assert created.response is not None and created.response["status"] == "in_progress"
    assert created.created_at.tzinfo is not None and created.job_id is None

    reply = _item("assistant", "hello")
    done = run(repo.complete(new.id, _finished(new, reply)))
    assert done is not None and done.status == "completed" and done.finished
    stored = run(repo.get(new.id, tenant))
    assert stored is not None and stored.status == "completed"
    assert stored.response["output"] == [reply] and stored.response["status"] == "completed"
    assert stored.input_items == new.input_items and stored.request == new.request
    assert stored.updated_at >= stored.created_at

    # A response ends once: a second result (a late or duplicate worker) changes nothing.
    assert run(repo.complete(new.id, _finished(new, status="failed"))) is None
    assert run(repo.set_status(new.id, "in_progress")) is None
    assert run(repo.get(new.id, tenant)).status == "completed"
    assert run(repo.set_status("resp_missing", "in_progress")) is None


def test_status_override_and_bad_statuses(repo: ResponseRepository) -> None:
    tenant = _tenant()
    new = _new(tenant, background=True, status="queued")
    run(repo.create(new))
    running = run(repo.set_status(new.id, "in_progress", job_id="job_abc"))
    assert running is not None and running.status == "in_progress" and running.job_id == "job_abc"
    assert running.response["status"] == "in_progress"
    with pytest.raises(ValueError):
        run(repo.set_status(new.id, "done"))
    with pytest.raises(ValueError):
        run(repo.complete(new.id, _finished(new), status="in_progress"))
    done = run(repo.complete(new.id, _finished(new), status="incomplete"))
    assert done.status == "incomplete" and done.response["status"] == "incomplete"


def test_another_tenant_sees_nothing_and_cannot_delete(repo: ResponseRepository) -> None:
    owner, other = _tenant(), _tenant()
    new = _new(owner)
    run(repo.create(new))
    assert run(repo.get(new.id, other)) is None
    assert run(repo.get(new.id, None)) is None  # a platform key is not the tenant either
    assert run(repo.input_items(new.id, other)) is None
    assert run(repo.cancel(new.id, other)) is None
    assert run(repo.delete(new.id, other)) is False
    assert run(repo.get(new.id, owner)) is not None
    assert run(repo.delete(new.id, owner)) is True
    assert run(repo.get(new.id, owner)) is None
    assert run(repo.delete(new.id, owner)) is False


def test_keys_without_a_tenant_see_their_own(repo: ResponseRepository) -> None:
    mine = _new(None, key_id=7)
    run(repo.create(mine))
    assert run(repo.get(mine.id, None, key_id=7)) is not None
    assert run(repo.get(mine.id, None, key_id=8)) is None
    assert run(repo.get(mine.id, None)) is not None  # key_id None: an admin key, as for jobs
    assert run(repo.get(mine.id, _tenant())) is None
    assert run(repo.delete(mine.id, None, key_id=8)) is False


def test_history_replays_the_chain_oldest_first(repo: ResponseRepository) -> None:
    tenant = _tenant()
    first, a1 = _turn(repo, tenant, "one", "uno")
    second, a2 = _turn(repo, tenant, "two", "dos", previous=first.id)
    third, a3 = _turn(repo, tenant, "three", "tres", previous=second.id)
    expected = [first.input_items[0], a1, second.input_items[0], a2, third.input_items[0], a3]
    assert run(repo.history(third.id, tenant)) == expected
    assert run(repo.history(first.id, tenant)) == [first.input_items[0], a1]

    # What the route does with it: the replayed items come before the new input, in order.
    chat = protocol.to_chat({"model": "m", "input": "four"}, run(repo.history(third.id, tenant)))
    assert [(m["role"], m["content"]) for m in chat["messages"]] == [
        ("user", "one"), ("assistant", "uno"), ("user", "two"), ("assistant", "dos"),
        ("user", "three"), ("assistant", "tres"), ("user", "four")]  # fmt: skip

    with pytest.raises(PreviousResponseNotFound) as other_tenant:
        run(repo.history(third.id, _tenant()))
    assert other_tenant.value.status_code == 404 and other_tenant.value.param == "previous_response_id"
    with pytest.raises(InvalidRequest, match="longer than 2"):
        run(repo.history(third.id, tenant, max_depth=2))

    assert run(repo.delete(first.id, tenant))
    with pytest.raises(PreviousResponseNotFound) as broken:
        run(repo.history(third.id, tenant))
    assert broken.value.response_id == first.id and first.id in broken.value.message


def test_history_stops_at_another_tenants_link_and_a_running_one(repo: ResponseRepository) -> None:
    owner, intruder = _tenant(), _tenant()
    theirs, _ = _turn(repo, owner, "secret", "kept")
    mine, _ = _turn(repo, intruder, "follow", "up", previous=theirs.id)  # a guessed id in the chain
    with pytest.raises(PreviousResponseNotFound) as caught:
        run(repo.history(mine.id, intruder))
    assert caught.value.response_id == theirs.id

    running = _new(owner)
    run(repo.create(running))
    with pytest.raises(InvalidRequest, match="still in_progress"):
        run(repo.history(running.id, owner))


def test_input_items_pages(repo: ResponseRepository) -> None:
    tenant = _tenant()
    items = [_item("user", f"m{n}") for n in range(5)]
    new = _new(tenant, items=items)
    run(repo.create(new))
    ids = [item["id"] for item in items]

    first = run(repo.input_items(new.id, tenant, limit=2))
    assert first == {"object": "list", "data": [items[4], items[3]], "first_id": ids[4], "last_id": ids[3],
                     "has_more": True}  # fmt: skip
    second = run(repo.input_items(new.id, tenant, limit=2, after=first["last_id"]))
    assert [i["id"] for i in second["data"]] == [ids[2], ids[1]] and second["has_more"] is True
    last = run(repo.input_items(new.id, tenant, limit=2, after=second["last_id"]))
    assert [i["id"] for i in last["data"]] == [ids[0]] and last["has_more"] is False

    ascending = run(repo.input_items(new.id, tenant, order="asc", limit=5))
    assert ascending["data"] == items and ascending["has_more"] is False
    assert run(repo.input_items(new.id, tenant, order="asc", limit=4))["has_more"] is True
    tail = run(repo.input_items(new.id, tenant, order="asc", after=ids[4]))
    assert tail == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}

    for bad in ({"limit": 0}, {"limit": 101}, {"limit": "5"}, {"order": "up"}, {"after": "msg_nope"}):
        with pytest.raises(InvalidRequest) as caught:
            run(repo.input_items(new.id, tenant, **bad))
        assert caught.value.param == next(iter(bad))


def test_cancel_rules(repo: ResponseRepository) -> None:
    tenant = _tenant()
    queued = _new(tenant, background=True, status="queued")
    run(repo.create(queued))
    cancelled = run(repo.cancel(queued.id, tenant))
    assert cancelled.status == "cancelled" and cancelled.response["status"] == "cancelled"
    # The job's late result is dropped; cancelling again answers the same record.
    assert run(repo.complete(queued.id, _finished(queued, _item("assistant", "late")))) is None
    again = run(repo.cancel(queued.id, tenant))
    assert again.status == "cancelled" and again.response["output"] == []

    running = _new(tenant, background=True, status="queued")
    run(repo.create(running))
    run(repo.set_status(running.id, "in_progress", job_id="job_1"))
    stopped = run(repo.cancel(running.id, tenant))
    assert stopped.status == "cancelled" and stopped.job_id == "job_1"

    finished, _ = _turn(repo, tenant, "q", "a")
    with pytest.raises(InvalidRequest, match="background"):  # a foreground response is not cancellable
        run(repo.cancel(finished.id, tenant))
    done = _new(tenant, background=True, status="queued")
    run(repo.create(done))
    run(repo.complete(done.id, _finished(done)))
    assert run(repo.cancel(done.id, tenant)).status == "completed"
    assert run(repo.cancel("resp_missing", tenant)) is None


def test_purge_removes_only_what_retention_is_over_for(repo: ResponseRepository, database) -> None:
    tenant = _tenant()
    old_done, _ = _turn(repo, tenant, "old", "answer")
    old_running = _new(tenant, background=True, status="queued")
    run(repo.create(old_running))
    recent, _ = _turn(repo, tenant, "new", "answer")
    expired = _new(tenant, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    run(repo.create(expired))
    assert run(repo.get(expired.id, tenant)) is None  # past its expiry: gone before it is purged
    with database[1].session() as session:
        aged = datetime.now(UTC) - timedelta(days=40)
        session.execute(update(ResponseRow).where(ResponseRow.id.in_([old_done.id, old_running.id]))
                        .values(created_at=aged))  # fmt: skip

    assert run(repo.purge(datetime.now(UTC) - timedelta(days=30))) == 2
    assert run(repo.get(old_done.id, tenant)) is None
    assert run(repo.get(old_running.id, tenant)) is not None  # its job may still run
    assert run(repo.get(recent.id, tenant)) is not None
    assert run(repo.purge(datetime.now(UTC) - timedelta(days=30))) == 0


def test_the_retention_task_purges_by_the_days_it_is_given(repo: ResponseRepository, database) -> None:
    from inferhub.housekeeping import purge_responses

    tenant = _tenant()
    older, _ = _turn(repo, tenant, "older", "a")
    younger, _ = _turn(repo, tenant, "younger", "b")
    with database[1].session() as session:
        for response_id, days in ((older.id, 8), (younger.id, 6)):
            session.execute(update(ResponseRow).where(ResponseRow.id == response_id)
                            .values(created_at=datetime.now(UTC) - timedelta(days=days)))  # fmt: skip

    async def one_round() -> None:
        task = asyncio.create_task(purge_responses(repo, retention_days=7, interval=3600))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if await repo.get(older.id, tenant) is None:
                break
        task.cancel()

    run(one_round())
    assert run(repo.get(older.id, tenant)) is None
    assert run(repo.get(younger.id, tenant)) is not None


def test_migration_matches_the_model_and_round_trips(database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    url, db = database
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), ResponseRow.metadata)
    indexes = ("add_index", "remove_index")  # the models declare no indexes; the migration has them
    assert [d for d in diff if "responses" in repr(d) and not (isinstance(d, tuple) and d[0] in indexes)] == []

    migrate.downgrade(url, "0009")
    assert "responses" not in inspect(db.engine).get_table_names()
    assert migrate.current_revision(url) == "0009"
    migrate.upgrade(url)
    assert "responses" in inspect(db.engine).get_table_names()
    assert migrate.current_revision(url) == migrate.head_revision(url) == "0010"
