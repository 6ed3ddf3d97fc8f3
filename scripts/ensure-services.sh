#!/usr/bin/env bash
# Checks the machine services the test suite may use, starting them when they are
# installed but stopped. The suite itself needs none of them: it starts the
# embedded PostgreSQL and the embedded models on its own.
set -u

status() { printf '  %-12s %s\n' "$1" "$2"; }

echo "services:"
if command -v redis-server >/dev/null 2>&1; then
  if redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    status redis "running on 127.0.0.1:6379"
  else
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null 2>&1 \
      && status redis "started on 127.0.0.1:6379" || status redis "installed but could not be started"
  fi
else
  status redis "not installed (not needed by the current suite)"
fi
exit 0
