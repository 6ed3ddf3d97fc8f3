"""deploy/terraform: the Hetzner Cloud module and its cloud-init user data, checked with real tools.

No Terraform provider can be downloaded here, so nothing is planned or applied. Instead:
python-hcl2 parses every ``.tf`` file and the structure is checked (provider pinned, firewall,
sensitive keys, variables), checkov scans the folder, the user data template is rendered with
sample values (by a small renderer of the only template syntax it uses, and by ``terraform`` itself
when a binary is on the PATH) and validated with Debian's ``cloud-init schema``, and the compose
file it embeds is validated together with ``deploy/vps/docker-compose.yml`` by Docker Compose.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from deploy_support import DEPLOY, REPO, assert_ok, require, run, tool_path, which
from test_configs import compose_command

TERRAFORM = DEPLOY / "terraform"
MODULE = TERRAFORM / "modules" / "hetzner_instance"
TEMPLATE = MODULE / "cloud-init.yaml.tftpl"
VPS = DEPLOY / "vps"
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))

SAMPLE = {
    "domain": "inferhub.example.com",
    "acme_email": "admin@example.com",
    "inferhub_repository": "https://git.example.com/you/inferhub.git",
    "inferhub_ref": "v0.1.0",
    "inferhub_image": "",
    "inferhub_api_key": "ih-sample-admin-key-0123456789abcdefghij",
    "inferhub_secret_key": "c2FtcGxlLW1hc3Rlci1rZXktMzItYnl0ZXMtbG9uZyE=",
    "local_chat_threads": "2",
    "log_level": "info",
    "ssh_allowed_cidrs": "203.0.113.7/32 2001:db8::/48",
    "data_device": "/dev/disk/by-id/scsi-0HC_Volume_12345678",
    "data_dir": "/mnt/inferhub",
}


# -- python-hcl2 ---------------------------------------------------------------------------------


def hcl(path: Path) -> dict:
    """The file as python-hcl2 8 reads it (run in .tools/terraform: checkov's fork owns `hcl2` elsewhere)."""
    python = require(tool_path("terraform/bin/python"), "python-hcl2 (.tools/terraform)")
    code = "import hcl2, json, sys; print(json.dumps(hcl2.load(open(sys.argv[1]))))"
    result = run([python, "-c", code, str(path)])
    assert_ok(result, f"python-hcl2 {path.relative_to(REPO)}")
    return strip_markers(json.loads(result.stdout))


def strip_markers(value: object) -> object:
    """Without python-hcl2's own keys (``__is_block__``, ``__comments__``)."""
    if isinstance(value, dict):
        return {k: strip_markers(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [strip_markers(v) for v in value]
    return value


def unquote(value: object) -> object:
    """python-hcl2 8 keeps string literals quoted ('"443"'); expressions stay as '${...}'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(document: dict, kind: str) -> dict[str, dict]:
    """`variable`/`output` blocks by name."""
    return {unquote(name): body for entry in document.get(kind, []) for name, body in entry.items()}


def resources(document: dict) -> dict[tuple[str, str], dict]:
    found = {}
    for entry in document.get("resource", []):
        for kind, named in entry.items():
            for name, body in named.items():
                found[(unquote(kind), unquote(name))] = body
    return found


def test_every_tf_file_parses() -> None:
    assert {p.relative_to(TERRAFORM).as_posix() for p in TF_FILES} >= {
        "main.tf", "variables.tf", "outputs.tf", "versions.tf",
        "modules/hetzner_instance/main.tf", "modules/hetzner_instance/variables.tf",
        "modules/hetzner_instance/outputs.tf", "modules/hetzner_instance/versions.tf",
    }  # fmt: skip
    for path in TF_FILES:
        assert hcl(path), path


def test_hcloud_provider_is_pinned() -> None:
    for directory in (TERRAFORM, MODULE):
        terraform = hcl(directory / "versions.tf")["terraform"][0]
        provider = terraform["required_providers"][0]["hcloud"]
        assert unquote(provider["source"]) == "hetznercloud/hcloud"
        version = unquote(provider["version"])
        assert re.fullmatch(r"(=\s*)?\d+\.\d+\.\d+|~>\s*\d+\.\d+(\.\d+)?", version), f"not pinned: {version}"
        assert unquote(terraform["required_version"]).startswith(">=")


def test_firewall_admits_only_https_and_ssh_from_configured_networks() -> None:
    found = resources(hcl(MODULE / "main.tf"))
    firewalls = [body for (kind, _), body in found.items() if kind == "hcloud_firewall"]
    assert len(firewalls) == 1
    rules = {unquote(r["port"]): r for r in firewalls[0]["rule"]}
    assert sorted(rules) == ["22", "443"], f"the firewall must open 443 and 22 only: {sorted(rules)}"
    for rule in rules.values():
        assert (unquote(rule["direction"]), unquote(rule["protocol"])) == ("in", "tcp")
    assert [unquote(ip) for ip in rules["443"]["source_ips"]] == ["0.0.0.0/0", "::/0"]
    assert rules["22"]["source_ips"] == "${var.ssh_allowed_cidrs}"
    server = found[("hcloud_server", "this")]
    assert server["firewall_ids"] == ["${hcloud_firewall.this.id}"]
    # The in-machine firewall (ufw) opens the same two ports.
    allows = re.findall(r"^\s*ufw allow .*$", TEMPLATE.read_text(), re.M)
    assert [line.strip() for line in allows] == [
        'ufw allow from "$cidr" to any port 22 proto tcp',
        "ufw allow 443/tcp",
    ]
    assert "ufw default deny incoming" in TEMPLATE.read_text()
    assert "for cidr in $SSH_ALLOWED_CIDRS; do" in TEMPLATE.read_text()


def test_volume_outlives_the_server() -> None:
    found = resources(hcl(MODULE / "main.tf"))
    volume = found[("hcloud_volume", "data")]
    assert volume["delete_protection"] is True
    assert volume["lifecycle"][0]["prevent_destroy"] is True
    assert unquote(volume["format"]) == "ext4"
    # Attached, not created by the server (a server replacement keeps the volume), and not
    # auto-mounted: cloud-init mounts it where the compose volumes are bound.
    attachment = found[("hcloud_volume_attachment", "data")]
    assert attachment["automount"] is False
    for family in ("ipv4", "ipv6"):
        assert found[("hcloud_primary_ip", family)]["auto_delete"] is False


def test_variables_are_typed_and_described() -> None:
    for path in (TERRAFORM / "variables.tf", MODULE / "variables.tf"):
        variables = blocks(hcl(path), "variable")
        assert variables, path
        for name, body in variables.items():
            assert body.get("type"), f"{path.relative_to(REPO)}: variable {name} has no type"
            assert len(unquote(body.get("description", ""))) > 10, f"{path.relative_to(REPO)}: {name} undescribed"


SECRETS = {"inferhub_api_key", "inferhub_secret_key"}


def test_keys_are_sensitive_and_in_no_output() -> None:
    for directory in (TERRAFORM, MODULE):
        variables = blocks(hcl(directory / "variables.tf"), "variable")
        sensitive = {name for name, body in variables.items() if body.get("sensitive") is True}
        assert sensitive == SECRETS, f"{directory.relative_to(REPO)}: sensitive variables {sorted(sensitive)}"
        outputs = blocks(hcl(directory / "outputs.tf"), "output")
        assert {"ipv4_address", "ipv6_address", "url", "ssh_command"} <= set(outputs)
        for name, body in outputs.items():
            value = json.dumps(body["value"])
            assert not re.search(r"_key\b|secret|user_data|api_key", value), f"output {name} exposes {value}"
            assert body.get("sensitive") is not True, f"output {name}: an output that needs hiding is a secret"
    # The root passes every module variable it declares, and only declared ones.
    module = blocks(hcl(TERRAFORM / "main.tf"), "module")["inferhub"]
    declared = blocks(hcl(MODULE / "variables.tf"), "variable")
    passed = set(module) - {"source"}
    assert passed <= set(declared), passed - set(declared)
    required = {name for name, body in declared.items() if "default" not in body}
    assert required <= passed, required - passed
    assert module["inferhub_api_key"] == "${var.inferhub_api_key}"


def test_tfvars_example_sets_every_required_root_variable() -> None:
    variables = blocks(hcl(TERRAFORM / "variables.tf"), "variable")
    example = hcl(TERRAFORM / "terraform.tfvars.example")
    assert set(example) <= set(variables), set(example) - set(variables)
    required = {name for name, body in variables.items() if "default" not in body}
    assert required <= set(example), required - set(example)
    ignored = (TERRAFORM / ".gitignore").read_text().split()
    assert {"terraform.tfvars", "*.tfstate", ".terraform/"} <= set(ignored)


def passes_validation(condition: str, value: str) -> bool:
    """A string variable's `can(regex(...)) [&& !strcontains(...)]` condition, with Python's re (RE2 alike here)."""
    shape = r'\$\{can\(regex\("((?:[^"\\]|\\.)*)", var\.\w+\)\)(?: && !strcontains\(var\.\w+, "([^"]*)"\))?\}'
    pattern = re.fullmatch(shape, condition)
    assert pattern, f"not a regex condition: {condition}"
    regex = pattern.group(1).encode().decode("unicode_escape")
    return re.search(regex, value) is not None and not (pattern.group(2) and pattern.group(2) in value)


def test_validations_refuse_placeholders_branches_and_shell_characters() -> None:
    variables = blocks(hcl(MODULE / "variables.tf"), "variable")
    example = {k: unquote(v) for k, v in hcl(TERRAFORM / "terraform.tfvars.example").items()}
    cases = {
        "inferhub_api_key": ([SAMPLE["inferhub_api_key"]],
                             [example["inferhub_api_key"], "ih-short", "ih-" + "a b" * 20]),
        "inferhub_secret_key": ([SAMPLE["inferhub_secret_key"]], [example["inferhub_secret_key"], "x" * 44]),
        "inferhub_ref": (["v0.1.0", "v1.2.3-rc.1", "0123456789abcdef0123456789abcdef01234567"], ["main", "HEAD", "v1"]),
        "inferhub_repository": ([SAMPLE["inferhub_repository"], "git@git.example.com:you/inferhub.git"],
                                ["https://x.example/a b", "https://x.example/';reboot'", "file:///etc"]),
        "inferhub_image": (["", "registry.example.com/inferhub:0.1.0"], ["a b", "x'y"]),
        "domain": ([SAMPLE["domain"]], ["Inferhub.example.com", "localhost", "a b.example.com"]),
    }  # fmt: skip
    for name, (good, bad) in cases.items():
        condition = variables[name]["validation"][0]["condition"]
        for value in good:
            assert passes_validation(condition, value), (name, value)
        for value in bad:
            assert not passes_validation(condition, value), (name, value)


@pytest.mark.skipif(not shutil.which("terraform"), reason="terraform is not on the PATH (fmt only; optional)")
def test_terraform_fmt() -> None:
    assert_ok(run(["terraform", "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)]), "terraform fmt -check")


# -- checkov -------------------------------------------------------------------------------------


POLICIES = TERRAFORM / "checkov"


def checkov(directory: Path) -> dict:
    """checkov's reports by framework: its own policies, and ours for Hetzner resources (it has none)."""
    binary = require(tool_path("checkov/bin/checkov"), "checkov (.tools/checkov)")
    args = [binary, "-d", str(directory), "--framework", "terraform", "secrets", "--external-checks-dir",
            str(directory / "checkov"), "--skip-download", "--compact", "-o", "json"]  # fmt: skip
    result = run(args, cwd=directory, timeout=300)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    return {r["check_type"]: r for r in (reports if isinstance(reports, list) else [reports]) if "check_type" in r}


def test_checkov_passes_or_skips_with_a_reason() -> None:
    reports = checkov(TERRAFORM)
    for kind, report in reports.items():
        failed = report["results"]["failed_checks"]
        assert failed == [], [(c["check_id"], c["file_path"], c["resource"]) for c in failed]
        for check in report["results"]["skipped_checks"]:
            reason = check.get("check_result", {}).get("suppress_comment")
            assert reason, f"{kind}: {check['check_id']} skipped without a reason"
    passed = {c["check_id"] for c in reports["terraform"]["results"]["passed_checks"]}
    ours = {yaml.safe_load(p.read_text())["metadata"]["id"] for p in POLICIES.glob("*.yaml")}
    assert ours == {"CKV2_IH_1", "CKV2_IH_2", "CKV2_IH_3", "CKV2_IH_4"}
    assert ours <= passed, f"policies that evaluated nothing: {sorted(ours - passed)}"


def test_checkov_fails_a_weakened_copy(tmp_path: Path) -> None:
    """The scan above is not green by accident: a copy with port 80 open and no delete protection fails."""
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy)
    main = copy / "modules" / "hetzner_instance" / "main.tf"
    text = main.read_text()
    main.write_text(text.replace('port        = "443"', 'port        = "80"').replace(
        "delete_protection = true", "delete_protection = false"))  # fmt: skip
    failed = {c["check_id"] for c in checkov(copy)["terraform"]["results"]["failed_checks"]}
    assert {"CKV2_IH_1", "CKV2_IH_3"} <= failed, failed


# -- the cloud-init user data --------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\$\$\{|%%\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{|%\{")


def render(template: str, values: dict[str, str]) -> str:
    """Terraform's templatefile for the syntax the template uses: ``${name}``, and ``$${``/``%%{`` escapes.

    Any other interpolation (``${f(x)}``) or a directive (``%{ if }``) is rejected, not guessed.
    """

    def substitute(match: re.Match) -> str:
        token = match.group(0)
        if token in ("$${", "%%{"):
            return token[1:]
        if match.group(1) is None:
            raise ValueError(
                f"unsupported template syntax at offset {match.start()}: {template[match.start() :][:40]!r}"
            )
        if match.group(1) not in values:
            raise KeyError(f"vars map does not contain key {match.group(1)!r}")
        return values[match.group(1)]

    return PLACEHOLDER.sub(substitute, template)


def template_names() -> set[str]:
    return {m.group(1) for m in PLACEHOLDER.finditer(TEMPLATE.read_text()) if m.group(1)}


def test_renderer_handles_only_the_plain_syntax() -> None:
    assert render("a ${x} $${y} %%{z}", {"x": "1"}) == "a 1 ${y} %{z}"
    for bad in ("${upper(x)}", "%{ if x }y%{ endif }"):
        with pytest.raises(ValueError):
            render(bad, {"x": "1"})
    with pytest.raises(KeyError):
        render("${missing}", {})


def test_templatefile_call_passes_exactly_the_template_names() -> None:
    user_data = hcl(MODULE / "main.tf")["locals"][0]["user_data"]
    assert user_data.startswith('${templatefile("${path.module}/cloud-init.yaml.tftpl", {')
    passed = set(re.findall(r"[{,]\s*([a-z_]+) = ", user_data))
    assert passed == template_names() == set(SAMPLE)


@pytest.fixture
def user_data(tmp_path: Path) -> Path:
    path = tmp_path / "user-data.yaml"
    path.write_text(render(TEMPLATE.read_text(), SAMPLE))
    return path


def test_rendered_user_data_passes_cloud_init_schema(user_data: Path) -> None:
    cloud_init = require(tool_path("bin/cloud-init"), "cloud-init (Debian package, .tools/bin/cloud-init)")
    result = run([cloud_init, "schema", "--config-file", str(user_data)])
    assert_ok(result, "cloud-init schema")
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_rejects_a_broken_user_data(tmp_path: Path) -> None:
    cloud_init = require(tool_path("bin/cloud-init"), "cloud-init (Debian package, .tools/bin/cloud-init)")
    broken = tmp_path / "broken.yaml"
    broken.write_text(render(TEMPLATE.read_text(), SAMPLE).replace("runcmd:\n  - [", "runcmd: 7\nx:\n  - [", 1))
    assert run([cloud_init, "schema", "--config-file", str(broken)]).returncode != 0


@pytest.mark.skipif(not shutil.which("terraform"), reason="terraform is not on the PATH (optional cross-check)")
def test_terraform_templatefile_renders_the_same(tmp_path: Path) -> None:
    """Where a terraform binary exists, its own templatefile gives byte for byte the tested user data."""
    config = {"variable": {"v": {"type": "map(string)"}},
              "output": {"user_data": {"value": f'${{templatefile("{TEMPLATE}", var.v)}}'}}}  # fmt: skip
    (tmp_path / "main.tf.json").write_text(json.dumps(config))
    (tmp_path / "terraform.tfvars.json").write_text(json.dumps({"v": SAMPLE}))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "CHECKPOINT_DISABLE": "1",
           "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": "/dev/null"}  # fmt: skip
    for args in (["init", "-input=false", "-backend=false"], ["apply", "-auto-approve", "-input=false"]):
        assert_ok(run(["terraform", *args], cwd=tmp_path, env=env), f"terraform {args[0]}")
    result = run(["terraform", "output", "-json", "user_data"], cwd=tmp_path, env=env)
    assert_ok(result, "terraform output")
    assert json.loads(result.stdout) == render(TEMPLATE.read_text(), SAMPLE)


def write_files(user_data: Path) -> dict[str, dict]:
    return {entry["path"]: entry for entry in yaml.safe_load(user_data.read_text())["write_files"]}


def test_user_data_runs_the_vps_stack_with_the_keys(user_data: Path) -> None:
    files = write_files(user_data)
    env = files["/etc/inferhub/vps.env"]
    assert env["permissions"] == "0600"
    assert f"INFERHUB_API_KEY={SAMPLE['inferhub_api_key']}\n" in env["content"]
    assert f"INFERHUB_SECRET_KEY={SAMPLE['inferhub_secret_key']}\n" in env["content"]
    # The only secrets are in that 0600 file; the world-readable settings have none.
    for path, entry in files.items():
        if path != "/etc/inferhub/vps.env":
            assert (
                SAMPLE["inferhub_api_key"] not in entry["content"]
                and SAMPLE["inferhub_secret_key"] not in entry["content"]
            ), path
    unit = files["/etc/systemd/system/inferhub.service"]["content"]
    assert "WorkingDirectory=/opt/inferhub/src/deploy/vps" in unit
    assert "-f docker-compose.yml -f /etc/inferhub/docker-compose.cloud-init.yml up -d" in unit
    assert f"RequiresMountsFor={SAMPLE['data_dir']}" in unit
    # Docker restarts containers by itself at boot: not before the data disk is there either.
    docker = files["/etc/systemd/system/docker.service.d/inferhub-data.conf"]["content"]
    assert docker == f"[Unit]\nRequiresMountsFor={SAMPLE['data_dir']}\n"
    script = files["/usr/local/sbin/inferhub-provision"]["content"]
    assert 'checkout --quiet --detach "$REF"' in script
    assert "systemctl enable --now docker.service inferhub-metadata-block.service inferhub.service" in script
    assert f"REF='{SAMPLE['inferhub_ref']}'" in files["/etc/inferhub/provision.conf"]["content"]
    assert yaml.safe_load(user_data.read_text())["runcmd"] == [["/usr/local/sbin/inferhub-provision"]]


def test_user_data_provisioning_script_passes_shellcheck(user_data: Path, tmp_path: Path) -> None:
    shellcheck = require(which("shellcheck"), "shellcheck (Debian package shellcheck)")
    script = tmp_path / "inferhub-provision"
    script.write_text(write_files(user_data)["/usr/local/sbin/inferhub-provision"]["content"])
    # SC1091: provision.conf is written by cloud-init on the machine, not here.
    assert_ok(run([shellcheck, "-s", "sh", "-e", "SC1091", str(script)]), "shellcheck inferhub-provision")


def test_embedded_compose_file_validates_with_deploy_vps(user_data: Path, tmp_path: Path) -> None:
    files = write_files(user_data)
    override = tmp_path / "docker-compose.cloud-init.yml"
    override.write_text(files["/etc/inferhub/docker-compose.cloud-init.yml"]["content"])
    env_file = tmp_path / "vps.env"
    env_file.write_text(files["/etc/inferhub/vps.env"]["content"])
    base = [*compose_command(), "-f", str(VPS / "docker-compose.yml"), "-f", str(override), "--env-file", str(env_file),
            "--profile", "*", "config"]  # fmt: skip
    assert_ok(run([*base, "-q"], cwd=VPS), "docker compose config (vps + cloud-init override)")
    result = run([*base, "--format", "json"], cwd=VPS)
    assert_ok(result, "docker compose config --format json")
    model = json.loads(result.stdout)
    services = model["services"]
    inferhub = services["inferhub"]
    assert inferhub["image"] == "inferhub:provisioned"
    assert inferhub["environment"]["INFERHUB_SECRET_KEY"] == SAMPLE["inferhub_secret_key"]
    assert inferhub["environment"]["INFERHUB_API_KEY"] == SAMPLE["inferhub_api_key"]
    # Still only Traefik, on 443 alone (as deploy/vps/ itself).
    published = {(name, p["published"]) for name, s in services.items() for p in s.get("ports", [])}
    assert published == {("traefik", "443")}
    # Both named volumes live on the data disk, which survives a new server.
    for volume, directory in (("inferhub-data", "home"), ("letsencrypt", "letsencrypt")):
        options = model["volumes"][volume]["driver_opts"]
        assert options == {"type": "none", "o": "bind", "device": f"{SAMPLE['data_dir']}/{directory}"}, volume
    script = files["/usr/local/sbin/inferhub-provision"]["content"]
    assert 'mkdir -p "$DATA_DIR/home" "$DATA_DIR/letsencrypt"' in script


# -- docs ----------------------------------------------------------------------------------------


def test_docs_cover_the_terraform_path() -> None:
    doc = (REPO / "docs" / "deploy" / "terraform.md").read_text()
    for topic in ("terraform init", "terraform apply", "Cost", "Update", "Destroy", "Without Terraform",
                  "HCLOUD_TOKEN", "state"):  # fmt: skip
        assert topic in doc, topic
    assert "terraform.md" in (REPO / "docs" / "deploy" / "README.md").read_text()
    assert "deploy/terraform" in (REPO / "README.md").read_text()


def test_the_documented_sed_renders_like_templatefile(tmp_path: Path) -> None:
    """docs/deploy/terraform.md, "Without Terraform": its sed command gives the templatefile result."""
    bash = require(which("bash"), "bash")
    doc = (REPO / "docs" / "deploy" / "terraform.md").read_text()
    section = doc.split("## 6. Without Terraform", 1)[1]
    command = re.search(r"```sh\n(sed .*?> user-data\.yaml)\n", section, re.S).group(1)
    command = command.replace("> user-data.yaml", f"> {tmp_path / 'user-data.yaml'}")
    keys = {"API_KEY": SAMPLE["inferhub_api_key"], "SECRET_KEY": SAMPLE["inferhub_secret_key"]}
    assert_ok(run([bash, "-c", command], cwd=REPO, env={"PATH": "/usr/bin:/bin", **keys}), "the documented sed")
    values = {**SAMPLE, "ssh_allowed_cidrs": "203.0.113.7/32", "data_device": "/dev/disk/by-id/YOUR-DATA-DISK"}
    assert (tmp_path / "user-data.yaml").read_text() == render(TEMPLATE.read_text(), values)


def test_user_data_systemd_units_verify(user_data: Path, tmp_path: Path) -> None:
    analyze = require(which("systemd-analyze"), "systemd-analyze (Debian package systemd)")
    # An image root as on the machine: the distribution's units, a stand-in for Ubuntu's docker.service
    # and the commands the units run (verify checks that they exist and are executable).
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/lib/systemd/system/docker.service").write_text(
        "[Unit]\nDescription=Docker\n[Service]\nExecStart=/usr/bin/dockerd\n[Install]\nWantedBy=multi-user.target\n"
    )
    for command in ("usr/bin/docker", "usr/bin/dockerd", "bin/sh"):
        stub = root / command
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    units = {path: entry for path, entry in write_files(user_data).items() if path.startswith("/etc/systemd/")}
    assert len(units) == 3, sorted(units)
    for path, entry in units.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(entry["content"])
    (root / "opt/inferhub/src/deploy/vps").mkdir(parents=True)
    for unit in ("inferhub.service", "inferhub-metadata-block.service", "docker.service"):
        result = run([analyze, "verify", f"--root={root}", unit])
        assert_ok(result, f"systemd-analyze verify {unit}")
        # verify exits 0 on unknown keys and bad values ("..., ignoring"): any message is a failure.
        assert result.stderr.strip() == "" and result.stdout.strip() == "", result.stderr + result.stdout
