"""One settings object for the whole process.

Read from ``INFERHUB_*`` environment variables, an optional ``.env`` file and an
optional ``inferhub.yaml`` (its top-level keys are the same names, lower case).
Everything else receives what it needs from here as arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

BackendType = Literal["openai", "ollama", "tei", "llamacpp", "vllm", "mlx"]
Operation = Literal["chat", "completions", "embeddings"]  # what a backend can serve (its "capabilities")
Strategy = Literal["least-busy", "round-robin", "priority", "latency", "session-affinity"]
STRATEGIES: tuple[str, ...] = ("least-busy", "round-robin", "priority", "latency", "session-affinity")


def engine_root_url(url: str) -> str:
    """The engine's root URL: without a trailing ``/`` or ``/v1``.

    Every adapter appends paths from the engine's root (``/v1/chat/completions``, ``/api/chat``, ``/embed``),
    while SDK and LiteLLM docs give the OpenAI base URL, ``http://host:8000/v1``; kept as given, every
    request went to ``/v1/v1/...`` and was answered 404. Both forms are accepted and stored as the root.
    """
    url = url.rstrip("/")
    if url.lower().endswith("/v1"):
        url = url[:-3].rstrip("/")
    return url


class BackendConfig(BaseModel):
    """A backend declared in ``inferhub.yaml``; synced into ``llm_backends`` on start."""

    model_name: str
    backend_type: BackendType = "openai"
    endpoint_url: str
    upstream_model: str | None = None
    enabled: bool = True
    max_tokens: int | None = None
    temperature_default: float | None = None
    timeout_seconds: float = 120.0
    description: str = ""
    weight: int = Field(default=1, ge=1, le=1000)
    priority: int = 0
    max_concurrency: int | None = Field(default=None, ge=1)
    draining: bool = False
    discover_models: bool = True
    # The operations it serves; None: the default of its type (docs/routing.md, "What a backend serves").
    capabilities: list[Operation] | None = Field(default=None, min_length=1)
    # Upstream credentials: stored encrypted with the master key, never returned or logged.
    api_key: str | None = Field(default=None, repr=False)
    basic_auth_username: str | None = None
    basic_auth_password: str | None = Field(default=None, repr=False)
    headers: dict[str, str] | None = Field(default=None, repr=False)

    @field_validator("endpoint_url", mode="after")
    @classmethod
    def _engine_root(cls, url: str) -> str:
        return engine_root_url(url)

    @field_validator("capabilities", mode="after")
    @classmethod
    def _sorted_capabilities(cls, value: list[str] | None) -> list[str] | None:
        return sorted(set(value)) if value is not None else None


CREDENTIAL_FIELDS = ("api_key", "basic_auth_username", "basic_auth_password", "headers")


class ModelRouteConfig(BaseModel):
    """How one model is routed: the strategy and the fallback chain."""

    strategy: Strategy = "least-busy"
    fallbacks: list[str] = Field(default_factory=list)


class PriceConfig(BaseModel):
    """Price of a model per million tokens, in the billing currency."""

    prompt: float = Field(default=0.0, ge=0)
    completion: float = Field(default=0.0, ge=0)


class _YamlSource(PydanticBaseSettingsSource):
    """Reads top-level keys of the YAML config file (``INFERHUB_CONFIG_FILE``)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path.is_file():
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping at the top level")
            self._data = {str(k).lower(): v for k, v in loaded.items()}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INFERHUB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Path(".inferhub")
    host: str = "0.0.0.0"
    port: int = 8888
    config_file: Path = Path("inferhub.yaml")

    # Database: empty means "run the embedded PostgreSQL under home/postgres".
    database_url: str | None = None
    redis_url: str | None = None

    # Bootstrap admin key; if unset one is generated and printed on first start.
    api_key: str | None = None

    # Processes: --workers N runs a supervisor and N API workers on one socket.
    workers: int = Field(default=1, ge=1, le=64)
    worker_child: bool = False  # set by the supervisor for its workers

    # Async jobs: workers run inside `serve` unless run_job_worker is false (then run `inferhub worker`).
    run_job_worker: bool = True
    job_concurrency: int = Field(default=4, ge=1, le=256)
    job_lease_seconds: float = Field(default=30.0, ge=2)
    job_max_attempts: int = Field(default=5, ge=1, le=50)
    job_retention_days: int = Field(default=30, ge=1)
    # Stored Responses (/v1/responses with store): kept this many days; unset = job_retention_days.
    response_retention_days: int | None = Field(default=None, ge=1)
    # `inferhub worker` serves GET /health/live, /health/ready and /metrics on this port; unset = no HTTP.
    worker_health_port: int | None = Field(default=None, ge=1, le=65535)

    # Local (embedded) models.
    local_models: bool = True
    local_chat_url: str | None = None  # set by the supervisor: the llama.cpp server it runs
    local_chat_model: str = "smollm2"
    local_embedding_model: str = "all-minilm-l6-v2"
    local_chat_context: int = 2048
    local_chat_threads: int = 2
    local_chat_model_path: Path | None = None
    local_chat_restart_delay_seconds: float = 1.0

    # Request handling.
    max_body_bytes: int = 10 * 1024 * 1024
    # On SIGTERM keep serving this long, answering `Connection: close` and reporting not ready, before
    # closing: a proxy's kept-alive connections then end cleanly after a response instead of being reset
    # under a request it is sending (docs/deploy/systemd.md, zero-downtime update). 0: stop at once.
    shutdown_drain_seconds: float = Field(default=0.0, ge=0.0, le=300.0)
    # Proxies whose X-Forwarded-For/-Proto are believed (client IP, https for Secure cookies): comma-separated
    # addresses or networks (10.0.0.0/8), or "*" for any (only when nothing but the proxy can reach the port).
    forwarded_allow_ips: str = "127.0.0.1,::1"
    default_timeout_seconds: float = 120.0
    stats_flush_seconds: float = 1.0
    cache_refresh_seconds: float = 30.0

    metrics_tenant_label: bool = True
    otlp_endpoint: str | None = None  # e.g. http://otel-collector:4318/v1/traces; unset = no tracing
    service_name: str = "inferhub"
    log_level: str = "info"
    log_file: Path | None = None

    backends: list[BackendConfig] = Field(default_factory=list)
    models: dict[str, ModelRouteConfig] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)

    # Tenancy: limits, usage, secrets, admin sessions.
    limits_failure_mode: Literal["fail_open", "fail_closed"] = "fail_open"
    usage_flush_seconds: float = 1.0
    usage_retention_days: int = 400
    secret_key: str | None = None  # master key (Fernet, urlsafe base64 of 32 bytes); else secret_key_file
    secret_key_file: Path | None = None  # default: INFERHUB_HOME/secret.key, created on first start
    admin_token_minutes: int = 60
    bootstrap_admin_password: str | None = None  # creates the admin user "admin" on first start

    # Routing and health.
    default_strategy: Strategy = "least-busy"
    default_max_concurrency: int = 8
    health_check_interval_seconds: float = 5.0
    discovery_interval_seconds: float = 30.0
    circuit_failure_threshold: int = 3
    circuit_cooldown_seconds: float = 10.0
    retry_attempts: int = 3
    retry_budget_ratio: float = 0.2
    queue_timeout_seconds: float = 30.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        path = Path(os.environ.get("INFERHUB_CONFIG_FILE", "inferhub.yaml"))
        return (init_settings, env_settings, dotenv_settings, _YamlSource(settings_cls, path))

    @property
    def postgres_dir(self) -> Path:
        return self.home.resolve() / "postgres"


def describe_config_error(exc: Exception) -> str:
    """Where the configuration is wrong and why, without the values: a value may be a credential.

    pydantic's own message quotes the input (for a malformed backend, the whole mapping with its
    ``api_key`` and ``headers``), and a YAML syntax error quotes the offending line.
    """
    import yaml
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            where = ".".join(str(part) for part in error.get("loc", ())) or "settings"
            problems.append(f"{where}: {error.get('msg', 'invalid value')}")
        return "; ".join(problems)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        name = "the YAML configuration file" if not mark or mark.name.startswith("<") else mark.name
        where = f"{name}, line {mark.line + 1}, column {mark.column + 1}" if mark else name
        return f"{where}: {exc.problem or exc.context or 'not valid YAML'}"
    if isinstance(exc, yaml.YAMLError):
        return "the YAML configuration file could not be parsed"
    if isinstance(exc, OSError | ValueError):  # an unreadable file, a file that is not a mapping
        return str(exc)
    return type(exc).__name__
