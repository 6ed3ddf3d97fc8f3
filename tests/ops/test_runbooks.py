"""The runbooks match the alert rules, the CLI and the admin API they tell an operator to use.

Every ``runbook_url`` in ``deploy/monitoring/alerts/inferhub.rules.yml`` points at an existing page that names
its alert; the index lists every page; relative links and their anchors resolve; every ``inferhub``/``ih``
command in a code block exists; every ``$IH/...`` path and every ``METHOD /path`` is a route of the app.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks"
RULES = ROOT / "deploy" / "monitoring" / "alerts" / "inferhub.rules.yml"
TOPICS = (
    "model-deployment.md",
    "adding-and-removing-nodes.md",
    "incident-response.md",
    "routine-maintenance.md",
    "backup-and-restore.md",
    "rollback.md",
    "key-and-secret-rotation.md",
    "disaster-recovery.md",
)


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _pages() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.md"))


def _code(text: str) -> str:
    """Fenced code blocks and inline code spans."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return "\n".join(blocks + re.findall(r"`([^`\n]+)`", prose))


@pytest.mark.parametrize("rule", _alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_its_runbook(rule: dict) -> None:
    url = rule["annotations"]["runbook_url"]
    assert url.startswith("docs/runbooks/") and url.endswith(".md"), url
    page = ROOT / url
    assert page.is_file(), f"{rule['alert']}: runbook_url {url} does not exist"
    text = page.read_text()
    assert rule["alert"] in text, f"{url} does not name its alert {rule['alert']}"
    assert text.startswith(f"# {rule['alert']}"), f"{url} should be titled with the alert name"


def test_topic_pages_exist_and_the_index_lists_every_page() -> None:
    index = (RUNBOOKS / "README.md").read_text()
    for topic in TOPICS:
        assert (RUNBOOKS / topic).is_file(), topic
    for page in _pages():
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"README.md does not link {page.name}"
    for rule in _alerts():
        assert rule["alert"] in index


def test_incident_response_covers_the_situations_and_points_to_the_alert_pages() -> None:
    text = (RUNBOOKS / "incident-response.md").read_text()
    for heading in ("Backend down", "All backends of a model down", "Database down", "Redis down",
                    "Queue saturated", "Budget exhausted"):  # fmt: skip
        assert f"## {heading}" in text, heading
    for rule in _alerts():
        page = Path(rule["annotations"]["runbook_url"]).name
        assert f"]({page}" in text, f"incident-response.md does not point to {page}"


def test_every_topic_page_names_the_alerts_that_lead_to_it() -> None:
    names = {rule["alert"] for rule in _alerts()}
    for topic in TOPICS:
        text = (RUNBOOKS / topic).read_text()
        assert any(name in text for name in names), f"{topic} names no alert"


def test_graceful_shutdown_is_documented() -> None:
    text = (RUNBOOKS / "routine-maintenance.md").read_text()
    section = text.split("## Graceful shutdown", 1)[1].split("\n## ", 1)[0]
    for fact in ("SIGTERM", "30 s", "released", "usage", "flush", "TimeoutStopSec=45", "terminationGracePeriodSeconds"):
        assert fact.lower() in section.lower(), fact


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: no heading for #{anchor} in {linked.name}"


# -- the commands and paths the pages use exist --------------------------------------------------------

# Words after which "inferhub" is a user, namespace, database or container name, not the command.
_NOT_THE_COMMAND = {"-u", "-n", "--namespace", "--owner", "exec", "-g", "stop", "restart", "status"}


def _cli_tree() -> dict[str, set[str] | None]:
    from inferhub.cli import app

    group = typer.main.get_command(app)
    tree: dict[str, set[str] | None] = {}
    for name, command in group.commands.items():
        tree[name] = set(command.commands) if hasattr(command, "commands") else None
    return tree


def _cli_invocations(code: str) -> list[tuple[str, str | None]]:
    found = []
    pattern = r"(?=(?:^|(?<=[\s;&|(]))(?:ih|inferhub)[ \t]+(?P<cmd>[a-z][a-z-]*)(?:[ \t]+(?P<sub>[a-z][a-z-]*))?)"
    for line in code.splitlines():
        for match in re.finditer(pattern, line):
            before = line[: match.start()].split()
            if before and before[-1] in _NOT_THE_COMMAND:
                continue
            if match["cmd"] in ("inferhub", "env", "get", "create", "rollout", "wait", "delete", "cp", "logs",
                                "scale", "set", "patch", "describe", "exec", "apply"):  # fmt: skip
                continue
            found.append((match["cmd"], match["sub"]))
    return found


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_cli_commands_exist(page: Path) -> None:
    tree = _cli_tree()
    for command, sub in _cli_invocations(_code(page.read_text())):
        assert command in tree, f"{page.name}: `inferhub {command}` is not a command"
        if tree[command] is not None:
            assert sub in tree[command], f"{page.name}: `inferhub {command} {sub}` is not a command"


def _route_patterns() -> list[re.Pattern[str]]:
    from inferhub.api import (
        admin_routes,
        batch_routes,
        generate_route,
        health_routes,
        jobs_routes,
        ollama_routes,
        openai_routes,
        tenancy_routes,
    )

    patterns = []
    for module in (admin_routes, batch_routes, generate_route, health_routes, jobs_routes, ollama_routes,
                   openai_routes, tenancy_routes):  # fmt: skip
        for route in module.router.routes:
            regex = re.sub(r"\{[^}:]+:path\}", ".+", route.path)
            regex = re.sub(r"\{[^}]+\}", "[^/]+", regex)
            patterns.append(re.compile(f"^{regex}$"))
    return patterns


def _paths(code: str) -> list[str]:
    paths = re.findall(r"\$IH(/[^\s\"'?]*)", code)
    paths += re.findall(r"\b(?:GET|POST|PUT|PATCH|DELETE) (/[^\s`?]+)", code)
    return [p.rstrip(".,;)") for p in paths]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_admin_api_paths_exist(page: Path) -> None:
    patterns = _route_patterns()
    text = page.read_text()
    for path in _paths(_code(text)) + _paths(text):
        assert any(p.match(path) for p in patterns), f"{page.name}: {path} is not a route of Inferhub"
