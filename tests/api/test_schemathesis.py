"""Schemathesis over the whole OpenAPI document of a running Inferhub: no input makes it answer a 5xx.

Every operation of ``/openapi.json`` (inference, Ollama, jobs, batches, files, RAG, the admin API) gets
generated requests, valid and invalid (wrong types, out-of-range numbers, NUL bytes, nulls, missing
fields), with an admin key; then the stateful run follows the links between operations (create a
tenant, then fetch, patch and delete it). The only check is ``not_a_server_error``: bad input is a 4xx.

The run is bounded and reproducible: a fixed seed, derandomized generation, 40 examples per operation
and 4 for the inference routes. Inference goes to fake engines from ``tests/fakes`` (Ollama for chat,
TEI for embeddings), so the run takes about 40 s; the database is the real embedded PostgreSQL. The
figures (operations, requests, 5xx) are printed (``-s``) and quoted in docs/testing.md.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events

from fakes import BackgroundServer, create_fake_ollama_app, create_fake_tei_app
from inferhub.tenancy.keys import hash_key
from support import InferhubProcess

CHAT_MODEL = "fuzz-chat"
EMBEDDING_MODEL = "fuzz-embed"
SEED = 13
MAX_EXAMPLES = 40
INFERENCE_EXAMPLES = 4
INFERENCE_PATHS = (
    r"^/(v1/(chat/completions|completions|embeddings|rag/query|responses)"
    r"|api/(chat|generate|embed|embeddings)|generate)$"
)
HEALTH_PATHS = r"^/health"
HEALTH_OK = ["1xx", "2xx", "3xx", "4xx", "503"]
# The fuzzer's own key: an id no generated request will guess, so revoking, rotating or narrowing keys
# 1, 2, ... (which the fuzzer does) never locks the run out. The bootstrap key is the one it may break.
FUZZ_KEY = "ih-fuzz-admin-key-schemathesis"
FUZZ_KEY_ID = 1_987_654_321
AUTH = {"Authorization": f"Bearer {FUZZ_KEY}"}


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, BackgroundServer]]:
    ollama = BackgroundServer(create_fake_ollama_app(models=[CHAT_MODEL])).start()
    tei = BackgroundServer(create_fake_tei_app(dim=16, model_id="BAAI/bge-m3")).start()
    yield {"ollama": ollama, "tei": tei}
    ollama.stop()
    tei.stop()


def _install_fuzz_key(hub: InferhubProcess) -> None:
    with psycopg.connect(f"postgresql://postgres@/inferhub?host={hub.home / 'postgres'}", autocommit=True) as db:
        db.execute(
            "INSERT INTO api_keys (id, name, prefix, key_hash, scopes, allowed_models, limits, priority)"
            " VALUES (%s, 'schemathesis', %s, %s, '[\"admin\"]', '[]', '{}', 0)",
            (FUZZ_KEY_ID, FUZZ_KEY[:12], hash_key(FUZZ_KEY)),
        )
        db.execute("SELECT pg_notify('inferhub_changes', 'keys')")


def _rejected(hub: InferhubProcess) -> bool:
    return httpx.get(f"{hub.url}/api/auth/me", headers=AUTH, timeout=10).status_code == 401


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, engines: dict[str, BackgroundServer]) -> Iterator[InferhubProcess]:
    config = {
        "backends": [
            {"model_name": CHAT_MODEL, "backend_type": "ollama", "endpoint_url": engines["ollama"].url,
             "discover_models": False},
            {"model_name": EMBEDDING_MODEL, "backend_type": "tei", "endpoint_url": engines["tei"].url},
        ],
    }  # fmt: skip
    env = {
        "INFERHUB_RUN_JOB_WORKER": "false",  # jobs stay queued: no webhooks to generated URLs
        "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0",
    }
    process = InferhubProcess(tmp_path_factory.mktemp("schemathesis"), local_models=False, config=config, env=env)
    with process:
        _install_fuzz_key(process)
        deadline = time.monotonic() + 30
        while _rejected(process):
            assert time.monotonic() < deadline, "the fuzzer's key never reached the process"
            time.sleep(0.1)
        yield process


@dataclass
class FuzzRun:
    """What the run did, per phase: requests per operation, every 5xx response, failed checks."""

    operations: int = 0
    requests: dict[str, collections.Counter[str]] = field(default_factory=lambda: collections.defaultdict(
        collections.Counter))  # fmt: skip
    server_errors: dict[str, collections.Counter[str]] = field(default_factory=lambda: collections.defaultdict(
        collections.Counter))  # fmt: skip
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    transitions: int = 0
    seconds: float = 0.0

    def record(self, phase: str, recorder: Any) -> None:
        for case_id, interaction in recorder.interactions.items():
            node = recorder.cases.get(case_id)
            label = node.value.operation.label if node is not None else recorder.label
            self.requests[phase][label] += 1
            status = interaction.response.status_code if interaction.response is not None else 0
            if status >= 500 and not (status == 503 and label.startswith("GET /health")):
                self.server_errors[phase][f"{label} -> {status}"] += 1

    def summary(self) -> str:
        exercised = {label for counter in self.requests.values() for label in counter}
        total = sum(sum(c.values()) for c in self.requests.values())
        errors = sum(sum(c.values()) for c in self.server_errors.values())
        distinct = {label for counter in self.server_errors.values() for label in counter}
        lines = [f"schemathesis {schemathesis.__version__}: "
                 f"{self.operations} operations, {len(exercised)} exercised, {total} requests, {errors} 5xx "
                 f"responses ({len(distinct)} distinct operation/status), {self.transitions} stateful links, "
                 f"{self.seconds:.0f} s"]  # fmt: skip
        for phase, counter in self.requests.items():
            lines.append(f"  {phase}: {sum(counter.values())} requests over {len(counter)} operations")
        lines += [f"  5xx ({phase}): {label} x{n}" for phase, c in self.server_errors.items()
                  for label, n in c.most_common()]  # fmt: skip
        lines += [f"  error: {error}" for error in self.errors]
        return "\n".join(lines)


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "headers": AUTH,
        "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none", "allow-x00": True},
        "phases": {"stateful": {"max-steps": 12}},
        "request-timeout": 30,
        "continue-on-failure": True,
        "operations": [
            {"include-path-regex": INFERENCE_PATHS, "generation": {"max-examples": INFERENCE_EXAMPLES}},
            # 503 is what /health and /health/ready are for (the fuzzer disables and deletes backends).
            {"include-path-regex": HEALTH_PATHS, "checks": {"not_a_server_error": {"expected-statuses": HEALTH_OK}}},
        ],
    })  # fmt: skip


@pytest.fixture(scope="module")
def fuzz(hub: InferhubProcess) -> FuzzRun:
    """One run of every phase (examples, coverage, fuzzing, stateful) over the whole document."""
    schema = schemathesis.openapi.from_url(f"{hub.url}/openapi.json", config=_config(), headers=AUTH)
    run = FuzzRun(operations=sum(1 for _ in schema.get_all_operations()))
    started = time.monotonic()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            run.record(str(event.phase), event.recorder)
            run.failures += [f"{event.recorder.label}: {check.name}" for checks in event.recorder.checks.values()
                             for check in checks if check.failure_info is not None]  # fmt: skip
        elif isinstance(event, events.PhaseStarted) and event.payload is not None:
            run.transitions = event.payload.transitions_selected
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {event.value!r}"[:300])
        elif isinstance(event, events.FatalError):
            raise event.exception
    run.seconds = time.monotonic() - started
    print("\n" + run.summary())  # the closing note quotes these figures
    return run


def test_every_operation_of_the_document_is_exercised(fuzz: FuzzRun) -> None:
    exercised = {label for counter in fuzz.requests.values() for label in counter}
    assert fuzz.operations >= 70 and len(exercised) == fuzz.operations, fuzz.summary()


def test_no_generated_request_gets_a_5xx(fuzz: FuzzRun) -> None:
    assert not any(fuzz.server_errors.values()), fuzz.summary()
    assert not fuzz.failures, fuzz.summary()
    assert not fuzz.errors, fuzz.summary()  # a reset connection or a timeout is a server fault too


def test_the_stateful_phase_follows_links(fuzz: FuzzRun) -> None:
    assert fuzz.transitions > 0 and fuzz.requests.get("stateful"), fuzz.summary()
