"""Shared fixtures: the live registry, the built-in catalog, and the path of the shared presets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_presets_dir() -> Path | None:
    """``../shared/presets`` beside the checkout (or $VITALMATCH_SHARED/presets), if present."""
    root = Path(os.environ.get("VITALMATCH_SHARED", REPO.parent / "shared"))
    d = root / "presets"
    return d if d.is_dir() and any(d.rglob("*.vital")) else None


@pytest.fixture(scope="session")
def presets_dir() -> Path:
    d = shared_presets_dir()
    if d is None:
        pytest.skip("shared presets folder (../shared/presets) not present")
    return d


@pytest.fixture(scope="session")
def catalog():
    from vitalmatch.synth.wavetables import WavetableCatalog

    return WavetableCatalog.builtin()


@pytest.fixture(scope="session")
def registry(catalog):
    from vitalmatch.synth.params import ParamRegistry

    return ParamRegistry.from_synth(wavetable_names=catalog.names)
