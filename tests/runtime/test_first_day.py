"""The first day of a new user: a fresh `inferhub serve` says how to get in, and the CLI finds (or refuses) its home.

- The first start creates the dashboard's platform admin `admin` and prints its password once, beside the
  bootstrap key; that password logs in to /ui; a restart prints no new one and the old one still works.
- Every start says where the API, /ui and /docs listen and how to run the CLI.
- The CLI run from another directory creates no database: it fails naming the home it looked at and how
  to point at the server's (`INFERHUB_HOME`, `--home`), and says which home it uses when it finds one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx

from support import InferhubProcess
from support.inferhub_process import BIN, base_env


def _password(output: str) -> str | None:
    match = re.search(r"^\s+password: (\S+)\s*$", output, re.MULTILINE)
    return match.group(1) if match else None


def _login(url: str, username: str, password: str) -> httpx.Response:
    """The dashboard's login form, as a browser posts it (CSRF cookie and field)."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        browser.get("/ui/login").raise_for_status()
        token = browser.cookies["inferhub_csrf"]
        reply = browser.post("/ui/login", data={"csrf_token": token, "username": username, "password": password})
        if reply.status_code == 303:  # logged in: the session cookie opens the overview
            page = browser.get("/ui")
            assert page.status_code == 200 and "Overview" in page.text, page.text[:500]
        return reply


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in base_env(cwd).items() if k not in ("INFERHUB_HOME", "INFERHUB_CONFIG_FILE")}
    full.update(env)
    return subprocess.run([str(BIN / "inferhub"), *args], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_first_start_prints_the_admin_password_once_and_it_logs_in(tmp_path: Path) -> None:
    process = InferhubProcess(tmp_path / "home", api_key="", local_models=False)
    with process:
        first = process.output()
        password = _password(first)
        assert password, first
        assert re.search(r"^\s+user:\s+admin\s*$", first, re.MULTILINE), first
        key = re.search(r"^\s+(ih-\S+)\s*$", first, re.MULTILINE)
        assert key, first  # beside the bootstrap key
        assert _login(process.url, "admin", password).status_code == 303
        assert "Wrong username or password" in _login(process.url, "admin", password + "x").text

        # Where everything listens, and the CLI.
        assert f"{process.url}/v1" in first and f"{process.url}/ui" in first and f"{process.url}/docs" in first
        assert f"{BIN / 'inferhub'} --help" in first
        assert f"INFERHUB_HOME={process.home.resolve()}" in first

        # Only a hash is stored.
        users = httpx.get(f"{process.url}/api/admin-users", headers={"Authorization": f"Bearer {key.group(1)}"})
        assert password not in users.text and [u["username"] for u in users.json()["data"]] == ["admin"]

    with process:  # a restart neither prints a new password nor resets the first one
        second = process.output()[len(first) :]
        assert _password(second) is None and "platform admin user" not in second
        assert f"{process.url}/ui" in second  # the addresses are printed on every start
        assert _login(process.url, "admin", password).status_code == 303
        # A lost password is reset from the CLI.
        process.cli("admin-users", "set-password", "admin", "--password", "a-new-admin-password")
        assert _login(process.url, "admin", "a-new-admin-password").status_code == 303
        assert _login(process.url, "admin", password).status_code == 200  # the form again: wrong password


def test_bootstrap_admin_password_setting_still_wins(tmp_path: Path) -> None:
    chosen = "a-password-chosen-by-the-operator"
    process = InferhubProcess(tmp_path / "home", local_models=False, env={"INFERHUB_BOOTSTRAP_ADMIN_PASSWORD": chosen})
    with process:
        assert _password(process.output()) is None  # nothing generated, nothing printed
        assert _login(process.url, "admin", chosen).status_code == 303


def test_the_cli_elsewhere_creates_no_database_and_says_where_to_look(tmp_path: Path) -> None:
    server_dir = tmp_path / "clone"
    process = InferhubProcess(server_dir / ".inferhub", local_models=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with process:
        refused = _cli(elsewhere, "keys", "list")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
        message = refused.stderr.strip()
        assert str(elsewhere / ".inferhub") in message and "INFERHUB_HOME" in message and "--home" in message
        assert list(elsewhere.iterdir()) == []  # no ./.inferhub, no database

        for found in (
            _cli(elsewhere, "--home", str(process.home), "keys", "list"),
            _cli(elsewhere, "keys", "list", INFERHUB_HOME=str(process.home)),
            _cli(server_dir, "keys", "list"),  # where `make run` ran: ./.inferhub is the server's
        ):
            assert found.returncode == 0, found.stderr
            assert "bootstrap" in found.stdout
            assert f"using the embedded database under INFERHUB_HOME={process.home.resolve()}" in found.stderr
        assert list(elsewhere.iterdir()) == []

        doctor = _cli(elsewhere, "doctor")
        assert doctor.returncode == 1
        assert any(line.startswith("FAIL  database: no Inferhub database") for line in doctor.stdout.splitlines())


def test_backends_list_shows_the_embedded_models(tmp_path: Path) -> None:
    process = InferhubProcess(tmp_path / ".inferhub", local_models=False)
    with process:
        table = _cli(tmp_path, "backends", "list")  # the default settings: the embedded models on
        assert table.returncode == 0, table.stderr
        rows = {line.split()[1]: line for line in table.stdout.splitlines()[1:]}
        assert set(rows) == {"smollm2", "all-minilm-l6-v2"}, table.stdout
        assert all("embedded" in line for line in rows.values())
        off = _cli(tmp_path, "backends", "list", "--json", INFERHUB_LOCAL_MODELS="false")
        assert off.returncode == 0 and off.stdout.strip() == "[]"
