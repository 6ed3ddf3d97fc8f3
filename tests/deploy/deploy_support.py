"""Helpers of the deployment tests: where the bundle and the validator tools are, nginx test configs.

The tools are installed by ``scripts/ensure-deploy-tools.sh`` (run by ``make test``): Debian packages
on the PATH and two venvs under ``.tools/``. A test whose tool is missing skips and names it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TOOLS = REPO / ".tools"
INSTALL_HINT = "run `bash scripts/ensure-deploy-tools.sh`"


def which(name: str) -> str | None:
    """A command on the PATH, or in /usr/sbin (nginx and haproxy live there; root's PATH has it)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    return found


def tool_path(relative: str) -> Path | None:
    path = TOOLS / relative
    return path if path.exists() and os.access(path, os.X_OK) else None


def require(path: str | Path | None, what: str) -> str:
    if path is None:
        pytest.skip(f"{what} is not installed ({INSTALL_HINT})")
    return str(path)


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run(args, cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=timeout)


def assert_ok(result: subprocess.CompletedProcess, what: str) -> None:
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"


def nginx_site_for_test(
    shipped: str, *, upstreams: list[str], listen: str, redirect_listen: str, cert: Path | None, key: Path | None
) -> str:
    """deploy/nginx/inferhub.conf with only the addresses changed: upstream servers, listen ports, TLS files.

    Every other directive (timeouts, buffering, retries, balancing) stays as shipped. Without ``cert``
    the TLS server becomes plain HTTP (the ssl_* lines are dropped), the rest unchanged.
    """
    block = re.search(r"upstream inferhub \{.*?\n\}", shipped, re.S)
    assert block, "deploy/nginx/inferhub.conf has no `upstream inferhub {}` block"
    servers = re.findall(r"^\s*server\s+(\S+)([^;]*);", block.group(0), re.M)
    assert len(servers) >= 2, "the shipped upstream should list several replicas"
    params = servers[0][1]
    new_block = re.sub(r"^\s*server\s+\S+[^;]*;\n", "", block.group(0), flags=re.M)
    lines = "".join(f"    server {address}{params};\n" for address in upstreams)
    new_block = new_block.replace("upstream inferhub {\n", "upstream inferhub {\n" + lines, 1)
    site = shipped.replace(block.group(0), new_block)
    site = re.sub(r"^\s*listen \[::\]:\d+[^;]*;\n", "", site, flags=re.M)
    site = re.sub(r"^(\s*)listen 80;", rf"\1listen {redirect_listen};", site, flags=re.M)
    if cert is not None and key is not None:
        site = re.sub(r"^(\s*)listen 443 ssl", rf"\1listen {listen} ssl", site, flags=re.M)
        site = re.sub(r"^(\s*ssl_certificate)\s+\S+;", rf"\1 {cert};", site, flags=re.M)
        site = re.sub(r"^(\s*ssl_certificate_key)\s+\S+;", rf"\1 {key};", site, flags=re.M)
    else:
        site = re.sub(r"^(\s*)listen 443 ssl( http2)?;", rf"\1listen {listen};", site, flags=re.M)
        site = re.sub(r"^\s*ssl_\w+ [^;]*;\n", "", site, flags=re.M)
    directives = "\n".join(line.split("#", 1)[0] for line in site.splitlines())
    assert "10.0.0." not in directives and "listen 443" not in directives, site
    return site


def nginx_main_config(prefix: Path, site: Path) -> str:
    """A minimal nginx.conf whose paths all stay under ``prefix``; ``site`` is included in ``http {}``."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "".join(f"    {name}_temp_path {prefix / name};\n" for name in ("client_body", "proxy", "fastcgi",
                                                                            "uwsgi", "scgi"))  # fmt: skip
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    log_format upstream '$status|$upstream_addr|$upstream_status|$http_x_test_load|$request';\n"
        f"    access_log {prefix / 'access.log'} upstream;\n"
        f"{temp}"
        f"    include {site};\n"
        "}\n"
    )


class Nginx:
    """The Debian nginx binary serving deploy/nginx/inferhub.conf (addresses changed only) on a free port."""

    def __init__(self, prefix: Path, upstreams: list[str]) -> None:
        self.binary = require(which("nginx"), "nginx (Debian package nginx)")
        self.prefix = prefix
        prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = nginx_site_for_test(
            (DEPLOY / "nginx" / "inferhub.conf").read_text(), upstreams=upstreams,
            listen=f"127.0.0.1:{self.port}", redirect_listen=f"127.0.0.1:{free_port()}", cert=None, key=None,
        )  # fmt: skip
        (prefix / "inferhub.conf").write_text(site)
        self.config = prefix / "nginx.conf"
        self.config.write_text(nginx_main_config(prefix, prefix / "inferhub.conf"))
        self.process: subprocess.Popen | None = None

    def start(self) -> Nginx:
        args = [self.binary, "-p", str(self.prefix), "-c", str(self.config), "-e", str(self.prefix / "error.log")]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not self._answers():
            assert time.monotonic() < deadline, f"nginx did not answer on {self.url}: {self.errors()[-5:]}"
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            httpx.get(f"{self.url}/health/live", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests, then exit
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def access_log(self) -> list[list[str]]:
        """[status, upstream addresses, upstream statuses, X-Test-Load header, request line] per request."""
        path = self.prefix / "access.log"
        return [line.split("|", 4) for line in path.read_text().splitlines()] if path.exists() else []

    def errors(self) -> list[str]:
        """nginx's error log lines of warning level and above (upstream resets, no live upstreams)."""
        path = self.prefix / "error.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if any(f"[{level}]" in line for level in ("warn", "error", "crit"))]

    def served_by(self, port: int, load: str | None = None) -> int:
        """Requests nginx answered 200 with a response from the replica on ``port`` (of one load kind)."""
        address = f"127.0.0.1:{port}"
        answered = [entry for entry in self.access_log() if entry[0] == "200" and entry[1].split(", ")[-1] == address]
        return sum(1 for entry in answered if load in (None, entry[3]))
