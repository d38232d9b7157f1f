"""Parameter registry: counts, classification, tiers, normalisation against the live synth."""

from __future__ import annotations

import numpy as np
import pytest
import vita

from vitalmatch.synth.params import (
    CATEGORICAL,
    CONTINUOUS,
    VIEW_ONLY,
    ParamRegistry,
    check_tier,
    envelope_time_raw,
    hz_of_semitones,
    is_modulation_slot,
    is_view_only,
    module_of,
    reproducibility_pins,
    semitones_of_hz,
    volume_db,
    volume_raw,
)


def test_counts_match_the_synth(registry):
    synth_controls = vita.Synth().get_controls()
    assert len(synth_controls) == 772
    controls = [s for s in registry.specs if s.control]
    assert len(controls) == 772 - 320 - len(VIEW_ONLY) == 448
    assert sum(s.kind == CONTINUOUS for s in controls) == 322
    assert sum(s.kind == CATEGORICAL for s in controls) == 126
    # three wavetable choices on top
    assert [s.name for s in registry.categorical if not s.control] == [
        f"osc_{i}_wavetable" for i in (1, 2, 3)
    ]
    assert not any(s.name.startswith("modulation_") for s in registry.specs)


def test_classification(registry):
    assert registry["filter_1_model"].kind == CATEGORICAL
    assert registry["filter_1_model"].n_options == 8
    for name in ("osc_1_on", "osc_2_on", "filter_1_on", "reverb_on"):
        assert registry[name].kind == CATEGORICAL and registry[name].options == ("Off", "On")
    # ordinal controls without option names are continuous but integer
    assert registry["osc_1_unison_voices"].kind == CONTINUOUS and registry["osc_1_unison_voices"].integer
    # style names are padded to max - min + 1 options
    style = registry["filter_1_style"]
    assert style.n_options == 10 and len(style.options) == 10 and style.options[:2] == ("12dB", "24dB")
    assert registry["lfo_1_frequency"].scale == "Exponential"
    assert registry["volume"].scale == "SquareRoot"


def test_tiers_are_supersets(registry):
    t1, t2 = registry.for_tier(1), registry.for_tier(2)
    assert set(t1.continuous_names) < set(t2.continuous_names)
    assert set(t1.categorical_names) < set(t2.categorical_names)
    assert {s.module for s in t1.specs} == {"osc_1", "osc_2", "filter_1", "env_1", "volume"}
    for name in ("osc_1_on", "osc_2_on", "filter_1_on", "osc_1_wavetable", "osc_2_wavetable", "volume"):
        assert name in t1
    assert "osc_3_wavetable" not in t1 and "filter_2_cutoff" not in t1 and "env_2_attack" not in t1
    assert len(t2) == len(registry)


@pytest.mark.parametrize("tier", [0, 4, -1])
def test_bad_tier(tier):
    with pytest.raises(ValueError, match="tier"):
        check_tier(tier)


def test_tier3_is_accepted(registry):
    assert check_tier(3) == 3
    assert len(registry.for_tier(3)) == len(registry)


def test_module_of():
    assert module_of("filter_fx_cutoff") == "filter_fx"
    assert module_of("filter_1_cutoff") == "filter_1"
    assert module_of("modulation_12_amount") == "modulation_12"
    assert module_of("polyphony") == "global"


def test_registry_json_round_trip(registry):
    again = ParamRegistry.from_json(registry.to_json())
    assert again == registry
    assert again.for_tier(1).continuous_names == registry.for_tier(1).continuous_names
    with pytest.raises(ValueError, match="registry"):
        ParamRegistry.from_json('{"format": "something else"}')
    with pytest.raises(ValueError, match="registry"):
        ParamRegistry.from_json("not json")


def test_normalisation_round_trip_through_the_synth(registry):
    """Every control, exponential ones included: unit -> raw -> set() -> value() -> unit."""
    synth = vita.Synth()
    handles = synth.get_controls()
    rng = np.random.default_rng(0)
    checked_exponential = 0
    for spec in registry.specs:
        if not spec.control:
            continue
        values = (
            [0, spec.n_options - 1, rng.integers(spec.n_options)]
            if spec.kind == CATEGORICAL
            else [0.0, 1.0, rng.random()]
        )
        for u in values:
            raw = spec.from_unit(u)
            assert spec.min <= raw <= spec.max
            handles[spec.name].set(raw)
            back = spec.to_unit(handles[spec.name].value())
            if spec.kind == CATEGORICAL or spec.integer:
                assert back == pytest.approx(spec.to_unit(raw)), spec.name
            else:
                assert back == pytest.approx(u, abs=2e-6 * max(1.0, abs(spec.span))), spec.name
        checked_exponential += spec.scale == "Exponential"
    assert checked_exponential == 30
    synth.load_init_preset()  # leave the synth sane before its handles are freed


def test_exponential_controls_reach_their_minimum(registry):
    """set_normalized cannot reach the bottom of exponential controls; our path must."""
    synth = vita.Synth()
    h = synth.get_controls()["lfo_1_frequency"]
    spec = registry["lfo_1_frequency"]
    h.set(spec.from_unit(0.0))
    assert h.value() == pytest.approx(spec.min)
    h.set(spec.from_unit(0.5))
    assert h.value() == pytest.approx((spec.min + spec.max) / 2, rel=1e-5)


def test_clamping_and_rounding(registry):
    voices = registry["osc_1_unison_voices"]
    assert voices.from_unit(0.51) == round(voices.from_unit(0.51))
    assert voices.clamp(99) == voices.max
    cutoff = registry["filter_1_cutoff"]
    assert cutoff.clamp(1e6) == cutoff.max and cutoff.clamp(-1e6) == cutoff.min
    assert cutoff.clamp(float("nan")) == cutoff.default
    assert cutoff.from_unit(2.0) == cutoff.max and cutoff.from_unit(-1.0) == cutoff.min
    model = registry["filter_1_model"]
    assert model.from_unit(99) == model.max and model.from_unit(-3) == model.min


def test_vectors_round_trip(registry):
    cont, cat = registry.defaults()
    raw = registry.to_raw(cont, cat)
    cont2, cat2 = registry.from_raw(raw)
    np.testing.assert_allclose(cont2, cont, atol=1e-6)
    np.testing.assert_array_equal(cat2, cat)
    with pytest.raises(ValueError, match="expected"):
        registry.to_raw(cont[:-1], cat)


def test_volume_in_decibels(registry):
    spec = registry["volume"]
    assert volume_db(spec.default) == pytest.approx(-6.02, abs=0.01)  # the init preset's level
    assert volume_db(spec.max) == pytest.approx(6.02, abs=0.01)
    assert volume_raw(volume_db(3000.0)) == pytest.approx(3000.0)
    assert volume_raw(-95.0) == 0.0
    cont, _ = registry.defaults()
    j = registry.locate("volume")[1]
    louder = registry.with_output_gain(cont, 3.5)
    assert volume_db(spec.from_unit(float(louder[j]))) == pytest.approx(-6.02 + 3.5, abs=1e-3)
    assert np.array_equal(np.delete(louder, j), np.delete(cont, j)) and louder is not cont
    top = registry.with_output_gain(cont, 40.0)  # clamped to the control's +6.02 dB
    assert spec.from_unit(float(top[j])) == pytest.approx(spec.max)


def test_flags_of_the_registry(registry):
    """The Vital facts other modules ask the registry for instead of keeping copies."""
    assert [s.name for s in registry.specs if s.load_only] == ["oversampling"]
    assert {s.name for s in registry.specs if s.needs_load} == {"oversampling"} | {
        f"osc_{i}_wavetable" for i in (1, 2, 3)
    }
    assert {s.name for s in registry.specs if s.pitch} == {
        f"osc_{i}_{p}" for i in (1, 2, 3) for p in ("transpose", "tune")
    }
    pins = reproducibility_pins()
    assert {s.name for s in registry.specs if s.pinned} == set(pins)
    assert pins == {f"osc_{i}_{p}": 0.0 for i in (1, 2, 3) for p in ("random_phase", "transpose_quantize")}
    pins["osc_1_random_phase"] = 1.0
    assert reproducibility_pins()["osc_1_random_phase"] == 0.0  # a fresh dict each time
    cont, cat = registry.from_raw(reproducibility_pins())
    assert cont[registry.locate("osc_1_random_phase")[1]] == 0.0
    assert all(is_view_only(n) for n in VIEW_ONLY) and not is_view_only("osc_1_level")
    assert not any(is_view_only(s.name) or is_modulation_slot(s.name) for s in registry.specs)
    assert is_modulation_slot("modulation_12_amount") and not is_modulation_slot("osc_1_level")


def test_display_unit_helpers(registry):
    assert semitones_of_hz(440.0) == pytest.approx(69.0)  # A4 is MIDI 69
    assert hz_of_semitones(semitones_of_hz(1234.5)) == pytest.approx(1234.5)
    assert hz_of_semitones(registry["filter_1_cutoff"].max) == pytest.approx(21096, abs=1)
    assert envelope_time_raw(1.0) == 1.0 and envelope_time_raw(0.1296) == pytest.approx(0.6)
    assert envelope_time_raw(-1.0) == 0.0
