"""Codex CLI (``codex exec``) and Claude Code (``claude -p``) answer through a real ``inferhub serve``.

The recorder tests pin what the CLIs send; these check that Inferhub's /v1/responses and /v1/messages
routes take it end to end: the answer comes back from an OpenAI-compatible engine (the fake tool engine,
told to answer "pong"), the engine got the request from Inferhub, and the tenant's key has a request-log
row for the route. Then one tool round trip each, and the embedded 2,048-token SmolLM2 with the lean
configuration of agent_cli (docs/protocols/agents.md says what fits).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.agent_cli import run_claude, run_codex
from fakes import BackgroundServer, create_fake_tool_engine_app
from support import InferhubProcess

MODEL = "agent-engine"
EMBEDDED = "smollm2"
PROMPT = "Reply with the word pong"


@pytest.fixture(scope="module")
def engine() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_tool_engine_app(MODEL)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, engine: BackgroundServer) -> Iterator[InferhubProcess]:
    backends = [{"model_name": MODEL, "backend_type": "vllm", "endpoint_url": engine.url, "discover_models": False}]
    env = {"INFERHUB_USAGE_FLUSH_SECONDS": "0.2", "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0"}
    with InferhubProcess(tmp_path_factory.mktemp("agents-hub"), config={"backends": backends}, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def key(hub: InferhubProcess) -> tuple[str, int]:
    """An inference key of a tenant: (secret, key id)."""
    hub.cli("tenants", "create", "agents")
    created = hub.cli("keys", "create", "agents-key", "--scope", "inference", "--tenant", "agents")
    secret, key_id = created.stdout.strip(), int(re.search(r"created key (\d+)", created.stderr).group(1))
    _wait(lambda: httpx.get(f"{hub.url}/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200)
    return secret, key_id


@pytest.fixture
def fake(engine: BackgroundServer) -> Iterator[Any]:
    """The engine's state, answering "pong" without calling tools; reset after each test."""
    state = engine.app.state
    state.requests.clear()
    state.reply, state.call_tools, state.tool_name = "pong", False, None
    yield state
    state.reply, state.call_tools, state.tool_name = None, True, None
    state.tool_arguments = {"city": "Paris"}


def _wait(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def _log_rows(hub: InferhubProcess, key_id: int, endpoint: str, model: str) -> list[dict[str, Any]]:
    rows = httpx.get(f"{hub.url}/api/request-log", params={"key_id": key_id, "limit": 1000}, headers=hub.headers)
    return [r for r in rows.json()["data"] if r["endpoint"] == endpoint and r["model"] == model]


def _chat_bodies(state: Any) -> list[dict[str, Any]]:
    return [b for b in state.requests if isinstance(b, dict) and "messages" in b]


def _check(code: int, out: str, err: str, name: str) -> None:
    assert code == 0, f"{name} exited {code}\nstdout:\n{out}\nstderr:\n{err[-3000:]}"


# -- an OpenAI-compatible engine behind Inferhub ---------------------------------------------------


def test_codex_exec_answers_through_inferhub(hub, key, fake, tmp_path: Path) -> None:
    secret, key_id = key
    code, out, err = run_codex(hub.url, secret, MODEL, PROMPT, tmp_path)
    _check(code, out, err, "codex")
    assert out.strip() == "pong"
    [body] = _chat_bodies(fake)  # one turn, translated to one chat completion
    assert body["model"] == MODEL and body["stream"] is True
    assert PROMPT in str(body["messages"])
    assert {t["function"]["name"] for t in body["tools"]} >= {"exec_command"}
    row = _wait(lambda: next(iter(_log_rows(hub, key_id, "/v1/responses", MODEL)), None))
    assert row["status"] == 200 and row["completion_tokens"] == 1 and row["prompt_tokens"] > 0


def test_claude_print_answers_through_inferhub(hub, key, fake, tmp_path: Path) -> None:
    secret, key_id = key
    code, out, err = run_claude(hub.url, secret, MODEL, PROMPT, tmp_path)
    _check(code, out, err, "claude")
    assert out.strip() == "pong"
    bodies = _chat_bodies(fake)
    assert bodies and all(b["model"] == MODEL for b in bodies)
    assert any(PROMPT in str(b["messages"]) for b in bodies)
    rows = _wait(lambda: [r for r in _log_rows(hub, key_id, "/v1/messages", MODEL) if r["status"] == 200])
    assert rows[0]["completion_tokens"] == 1


def _note(tmp_path: Path, name: str) -> Path:
    work = tmp_path / f"{name}-work"  # the working directory agent_cli runs the CLI in
    work.mkdir(parents=True, exist_ok=True)
    (work / "note.txt").write_text("the word is pong\n")
    return work / "note.txt"


def test_codex_runs_the_engines_tool_call_through_inferhub(hub, key, fake, tmp_path: Path) -> None:
    _note(tmp_path, "codex")
    fake.reply, fake.call_tools, fake.tool_name = None, True, "exec_command"
    fake.tool_arguments = {"cmd": "cat note.txt"}
    code, out, err = run_codex(hub.url, key[0], MODEL, "Read note.txt and reply with the word in it", tmp_path)
    _check(code, out, err, "codex")
    assert out.strip().startswith("The tool said:") and "the word is pong" in out
    first, second = _chat_bodies(fake)
    assert "tool_calls" not in str(first["messages"])
    call, result = second["messages"][-2:]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"]["name"] == "exec_command"
    assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"]


def test_claude_runs_the_engines_tool_call_through_inferhub(hub, key, fake, tmp_path: Path) -> None:
    note = _note(tmp_path, "claude")
    fake.reply, fake.call_tools, fake.tool_name = None, True, "Read"
    fake.tool_arguments = {"file_path": str(note)}
    code, out, err = run_claude(hub.url, key[0], MODEL, "Read note.txt and reply with the word in it", tmp_path)
    _check(code, out, err, "claude")
    assert out.strip().startswith("The tool said:") and "the word is pong" in out
    answered = [b for b in _chat_bodies(fake) if any(m.get("role") == "tool" for m in b["messages"])]
    assert answered, [b["messages"] for b in _chat_bodies(fake)]
    [result] = [m for m in answered[0]["messages"] if m.get("role") == "tool"]
    assert "the word is pong" in str(result["content"])


# -- the embedded 2,048-token model ----------------------------------------------------------------


def _embedded_answer(hub, key_id: int, endpoint: str, code: int, out: str, err: str) -> dict[str, Any]:
    """An answer: exit 0, text on stdout, a 200 row whose prompt fits the 2,048-token context."""
    assert code == 0, f"exit {code}\nstdout:\n{out}\nstderr:\n{err[-3000:]}"
    assert out.strip(), err[-3000:]
    [row] = _wait(lambda: _log_rows(hub, key_id, endpoint, EMBEDDED))
    assert row["status"] == 200 and 0 < row["prompt_tokens"] < 2048, row
    print(f"{endpoint}: prompt_tokens {row['prompt_tokens']}, completion_tokens {row['completion_tokens']}")
    return row


def test_claude_lean_answers_from_the_embedded_model(hub, key, tmp_path: Path) -> None:
    # Room to finish: Claude Code exits 1 when the answer stops at max_tokens (SmolLM2 rambles past 32).
    code, out, err = run_claude(hub.url, key[0], EMBEDDED, PROMPT, tmp_path, lean=True, max_output_tokens=256,
                                timeout=100)  # fmt: skip
    _embedded_answer(hub, key[1], "/v1/messages", code, out, err)


def test_codex_lean_reaches_the_embedded_model(hub, key, tmp_path: Path) -> None:
    # Needs the developer message sent as a system one: llama-cpp-python refuses the developer role.
    # Codex sets no max_output_tokens nor temperature, so SmolLM2 (sampling) sometimes rambles until the
    # context is full: then Codex exits 1 on the incomplete response. Either way the prompt fitted.
    code, out, err = run_codex(hub.url, key[0], EMBEDDED, PROMPT, tmp_path, lean=True, timeout=100)
    if code != 0 and "Incomplete response returned, reason: max_output_tokens" in err:
        [row] = _wait(lambda: _log_rows(hub, key[1], "/v1/responses", EMBEDDED))
        assert row["status"] == 200 and 0 < row["prompt_tokens"] < 2048, row
        assert row["completion_tokens"] >= 1000, row  # it stopped at the context's end, not early
        return
    _embedded_answer(hub, key[1], "/v1/responses", code, out, err)
