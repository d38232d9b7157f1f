"""Vital's display units and names (vitalmatch.synth.display): MIDI notes in Hz, the effect order,
filter-style names and the synced-tempo names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitalmatch.synth.display import (
    EFFECTS,
    SYNCED_FREQUENCY_NAMES,
    effect_order,
    filter_style_name,
    midi_to_hz,
)
from vitalmatch.synth.state import PresetState, load_state


@pytest.fixture(scope="module")
def init_state() -> PresetState:
    import vita

    return load_state(json.loads(vita.Synth().to_json()))


def test_midi_to_hz_golden():
    assert midi_to_hz(69) == pytest.approx(440.0, rel=1e-9)
    assert midi_to_hz(60) == pytest.approx(261.6256, rel=1e-6)
    assert midi_to_hz(72) == pytest.approx(523.2511, rel=1e-6)


def _vital_encode_order(order: list[int]) -> int:
    """Vital's ``encodeOrderToFloat`` (utils.cpp), the inverse of what effect_order decodes."""
    code = 0
    for i in range(1, len(order)):
        code = code * (i + 1) + sum(order[i] < order[j] for j in range(i))
    return code


def test_effect_order_decodes_vitals_encoding():
    assert effect_order(0) == list(EFFECTS)
    rng = np.random.default_rng(0)
    for _ in range(50):
        perm = [int(i) for i in rng.permutation(len(EFFECTS))]
        assert effect_order(_vital_encode_order(perm)) == [EFFECTS[i] for i in perm]


def test_filter_style_names_follow_the_model():
    assert filter_style_name(0, 1) == "24dB"
    assert filter_style_name(3, 4) == "B/P/N"
    assert filter_style_name(4, 1) == "Low Cut"
    assert filter_style_name(5, 2) == "The Mouth"
    assert filter_style_name(6, 3) == "Band Spread Comb"
    assert filter_style_name(7, 1) == "Negative"


def test_synced_frequency_table_matches_the_lfo_tempo_names(init_state):
    """lfo_N_tempo has min 0, so there the bindings' names are Vital's; the enum is off by one."""
    import vita

    assert init_state.controls["lfo_1_tempo"].options == SYNCED_FREQUENCY_NAMES
    assert int(vita.constants.SyncedFrequency.k1_16) == 9 and SYNCED_FREQUENCY_NAMES[9] == "1/8"
