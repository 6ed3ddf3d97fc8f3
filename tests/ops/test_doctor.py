"""``inferhub doctor``: OK lines and exit 0 on a healthy install; FAIL lines naming what is wrong, and exit 1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess, free_port, run_cli
from support.inferhub_process import base_env

MASTER_KEY = Fernet.generate_key().decode()
LINE_STATES = ("OK    ", "WARN  ", "FAIL  ")


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(LINE_STATES)]


def _line(output: str, prefix: str) -> str:
    found = [line for line in _lines(output) if line[6:].startswith(prefix)]
    assert found, f"no line for {prefix!r} in:\n{output}"
    return found[0]


@pytest.fixture(scope="module")
def engine() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_ollama_app(models=["llama3.1:8b"])).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, engine: BackgroundServer) -> Iterator[InferhubProcess]:
    config = {"backends": [{"model_name": "llama3.1:8b", "backend_type": "ollama", "endpoint_url": engine.url}]}
    env = {"INFERHUB_SECRET_KEY": MASTER_KEY, "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0"}
    process = InferhubProcess(tmp_path_factory.mktemp("doctor"), local_models=False, config=config, env=env)
    with process:
        yield process


def test_healthy_install(hub: InferhubProcess, engine: BackgroundServer) -> None:
    result = hub.cli("doctor", check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    lines = _lines(out)
    assert len(lines) >= 8 and not [line for line in lines if line.startswith("FAIL")], out
    assert _line(out, "configuration").startswith("OK") and "1 backend(s) declared" in out
    assert _line(out, "home").startswith("OK")
    assert _line(out, "disk").startswith(("OK", "WARN"))  # WARN only if this machine has < 2 GiB free
    assert _line(out, "local models").startswith("OK")
    database = _line(out, "database")
    assert database.startswith("OK") and "migrations current" in database and "embedded" in database
    assert _line(out, "redis").startswith("OK")
    assert _line(out, "master key").startswith("OK") and "INFERHUB_SECRET_KEY" in out
    backend = _line(out, "backend 1 (llama3.1:8b, ollama)")
    assert backend.startswith("OK") and f"{engine.url}/api/tags" in backend
    assert ": 0 failed," in out.strip().splitlines()[-1], out


def test_broken_backend_redis_and_master_key(hub: InferhubProcess) -> None:
    hub.stop()  # doctor starts the embedded PostgreSQL briefly, as every CLI command does
    closed = free_port()
    broken_url = f"http://127.0.0.1:{closed}"
    hub.cli("backends", "add", "ghost", broken_url, "--type", "vllm", "--api-key", "sk-ghost-secret")
    env = {**hub.env, "INFERHUB_REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"}
    result = run_cli(hub.home, "doctor", env=env, check=False)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    ghost = _line(out, "backend 2 (ghost, vllm)")
    assert ghost.startswith("FAIL") and f"{broken_url}/v1/models" in ghost and "refused" in ghost
    assert "inferhub backends disable 2" in ghost
    assert _line(out, "backend 1 (llama3.1:8b, ollama)").startswith("OK")  # the healthy one stays OK
    redis = _line(out, "redis")
    assert redis.startswith("FAIL") and "unreachable" in redis and "hunter2" not in out  # password never shown
    assert _line(out, "master key").startswith("OK")

    other_key = {**hub.env, "INFERHUB_SECRET_KEY": Fernet.generate_key().decode()}
    wrong = run_cli(hub.home, "doctor", env=other_key, check=False)
    assert wrong.returncode == 1
    master = _line(wrong.stdout, "master key")
    assert master.startswith("FAIL") and "cannot decrypt the credentials of backend(s) 2" in master


def test_invalid_configuration(tmp_path) -> None:
    result = run_cli(tmp_path, "doctor", env=base_env(tmp_path, INFERHUB_PORT="not-a-port"), check=False)
    assert result.returncode == 1
    line = _line(result.stdout, "configuration")
    assert line.startswith("FAIL") and "port" in line and "—" in line


def test_invalid_configuration_never_prints_its_values(tmp_path) -> None:
    """A malformed backend (no model_name) with a credential: doctor names the field, not the mapping."""
    planted = "sk-PLANTED-doctor-secret-0123456789"
    (tmp_path / "inferhub.yaml").write_text(
        "backends:\n"
        f"  - backend_type: openai\n    endpoint_url: http://127.0.0.1:9\n    api_key: {planted}\n"
        f"  - model_name: m\n    backend_type: openai\n    endpoint_url: http://127.0.0.1:9\n"
        f"    timeout_seconds: {planted}\n"  # a wrong type: pydantic's message would quote it
    )
    result = run_cli(tmp_path, "doctor", env=base_env(tmp_path), check=False)
    assert result.returncode == 1
    line = _line(result.stdout, "configuration")
    assert line.startswith("FAIL") and "model_name" in line and "timeout_seconds" in line
    assert planted not in result.stdout + result.stderr


def test_missing_model_file_and_unreachable_database(tmp_path) -> None:
    model = tmp_path / "missing.gguf"
    env = base_env(
        tmp_path,
        INFERHUB_LOCAL_CHAT_MODEL_PATH=str(model),
        INFERHUB_DATABASE_URL=(f"postgresql://inferhub:secret@127.0.0.1:{free_port()}/inferhub"),
    )
    result = run_cli(tmp_path, "doctor", env=env, check=False)
    out = result.stdout
    assert result.returncode == 1
    chat = _line(out, "local chat model")
    assert chat.startswith("FAIL") and str(model) in chat and "INFERHUB_LOCAL_CHAT_MODEL_PATH" in chat
    database = _line(out, "database")
    assert database.startswith("FAIL") and "cannot connect" in database and "secret" not in database
    assert _line(out, "backends").startswith("WARN")  # not checked without a database
