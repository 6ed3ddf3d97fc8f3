"""Codex CLI and Claude Code driven against Inferhub (and against a recording server)."""
