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


# ---------------------------------------------------------------------------- what the Vital app loads
from tests.vital_app import app_load_problems, assert_app_loads  # noqa: E402
from vitalmatch.synth.export import (  # noqa: E402
    VITA_ENGINE_VERSION,
    VITAL_RELEASE,
    app_loads_version,
    compare_versions,
)

#: Real presets with wavetables, many modulations and several effects (chorus, delay, reverb among
#: them), from ../shared/presets.
RICH_PRESETS = ("alanjyu/Blinded by the Pad.vital", "instatetragrammaton/v1.0.3_ProfanityFilter.vital")


@pytest.mark.parametrize(
    "a, b",
    [
        ("1.5.5", "1.5.5"),
        ("1.5.3", "1.5.5"),
        ("1.0.0", "1.5.5"),
        ("1.5.99", "1.5.5"),  # same feature version 1.5: the last component is not compared
        ("99999.9.9", "1.5.5"),
        ("1.6.0", "1.5.5"),
        ("2", "1.5.5"),
        ("1.x.0", "1.5.5"),  # a non-numeric component counts as 0
        (" 1.5.5 ", "1.5"),
        ("1.10.0", "1.9.0"),  # numeric per component, not text
        ("0.9.0", "1.0.0"),
        ("", "1.5.5"),
    ],
)
def test_app_version_rule_matches_vitals_comparison(a, b):
    from tests.vital_app import compare_feature_version_strings

    assert app_loads_version(a, b) == (compare_feature_version_strings(a, b) <= 0)


def test_compare_versions_component_by_component():
    assert compare_versions("1.10.0", "1.9.9") == 1
    assert compare_versions("1.5", "1.5.0") == 0
    assert compare_versions("1.0.8", "1.5.3") == -1
    assert not app_loads_version("99999.9.9") and app_loads_version(VITAL_RELEASE)
    assert not app_loads_version(None) and not app_loads_version(155)


def test_engine_version_is_what_vita_writes(engine, registry):
    cont, cat = registry.defaults()
    assert preset_dict(engine, cont, cat)["synth_version"] == VITA_ENGINE_VERSION


def test_written_preset_loads_in_the_app(engine, registry, tmp_path):
    preset = PresetSampler(registry, SamplerConfig(tier=1, seed=5)).preset(1)
    d = preset_dict(engine, preset.continuous, preset.categorical, name="Pad", style="Pad")
    assert app_load_problems_of_dict(d, tmp_path)  # vita's own stamp: the app refuses it
    path = write_vital(tmp_path / "p.vital", d)
    assert_app_loads(path)
    raw = path.read_bytes()
    assert raw.startswith(b'{"author":"vitalmatch"')  # the browser's fast path for the author
    assert b'"preset_style":"Pad"' in raw[:5000]  # LoadSave::getStyleFromFile reads 5000 bytes
    assert read_vital(path)["synth_version"] == VITAL_RELEASE


def app_load_problems_of_dict(preset: dict, folder) -> list[str]:
    """The app's objections to ``preset`` written as plain ``json.dumps`` (no stamping)."""
    path = folder / "plain.vital"
    path.write_text(json.dumps(preset))
    return app_load_problems(path)


def test_non_finite_values_are_refused_not_written(tmp_path, engine, registry):
    cont, cat = registry.defaults()
    d = preset_dict(engine, cont, cat)
    d["settings"]["filter_1_cutoff"] = float("nan")
    with pytest.raises(ValueError, match="filter_1_cutoff is nan"):
        write_vital(tmp_path / "nan.vital", d)
    assert not (tmp_path / "nan.vital").exists()


_RENDER_IN_FRESH_PROCESS = """
import json, sys
import numpy as np
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import WavetableCatalog
catalog = WavetableCatalog.builtin()
cfg = RenderConfig(sample_rate=22050, notes=(48, 67), note_duration_s=0.4, render_duration_s=0.8)
engine = RenderEngine(
    ParamRegistry.from_synth(wavetable_names=catalog.names), [e.table for e in catalog], cfg
)
engine.load_preset_dict(json.loads(open(sys.argv[1]).read()))
np.save(sys.argv[2], np.stack([engine.render_note(n) for n in cfg.notes]))
open(sys.argv[3], "w").write(json.dumps(json.loads(engine.to_json())["settings"]))
"""


def _render_fresh(preset: dict, folder, tag: str) -> tuple[dict, np.ndarray]:
    """Load and render ``preset`` in a new Python process: the chorus, delay, reverb and random
    sources draw their seeds from a per-process counter, so two fresh processes doing the same
    steps render identically (vita-facts), while two loads in one process need not."""
    import subprocess
    import sys

    src, wav, settings = (folder / f"{tag}.{ext}" for ext in ("json", "npy", "settings.json"))
    src.write_text(json.dumps(preset))
    subprocess.run(
        [sys.executable, "-c", _RENDER_IN_FRESH_PROCESS, src, wav, settings], check=True, timeout=120
    )
    return json.loads(settings.read_text()), np.load(wav)


@pytest.mark.parametrize("rel", RICH_PRESETS)
def test_release_stamp_loads_and_renders_like_the_engine_stamp(presets_dir, rel, tmp_path):
    """No old-version conversion applies to 1.5.5: the same state and bit-identical audio."""
    path = presets_dir / rel
    if not path.is_file():
        pytest.skip(f"{rel} not in the shared presets")
    state = read_vital(path)
    assert sum(1 for m in state["settings"]["modulations"] if m["source"]) >= 5
    assert sum(state["settings"][f"{fx}_on"] for fx in ("chorus", "delay", "reverb", "compressor")) >= 2
    assert state["settings"]["wavetables"][0]["groups"]
    for osc in (1, 2, 3):
        state["settings"][f"osc_{osc}_random_phase"] = 0.0
    engine_settings, engine_audio = _render_fresh(
        {**state, "synth_version": VITA_ENGINE_VERSION}, tmp_path, "a"
    )
    release_settings, release_audio = _render_fresh({**state, "synth_version": VITAL_RELEASE}, tmp_path, "b")
    assert release_settings == engine_settings
    np.testing.assert_array_equal(release_audio, engine_audio)
    assert np.abs(engine_audio).max() > 1e-3
    # The file the writer makes from that state loads in the app and reads back the same.
    out = write_vital(tmp_path / "rich.vital", state)
    assert_app_loads(out)
    assert read_vital(out)["settings"] == state["settings"]


def test_reading_accepts_every_real_version_and_refuses_newer(presets_dir, tmp_path):
    versions = set()
    for f in sorted(presets_dir.rglob("*.vital")):
        versions.add(read_vital(f)["synth_version"])
    assert {"1.0.0", "1.5.5"} <= versions
    d = read_vital(next(presets_dir.rglob("*.vital")))
    (tmp_path / "new.vital").write_text(json.dumps({**d, "synth_version": "100000.0.0"}))
    with pytest.raises(ValueError, match=r"made by Vital 100000\.0\.0, newer than this synth engine"):
        read_vital(tmp_path / "new.vital")
    (tmp_path / "nover.vital").write_text(json.dumps({k: v for k, v in d.items() if k != "synth_version"}))
    with pytest.raises(ValueError, match="no synth_version"):
        read_vital(tmp_path / "nover.vital")


def test_deeply_nested_file_is_one_error(tmp_path):
    (tmp_path / "deep.vital").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_vital(tmp_path / "deep.vital")
