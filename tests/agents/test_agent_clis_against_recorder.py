"""Codex CLI and Claude Code, as pinned in scripts/ensure-agent-tools.sh and configured by agent_cli,
answer one prompt against a recording server, and send what docs/protocols/agents.md says they send.

These fail when a CLI update or a configuration change alters the requests the gateway's
/v1/responses and /v1/messages routes must accept (a new path, another auth header, a new tool type).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.agent_cli import run_claude, run_codex
from agents.recorder import RecordedRequest, Recorder, ToolCall

PROMPT = "Reply with the word pong"
KEY = "sk-agents-recorder-key"
MODEL = "agents-test-model"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder(reply="pong") as rec:
        yield rec


def _texts(items: list[dict]) -> str:
    """All text of Responses input items or Messages content, joined."""
    out = []
    for item in items:
        content = item.get("content")
        if isinstance(content, str):
            out.append(content)
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return "\n".join(out)


def _only(rec: Recorder, method: str, path: str) -> RecordedRequest:
    calls = rec.matching(method, path)
    assert len(calls) == 1, f"expected one {method} {path}, got:\n{rec.summary()}"
    return calls[0]


# -- Codex CLI ------------------------------------------------------------------------------------


def _check_codex(rec: Recorder, code: int, out: str, err: str) -> dict:
    assert code == 0, f"codex exited {code}\nstdout:\n{out}\nstderr:\n{err[-3000:]}"
    assert out.strip() == "pong", err[-3000:]
    # One turn is one streamed POST /v1/responses, and nothing else reaches the server (no /v1/models).
    assert {(r.method, r.path) for r in rec.requests} == {("POST", "/v1/responses")}, rec.summary()
    call = _only(rec, "POST", "/v1/responses")
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.headers["originator"] == "codex_exec"
    assert call.headers["accept"] == "text/event-stream"
    assert call.headers["content-type"] == "application/json"  # not zstd-compressed
    body = call.body
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["store"] is False
    assert body["include"] == ["reasoning.encrypted_content"]
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert isinstance(body["prompt_cache_key"], str)
    assert isinstance(body["client_metadata"], dict)
    assert {item["type"] for item in body["input"]} == {"message"}
    assert {item["role"] for item in body["input"]} == {"developer", "user"}
    assert PROMPT in _texts(body["input"])
    # With the configuration of agent_cli only function tools are sent (the translator's limit).
    assert {tool["type"] for tool in body["tools"]} == {"function"}
    assert call.translation_error is None  # inferhub.protocols.responses takes it as sent
    return body


def test_codex_exec_answers_through_responses(recorder: Recorder, tmp_path: Path) -> None:
    code, out, err = run_codex(recorder.url, KEY, MODEL, PROMPT, tmp_path)
    body = _check_codex(recorder, code, out, err)
    names = {tool["name"] for tool in body["tools"]}
    assert {"exec_command", "write_stdin"} <= names, names
    assert body["reasoning"] == {"summary": "auto"}


def test_codex_lean_config_fits_a_small_context(recorder: Recorder, tmp_path: Path) -> None:
    code, out, err = run_codex(recorder.url + "/v1", KEY, MODEL, PROMPT, tmp_path, lean=True)
    body = _check_codex(recorder, code, out, err)
    assert "exec_command" not in {tool["name"] for tool in body["tools"]}
    assert len(recorder.requests[0].raw) < 10_000, len(recorder.requests[0].raw)


# -- Claude Code ----------------------------------------------------------------------------------


def _check_claude(rec: Recorder, code: int, out: str, err: str) -> dict:
    assert code == 0, f"claude exited {code}\nstdout:\n{out}\nstderr:\n{err[-3000:]}"
    assert out.strip() == "pong", err[-3000:]
    # HEAD / is a reachability probe (any status will do); the answer is one POST /v1/messages?beta=true.
    # No count_tokens, no /v1/models, no /api/event_logging: those are off or go to the vendor.
    assert {(r.method, r.path) for r in rec.requests} <= {("HEAD", "/"), ("POST", "/v1/messages")}, rec.summary()
    call = _only(rec, "POST", "/v1/messages")
    assert call.query == "beta=true"
    assert call.headers["x-api-key"] == KEY
    assert "authorization" not in call.headers
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert "claude-code-20250219" in call.headers["anthropic-beta"].split(",")
    body = call.body
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert isinstance(body["max_tokens"], int)
    assert isinstance(body["metadata"]["user_id"], str)
    assert all(block["type"] == "text" for block in body["system"])
    assert PROMPT in _texts(body["messages"])
    return body


def _translates(rec: Recorder) -> None:
    call = rec.matching("POST", "/v1/messages")[0]
    assert call.translation_error is None, call.translation_error


def test_claude_print_answers_through_messages(recorder: Recorder, tmp_path: Path) -> None:
    code, out, err = run_claude(recorder.url, KEY, MODEL, PROMPT, tmp_path)
    body = _check_claude(recorder, code, out, err)
    assert body["max_tokens"] == 32000
    assert body["thinking"] == {"type": "adaptive"}
    assert {"Bash", "Read", "Edit"} <= {tool["name"] for tool in body["tools"]}
    # The agent types come as a role "system" message after the first user turn (a beta of its own).
    assert [m["role"] for m in body["messages"]] == ["user", "system"]


def test_claude_default_request_passes_the_messages_translation(recorder: Recorder, tmp_path: Path) -> None:
    code, out, err = run_claude(recorder.url, KEY, MODEL, PROMPT, tmp_path)
    _check_claude(recorder, code, out, err)
    _translates(recorder)


def test_claude_lean_run_sends_no_tools(recorder: Recorder, tmp_path: Path) -> None:
    code, out, err = run_claude(recorder.url, KEY, MODEL, PROMPT, tmp_path, lean=True, max_output_tokens=256)
    body = _check_claude(recorder, code, out, err)
    assert body["tools"] == []
    assert body["max_tokens"] == 256
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert len(recorder.matching("POST", "/v1/messages")[0].raw) < 4_000
    _translates(recorder)


# -- a tool call and its result, the second turn of every agent run -------------------------------

TOOL_PROMPT = "Read note.txt and reply with the word in it"


def _note(tmp_path: Path, name: str) -> Path:
    work = tmp_path / f"{name}-work"  # the working directory agent_cli runs the CLI in
    work.mkdir(parents=True, exist_ok=True)
    (work / "note.txt").write_text("the word is pong\n")
    return work / "note.txt"


def test_codex_sends_the_function_call_and_its_output_back(tmp_path: Path) -> None:
    _note(tmp_path, "codex")
    with Recorder(replies=[ToolCall("exec_command", {"cmd": "cat note.txt"}), "pong"]) as rec:
        code, out, err = run_codex(rec.url, KEY, MODEL, TOOL_PROMPT, tmp_path)
    assert code == 0, err[-3000:]
    assert out.strip() == "pong"
    calls = rec.matching("POST", "/v1/responses")
    assert len(calls) == 2, rec.summary()
    second = calls[1]
    assert second.translation_error is None
    # The whole conversation again (store: false, no previous_response_id), ending with the call and its output.
    assert "previous_response_id" not in second.body
    call, output = second.body["input"][-2:]
    assert call["type"] == "function_call" and call["call_id"] == "call_recorder_0"
    assert call["name"] == "exec_command" and json.loads(call["arguments"]) == {"cmd": "cat note.txt"}
    assert output["type"] == "function_call_output" and output["call_id"] == "call_recorder_0"
    assert isinstance(output["output"], str) and output["output"]


def test_claude_sends_the_tool_use_and_its_result_back(tmp_path: Path) -> None:
    note = _note(tmp_path, "claude")
    with Recorder(replies=[ToolCall("Read", {"file_path": str(note)}), "pong"]) as rec:
        code, out, err = run_claude(rec.url, KEY, MODEL, TOOL_PROMPT, tmp_path)
    assert code == 0, f"{out}\n{err[-3000:]}"
    assert out.strip() == "pong"
    calls = rec.matching("POST", "/v1/messages")
    assert len(calls) == 2, rec.summary()
    use, result = calls[1].body["messages"][-2:]
    assert use["role"] == "assistant"
    assert use["content"] == [
        {"type": "tool_use", "id": "call_recorder_0", "name": "Read", "input": {"file_path": str(note)}}
    ]
    assert result["role"] == "user"
    [block] = result["content"]
    assert block["type"] == "tool_result" and block["tool_use_id"] == "call_recorder_0"
    assert "the word is pong" in block["content"]  # Read ran (read-only tools need no permission in -p)
