"""The OpenAI Batch API with the official SDK, and a job on the embedded model, against the default install."""

from __future__ import annotations

import io
import json
import time

import httpx
import openai
import pytest

from support import InferhubProcess


def _wait(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def _line(custom_id: str, content: str, url: str = "/v1/chat/completions") -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": "smollm2", "messages": [{"role": "user", "content": content}], "max_tokens": 4,
                     "temperature": 0}}  # fmt: skip


def test_job_on_the_embedded_model(inferhub: InferhubProcess) -> None:
    headers = inferhub.headers
    body = {"type": "chat.completions", "body": {"model": "smollm2", "max_tokens": 5,
                                                 "messages": [{"role": "user", "content": "Say hi."}]}}  # fmt: skip
    job = httpx.post(f"{inferhub.url}/v1/jobs", headers=headers, json=body).json()
    done = _wait(lambda: (j := httpx.get(f"{inferhub.url}/v1/jobs/{job['id']}", headers=headers).json())["status"]
                 in ("succeeded", "failed") and j)  # fmt: skip
    assert done["status"] == "succeeded"
    assert done["result"]["choices"][0]["message"]["content"].strip()
    assert 0 < done["usage"]["completion_tokens"] <= 5


def test_openai_sdk_batch_flow_with_good_and_malformed_lines(openai_client: openai.OpenAI) -> None:
    lines = [
        json.dumps(_line("good-1", "Name a fruit.")),
        "this is not json",
        json.dumps(_line("good-2", "Name a colour.")),
        json.dumps({"custom_id": "wrong-url", **{k: v for k, v in _line("x", "y").items() if k != "custom_id"},
                    "url": "/v1/embeddings"}),
        json.dumps({**_line("no-messages", ""), "body": {"model": "smollm2", "messages": []}}),
        json.dumps({**_line("unknown-model", "hi"), "body": {"model": "gpt-17", "messages": [
            {"role": "user", "content": "hi"}]}}),
        json.dumps(_line("good-3", "Name an animal.")),
    ]
    upload = openai_client.files.create(file=("batch.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
    assert upload.purpose == "batch" and upload.bytes > 0
    assert openai_client.files.retrieve(upload.id).filename == "batch.jsonl"

    batch = openai_client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                         completion_window="24h", metadata={"run": "nightly"})  # fmt: skip
    assert batch.status in ("validating", "in_progress")
    batch = _wait(lambda: (b := openai_client.batches.retrieve(batch.id)).status in ("completed", "failed") and b)
    assert batch.status == "completed"
    assert batch.request_counts.total == 7
    assert batch.request_counts.completed == 3
    assert batch.request_counts.failed == 4
    assert batch.metadata == {"run": "nightly"}

    output = [json.loads(line) for line in openai_client.files.content(batch.output_file_id).text.splitlines()]
    assert [row["custom_id"] for row in output] == ["good-1", "good-2", "good-3"]
    for row in output:
        assert row["response"]["status_code"] == 200
        assert row["response"]["body"]["choices"][0]["message"]["content"]
        assert row["error"] is None
    errors = [json.loads(line) for line in openai_client.files.content(batch.error_file_id).text.splitlines()]
    assert [row["custom_id"] for row in errors] == [None, "wrong-url", "no-messages", "unknown-model"]
    assert errors[0]["error"]["code"] == "invalid_json"
    assert "messages" in errors[2]["error"]["message"]
    assert any(b.id == batch.id for b in openai_client.batches.list())


def test_cancel_a_batch(openai_client: openai.OpenAI) -> None:
    lines = "\n".join(json.dumps(_line(f"c-{i}", f"Count to {i}.")) for i in range(30))
    upload = openai_client.files.create(file=("many.jsonl", io.BytesIO(lines.encode())), purpose="batch")
    batch = openai_client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                         completion_window="24h")  # fmt: skip
    cancelled = openai_client.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled")
    final = _wait(lambda: (b := openai_client.batches.retrieve(batch.id)).status == "cancelled" and b)
    assert final.request_counts.completed + final.request_counts.failed == 30
    assert final.request_counts.failed > 0


def test_batch_api_errors(openai_client: openai.OpenAI, inferhub: InferhubProcess) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        openai_client.files.retrieve("file-nope")
    with pytest.raises(openai.BadRequestError):
        openai_client.batches.create(input_file_id="file-x", endpoint="/v1/images", completion_window="24h")
    reply = httpx.post(f"{inferhub.url}/v1/files", headers=inferhub.headers,
                       files={"file": ("x.jsonl", b"{}")}, data={"purpose": "painting"})  # fmt: skip
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "purpose"
