"""Files and batches belong to a tenant; finished work, files and batches are purged after the retention period."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
from jobs_support import CHAT, Key, Worker, finished, new_key, submit, wait_for

from support import InferhubProcess


def _line(custom_id: str, model: str = "m") -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": {**CHAT, "model": model}})  # fmt: skip


def _upload(api: InferhubProcess, key: Key, *lines: str) -> dict[str, Any]:
    reply = httpx.post(f"{api.url}/v1/files", headers=key.headers, data={"purpose": "batch"},
                       files={"file": ("input.jsonl", "\n".join(lines).encode())})  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply.json()


def _batch(api: InferhubProcess, key: Key, file_id: str) -> dict[str, Any]:
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    reply = httpx.post(f"{api.url}/v1/batches", headers=key.headers, json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _get(api: InferhubProcess, key: Key, path: str) -> httpx.Response:
    return httpx.get(f"{api.url}{path}", headers=key.headers)


def _completed(api: InferhubProcess, key: Key, batch_id: str) -> dict[str, Any]:
    return wait_for(lambda: (b := _get(api, key, f"/v1/batches/{batch_id}").json())["status"] == "completed" and b)


def test_tenant_b_cannot_see_download_or_cancel_tenant_a_files_and_batches(api: InferhubProcess) -> None:
    api.cli("tenants", "create", "files-a")
    api.cli("tenants", "create", "files-b")
    a, b = new_key(api, "fa", tenant="files-a"), new_key(api, "fb", tenant="files-b")
    upload = _upload(api, a, _line("one"), _line("two"))
    batch = _batch(api, a, upload["id"])  # no worker runs: the batch stays in progress

    for path in (f"/v1/files/{upload['id']}", f"/v1/files/{upload['id']}/content", f"/v1/batches/{batch['id']}"):
        reply = _get(api, b, path)
        assert reply.status_code == 404 and reply.json()["error"]["type"] == "invalid_request_error", path
    assert httpx.delete(f"{api.url}/v1/files/{upload['id']}", headers=b.headers).status_code == 404
    assert httpx.post(f"{api.url}/v1/batches/{batch['id']}/cancel", headers=b.headers).status_code == 404
    stolen = httpx.post(f"{api.url}/v1/batches", headers=b.headers, json={
        "input_file_id": upload["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})  # fmt: skip
    assert stolen.status_code == 404 and stolen.json()["error"]["param"] == "file_id"
    assert upload["id"] not in {f["id"] for f in _get(api, b, "/v1/files").json()["data"]}
    assert batch["id"] not in {x["id"] for x in _get(api, b, "/v1/batches").json()["data"]}

    # A still has all of it, untouched by B's attempts.
    assert _get(api, a, f"/v1/files/{upload['id']}/content").content.count(b"custom_id") == 2
    assert _get(api, a, f"/v1/batches/{batch['id']}").json()["status"] == "in_progress"
    assert batch["id"] in {x["id"] for x in _get(api, a, "/v1/batches").json()["data"]}

    worker = Worker(api, "files-tenancy", INFERHUB_JOB_LEASE_SECONDS="3")
    try:
        done = _completed(api, a, batch["id"])
    finally:
        worker.stop()
    assert _get(api, a, f"/v1/files/{done['output_file_id']}/content").status_code == 200
    assert _get(api, b, f"/v1/files/{done['output_file_id']}/content").status_code == 404


def _age(database: str, table: str, column: str, ids: list[str], days: int = 40) -> None:
    """Move rows back in time (retention is in days; the test cannot wait that long)."""
    with psycopg.connect(database, autocommit=True) as conn:
        moved = conn.execute(f"UPDATE {table} SET {column} = now() - make_interval(days => %s) WHERE id = ANY(%s)",
                             (days, ids)).rowcount  # fmt: skip
    assert moved == len(ids)


def test_finished_jobs_batches_and_files_are_purged_after_retention(
    api: InferhubProcess, database: str, engines, worker: Worker
) -> None:
    key = new_key(api, "retention")
    old_job, new_job = (finished(api, key.headers, submit(api, key, CHAT).json()["id"]) for _ in range(2))
    old_input = _upload(api, key, _line("good"), "not json")
    old_batch = _completed(api, key, _batch(api, key, old_input["id"])["id"])
    batch_job = json.loads(_get(api, key, f"/v1/files/{old_batch['output_file_id']}/content").text)["response"]
    assert _get(api, key, f"/v1/jobs/{batch_job['request_id']}").status_code == 200
    new_file = _upload(api, key, _line("later"))
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_paths = "hang", 60, {"/api/chat"}
    try:
        open_input = _upload(api, key, _line("pending", model="slow"))
        open_batch = _batch(api, key, open_input["id"])  # its one job hangs: the batch stays open

        _age(database, "jobs", "finished_at", [old_job["id"]])
        _age(database, "batches", "completed_at", [old_batch["id"]])
        _age(database, "files", "created_at",
             [old_input["id"], old_batch["output_file_id"], old_batch["error_file_id"], open_input["id"]])  # fmt: skip
        purger = Worker(api, "purger", INFERHUB_JOB_LEASE_SECONDS="3")  # a worker purges when it starts
        try:
            wait_for(lambda: _get(api, key, f"/v1/batches/{old_batch['id']}").status_code == 404)
            purged = purger.events("jobs_purged")
        finally:
            purger.stop()
        gone = [f"/v1/jobs/{old_job['id']}", f"/v1/jobs/{batch_job['request_id']}", f"/v1/files/{old_input['id']}",
                f"/v1/files/{old_batch['output_file_id']}", f"/v1/files/{old_batch['error_file_id']}"]  # fmt: skip
        # The open batch's input is as old as the purged files, but a batch still running keeps it.
        kept = [f"/v1/jobs/{new_job['id']}", f"/v1/files/{new_file['id']}", f"/v1/batches/{open_batch['id']}",
                f"/v1/files/{open_input['id']}"]  # fmt: skip
        assert {path: _get(api, key, path).status_code for path in gone} == dict.fromkeys(gone, 404)
        assert {path: _get(api, key, path).status_code for path in kept} == dict.fromkeys(kept, 200)
        assert purged and purged[0]["batches"] >= 1 and purged[0]["files"] >= 3
        httpx.post(f"{api.url}/v1/batches/{open_batch['id']}/cancel", headers=key.headers)
    finally:
        slow.fail_mode, slow.fail_paths = None, None
