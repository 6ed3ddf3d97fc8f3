"""Shared fixtures. Servers start once per module (or once per session for the default install)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from support import InferhubProcess

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def inferhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferhubProcess]:
    """The default install: embedded PostgreSQL, embedded SmolLM2 and MiniLM, no configuration."""
    process = InferhubProcess(tmp_path_factory.mktemp("inferhub-default"))
    with process:
        yield process


@pytest.fixture(scope="session")
def openai_client(inferhub: InferhubProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{inferhub.url}/v1", api_key=inferhub.api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def ollama_client(inferhub: InferhubProcess) -> ollama.Client:
    return ollama.Client(host=inferhub.url, headers=inferhub.headers, timeout=120)


@pytest.fixture(scope="session")
def http(inferhub: InferhubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inferhub.url, headers=inferhub.headers, timeout=120) as client:
        yield client


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
