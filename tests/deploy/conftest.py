"""Fixtures of the deployment tests; the helpers themselves are in ``deploy_support.py`` beside this file.

``tests/`` is on the import path (``support``, ``fakes``); this folder is added so the tests here can
``import deploy_support`` (a name no other folder uses).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_support import assert_ok, require, run, which


@pytest.fixture
def openssl_cert(tmp_path: Path) -> Callable[[], tuple[Path, Path]]:
    """A self-signed certificate made by openssl for the validators that load TLS files."""

    def make() -> tuple[Path, Path]:
        openssl = require(which("openssl"), "openssl")
        cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        result = run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                      "/CN=inferhub.example.com", "-keyout", str(key), "-out", str(cert)])  # fmt: skip
        assert_ok(result, "openssl req")
        return cert, key

    return make
