"""Export: the .vital file loads in a fresh synth and renders like the in-memory state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitalmatch.data.sampling import PresetSampler, SamplerConfig
from vitalmatch.synth.export import preset_dict, read_vital, write_vital
from vitalmatch.synth.render import RenderConfig, RenderEngine

CFG = RenderConfig(sample_rate=22050, notes=(48, 67), note_duration_s=0.4, render_duration_s=0.8)


@pytest.fixture(scope="module")
def engine(registry, catalog):
    return RenderEngine(registry, [e.table for e in catalog], CFG)


@pytest.mark.parametrize("index", [0, 3, 7])
def test_round_trip_renders_identically(engine, registry, tmp_path, index):
    preset = PresetSampler(registry, SamplerConfig(tier=1, seed=5)).preset(index)
    want = engine.render(preset.continuous, preset.categorical)
    path = write_vital(
        tmp_path / "match", preset_dict(engine, preset.continuous, preset.categorical, name="t")
    )
    assert path.suffix == ".vital"
    loaded = read_vital(path)
    assert loaded["preset_name"] == "t" and loaded["author"] == "vitalmatch"
    # A fresh synth loads the file as Vital would, and renders the same notes bit for bit.
    engine.load_preset_dict(loaded)
    got = np.stack([engine.render_note(n) for n in CFG.notes])
    np.testing.assert_array_equal(got, want)
    # The file holds what was set: the wavetable of osc 1 and the (raw) cutoff.
    raw = registry.to_raw(preset.continuous, preset.categorical)
    assert loaded["settings"]["filter_1_cutoff"] == pytest.approx(raw["filter_1_cutoff"], rel=1e-6)
    table = engine.wavetables[int(raw["osc_1_wavetable"])]
    assert loaded["settings"]["wavetables"][0]["name"] == table["name"]


def test_bad_paths_and_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        write_vital(tmp_path / "no" / "x.vital", {"settings": {}})
    (tmp_path / "junk.vital").write_text("not json")
    with pytest.raises(ValueError, match="not a Vital preset"):
        read_vital(tmp_path / "junk.vital")
    (tmp_path / "list.vital").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="no settings"):
        read_vital(tmp_path / "list.vital")
    with pytest.raises(ValueError, match="no such preset"):
        read_vital(tmp_path / "missing.vital")
