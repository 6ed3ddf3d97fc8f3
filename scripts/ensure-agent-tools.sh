#!/usr/bin/env bash
# Installs the coding-agent CLIs the agent tests (tests/agents/) drive against Inferhub, pinned, into
# .tools/agents (npm install --prefix; never global, never the user's ~/.npm config beyond the cache):
#
#   @openai/codex               Codex CLI (`codex exec`); its native binary is the optional dependency
#                               @openai/codex-linux-x64 (an npm alias of @openai/codex@VERSION-linux-x64)
#   @anthropic-ai/claude-code   Claude Code (`claude -p`); its native binary is the optional dependency
#                               @anthropic-ai/claude-code-linux-x64, copied over bin/claude.exe by the
#                               package's postinstall (run here explicitly if npm skipped it)
#
# The versions are the newest that declare support for Node.js 20 (Claude Code 2.1.198 and later
# require Node.js 22). Both come from the npm registry alone: no postinstall download.
# Idempotent and quick: with the pinned versions installed and runnable it only prints one line per
# tool. Unlike the other ensure-*.sh scripts it fails (exit 1, saying why) when npm is missing or the
# install does not give two runnable CLIs: the agent runs are part of what the suite must show. Run
# without it, the agent tests skip with a reason naming this script.
set -u

cd "$(dirname "$0")/.." || exit 0
ROOT="$(pwd)"
DIR="$ROOT/.tools/agents"
CODEX_VERSION="0.171.0"
CLAUDE_VERSION="2.1.197"
PACKAGES=("@openai/codex@$CODEX_VERSION" "@anthropic-ai/claude-code@$CLAUDE_VERSION")
WANTED="${PACKAGES[*]}"

status() { printf '  %-12s %s\n' "$1" "$2"; }

# The version a CLI reports, empty when it does not run (missing, or its native binary absent).
codex_version() { "$DIR/node_modules/.bin/codex" --version 2>/dev/null | awk '{print $NF}'; }
claude_version() { "$DIR/node_modules/.bin/claude" --version 2>/dev/null | awk '{print $1}'; }

installed() {
  [ -f "$DIR/.installed" ] && [ "$(cat "$DIR/.installed")" = "$WANTED" ] \
    && [ "$(codex_version)" = "$CODEX_VERSION" ] && [ "$(claude_version)" = "$CLAUDE_VERSION" ]
}

failed=0
echo "agent tools:"
if ! installed; then
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    status npm "npm/node not found: install Node.js 20+ with npm to get Codex CLI and Claude Code"
    exit 1
  fi
  mkdir -p "$DIR"  # .tools is in .gitignore
  [ -f "$DIR/package.json" ] || printf '{"private": true}\n' >"$DIR/package.json"
  log="$(mktemp)"
  # --include=optional: the native binaries are optional dependencies (an omit=optional npm config
  # would leave both CLIs without them).
  if npm install --prefix "$DIR" --save-exact --include=optional --no-audit --no-fund --loglevel=error \
    "${PACKAGES[@]}" >"$log" 2>&1; then
    # Newer npm versions skip install scripts that are not approved: run Claude Code's (it copies
    # the native binary over the bin/claude.exe placeholder; no network) when its binary is not in place.
    if [ -z "$(claude_version)" ] && [ -f "$DIR/node_modules/@anthropic-ai/claude-code/install.cjs" ]; then
      (cd "$DIR/node_modules/@anthropic-ai/claude-code" && node install.cjs) >>"$log" 2>&1
    fi
    if [ "$(codex_version)" = "$CODEX_VERSION" ] && [ "$(claude_version)" = "$CLAUDE_VERSION" ]; then
      printf '%s' "$WANTED" >"$DIR/.installed"
    else
      status npm "installed $WANTED, but a CLI does not run (last lines of the npm log follow)"
      tail -n 5 "$log" | sed 's/^/    /'
      failed=1
    fi
  else
    status npm "npm install $WANTED into .tools/agents failed (last lines of its log follow)"
    tail -n 5 "$log" | sed 's/^/    /'
    failed=1
  fi
  rm -f "$log"
fi

if [ -n "$(codex_version)" ]; then
  status codex "$(codex_version) (.tools/agents/node_modules/.bin/codex)"
else
  status codex "missing (.tools/agents); tests/agents will skip"
fi
if [ -n "$(claude_version)" ]; then
  status claude "$(claude_version) (.tools/agents/node_modules/.bin/claude)"
else
  status claude "missing (.tools/agents); tests/agents will skip"
fi
exit "$failed"
