#!/usr/bin/env bash
# Installs what `make bench` needs, when it is missing. Idempotent and quiet: with everything
# present it only prints versions.
#   nginx   (Debian package `nginx-light`, else `nginx`): the static upstream on loopback
#   wrk     (Debian package `wrk`): the throughput load generator (LuaJIT scripts)
#   py-spy  (PyPI, into the venv): the sampling profiler (`make bench-profile`, docs/performance.md)
# It never fails the build: if it cannot install (not root, no apt, no network) it says so and
# the harness falls back (no wrk: the in-process load generator; no nginx: it stops with a message).
# The Debian nginx package starts a daemon on :80 on install; a temporary policy-rc.d keeps it
# from starting (the harness runs its own nginx on a free port with its own config).
set -u
VENV="${VENV:-.venv}"

status() { printf '  %-10s %s\n' "$1" "$2"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

apt_install() {
  local log policy_created=0 ok=0
  log="$(mktemp)"
  if [ ! -e /usr/sbin/policy-rc.d ] && as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d' 2>/dev/null; then
    policy_created=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@")
  if as_root "${apt[@]}" >"$log" 2>&1; then
    ok=1
  elif as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 && as_root "${apt[@]}" >>"$log" 2>&1; then
    ok=1
  fi
  [ "$policy_created" -eq 1 ] && as_root rm -f /usr/sbin/policy-rc.d
  if [ "$ok" -ne 1 ]; then
    status apt "could not install $* (last lines of the apt log follow)"
    tail -n 5 "$log" | sed 's/^/    /'
  fi
  rm -f "$log"
  return $((1 - ok))
}

echo "bench tools:"
packages=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
if [ "${#packages[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    status apt "apt-get not found: cannot install ${packages[*]}"
  elif ! as_root true 2>/dev/null; then
    status apt "not root and no passwordless sudo: cannot install ${packages[*]}"
  elif ! apt_install "${packages[@]}"; then
    # nginx-light is gone from newer Debian releases: plain nginx is the same binary for our use.
    if [[ " ${packages[*]} " == *" nginx-light "* ]]; then
      apt_install "${packages[@]/nginx-light/nginx}" || true
    fi
  fi
fi
if [ -x "$VENV/bin/python" ] && ! [ -x "$VENV/bin/py-spy" ]; then
  "$VENV/bin/pip" install --quiet py-spy >/dev/null 2>&1 || status py-spy "pip install py-spy failed (profiling only)"
fi

nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
if [ -x "$nginx_bin" ]; then status nginx "$("$nginx_bin" -v 2>&1 | head -n 1)"; else status nginx "missing"; fi
if command -v wrk >/dev/null 2>&1; then status wrk "$(wrk -v 2>&1 | head -n 1)"; else status wrk "missing"; fi
if [ -x "$VENV/bin/py-spy" ]; then status py-spy "$("$VENV/bin/py-spy" --version 2>&1)"; else status py-spy "missing"; fi
if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  status redis "answers on 127.0.0.1:6379 (the workers scenario uses db 8)"
else
  status redis "not answering (the workers scenario runs with in-memory limits per worker)"
fi
exit 0
