"""The monitoring bundle (deploy/monitoring) is valid for its tools and reads only metrics Inferhub exports.

promtool and amtool check the Prometheus and Alertmanager configuration and run the alert unit tests;
the Grafana dashboards are checked as JSON; and every metric name that an alert or a dashboard query
uses is looked up in a live scrape of a running Inferhub.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from support import InferhubProcess

# Metrics an alert may read before Inferhub exports them (name → the one alert allowed to use it). Empty:
# every metric the bundle uses is exported.
NOT_YET_EXPORTED: dict[str, str] = {}

METRIC_NAME = re.compile(r"llm_[a-z_]+")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
# Series Prometheus makes itself for every target: alerts may read them, dashboards show Inferhub's only.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_PROMQL_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_PROMQL_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_PROMQL_KEYWORDS = {"and", "or", "unless", "offset", "bool", "group_left", "group_right", "inf", "nan", "atan2"}
EXPECTED_ALERTS = {
    "InferhubBackendDown", "InferhubModelDown", "InferhubHighErrorRate", "InferhubHighLatencyP95",
    "InferhubSlowTimeToFirstToken", "InferhubQueueSaturated", "InferhubTenantNearBudget",
    "InferhubUsageWriterLagging",
}  # fmt: skip


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    return result


def metric_names(expr: str) -> set[str]:
    return {HISTOGRAM_SUFFIX.sub("", name) for name in METRIC_NAME.findall(expr)}


def promql_metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects, whatever its prefix (functions, labels, keywords dropped)."""
    expr = _PROMQL_STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers (their strings are already gone)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges and subquery steps
    expr = _PROMQL_LABEL_LISTS.sub(" ", expr)
    names = set()
    for name, call in _PROMQL_IDENTIFIER.findall(expr):
        if not call and name not in _PROMQL_KEYWORDS:
            names.add(name)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('histogram_quantile(0.95, sum by (le, model) (rate(llm_rag_query_seconds_bucket{mode="x"}[5m])))',
         {"llm_rag_query_seconds_bucket"}),
        ('max by (state) (llm_jobs{job=~"$job", state="queued"}) / on(state) group_left clamp_min(foo_total, 1e3)',
         {"llm_jobs", "foo_total"}),
        ('clamp_min(delta((max by (state) (llm_jobs))[5m:1m]), 0) > bool 1 and up{job="inferhub"} offset 5m',
         {"llm_jobs", "up"}),
        ('sum(rate(process_cpu_seconds_total{instance=~"a|b"}[1m])) without (instance)', {"process_cpu_seconds_total"}),
        ('{__name__="llm_jobs"}', set()),
    ],
)  # fmt: skip
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


# ---------------------------------------------------------------------------------------------- Prometheus


def test_promtool_checks_the_prometheus_config_and_its_rule_files(bundle) -> None:
    result = run(bundle.tool("promtool"), "check", "config", "prometheus.yml", cwd=bundle.monitoring)
    assert "inferhub.rules.yml" in result.stdout + result.stderr  # rule_files found the alerts


def test_prometheus_config_scrapes_inferhub_replicas_engines_and_nodes(bundle) -> None:
    config = bundle.yaml("prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"inferhub", "vllm", "tei", "node"} <= set(jobs)
    inferhub_targets = [t for static in jobs["inferhub"]["static_configs"] for t in static["targets"]]
    assert len(inferhub_targets) >= 2
    assert all(jobs[name].get("metrics_path", "/metrics") == "/metrics" for name in ("inferhub", "vllm", "tei"))
    assert config["rule_files"] == ["alerts/*.rules.yml"]


def test_promtool_checks_the_alert_rules(bundle) -> None:
    result = run(bundle.tool("promtool"), "check", "rules", str(bundle.rules_file), cwd=bundle.monitoring)
    assert "SUCCESS" in result.stdout


def test_promtool_runs_the_alert_unit_tests(bundle) -> None:
    result = run(bundle.tool("promtool"), "test", "rules", bundle.rule_tests_file.name, cwd=bundle.rules_file.parent)
    assert "SUCCESS" in result.stdout


def test_every_alert_is_labelled_annotated_and_unit_tested_both_ways(bundle) -> None:
    alerts = bundle.alerts()
    assert set(alerts) >= EXPECTED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert re.fullmatch(r"docs/runbooks/[a-z0-9-]+\.md", annotations["runbook_url"]), name

    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(bundle.rule_tests_file.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(alerts) - firing == set(), "alerts without a firing unit test"
    assert set(alerts) - quiet == set(), "alerts without a not-firing unit test"


def test_every_dashboard_query_is_valid_promql(bundle, tmp_path: Path) -> None:
    # promtool parses the expressions of recording rules: one rule per dashboard query.
    rules = [{"record": f"dashboard:query_{i}", "expr": q.expr} for i, q in enumerate(bundle.dashboard_queries())]
    (tmp_path / "dashboards.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}))
    run(bundle.tool("promtool"), "check", "rules", "dashboards.rules.yml", cwd=tmp_path)


# ---------------------------------------------------------------------------------------------- Alertmanager


def test_amtool_checks_the_alertmanager_config(bundle) -> None:
    result = run(bundle.tool("amtool"), "check-config", "alertmanager.yml", cwd=bundle.monitoring)
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=InferhubModelDown", "severity=critical", "model=llama"], {"inferhub-oncall", "inferhub-webhook"}),
        (["alertname=InferhubBackendDown", "severity=warning", "model=llama"], {"inferhub-webhook"}),
        (["alertname=InferhubTenantNearBudget", "severity=warning", "tenant=acme"],
         {"inferhub-billing", "inferhub-webhook"}),
    ],
)  # fmt: skip
def test_alertmanager_routes_alerts_to_their_receivers(bundle, labels: list[str], receivers: set[str]) -> None:
    result = run(bundle.tool("amtool"), "config", "routes", "test", "--config.file=alertmanager.yml", *labels,
                 cwd=bundle.monitoring)  # fmt: skip
    assert set(result.stdout.strip().split(",")) == receivers


def test_alertmanager_has_webhook_email_and_slack_and_mutes_backend_down_under_model_down(bundle) -> None:
    config = bundle.yaml("alertmanager.yml")
    kinds = {kind for receiver in config["receivers"] for kind in receiver if kind.endswith("_configs")}
    assert {"webhook_configs", "email_configs", "slack_configs"} <= kinds
    assert {
        "source_matchers": ['alertname="InferhubModelDown"'],
        "target_matchers": ['alertname="InferhubBackendDown"'],
        "equal": ["model"],
    } in config["inhibit_rules"]


# ---------------------------------------------------------------------------------------------- Grafana


def test_dashboards_are_grafana_dashboard_json(bundle) -> None:
    boards = bundle.dashboards()
    assert len({board["uid"] for board in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["title"].startswith("Inferhub / ") and board["schemaVersion"] >= 36, name
        assert board["templating"]["list"][0] == {**board["templating"]["list"][0], "type": "datasource",
                                                  "name": "datasource", "query": "prometheus"}  # fmt: skip
        panels = bundle.panels(board["panels"])
        assert len({panel["id"] for panel in panels}) == len(panels), f"{name}: panel ids repeat"
        for panel in panels:
            where = f"{name}: {panel.get('title')!r}"
            assert panel["type"] and panel["title"], where
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, where
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, where
            if panel["type"] in ("row", "text"):
                continue
            assert panel["targets"], where
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where
            assert all(t["expr"].strip() for t in panel["targets"]), where


def test_dashboards_show_what_each_is_for(bundle) -> None:
    exprs = {name: " ".join(t["expr"] for p in bundle.panels(board["panels"]) for t in p.get("targets", []))
             for name, board in bundle.dashboards().items()}  # fmt: skip
    used = {name: set(METRIC_NAME.findall(text)) for name, text in exprs.items()}
    overview = {"llm_requests_total", "llm_request_duration_seconds_bucket", "llm_tokens_generated_total"}
    assert overview <= used["overview"]
    assert {"llm_backend_up", "llm_backend_circuit_state", "llm_requests_in_flight",
            "llm_time_to_first_token_seconds_bucket", "llm_tokens_generated_total"} <= used["backends"]  # fmt: skip
    assert {"llm_usage_tokens_total", "llm_usage_cost_total"} <= used["tenants-cost"]
    assert "by (tenant" in exprs["tenants-cost"]

    assert {"llm_jobs", "llm_rag_ingest_seconds_count", "llm_rag_ingest_seconds_bucket",
            "llm_rag_chunks_ingested_total", "llm_rag_query_seconds_bucket"} <= used["jobs-rag"]  # fmt: skip
    assert 'state="queued"' in exprs["jobs-rag"] and "by (le, mode)" in exprs["jobs-rag"]
    for name, board in bundle.dashboards().items():
        assert "placeholder" not in json.dumps(board).lower(), f"{name}.json still has placeholder panels"


def test_grafana_provisioning_points_at_the_dashboards(bundle) -> None:
    datasources = bundle.yaml("grafana/provisioning/datasources/inferhub.yml")["datasources"]
    assert {(d["type"], d["uid"]) for d in datasources} >= {("prometheus", "prometheus"), ("loki", "loki")}
    (provider,) = bundle.yaml("grafana/provisioning/dashboards/inferhub.yml")["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


# ---------------------------------------------------------------------------------------------- Loki


def test_promtail_parses_json_logs_and_labels_only_level_and_event(bundle) -> None:
    config = bundle.yaml("loki/promtail.yml")
    assert config["clients"][0]["url"].endswith("/loki/api/v1/push")
    for job in config["scrape_configs"]:
        stages = {next(iter(stage)): next(iter(stage.values())) for stage in job["pipeline_stages"]}
        assert {"level", "event", "request_id", "model", "backend"} <= set(stages["json"]["expressions"])
        assert set(stages["labels"]) == {"level", "event"}, job["job_name"]
        assert stages["timestamp"]["source"] == "timestamp"
    loki = bundle.yaml("loki/loki-config.yml")
    assert loki["server"]["http_listen_port"] == 3100


# ---------------------------------------------------------------------------------------------- live names


@pytest.fixture(scope="module")
def exported_names(inferhub: InferhubProcess, openai_client: openai.OpenAI) -> set[str]:
    """Metric names in a live /metrics scrape, after some traffic."""
    messages = [{"role": "user", "content": "Say hi."}]
    openai_client.chat.completions.create(model="smollm2", messages=messages, max_tokens=3)
    for _ in openai_client.chat.completions.create(model="smollm2", messages=messages, max_tokens=3, stream=True):
        pass
    openai_client.embeddings.create(model="all-minilm-l6-v2", input="hello")
    httpx.get(f"{inferhub.url}/v1/models", headers={"Authorization": "Bearer wrong-key"}, timeout=30)

    text = httpx.get(f"{inferhub.url}/metrics", timeout=30).text
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    names |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    # The series of a histogram with no observation yet (a labelled one has no sample lines until then).
    for family in re.findall(r"^# TYPE (\S+) histogram$", text, re.MULTILINE):
        names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return names


def test_every_metric_an_alert_or_dashboard_reads_is_exported(bundle, exported_names: set[str]) -> None:
    """Every name any PromQL expression selects (not just the llm_ ones) is in the live scrape."""
    used: dict[str, set[str]] = {}
    for query in bundle.queries():
        for name in promql_metric_names(query.expr):
            used.setdefault(name, set()).add(query.where)
    assert any(name.startswith("llm_") for name in used), "no llm_ metric found in the bundle's queries"
    dashboards = {q.where.split(".json:")[0] for q in bundle.dashboard_queries()}
    assert dashboards == set(bundle.dashboard_names), "a dashboard has no query"

    missing = {name: sorted(where) for name, where in used.items()
               if name not in exported_names and name not in NOT_YET_EXPORTED
               and not (name in PROMETHEUS_SERIES and all(w.startswith("alert ") for w in where))}  # fmt: skip
    assert missing == {}, "metrics used by the bundle but not exported by Inferhub"

    for name, alert in NOT_YET_EXPORTED.items():
        assert used.get(name, set()) <= {f"alert {alert}"}, f"{name} is not exported yet; only {alert} may use it"


def test_every_exported_metric_is_documented(bundle, exported_names: set[str]) -> None:
    documented = (bundle.root / "docs" / "monitoring.md").read_text()
    families = {HISTOGRAM_SUFFIX.sub("", name) for name in exported_names if name.startswith("llm_")}
    assert families, "the scrape had no llm_ metric"
    assert {name for name in families if f"`{name}`" not in documented} == set(), "add them to docs/monitoring.md"
