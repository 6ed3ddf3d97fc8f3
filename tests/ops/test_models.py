"""``inferhub models pull`` and ``models warm`` against fake Ollama nodes and a fake vLLM, as recorded by the fakes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet

from fakes import BackgroundServer, create_fake_ollama_app, create_fake_vllm_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from inferhub.store.database import Database
from inferhub.store.routes import RouteRepository
from support import free_port, run_cli
from support.inferhub_process import base_env

MASTER_KEY = Fernet.generate_key().decode()
NODE_B_KEY = "sk-node-b-PLANTED"


class Fleet:
    def __init__(self, home, env: dict[str, str], nodes: dict[str, BackgroundServer]) -> None:
        self.home, self.env, self.nodes = home, env, nodes

    def cli(self, *args: str, check: bool = True):
        return run_cli(self.home, *args, env=self.env, check=check)

    def calls(self, node: str, path: str) -> list[Any]:
        return [c for c in self.nodes[node].app.state.calls if c.path == path]

    def reset(self) -> None:
        for server in self.nodes.values():
            server.app.state.calls.clear()
            server.app.state.requests.clear()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    nodes = {
        "a": BackgroundServer(create_fake_ollama_app(models=["llama3.1:8b"])).start(),
        "b": BackgroundServer(create_fake_ollama_app(models=["llama3.1:8b"])).start(),
        "c": BackgroundServer(create_fake_ollama_app(models=["phi3:mini"])).start(),
        "vllm": BackgroundServer(create_fake_vllm_app("qwen2.5-7b")).start(),
    }
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("models-pg") / "postgres")
    url = pg.start()
    home = tmp_path_factory.mktemp("models")
    fleet = Fleet(home, base_env(home, INFERHUB_DATABASE_URL=url, INFERHUB_SECRET_KEY=MASTER_KEY), nodes)
    fleet.cli("backends", "add", "llama3.1:8b", nodes["a"].url, "--type", "ollama")
    fleet.cli(
        "backends", "add", "llama3.1:8b", nodes["b"].url, "--type", "ollama", "--api-key", NODE_B_KEY, "--disabled"
    )
    fleet.cli("backends", "add", "phi3:mini", nodes["c"].url, "--type", "ollama")
    fleet.cli("backends", "add", "qwen", nodes["vllm"].url, "--type", "vllm", "--upstream-model", "qwen2.5-7b")
    db = Database(url)
    RouteRepository(db).set_alias("default", "llama3.1:8b", actor="test")
    db.dispose()
    yield fleet
    for server in nodes.values():
        server.stop()
    pg.stop()


def test_pull_on_every_node_serving_the_model(fleet: Fleet) -> None:
    fleet.reset()
    result = fleet.cli("models", "pull", "llama3.1:8b")
    for node in ("a", "b"):  # b is disabled: a node is prepared before it takes traffic
        [call] = fleet.calls(node, "/api/pull")
        assert call.body == {"model": "llama3.1:8b", "stream": True}
    assert fleet.calls("c", "/api/pull") == []
    assert fleet.calls("b", "/api/pull")[0].headers["authorization"] == f"Bearer {NODE_B_KEY}"
    assert "authorization" not in fleet.calls("a", "/api/pull")[0].headers
    out = result.stdout
    for node in ("a", "b"):
        url = fleet.nodes[node].url
        assert f"[{url}] pulling manifest" in out
        assert f"[{url}] downloading sha256:" in out and "100%" in out
        assert f"[{url}] verifying sha256 digest" in out and f"[{url}] success" in out
    ok = [line for line in out.splitlines() if line.startswith("OK    ")]
    assert len(ok) == 2 and all("llama3.1:8b pulled" in line for line in ok), out
    assert any("disabled" in line for line in ok)


def test_pull_on_all_nodes_and_under_another_name(fleet: Fleet) -> None:
    fleet.reset()
    fleet.cli("models", "pull", "qwen2.5:0.5b", "--all-nodes")
    for node in ("a", "b", "c"):
        assert [c.body["model"] for c in fleet.calls(node, "/api/pull")] == ["qwen2.5:0.5b"]
        assert "qwen2.5:0.5b" in fleet.nodes[node].app.state.models  # the node now has it (/api/tags lists it)
    assert fleet.calls("vllm", "/api/pull") == []  # not an Ollama node

    fleet.reset()
    fleet.cli("models", "pull", "default", "--backend-model", "llama3.1:8b-instruct-q4_K_M")  # alias followed
    for node in ("a", "b"):
        assert [c.body["model"] for c in fleet.calls(node, "/api/pull")] == ["llama3.1:8b-instruct-q4_K_M"]
    assert fleet.calls("c", "/api/pull") == []


def test_pull_failures(fleet: Fleet) -> None:
    fleet.nodes["c"].app.state.pullable = set()  # the registry has nothing: Ollama's "file does not exist"
    try:
        result = fleet.cli("models", "pull", "phi3:mini", check=False)
    finally:
        fleet.nodes["c"].app.state.pullable = None
    assert result.returncode == 1
    [fail] = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert fleet.nodes["c"].url in fail and "file does not exist" in fail

    unknown = fleet.cli("models", "pull", "mistral:7b", check=False)
    assert unknown.returncode == 1 and "no Ollama backend serves 'mistral:7b'" in unknown.stderr
    assert "--all-nodes" in unknown.stderr


def test_warm_ollama_loads_with_keep_alive(fleet: Fleet) -> None:
    fleet.reset()
    result = fleet.cli("models", "warm", "default")  # the alias of llama3.1:8b
    for node in ("a", "b"):
        [call] = fleet.calls(node, "/api/generate")
        assert call.body["model"] == "llama3.1:8b" and call.body["prompt"] == ""
        assert call.body["keep_alive"] == "30m"
    assert fleet.calls("b", "/api/generate")[0].headers["authorization"] == f"Bearer {NODE_B_KEY}"
    assert fleet.calls("c", "/api/generate") == []
    ok = [line for line in result.stdout.splitlines() if line.startswith("OK    ")]
    assert len(ok) == 2 and all("llama3.1:8b loaded" in line for line in ok), result.stdout

    fleet.reset()
    fleet.cli("models", "warm", "phi3:mini", "--keep-alive", "2h")
    [call] = fleet.calls("c", "/api/generate")
    assert call.body["keep_alive"] == "2h"


def test_warm_openai_compatible_engine(fleet: Fleet) -> None:
    fleet.reset()
    result = fleet.cli("models", "warm", "qwen")
    [call] = fleet.calls("vllm", "/v1/chat/completions")
    assert call.body["model"] == "qwen2.5-7b" and call.body["max_tokens"] == 1
    assert result.stdout.startswith("OK    ") and fleet.nodes["vllm"].url in result.stdout


def test_warm_reports_a_node_that_is_down(fleet: Fleet) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    fleet.cli("backends", "add", "qwen", down, "--type", "vllm")
    result = fleet.cli("models", "warm", "qwen", check=False)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("OK    ") and fleet.nodes["vllm"].url in line for line in lines)
    assert any(line.startswith("FAIL  ") and down in line and "refused" in line for line in lines)
