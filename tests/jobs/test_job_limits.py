"""Jobs answer to their key like live requests: rate limits defer them, budgets and revoked keys fail them.

Limits are counted per process here (no Redis), so every job of a test runs in the same worker.
"""

from __future__ import annotations

import httpx
from jobs_support import CHAT, Worker, finished, new_key, submit, usage_rows

from support import InferhubProcess

SLOW_CHAT = {**CHAT, "model": "slow"}


def test_a_rate_limited_job_waits_without_using_up_attempts(api: InferhubProcess, engines) -> None:
    """concurrency=1: of two jobs taken together, the second is refused (429) until the first is done."""
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_paths = "hang", 2, {"/api/chat"}
    try:
        key = new_key(api, "jobs-throttled", limits=("concurrency=1",))
        ids = [submit(api, key, {**SLOW_CHAT, "messages": [{"role": "user", "content": f"ticket {n}"}]}).json()["id"]
               for n in range(2)]  # fmt: skip
        worker = Worker(api, "throttled", INFERHUB_JOB_LEASE_SECONDS="3")  # claims both at once
        try:
            done = [finished(api, key.headers, job_id) for job_id in ids]
        finally:
            worker.stop()
    finally:
        slow.fail_mode, slow.fail_paths = None, None
    deferred = [e for e in worker.events("job_deferred") if e["job"] in ids]
    assert deferred and all(e["code"] == "concurrency_exceeded" and e["retry_in"] >= 1 for e in deferred)
    assert [j["status"] for j in done] == ["succeeded", "succeeded"], done
    assert [j["attempts"] for j in done] == [1, 1]  # waiting for a limit is not a failed attempt
    # One record per job, with its real tokens: no refusal record took the job's place.
    rows = usage_rows(api, key)
    assert sorted((r["status"], r["completion_tokens"]) for r in rows) == sorted(
        (200, j["usage"]["completion_tokens"]) for j in done
    ), rows


def test_a_job_over_its_budget_fails_with_the_reason(api: InferhubProcess, worker: Worker) -> None:
    key = new_key(api, "jobs-budget", limits=("daily_tokens=1",))
    first = finished(api, key.headers, submit(api, key, CHAT).json()["id"])
    assert first["status"] == "succeeded"  # the budget is checked before a request, counted after it
    second = finished(api, key.headers, submit(api, key, CHAT).json()["id"])
    assert second["status"] == "failed" and second["attempts"] == 1, second
    assert second["error"]["code"] == "budget_exceeded" and second["error"]["status"] == 429
    assert "daily tokens budget" in second["error"]["message"]
    rows = usage_rows(api, key)
    assert sorted(r["status"] for r in rows) == [200, 429], rows


def test_jobs_of_a_revoked_or_expired_key_do_not_run(api: InferhubProcess) -> None:
    revoked, expired = new_key(api, "jobs-revoked"), new_key(api, "jobs-expired")
    jobs = {name: submit(api, key, CHAT).json()["id"] for name, key in (("revoked", revoked), ("expired", expired))}
    assert httpx.delete(f"{api.url}/api/keys/{revoked.id}", headers=api.headers).status_code == 200
    reply = httpx.patch(f"{api.url}/api/keys/{expired.id}", headers=api.headers,
                        json={"expires_at": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert reply.status_code == 200 and reply.json()["active"] is False
    worker = Worker(api, "key-check", INFERHUB_JOB_LEASE_SECONDS="3")
    try:
        # The keys themselves are refused now, so the platform admin looks at their jobs.
        done = {name: finished(api, api.headers, job_id) for name, job_id in jobs.items()}
    finally:
        worker.stop()
    for name, job in done.items():
        assert job["status"] == "failed" and job["error"]["code"] == f"key_{name}", job
        assert f"has been {name}" in job["error"]["message"]
    assert usage_rows(api, revoked) == [] and usage_rows(api, expired) == []
