"""Run Codex CLI (``codex exec``) and Claude Code (``claude -p``) non-interactively against a server.

Both CLIs come from npm, pinned, in ``.tools/agents`` (``scripts/ensure-agent-tools.sh``, run by
``make test``); without them the helpers skip the calling test, naming that script. Each run gets its
own HOME (and CODEX_HOME) under ``tmp_path`` so nothing reads or writes the real one, and an
environment with nothing from the caller's but PATH and the locale: no vendor key, no proxy. Telemetry,
auto-update, error reporting and every other call to the vendors is switched off (there is no internet
here, and a gateway user does not want it either); docs/protocols/agents.md explains each setting.

``base_url`` is the gateway's root (``http://127.0.0.1:8888``; a trailing ``/v1`` is accepted too).
``lean=True`` is the configuration for a small-context model (the embedded 2,048-token one): Codex
without its long built-in instructions and most tools, Claude Code with no tools and a one-line system
prompt, so the prompt fits.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = "scripts/ensure-agent-tools.sh"
BIN = ROOT / ".tools" / "agents" / "node_modules" / ".bin"
CODEX = BIN / "codex"
CLAUDE = BIN / "claude"
LEAN_INSTRUCTIONS = "You are a helpful assistant. Answer briefly."

Result = tuple[int, str, str]


def _root_url(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _require(binary: Path, name: str) -> Path:
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{name} is not installed in .tools/agents: run `bash {INSTALL_SCRIPT}` (make test does)")
    return binary


def _base_env(home: Path) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1", "TERM": "dumb"}
    for name in ("LANG", "LC_ALL"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> Result:
    try:
        done = subprocess.run(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return -1, out, f"{err}\n[timed out after {timeout:.0f}s]"
    return done.returncode, done.stdout, done.stderr


def _dirs(tmp_path: Path, name: str) -> tuple[Path, Path]:
    home, work = tmp_path / f"{name}-home", tmp_path / f"{name}-work"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return home, work


# -- Codex CLI ------------------------------------------------------------------------------------


def codex_config(base_url: str, model: str, *, lean: bool = False, instructions_file: Path | None = None) -> str:
    """The ``config.toml`` pointing Codex at Inferhub (the key comes from ``INFERHUB_API_KEY``)."""
    lines = [
        f'model = "{model}"',
        'model_provider = "inferhub"',
        "check_for_update_on_startup = false",
        'web_search = "disabled"',  # else a {"type": "web_search"} tool is sent
        "project_doc_max_bytes = 0",  # no AGENTS.md from the working directory
    ]
    if lean and instructions_file is not None:
        lines.append(f'model_instructions_file = "{instructions_file}"')
    lines += [
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[feedback]",
        "enabled = false",
        "",
        "[features]",
        "multi_agent = false",  # else a {"type": "namespace"} tool (multi_agent_v1) is sent
        "goals = false",
        "apps = false",
        "plugins = false",
        "memories = false",
        "shell_snapshot = false",
        "enable_request_compression = false",
    ]
    if lean:
        lines += ["shell_tool = false", "unified_exec = false", "view_image = false"]
    lines += [
        "",
        "[model_providers.inferhub]",
        'name = "Inferhub"',
        f'base_url = "{_root_url(base_url)}/v1"',
        'env_key = "INFERHUB_API_KEY"',
        'wire_api = "responses"',
        "request_max_retries = 0",
        "stream_max_retries = 0",
        "",
    ]
    return "\n".join(lines)


def run_codex(
    base_url: str, api_key: str, model: str, prompt: str, tmp_path: Path, *, lean: bool = False, timeout: float = 60
) -> Result:
    """``codex exec`` one prompt through ``base_url``; stdout is the final answer alone, stderr the log."""
    codex = _require(CODEX, "Codex CLI")
    home, work = _dirs(tmp_path, "codex")
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    instructions = codex_home / "instructions.md"
    instructions.write_text(LEAN_INSTRUCTIONS + "\n")
    (codex_home / "config.toml").write_text(codex_config(base_url, model, lean=lean, instructions_file=instructions))
    env = {**_base_env(home), "CODEX_HOME": str(codex_home), "INFERHUB_API_KEY": api_key}
    argv = [str(codex), "exec", "--skip-git-repo-check", "--sandbox", "read-only", "--color", "never"]
    return _run([*argv, "-C", str(work), prompt], env, work, timeout)


# -- Claude Code ----------------------------------------------------------------------------------


def claude_env(
    base_url: str, api_key: str, model: str, home: Path, *, max_output_tokens: int | None = None, retries: int = 0
) -> dict[str, str]:
    """The environment pointing Claude Code at Inferhub, with every vendor call switched off.

    ``retries`` is how often a 5xx or 429 is retried (Claude Code's default is 10, with backoff: a failing
    route would take minutes); a test wants the error at once.
    """
    env = {
        **_base_env(home),
        "ANTHROPIC_BASE_URL": _root_url(base_url),
        "ANTHROPIC_API_KEY": api_key,  # sent as x-api-key (ANTHROPIC_AUTH_TOKEN would send a Bearer token)
        "ANTHROPIC_MODEL": model,
        # The background calls (session titles and the like) use the "small fast" model: the same one.
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "CLAUDE_CODE_SUBAGENT_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(retries),
    }
    if max_output_tokens is not None:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(max_output_tokens)  # else max_tokens is 32000
    return env


def run_claude(
    base_url: str,
    api_key: str,
    model: str,
    prompt: str,
    tmp_path: Path,
    *,
    lean: bool = False,
    max_output_tokens: int | None = None,
    retries: int = 0,
    timeout: float = 60,
) -> Result:
    """``claude -p`` one prompt through ``base_url``; stdout is the answer's text."""
    claude = _require(CLAUDE, "Claude Code")
    home, work = _dirs(tmp_path, "claude")
    env = claude_env(base_url, api_key, model, home, max_output_tokens=max_output_tokens, retries=retries)
    argv = [str(claude), "-p", "--model", model, "--output-format", "text", "--no-session-persistence"]
    if lean:
        argv += ["--system-prompt", LEAN_INSTRUCTIONS, "--tools", ""]
    return _run([*argv, "--", prompt], env, work, timeout)
