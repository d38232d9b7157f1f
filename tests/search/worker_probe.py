"""Module-level pool task for tests/search/test_loss.py (spawned workers import it by name)."""

from __future__ import annotations

import sys


def loaded(names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that this process has imported."""
    return [name for name in names if name in sys.modules]
