"""Fixtures of the wavetable tests: a live synth, the init preset, the built-in catalog."""

from __future__ import annotations

import json

import pytest
import vita

from vitalmatch.synth.wavetables import WavetableCatalog


@pytest.fixture(scope="module")
def synth():
    return vita.Synth()


@pytest.fixture(scope="module")
def init_preset(synth) -> dict:
    """The init preset as a dict, taken before any test loads something else."""
    return json.loads(synth.to_json())


@pytest.fixture(scope="module")
def builtin() -> WavetableCatalog:
    return WavetableCatalog.builtin()
