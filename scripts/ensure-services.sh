#!/usr/bin/env bash
# Makes sure the machine services the test suite uses are running. PostgreSQL needs nothing here: the
# suite starts the embedded PostgreSQL 18 itself. Redis (shared rate-limit counters across replicas) is
# installed from Debian when missing and started on 127.0.0.1:6379 when stopped. Without root or apt it
# says so, and the tests that need Redis skip with a reason naming it.
set -u

status() { printf '  %-12s %s\n' "$1" "$2"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

install_redis() {
  local log policy_created=0 ok=0
  log="$(mktemp)"
  # The package would start its own daemon (with persistence); keep it from starting, as in containers.
  if [ ! -e /usr/sbin/policy-rc.d ] \
    && as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d' 2>/dev/null; then
    policy_created=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server)
  if as_root "${apt[@]}" >"$log" 2>&1; then
    ok=1
  elif as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 && as_root "${apt[@]}" >>"$log" 2>&1; then
    ok=1
  fi
  [ "$policy_created" -eq 1 ] && as_root rm -f /usr/sbin/policy-rc.d
  if [ "$ok" -ne 1 ]; then
    status redis "could not install redis-server (last lines of the apt log follow); Redis tests will skip"
    tail -n 5 "$log" | sed 's/^/    /'
  fi
  rm -f "$log"
  return $((1 - ok))
}

echo "services:"
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && as_root true 2>/dev/null; then
    install_redis && status redis "installed redis-server from Debian"
  else
    status redis "not installed, and no root or apt to install it; Redis tests will skip"
  fi
fi
if command -v redis-server >/dev/null 2>&1; then
  if redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    status redis "running on 127.0.0.1:6379"
  elif redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp >/dev/null 2>&1; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break
      sleep 0.5
    done
    status redis "started on 127.0.0.1:6379"
  else
    status redis "installed but could not be started; Redis tests will skip"
  fi
fi
exit 0
