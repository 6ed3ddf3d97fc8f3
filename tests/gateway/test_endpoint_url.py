"""An OpenAI-compatible endpoint given as SDK and LiteLLM docs write it, ``http://host:8000/v1``.

Inferhub adds ``/v1/chat/completions`` to a backend's URL itself, so that form used to register, look
healthy, and then have every request answered 404 (``/v1/v1/...``). It is now stored as the engine's root,
from the API (which says so in ``notices``), ``inferhub.yaml`` and ``PATCH``; ``inferhub doctor`` flags a
URL stored with ``/v1`` by an older release and one whose ``/v1/`` paths answer 404.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import psycopg
import pytest

from fakes import BackgroundServer, create_fake_vllm_app
from support import InferhubProcess

MODEL = "deepseek-r1"


@pytest.fixture(scope="module")
def vllm() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_vllm_app(MODEL)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, vllm: BackgroundServer) -> Iterator[InferhubProcess]:
    declared = {"model_name": "from-yaml", "upstream_model": MODEL, "backend_type": "vllm",
                "endpoint_url": f"{vllm.url}/v1/", "discover_models": False}  # fmt: skip
    env = {"INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0"}
    process = InferhubProcess(tmp_path_factory.mktemp("endpoint-url"), local_models=False,
                              config={"backends": [declared]}, env=env)  # fmt: skip
    with process:
        yield process


@pytest.fixture(scope="module")
def admin(hub: InferhubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


def _register(admin: httpx.Client, model_name: str, url: str, backend_type: str = "vllm") -> dict:
    body = {"model_name": model_name, "upstream_model": MODEL, "backend_type": backend_type, "endpoint_url": url,
            "discover_models": False}  # fmt: skip
    response = admin.post("/api/llm-backends", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _answer(hub: InferhubProcess, model: str) -> str:
    client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=hub.api_key, max_retries=0, timeout=30)
    for _ in range(100):  # the new backend reaches the registry through NOTIFY
        if model in {m.id for m in client.models.list().data}:
            break
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    return reply.choices[0].message.content


def _paths(vllm: BackgroundServer) -> list[str]:
    return [call.path for call in vllm.app.state.calls]


def test_a_v1_url_registers_as_the_engine_root_and_requests_reach_the_engine(hub, admin, vllm) -> None:
    created = _register(admin, "from-api", f"{vllm.url}/v1")
    assert created["endpoint_url"] == vllm.url
    assert any("/v1" in notice and vllm.url in notice for notice in created["notices"]), created
    assert _answer(hub, "from-api") == "echo: hi"
    assert "/v1/chat/completions" in _paths(vllm)
    assert not [path for path in _paths(vllm) if path.startswith("/v1/v1")]


def test_the_root_form_registers_unchanged_and_without_a_notice(admin, vllm) -> None:
    created = _register(admin, "root-form", vllm.url)
    assert created["endpoint_url"] == vllm.url and "notices" not in created


def test_a_v1_url_in_inferhub_yaml_is_stored_as_the_root(hub, admin, vllm) -> None:
    stored = {b["model_name"]: b for b in admin.get("/api/llm-backends").json()["data"]}
    assert stored["from-yaml"]["endpoint_url"] == vllm.url
    assert _answer(hub, "from-yaml") == "echo: hi"


def test_patch_with_a_v1_url_stores_the_root(admin, vllm) -> None:
    created = _register(admin, "patched", f"{vllm.url}/other")
    response = admin.patch(f"/api/llm-backends/{created['id']}", json={"endpoint_url": f"{vllm.url}/V1/"})
    assert response.status_code == 200, response.text
    assert response.json()["endpoint_url"] == vllm.url and response.json()["notices"]


def test_doctor_flags_a_stored_v1_url_and_a_url_whose_v1_paths_answer_404(hub, admin, vllm) -> None:
    old = _register(admin, "old-release", vllm.url)
    with psycopg.connect(f"postgresql://postgres@/inferhub?host={hub.home / 'postgres'}", autocommit=True) as db:
        # What a release that kept the URL as given stored.
        db.execute("UPDATE llm_backends SET endpoint_url = %s WHERE id = %s", (f"{vllm.url}/v1", old["id"]))
    # llama.cpp is probed on /health, which this engine answers at any prefix with 404 ("up" for llama-cpp-python)
    created_ok = _register(admin, "root-form-2", f"{vllm.url}/")
    prefixed = _register(admin, "wrong-prefix", f"{vllm.url}/engine", backend_type="llamacpp")
    out = hub.cli("doctor", check=False).stdout
    lines = {line.split(":", 1)[0][6:]: line for line in out.splitlines() if line.startswith(("OK", "WARN", "FAIL"))}
    flagged = lines[f"backend {old['id']} (old-release, vllm)"]
    assert flagged.startswith("FAIL") and "ends in /v1" in flagged and f'"endpoint_url": "{vllm.url}"' in flagged
    not_found = lines[f"backend {prefixed['id']} (wrong-prefix, llamacpp)"]
    assert not_found.startswith("FAIL") and f"{vllm.url}/engine/v1/models answered 404" in not_found, out
    assert lines[f"backend {created_ok['id']} (root-form-2, vllm)"].startswith("OK"), out
