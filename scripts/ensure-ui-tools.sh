#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard tests (tests/ui, Playwright for Python drives it with
# executable_path=/usr/bin/chromium; `playwright install` is never used: it downloads a browser build).
# Idempotent and quiet; never fails the build: without root, apt or the network it says so and the
# UI tests skip with a reason naming /usr/bin/chromium.
set -u

if [ -x /usr/bin/chromium ]; then
  printf '  %-12s %s\n' chromium "$(/usr/bin/chromium --version 2>/dev/null | head -1)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "  chromium     missing and cannot be installed here (needs root and apt-get); tests/ui will skip"
  exit 0
fi
echo "  chromium     installing the Debian package"
if ! { apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 &&
       apt-get install -y -qq chromium >/dev/null 2>&1; }; }; then
  echo "  chromium     apt-get install failed; tests/ui will skip"
  exit 0
fi
printf '  %-12s %s\n' chromium "$(/usr/bin/chromium --version 2>/dev/null | head -1)"
