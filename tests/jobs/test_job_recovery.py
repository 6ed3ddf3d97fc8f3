"""Workers that die, freeze or stop: nothing accepted is lost, nothing is done (or billed) twice.

The folder's API has ``INFERHUB_JOB_MAX_ATTEMPTS=3``; workers here hold 3-second leases.
"""

from __future__ import annotations

import os
import signal

from jobs_support import CHAT, MAX_ATTEMPTS, Worker, finished, get_job, new_key, submit, usage_rows, wait_for

from support import InferhubProcess

SLOW_CHAT = {**CHAT, "model": "slow"}


def _chats(engine) -> int:
    return sum(1 for call in engine.app.state.calls if call.path == "/api/chat")


def test_a_worker_killed_mid_job_loses_nothing(api: InferhubProcess, engines) -> None:
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_times = "hang", 4, 1  # only the first chat call hangs
    slow.fail_paths = {"/api/chat"}
    try:
        key = new_key(api, "jobs-crash")
        job = submit(api, key, SLOW_CHAT).json()
        first = Worker(api, "doomed", INFERHUB_JOB_LEASE_SECONDS="3")
        wait_for(lambda: get_job(api, key.headers, job["id"])["status"] == "running")
        first.stop(signal.SIGKILL)
        second = Worker(api, "rescuer", INFERHUB_JOB_LEASE_SECONDS="3")
        try:
            done = finished(api, key.headers, job["id"])
        finally:
            second.stop()
    finally:
        slow.fail_mode, slow.fail_times, slow.fail_paths = None, None, None
    assert done["status"] == "succeeded" and done["attempts"] == 2
    # Every record of this key, whatever its status: one, with the tokens of the run that finished.
    rows = usage_rows(api, key)
    assert [(r["endpoint"], r["status"]) for r in rows] == [("/v1/jobs:chat.completions", 200)], rows
    assert rows[0]["completion_tokens"] == done["usage"]["completion_tokens"] > 0


def test_a_superseded_worker_s_late_result_is_dropped(api: InferhubProcess, engines) -> None:
    """A frozen worker loses its lease; when it wakes up after another finished the job, it records nothing."""
    slow = engines["slow"].app.state
    # The first call answers after 3 s, while the worker that made it is stopped: when it runs again, its
    # result is (most often) there to be recorded, or its lost lease stops it first. Neither may count.
    slow.fail_mode, slow.hang_seconds, slow.fail_times, slow.fail_paths = "hang", 3, 1, {"/api/chat"}
    try:
        key = new_key(api, "jobs-frozen")
        before = _chats(engines["slow"])
        job = submit(api, key, SLOW_CHAT).json()
        frozen = Worker(api, "frozen", INFERHUB_JOB_LEASE_SECONDS="3")
        wait_for(lambda: _chats(engines["slow"]) > before)  # its upstream call is under way
        os.kill(frozen.process.pid, signal.SIGSTOP)
        rescuer = Worker(api, "after-frozen", INFERHUB_JOB_LEASE_SECONDS="3")
        try:
            done = finished(api, key.headers, job["id"])
            os.kill(frozen.process.pid, signal.SIGCONT)
            late = wait_for(lambda: [e for e in frozen.events("job_finished") if e["job"] == job["id"]])
        finally:
            os.kill(frozen.process.pid, signal.SIGCONT)
            frozen.stop()
            rescuer.stop()
    finally:
        slow.fail_mode, slow.fail_times, slow.fail_paths = None, None, None
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert late[0]["recorded"] is False
    assert get_job(api, key.headers, job["id"])["result"] == done["result"]
    rows = usage_rows(api, key)
    assert len(rows) == 1 and rows[0]["status"] == 200, rows


def test_a_job_whose_worker_keeps_dying_fails_after_max_attempts(api: InferhubProcess, engines) -> None:
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_paths = "hang", 120, {"/api/chat"}  # every call hangs
    try:
        key = new_key(api, "jobs-doomed")
        job = submit(api, key, SLOW_CHAT).json()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            doomed = Worker(api, f"dies-{attempt}", INFERHUB_JOB_LEASE_SECONDS="3")
            wait_for(lambda n=attempt: (j := get_job(api, key.headers, job["id"]))["status"] == "running"
                     and j["attempts"] == n)  # fmt: skip
            doomed.stop(signal.SIGKILL)
        last = Worker(api, "sees-it-fail", INFERHUB_JOB_LEASE_SECONDS="3")
        try:
            done = finished(api, key.headers, job["id"])
        finally:
            last.stop()
    finally:
        slow.fail_mode, slow.fail_paths = None, None
    assert done["status"] == "failed" and done["attempts"] == MAX_ATTEMPTS, done
    assert done["error"]["code"] == "worker_lost"
    assert f"attempt {MAX_ATTEMPTS} of {MAX_ATTEMPTS}" in done["error"]["message"]
    assert [e for e in last.events("job_abandoned") if e["job"] == job["id"]]
    assert not [e for e in last.events("job_finished") if e["job"] == job["id"]]  # not taken up a 4th time


def test_transient_errors_are_retried_with_backoff(api: InferhubProcess, engines, worker: Worker) -> None:
    flaky = engines["flaky"].app.state  # its own engine: no other test's jobs use up the failures
    flaky.fail_mode, flaky.fail_times, flaky.fail_paths = "500", 2, {"/api/chat"}
    try:
        key = new_key(api, "jobs-retry")
        job = submit(api, key, {**CHAT, "model": "flaky"}).json()
        done = finished(api, key.headers, job["id"])
    finally:
        flaky.fail_mode, flaky.fail_times, flaky.fail_paths = None, None, None
    assert done["status"] == "succeeded" and done["attempts"] == 3, done
    rows = usage_rows(api, key)
    assert len(rows) == 1 and rows[0]["status"] == 200, rows


def test_transient_errors_fail_the_job_after_max_attempts(api: InferhubProcess, engines, worker: Worker) -> None:
    flaky = engines["flaky"].app.state
    flaky.fail_mode, flaky.fail_times, flaky.fail_paths = "500", None, {"/api/chat"}
    try:
        key = new_key(api, "jobs-retry-exhausted")
        job = submit(api, key, {**CHAT, "model": "flaky"}).json()
        done = finished(api, key.headers, job["id"])
    finally:
        flaky.fail_mode, flaky.fail_paths = None, None
    assert done["status"] == "failed" and done["attempts"] == MAX_ATTEMPTS, done
    assert done["error"]["status"] == 502 and "500" in done["error"]["message"]


def test_sigterm_hands_running_jobs_back(api: InferhubProcess, engines) -> None:
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_times, slow.fail_paths = "hang", 20, 1, {"/api/chat"}
    try:
        key = new_key(api, "jobs-release")
        job = submit(api, key, SLOW_CHAT).json()
        first = Worker(api, "leaving", INFERHUB_JOB_LEASE_SECONDS="60")
        wait_for(lambda: get_job(api, key.headers, job["id"])["status"] == "running")
        first.stop(signal.SIGTERM)  # graceful: the job goes back to the queue at once, not after the lease
        assert get_job(api, key.headers, job["id"])["status"] == "queued"
        assert first.events("job_released")
        second = Worker(api, "taking-over")
        try:
            done = finished(api, key.headers, job["id"])
        finally:
            second.stop()
    finally:
        slow.fail_mode, slow.fail_times, slow.fail_paths = None, None, None
    assert done["status"] == "succeeded" and done["attempts"] == 1
