"""Fixtures of the tutorial tests: the init preset and a changed one, as dicts and loaded states."""

from __future__ import annotations

import json

import pytest

from tests.tutorial.common import CHANGES
from vitalmatch.tutorial import PresetState, load_state


@pytest.fixture(scope="module")
def init_preset() -> dict:
    import vita

    return json.loads(vita.Synth().to_json())


@pytest.fixture(scope="module")
def changed_preset(init_preset) -> dict:
    preset = json.loads(json.dumps(init_preset))
    settings = preset["settings"]
    settings.update(CHANGES)
    settings["wavetables"][0]["name"] = "My Table"
    settings["modulations"][0] = {"source": "lfo_1", "destination": "filter_1_cutoff"}
    preset["preset_name"] = "Changed Init"
    return preset


@pytest.fixture(scope="module")
def changed_state(changed_preset) -> PresetState:
    return load_state(changed_preset)


@pytest.fixture(scope="module")
def init_state(init_preset) -> PresetState:
    return load_state(init_preset)
