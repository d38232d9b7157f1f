"""Preset sampling: determinism, tier confinement, constraints, splits."""

from __future__ import annotations

import numpy as np
import pytest

from vitalmatch.data.sampling import PresetSampler, SamplerConfig, preset_hash, split_of


def test_same_seed_same_presets(registry):
    a = PresetSampler(registry, SamplerConfig(seed=7, block_size=16))
    b = PresetSampler(registry, SamplerConfig(seed=7, block_size=16))
    for i in (0, 5, 15, 16, 40):
        pa, pb = a.preset(i), b.preset(i)
        np.testing.assert_array_equal(pa.continuous, pb.continuous)
        np.testing.assert_array_equal(pa.categorical, pb.categorical)
    # random access equals streaming from any start (what resume relies on)
    streamed = [p for _, p in zip(range(20), b.stream(30), strict=False)]
    for p in streamed:
        np.testing.assert_array_equal(p.continuous, a.preset(p.index).continuous)
    c = PresetSampler(registry, SamplerConfig(seed=8, block_size=16))
    assert not np.array_equal(c.preset(0).continuous, a.preset(0).continuous)


def test_only_tier_parameters_vary(registry):
    s = PresetSampler(registry, SamplerConfig(tier=1, block_size=64))
    cont = np.stack([s.preset(i).continuous for i in range(64)])
    cat = np.stack([s.preset(i).categorical for i in range(64)])
    d_cont, d_cat = registry.defaults()
    t1 = registry.for_tier(1)
    for j, spec in enumerate(registry.continuous):
        if spec.name in t1:
            continue
        if spec.name == "osc_3_random_phase" or spec.name == "osc_3_transpose_quantize":
            continue  # pinned for reproducibility
        assert np.all(cont[:, j] == d_cont[j]), spec.name
    for j, spec in enumerate(registry.categorical):
        if spec.name not in t1:
            assert np.all(cat[:, j] == d_cat[j]), spec.name
    # varied tier-1 parameters really vary
    j = registry.locate("filter_1_resonance")[1]
    assert cont[:, j].std() > 0.2


def test_latin_hypercube_stratifies(registry):
    s = PresetSampler(registry, SamplerConfig(block_size=100))
    j = registry.locate("filter_1_resonance")[1]
    col = np.array([s.preset(i).continuous[j] for i in range(100)])
    # one value per 1/100 stratum
    assert np.array_equal(np.sort((col * 100).astype(int)), np.arange(100))


def test_constraints(registry):
    s = PresetSampler(registry, SamplerConfig(block_size=128))
    presets = [s.preset(i) for i in range(256)]
    on1, on2 = registry.locate("osc_1_on")[1], registry.locate("osc_2_on")[1]
    assert all(p.categorical[on1] + p.categorical[on2] >= 1 for p in presets)
    lvl = registry["osc_1_level"]
    j = registry.locate("osc_1_level")[1]
    assert min(lvl.from_unit(p.continuous[j]) for p in presets) >= 0.4 - 1e-6
    dest = registry.locate("osc_1_destination")[1]
    assert max(p.categorical[dest] for p in presets) <= 4
    style = registry.locate("filter_1_style")[1]
    assert max(p.categorical[style] for p in presets) <= 4
    for osc in (1, 2, 3):
        jp = registry.locate(f"osc_{osc}_random_phase")[1]
        assert all(p.continuous[jp] == 0.0 for p in presets)
    # integer parameters are stored exactly at an integer raw value
    jv = registry.locate("osc_1_unison_voices")[1]
    spec = registry["osc_1_unison_voices"]
    for p in presets[:20]:
        raw = spec.min + float(p.continuous[jv]) * spec.span
        assert abs(raw - round(raw)) < 1e-4


def test_bad_weights(registry):
    with pytest.raises(ValueError, match="positive weight"):
        PresetSampler(registry, SamplerConfig(weights={"filter_1_model": {0: 0.0}}))


def test_hash_and_split():
    a = preset_hash(np.zeros(3, np.float32), np.zeros(2, np.int32), ["x"])
    b = preset_hash(np.zeros(3, np.float32), np.zeros(2, np.int32), ["y"])
    assert a != b and len(a) == 64
    splits = [split_of(preset_hash(np.full(3, i, np.float32), np.zeros(2, np.int32))) for i in range(2000)]
    frac = {k: splits.count(k) / len(splits) for k in ("train", "val", "test")}
    assert 0.76 < frac["train"] < 0.84 and 0.07 < frac["val"] < 0.13 and 0.07 < frac["test"] < 0.13
    assert split_of(a) == split_of(a)
    with pytest.raises(ValueError, match="fractions"):
        split_of(a, (0.5, 0.5, 0.5))


def test_default_ranges_and_pins_come_from_the_registry(registry):
    """The sub-ranges are written in dB / Hz / seconds through vitalmatch.synth.params; in raw units
    they are where they always were (volume 4000..6600, cutoff 40..136 semitones)."""
    from vitalmatch.synth.params import reproducibility_pins, volume_db

    cfg = SamplerConfig()
    assert cfg.pins == reproducibility_pins()
    lo, hi = cfg.ranges["volume"]
    assert volume_db(lo) == pytest.approx(volume_db(4000.0), abs=0.01)
    assert volume_db(hi) == pytest.approx(volume_db(6600.0), abs=0.02)
    lo, hi = cfg.ranges["filter_1_cutoff"]
    assert lo == pytest.approx(40.0, abs=0.01) and registry["filter_1_cutoff"].clamp(hi) == 136.0
    assert cfg.ranges["env_1_attack"] == (0.0, 1.0) and cfg.ranges["env_1_delay"] == pytest.approx((0.0, 0.6))
