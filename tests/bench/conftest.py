"""The harness lives in ``bench/`` at the repository root, which is not an installed package: put the root on
``sys.path`` (pytest runs with ``--import-mode=importlib`` and only ``tests`` on the path)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
