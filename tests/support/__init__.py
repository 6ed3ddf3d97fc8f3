"""Helpers that drive real Inferhub processes from tests."""

from .inferhub_process import InferhubProcess, free_port, run_cli

__all__ = ["InferhubProcess", "free_port", "run_cli"]
