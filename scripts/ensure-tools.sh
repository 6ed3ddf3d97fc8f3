#!/usr/bin/env bash
# Installs the command-line tools the monitoring tests use, when they are missing:
#   promtool, prometheus  (Debian package `prometheus`)
#   amtool                (Debian package `prometheus-alertmanager`)
# Idempotent and quiet: with the tools present it only prints their versions. It never
# fails the build: if it cannot install (not root, no apt, no network) it says so and
# the tests that need the tool skip with a reason naming it.
#
# The Debian packages start their daemons on install (prometheus on :9090, alertmanager
# on :9093). The tests run their own Prometheus on a free port and need no daemon, so
# this script keeps the services from starting (a temporary policy-rc.d that answers
# "not allowed", the way Debian container images do) and stops them if they started
# anyway (`service prometheus stop`, falling back to ending the daemon by its exact
# name, `pkill -x prometheus`, which never matches a test's own `prometheus` started
# later, as this script runs before the tests).
set -u

status() { printf '  %-12s %s\n' "$1" "$2"; }

# tool -> Debian package
declare -A PACKAGE=([promtool]=prometheus [prometheus]=prometheus [amtool]=prometheus-alertmanager)

missing_packages() {
  local tool packages=()
  for tool in promtool prometheus amtool; do
    command -v "$tool" >/dev/null 2>&1 || packages+=("${PACKAGE[$tool]}")
  done
  printf '%s\n' "${packages[@]}" | sort -u | sed '/^$/d'
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

stop_daemons() {
  local service daemon
  for service in prometheus prometheus-alertmanager; do
    as_root service "$service" stop >/dev/null 2>&1 || true
  done
  for daemon in prometheus prometheus-alertmanager; do
    if pgrep -x "$daemon" >/dev/null 2>&1; then
      as_root pkill -x "$daemon" >/dev/null 2>&1 || true
    fi
  done
}

install_packages() {
  local log policy_created=0
  log="$(mktemp)"
  if [ ! -e /usr/sbin/policy-rc.d ] && as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d' 2>/dev/null; then
    policy_created=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  local ok=0
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

echo "tools:"
mapfile -t packages < <(missing_packages)
if [ "${#packages[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    status apt "apt-get not found: cannot install ${packages[*]}; the tests needing them will skip"
  elif ! as_root true 2>/dev/null; then
    status apt "not root and no passwordless sudo: cannot install ${packages[*]}; the tests needing them will skip"
  else
    install_packages "${packages[@]}"
  fi
fi

for tool in promtool prometheus amtool; do
  if command -v "$tool" >/dev/null 2>&1; then
    version="$("$tool" --version 2>&1 | head -n 1)"
    status "$tool" "${version:-installed}"
  else
    status "$tool" "missing (apt package ${PACKAGE[$tool]}); tests needing it will skip"
  fi
done
exit 0
