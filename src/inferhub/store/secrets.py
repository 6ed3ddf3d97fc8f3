"""SecretBox: upstream credentials encrypted at rest with the master key (Fernet, from ``cryptography``).

The master key comes from ``INFERHUB_SECRET_KEY``, else from ``INFERHUB_SECRET_KEY_FILE``,
else from ``INFERHUB_HOME/secret.key`` (created with mode 0600 on first start).
Several keys may be given, comma-separated, newest first: the first encrypts,
all decrypt (``MultiFernet``), which is how ``inferhub secrets rotate`` moves the
stored secrets to a new key without downtime. The admin session (JWT) signing
key is derived from the master key, so it needs no separate secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretError(RuntimeError):
    pass


def load_master_keys(secret_key: str | None, key_file: Path | None, home: Path) -> list[str]:
    if secret_key:
        raw = secret_key
    else:
        path = key_file or home / "secret.key"
        if not path.exists():
            if key_file is not None:
                raise SecretError(f"INFERHUB_SECRET_KEY_FILE {path} does not exist")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(Fernet.generate_key().decode() + "\n")
        raw = path.read_text()
    keys = [k.strip() for k in raw.replace("\n", ",").split(",") if k.strip()]
    if not keys:
        raise SecretError("the master key is empty")
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise SecretError(
                "the master key must be 32 url-safe base64-encoded bytes (make one with "
                "`inferhub secrets generate`)"
            ) from None
    return keys


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self._signing = hmac.new(keys[0].encode(), b"inferhub-admin-session", hashlib.sha256).digest()

    @property
    def signing_key(self) -> bytes:
        return self._signing

    def encrypt(self, values: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode()).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretError("a stored secret cannot be decrypted with the configured master key(s)") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt under the first (newest) key."""
        return self._fernet.rotate(token.encode()).decode()


def mask(value: str | None) -> str | None:
    if not value:
        return None
    return "****" + value[-4:] if len(value) > 8 else "****"
