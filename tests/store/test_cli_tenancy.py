"""The tenancy CLI: configuration errors that name no secret, and `keys rotate`, `keys update`, `tenants update`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from support import run_cli
from support.inferhub_process import base_env

SECRETS = ("sk-PLANTED-api-key-4711", "hdr-PLANTED-header-0815", "pw-PLANTED-password-1234", "PLANTED-user")


def _bad_backends() -> dict:
    api_key, header, password, user = SECRETS
    return {
        "backends": [
            # No endpoint_url: pydantic's message would quote this whole mapping, credentials included.
            {
                "model_name": "m",
                "backend_type": "ollama",
                "api_key": api_key,
                "headers": {"X-Token": header},
                "basic_auth_username": user,
                "basic_auth_password": password,
            },
            # headers as a string: pydantic's message would quote the string.
            {"model_name": "n", "endpoint_url": "http://127.0.0.1:9", "headers": f"X-Token: {header}"},
        ]
    }


@pytest.mark.parametrize("command", [("serve",), ("keys", "list"), ("worker",)])
def test_a_malformed_backend_is_reported_without_its_credentials(tmp_path: Path, command: tuple[str, ...]):
    (tmp_path / "inferhub.yaml").write_text(yaml.safe_dump(_bad_backends()))
    result = run_cli(tmp_path, *command, env=base_env(tmp_path, INFERHUB_LOCAL_MODELS="false"), check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "invalid configuration" in result.stderr
    assert "backends.0.endpoint_url: Field required" in result.stderr
    assert "backends.1.headers" in result.stderr
    assert "Traceback" not in output
    for secret in SECRETS:
        assert secret not in output


def test_a_yaml_syntax_error_is_reported_without_the_line(tmp_path: Path):
    (tmp_path / "inferhub.yaml").write_text(f'backends:\n  - model_name: m\n    api_key: "{SECRETS[0]}\t: [oops\n')
    result = run_cli(tmp_path, "serve", env=base_env(tmp_path, INFERHUB_LOCAL_MODELS="false"), check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "invalid configuration" in result.stderr and "line " in result.stderr
    assert SECRETS[0] not in output and "Traceback" not in output
