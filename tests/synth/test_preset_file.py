"""Real preset files (vitalmatch.synth.preset_file): ``.vital`` and ``.vitalbank`` -> vectors.

Real files throughout: presets written into temporary folders (Vital's init preset as the engine
writes it, edited), banks zipped in the test, and the shared presets (``../shared/presets``;
those tests skip when it is absent). Renders use the real synth.
"""

from __future__ import annotations

import copy
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vitalmatch.metrics import multiscale_mel_l1
from vitalmatch.synth import preset_file
from vitalmatch.synth.modulation import LFO_SHAPES, decode, destinations, sources
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.preset_file import (
    PresetFile,
    PresetTables,
    factory_dirs,
    init_preset,
    preset_extras,
    read_presets,
    to_vectors,
    vital_data_dirs,
)
from vitalmatch.synth.render import RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import make_wavetable

#: Two shared presets without modulation curves (``line_mapping``) or out-of-range values: their
#: vectors render like the files (distance only from float32 rounding of the unit values).
PLAIN = ("abstractionmage/Curious Bass.vital", "alanjyu/Abyss.vital")

RENDER = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=0.5, render_duration_s=0.8)


def write(path: Path, preset: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(preset))
    return path


def init_with(**settings) -> dict:
    p = init_preset()
    p["settings"].update(settings)
    return p


def parse(preset: dict, registry, catalog, tables=None):
    return to_vectors(preset, registry, catalog, tables, name="t", file="t.vital")


# ------------------------------------------------------------------------------------ reading
def test_read_a_vital_file(tmp_path):
    path = write(tmp_path / "My Pad.vital", init_with(filter_1_cutoff=40.0))
    presets, failures = read_presets(path, "x/My Pad.vital")
    assert failures == []
    [p] = presets
    assert (p.name, p.file) == ("My Pad", "x/My Pad.vital")
    assert p.preset["settings"]["filter_1_cutoff"] == 40.0


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not json at all", "not a Vital preset (not JSON"),
        (b"[1, 2, 3]", "not a Vital preset (no settings)"),
        (b'{"settings": {}}', "no synth_version string"),
        (b'{"settings": {}, "synth_version": "100000.0.0"}', "newer than this synth engine"),
        (b"\xff\xfe\x00garbage", "not a Vital preset (not JSON"),
    ],
)
def test_bad_vital_files_are_failures_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.vital"
    path.write_bytes(content)
    presets, failures = read_presets(path, "bad.vital")
    assert presets == []
    [(file, why)] = failures
    assert file == "bad.vital" and reason in why and "\n" not in why
    assert str(path) not in why  # the failure list names the file once


def make_bank(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_a_bank_gives_one_preset_per_vital_member(tmp_path, presets_dir):
    a, b = ((presets_dir / f).read_bytes() for f in PLAIN)
    bank = make_bank(
        tmp_path / "Best Of.vitalbank",
        {
            "Best Of/Presets/Bass/Curious Bass.vital": a,
            "Best Of/Presets/Abyss.vital": b,
            "Best Of/Presets/Broken.vital": b"{not json",
            "Best Of/Wavetables/Saw.vitaltable": b"{}",  # not a preset: not read
            "__MACOSX/Best Of/Presets/._Abyss.vital": b"\x00\x05\x16\x07 resource fork",
            "Best Of/LFOs/wobble.vitallfo": b"{}",
        },
    )
    presets, failures = read_presets(bank, "banks/Best Of.vitalbank")
    assert [p.name for p in presets] == ["Best Of/Abyss", "Best Of/Curious Bass"]  # sorted by member
    assert presets[0].file == "banks/Best Of.vitalbank!Best Of/Presets/Abyss.vital"
    assert presets[1].preset == json.loads(a)
    [(file, why)] = failures
    assert file.endswith("!Best Of/Presets/Broken.vital") and "not JSON" in why


def test_bad_banks_are_failures(tmp_path, monkeypatch):
    not_zip = tmp_path / "a.vitalbank"
    not_zip.write_bytes(b"PK but not really a zip")
    assert "not a readable .vitalbank zip" in read_presets(not_zip)[1][0][1]
    empty = make_bank(tmp_path / "b.vitalbank", {"b/Wavetables/x.vitaltable": b"{}"})
    assert read_presets(empty)[1][0][1] == "a .vitalbank with no .vital presets"
    # a member larger than the limit is refused, the others still read
    big = json.dumps(init_with(preset_name="x" * 5000)).encode()
    small = json.dumps(init_with()).encode()
    monkeypatch.setattr(preset_file, "MAX_PRESET_BYTES", len(big) - 1)
    bank = make_bank(tmp_path / "c.vitalbank", {"c/Presets/big.vital": big, "c/Presets/small.vital": small})
    presets, failures = read_presets(bank)
    assert [p.name for p in presets] == ["c/small"]
    assert failures[0][0].endswith("!c/Presets/big.vital") and "larger than" in failures[0][1]
    monkeypatch.setattr(preset_file, "MAX_BANK_MEMBERS", 1)
    assert "more than 1 members" in read_presets(bank)[1][0][1]


# ------------------------------------------------------------------------------------ vectors
def test_values_become_unit_vectors_and_missing_controls_take_defaults(registry, catalog):
    p = init_with(filter_1_cutoff=100.0, osc_1_unison_voices=5.4, filter_1_model=3.0, polyphony=7.0)
    del p["settings"]["env_1_attack"]
    parsed = parse(p, registry, catalog)
    raw = registry.to_raw(parsed.continuous, parsed.categorical)
    assert raw["filter_1_cutoff"] == pytest.approx(100.0, abs=1e-4)
    assert raw["osc_1_unison_voices"] == 5.0  # integers rounded
    assert raw["filter_1_model"] == 3.0 and raw["polyphony"] == 7.0
    assert raw["env_1_attack"] == pytest.approx(registry["env_1_attack"].default, abs=1e-6)
    assert parsed.out_of_range == {} and parsed.unknown_controls == [] and parsed.notes == []
    assert parsed.continuous.dtype == np.float32 and parsed.categorical.dtype == np.int32
    assert parsed.lfo_shape.shape == (8,) and parsed.lfo_shape.dtype == np.int16
    assert parsed.modulation.shape == (0, 7) and parsed.sample == 0 and parsed.custom_wavetables == []


def test_out_of_range_values_are_counted_clamped_and_render(registry, catalog):
    # Unclamped, chorus_voices = 7 and a cutoff of 1e6 segfault the synth (vita-facts §4).
    p = init_with(chorus_on=1.0, chorus_voices=7.0, filter_1_cutoff=1e6, osc_1_level=3.0)
    p["settings"]["polyphony"] = "eight"
    p["settings"]["env_1_decay"] = math.nan
    parsed = parse(p, registry, catalog)
    oor = parsed.out_of_range
    assert oor["chorus_voices"] == 7.0 and oor["filter_1_cutoff"] == 1e6 and oor["osc_1_level"] == 3.0
    assert oor["polyphony"] == "eight" and math.isnan(oor["env_1_decay"])
    assert len(oor) == 5
    raw = registry.to_raw(parsed.continuous, parsed.categorical)
    assert raw["chorus_voices"] == registry["chorus_voices"].max
    assert raw["filter_1_cutoff"] == registry["filter_1_cutoff"].max
    assert raw["osc_1_level"] == registry["osc_1_level"].max
    assert raw["polyphony"] == registry["polyphony"].default
    assert np.all((parsed.continuous >= 0) & (parsed.continuous <= 1))
    engine = RenderEngine(registry, [e.table for e in catalog], RENDER)
    audio = engine.render(
        parsed.continuous,
        parsed.categorical,
        extras=preset_extras(
            parsed.modulation,
            parsed.lfo_shape,
            parsed.sample,
            list(LFO_SHAPES),
            [init_preset()["settings"]["sample"]],
        ),
    )
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


def test_numbers_too_large_for_a_float_are_bad_values_not_crashes(tmp_path, registry, catalog):
    p = init_with(filter_1_cutoff=10**400)  # json writes the digits; Python reads an int
    connect(p, 1, "lfo_1", "filter_1_cutoff", amount=10**400)
    p["settings"]["lfos"][0] = {"name": "x", "num_points": 1, "points": [0, 10**400], "powers": [0]}
    [pf], failures = read_presets(write(tmp_path / "huge.vital", p))
    assert failures == []
    parsed = to_vectors(pf, registry, catalog)
    assert parsed.out_of_range == {"filter_1_cutoff": 10**400}
    assert decode(parsed.modulation)[0].amount == 0.0  # read_modulations' default for a bad amount
    assert parsed.lfo_shape[0] == 0 and "lfo_1" in parsed.notes[0]


def test_unknown_controls_are_listed_not_fatal(registry, catalog):
    p = init_with(custom_warps=1.0, not_a_control=3.0)
    parsed = parse(p, registry, catalog)
    assert parsed.unknown_controls == ["custom_warps", "not_a_control"]
    default = parse(init_preset(), registry, catalog)
    assert np.array_equal(parsed.continuous, default.continuous)


def connect(p: dict, slot: int, source: str, destination: str, amount=0.5, bypass=0.0) -> None:
    s = p["settings"]
    s["modulations"][slot - 1] = {"source": source, "destination": destination}
    s[f"modulation_{slot}_amount"] = amount
    s[f"modulation_{slot}_bypass"] = bypass


def test_modulations_skip_unknown_names_and_bypassed_slots(registry, catalog):
    p = init_with()
    connect(p, 1, "lfo_1", "filter_1_cutoff", 0.25)
    connect(p, 2, "lfo_1", "filter_1_model")  # a control that is no destination: segfaults if connected
    connect(p, 3, "wobbler", "osc_1_level")
    connect(p, 4, "env_2", "osc_1_level", bypass=1.0)
    connect(p, 6, "env_2", "filter_1_resonance", 2.0)  # amount clamped to 1
    parsed = parse(p, registry, catalog)
    conns = decode(parsed.modulation)
    assert [(c.source, c.destination) for c in conns] == [
        ("lfo_1", "filter_1_cutoff"),
        ("env_2", "filter_1_resonance"),
    ]
    assert [c.amount for c in conns] == [0.25, 1.0]
    assert parsed.modulation[:, 0].tolist() == [0, 1]  # slots renumbered
    reasons = parsed.skipped_modulations
    assert len(reasons) == 3
    assert "unknown modulation destination 'filter_1_model'" in reasons[0]
    assert "unknown modulation source 'wobbler'" in reasons[1]
    assert reasons[2].startswith("slot 4") and reasons[2].endswith("bypassed")
    rows = parsed.modulation
    assert np.all((rows[:, 1] < len(sources())) & (rows[:, 2] < len(destinations())))


def test_modulations_of_a_slot_follow_it_when_slots_are_renumbered(registry, catalog):
    p = init_with()
    connect(p, 1, "env_2", "osc_1_level", bypass=1.0)  # dropped: every later slot moves down one
    connect(p, 2, "env_2", "osc_1_level")  # the same pair, not bypassed: kept as slot 1
    connect(p, 3, "lfo_2", "modulation_2_amount")  # modulates slot 2 -> must name slot 1
    connect(p, 4, "lfo_3", "modulation_1_power")  # targets the bypassed slot: does nothing in Vital
    connect(p, 5, "lfo_1", "filter_1_cutoff")
    connect(p, 6, "lfo_4", "modulation_5_amount")  # follows slot 5 to slot 3
    parsed = parse(p, registry, catalog)
    conns = decode(parsed.modulation)
    assert [(c.source, c.destination) for c in conns] == [
        ("env_2", "osc_1_level"),
        ("lfo_2", "modulation_1_amount"),
        ("lfo_1", "filter_1_cutoff"),
        ("lfo_4", "modulation_3_amount"),
    ]
    assert parsed.skipped_modulations[0].startswith("slot 1 ") and "bypassed" in parsed.skipped_modulations[0]
    assert any(r.startswith("slot 4 ") and "slot 1 is not kept" in r for r in parsed.skipped_modulations)


def test_lfo_shapes_and_samples_go_into_tables_deduplicated(registry, catalog):
    tables = PresetTables(catalog)
    assert tables.lfo_shapes[: len(LFO_SHAPES)] == list(LFO_SHAPES)
    assert len(tables.samples) == 1 and tables.samples[0]["name"] == "White Noise"
    wobble = {
        "name": "Wobble",
        "num_points": 3,
        "points": [0, 0, 0.3, 1, 1, 0],
        "powers": [0, 2, 0],
        "smooth": True,
    }
    sample = {"name": "Click", "length": 4, "sample_rate": 44100, "samples": "AAABAAIAAwA="}
    a = init_with(sample_on=1.0)
    a["settings"]["lfos"][2] = wobble
    a["settings"]["lfos"][5] = dict(LFO_SHAPES[3], name="my saw")  # a built-in shape under another name
    a["settings"]["sample"] = sample
    b = init_with(sample_on=1.0)
    b["settings"]["lfos"][0] = dict(wobble, name="Same wobble")
    b["settings"]["sample"] = dict(sample, name="Click copy")
    c = init_with(sample_on=0.0)  # sample oscillator off: its sample cannot sound
    c["settings"]["sample"] = {"name": "Other", "length": 1, "sample_rate": 44100, "samples": "AAA="}
    c["settings"]["lfos"][1] = {"name": "broken", "num_points": 2, "points": [0, 0], "powers": [0, 0]}
    pa, pb, pc = (parse(x, registry, catalog, tables) for x in (a, b, c))
    n = len(LFO_SHAPES)
    assert pa.lfo_shape.tolist() == [0, 0, n, 0, 0, 3, 0, 0]
    assert pb.lfo_shape.tolist() == [n, 0, 0, 0, 0, 0, 0, 0]
    assert pc.lfo_shape.tolist() == [0] * 8 and "lfo_2" in pc.notes[0]
    assert (pa.sample, pb.sample, pc.sample) == (1, 1, 0)
    assert len(tables.lfo_shapes) == n + 1 and len(tables.samples) == 2
    extras = tables.extras(pa.modulation, pa.lfo_shape, pa.sample)
    assert extras.lfos[2] == wobble and extras.sample == sample and extras.lfos[0] == LFO_SHAPES[0]
    # index 0 is written out too: a worker's own init noise depends on its process's history
    assert tables.extras(pc.modulation, pc.lfo_shape, pc.sample).sample == tables.samples[0]
    with pytest.raises(ValueError, match="outside the table"):
        preset_extras(pa.modulation, np.full(8, 99), 0, tables.lfo_shapes, tables.samples)


def test_custom_wavetables_extend_the_catalog_once(registry, catalog):
    wave = np.sin(np.linspace(0, 2 * np.pi, 2048, endpoint=False)) ** 3
    table = make_wavetable("Cubed Sine", [(0, wave)])
    p = init_with()
    p["settings"]["wavetables"][1] = table
    with pytest.raises(ValueError, match="osc 2's wavetable is not in the catalog"):
        parse(p, registry, catalog)
    tables = PresetTables(catalog)
    staged = [preset_file.stage_preset(PresetFile(f"p{i}", f"p{i}.vital", p), tables) for i in range(3)]
    extended = tables.catalog()
    assert len(extended) == len(catalog) + 1 and tables.n_custom_wavetables == 1
    assert extended[-1].custom and extended[-1].count == 1 and extended.names[: len(catalog)] == catalog.names
    ext_registry = ParamRegistry.from_synth(wavetable_names=extended.names)
    parsed = preset_file.finish_preset(staged[0], ext_registry, extended)
    assert parsed.custom_wavetables == [2]
    j = ext_registry.locate("osc_2_wavetable")[1]
    assert parsed.categorical[j] == len(catalog)
    with pytest.raises(ValueError, match="options but the catalog"):
        preset_file.finish_preset(staged[0], registry, extended)


# ------------------------------------------------------------------------------------ real presets
@pytest.fixture(scope="module")
def real(presets_dir, catalog):
    """The PLAIN shared presets, staged into one table set, with the extended catalog/registry."""
    tables = PresetTables(catalog)
    files = [read_presets(presets_dir / f, f)[0][0] for f in PLAIN]
    staged = [preset_file.stage_preset(f, tables) for f in files]
    extended = tables.catalog()
    registry = ParamRegistry.from_synth(wavetable_names=extended.names)
    parsed = [preset_file.finish_preset(s, registry, extended) for s in staged]
    return files, parsed, tables, extended, registry


def test_real_presets_parse_into_valid_vectors(real):
    files, parsed, tables, extended, registry = real
    for f, p in zip(files, parsed, strict=True):
        assert p.name == Path(f.file).stem and p.file == f.file
        assert np.all((p.continuous >= 0) & (p.continuous <= 1))
        n_opts = np.array([s.n_options for s in registry.categorical])
        assert np.all((p.categorical >= 0) & (p.categorical < n_opts))
        assert len(p.modulation) > 0  # both use modulation
        decode(p.modulation)  # valid names and rows
        assert np.all(p.lfo_shape < len(tables.lfo_shapes))
        # every in-range control comes back as in the file (float32 unit values)
        raw = registry.to_raw(p.continuous, p.categorical)
        s = f.preset["settings"]
        for spec in registry.specs:
            if spec.control and spec.name in s and spec.name not in p.out_of_range:
                assert raw[spec.name] == pytest.approx(spec.clamp(s[spec.name]), abs=1e-5 * max(spec.span, 1))
    assert any(p.custom_wavetables for p in parsed)


def test_vectors_render_like_the_file(real):
    files, parsed, tables, extended, registry = real
    engine = RenderEngine(registry, [e.table for e in extended], RENDER)
    for f, p in zip(files, parsed, strict=True):
        mine = engine.render(
            p.continuous, p.categorical, extras=tables.extras(p.modulation, p.lfo_shape, p.sample)
        )
        theirs = engine.render_preset_dict(f.preset)
        assert np.abs(theirs).max() > 1e-3
        d = multiscale_mel_l1(mine[0].mean(0), theirs[0].mean(0), RENDER.sample_rate)
        assert d < 1e-3, (f.file, d)  # measured: ~1e-5 (float32 unit values); 0 with float64 vectors
    # the extras matter: the same vectors without the modulations and LFO shapes sound different
    bare = engine.render(p.continuous, p.categorical)
    assert multiscale_mel_l1(bare[0].mean(0), mine[0].mean(0), RENDER.sample_rate) > 1e-2


# ------------------------------------------------------------------------------------ Vital's folders
def test_factory_folders_are_found_under_vitals_data_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("APPDATA", raising=False)
    monkeypatch.delenv("USERPROFILE", raising=False)
    assert vital_data_dirs() == [] and factory_dirs() == []
    (home / ".local/share/vital/Factory/Presets").mkdir(parents=True)
    assert factory_dirs() == [home / ".local/share/vital/Factory"]
    # Vital's config can move the data folder (LoadSave::getDataDirectory)
    moved = tmp_path / "elsewhere"
    (moved / "Factory").mkdir(parents=True)
    write(home / ".vital" / "Vital.config", {"data_directory": str(moved)})
    assert factory_dirs() == [moved / "Factory", home / ".local/share/vital/Factory"]
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg/vital/Factory").mkdir(parents=True)
    assert tmp_path / "xdg/vital/Factory" in factory_dirs()


def test_init_preset_is_a_fresh_copy():
    a = init_preset()
    a["settings"]["filter_1_cutoff"] = -1
    assert init_preset()["settings"]["filter_1_cutoff"] != -1
    assert copy.deepcopy(a) == a
