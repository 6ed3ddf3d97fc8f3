"""The monitoring bundle in deploy/monitoring, as a fixture: its files, alert rules and dashboard queries.

Offered as the ``bundle`` fixture (not as importable helpers): with ``--import-mode=importlib`` and
``tests`` on the path, ``import conftest`` would find tests/conftest.py.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Debian package that ships each tool (installed by scripts/ensure-tools.sh).
TOOL_PACKAGES = {"promtool": "prometheus", "prometheus": "prometheus", "amtool": "prometheus-alertmanager"}

# What Grafana substitutes for its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$job": ".*",
    "$instance": ".*",
    "$model": ".*",
    "$tenant": ".*",
}

LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*\w+\)$")


@dataclass(frozen=True)
class Query:
    where: str  # "alert InferhubModelDown", "overview.json: panel 'Requests / s'"
    expr: str  # PromQL, Grafana variables substituted, label_values(...) reduced to its selector


class Bundle:
    root = ROOT
    monitoring = ROOT / "deploy" / "monitoring"
    rules_file = monitoring / "alerts" / "inferhub.rules.yml"
    rule_tests_file = monitoring / "alerts" / "inferhub.rules.test.yml"
    dashboards_dir = monitoring / "grafana" / "dashboards"
    dashboard_names = ("overview", "backends", "tenants-cost", "jobs-rag")

    @staticmethod
    def tool(name: str) -> str:
        """The tool's path, or skip the test naming the package that provides it."""
        path = shutil.which(name)
        if path is None:
            pytest.skip(f"{name} is not installed (Debian package {TOOL_PACKAGES[name]}); "
                        "run `bash scripts/ensure-tools.sh`")  # fmt: skip
        return path

    def yaml(self, relative: str) -> Any:
        return yaml.safe_load((self.monitoring / relative).read_text())

    def rules(self) -> list[dict[str, Any]]:
        groups = yaml.safe_load(self.rules_file.read_text())["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def alerts(self) -> dict[str, dict[str, Any]]:
        return {rule["alert"]: rule for rule in self.rules() if "alert" in rule}

    def dashboards(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads((self.dashboards_dir / f"{name}.json").read_text()) for name in self.dashboard_names}

    @staticmethod
    def panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Panels, including those nested in collapsed rows."""
        found = []
        for panel in panels:
            found.append(panel)
            found.extend(Bundle.panels(panel.get("panels", [])))
        return found

    @staticmethod
    def substitute(expr: str) -> str:
        for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
            expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
        match = LABEL_VALUES.match(expr.strip())
        return match["selector"] if match else expr

    def dashboard_queries(self) -> list[Query]:
        """Every PromQL query of every dashboard: panel targets and template-variable queries."""
        queries = []
        for name, board in self.dashboards().items():
            for panel in self.panels(board["panels"]):
                for target in panel.get("targets", []):
                    source = target.get("datasource", panel.get("datasource")) or {}
                    if source.get("type", "prometheus") == "prometheus" and target.get("expr"):
                        queries.append(Query(f"{name}.json: panel {panel['title']!r}", self.substitute(target["expr"])))
            for variable in board["templating"]["list"]:
                if variable["type"] == "query":
                    query = variable["query"]
                    query = query["query"] if isinstance(query, dict) else query
                    queries.append(Query(f"{name}.json: variable {variable['name']!r}", self.substitute(query)))
        return queries

    def alert_queries(self) -> list[Query]:
        return [Query(f"alert {name}", rule["expr"]) for name, rule in self.alerts().items()]

    def queries(self) -> list[Query]:
        return self.alert_queries() + self.dashboard_queries()


@pytest.fixture(scope="session")
def bundle() -> Bundle:
    return Bundle()
