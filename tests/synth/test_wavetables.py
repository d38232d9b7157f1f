"""Tests for vitalmatch.synth.wavetables: wave codec, hashing, catalog, built-in set, discovery, injection.

Rendering tests use the real ``vita`` synth. The discovery test on real presets reads the shared folder
``$VITALMATCH_SHARED/presets`` (env var, the folder that holds ``presets/``), else ``<repo>/../shared/presets``,
and skips when it is absent. Nothing from that folder is copied anywhere.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import vita

from tests.pace import slowdown
from vitalmatch.synth import wavetables as wt
from vitalmatch.synth.wavetables import (
    WavetableCatalog,
    decode_wave,
    discover,
    encode_wave,
    inject_wavetable,
    make_wavetable,
    vital_init_table,
    wavetable_frames,
    wavetable_hash,
)

# sha256 of "\n".join(WavetableCatalog.builtin().hashes). Changes only when the built-in set changes
# on purpose (or vita's init saw changes): then update it together with BUILTIN_NAMES.
BUILTIN_GOLDEN = "15adf4715a7da3f849b23d6a0b548f9d5263e392d4243cee9f33af3ddd0ef5ea"
BUILTIN_NAMES = [
    "Init Saw", "Sine", "Triangle", "Square", "Basic Shapes", "Sine Saw Square", "Harmonic Series",
    "Harmonic Sweep", "Odd Harmonics", "Even Harmonics", "Pulse Width", "Skew Sweep", "Organ Odd",
    "Organ Even", "Organ Drawbars", "Vowels Low", "Vowels High", "Resonant Sweep", "Sync Saw",
    "Sync Sine", "FM Sweep", "FM Bell", "Phase Distortion", "Fold Sweep", "Drive Sweep",
    "Supersaw Stack", "Soft Noise", "Metallic",
]  # fmt: skip

NOTE, VELOCITY, NOTE_DUR, RENDER_DUR = 60, 0.7, 1.0, 1.5
F0 = 440.0 * 2.0 ** ((NOTE - 69) / 12)


def shared_presets() -> Path:
    root = os.environ.get("VITALMATCH_SHARED")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / ".." / "shared"
    return (base / "presets").resolve()


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


def render(synth, preset: dict, note_dur=NOTE_DUR, render_dur=RENDER_DUR, frame=None) -> np.ndarray:
    """load_json, zero osc 1's random phase (deterministic), optionally set the wave frame, render."""
    assert synth.load_json(json.dumps(preset))
    controls = synth.get_controls()
    controls["osc_1_random_phase"].set(0.0)
    if frame is not None:
        controls["osc_1_wave_frame"].set(float(frame))
    return synth.render(NOTE, VELOCITY, note_dur, render_dur)


def harmonic_levels(audio: np.ndarray, render_dur=RENDER_DUR, count=8) -> np.ndarray:
    """Peak |FFT| near k*F0 for k = 1..count over the sustained part, relative to the fundamental."""
    sr = audio.shape[1] / render_dur
    seg = audio[0, int(0.2 * sr) : int(0.9 * sr)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1.0 / sr)
    levels = np.array([spectrum[np.abs(freqs - k * F0) < 5.0].max() for k in range(1, count + 1)])
    return levels / levels[0]


def with_table(init_preset: dict, table: dict, osc: int = 1) -> dict:
    preset = copy.deepcopy(init_preset)
    inject_wavetable(preset, osc, table)
    return preset


# ---------------------------------------------------------------------------------------------- codec


def test_encode_decode_round_trip():
    wave = np.random.default_rng(0).standard_normal(2048).astype(np.float32)
    text = encode_wave(wave)
    assert len(text) == 10924  # as in every Vital keyframe
    back = decode_wave(text)
    assert back.dtype == np.float32 and back.shape == (2048,)
    assert back.tobytes() == wave.tobytes()
    assert encode_wave(wave.astype(np.float64)) == text  # float64 input is cast to the same float32


def test_init_keyframe_round_trips_exactly():
    text = vital_init_table()["groups"][0]["components"][0]["keyframes"][0]["wave_data"]
    assert encode_wave(decode_wave(text)) == text


def test_codec_rejects_bad_input():
    with pytest.raises(ValueError):
        decode_wave(encode_wave(np.zeros(2048))[:-8])
    with pytest.raises(ValueError):
        encode_wave(np.zeros(1024))
    with pytest.raises(ValueError):
        encode_wave(np.full(2048, np.nan))


# ---------------------------------------------------------------------------------------- data model


def test_make_wavetable_matches_init_layout():
    init = vital_init_table()
    waves = [np.linspace(-1, 1, 2048), np.sin(np.linspace(0, 2 * np.pi, 2048, endpoint=False))]
    table = make_wavetable("Two", [(0, waves[0]), (256, waves[1])], author="me")
    assert list(table) == list(init)
    assert table["name"] == "Two" and table["author"] == "me"
    assert {k: v for k, v in table.items() if k not in ("name", "author", "groups")} == {
        k: v for k, v in init.items() if k not in ("name", "author", "groups")
    }
    comp, init_comp = table["groups"][0]["components"][0], init["groups"][0]["components"][0]
    assert len(table["groups"]) == 1 and len(table["groups"][0]["components"]) == 1
    assert {k: v for k, v in comp.items() if k != "keyframes"} == {
        k: v for k, v in init_comp.items() if k != "keyframes"
    }
    assert [kf["position"] for kf in comp["keyframes"]] == [0, 256]
    frames = wavetable_frames(table)
    assert frames.shape == (2, 2048)
    np.testing.assert_array_equal(frames, np.stack(waves).astype(np.float32))


@pytest.mark.parametrize(
    "keyframes",
    [[], [(0, np.zeros(2048)), (0, np.zeros(2048))], [(257, np.zeros(2048))], [(1.5, np.zeros(2048))],
     [(0, np.zeros(100))]],
)  # fmt: skip
def test_make_wavetable_validates(keyframes):
    with pytest.raises(ValueError):
        make_wavetable("bad", keyframes)


def test_frames_none_for_other_component_types():
    init = vital_init_table()
    line = copy.deepcopy(init)
    line["groups"][0]["components"][0]["type"] = "Line Source"
    assert wavetable_frames(line) is None
    two = copy.deepcopy(init)
    two["groups"].append(copy.deepcopy(two["groups"][0]))
    assert wavetable_frames(two) is None
    assert wavetable_frames(init).shape == (1, 2048)


def test_hash_ignores_name_author_version_but_not_sound():
    init = vital_init_table()
    renamed = copy.deepcopy(init)
    renamed.update(name="Other", author="someone", version="1.0.7")
    assert wavetable_hash(renamed) == wavetable_hash(init)
    as_float = copy.deepcopy(init)
    as_float["groups"][0]["components"][0]["keyframes"][0]["position"] = 0.0
    assert wavetable_hash(as_float) == wavetable_hash(init)  # 0 and 0.0 are the same number
    louder = copy.deepcopy(init)
    kf = louder["groups"][0]["components"][0]["keyframes"][0]
    kf["wave_data"] = encode_wave(0.5 * decode_wave(kf["wave_data"]))
    assert wavetable_hash(louder) != wavetable_hash(init)
    flag = copy.deepcopy(init)
    flag["full_normalize"] = not init["full_normalize"]
    assert wavetable_hash(flag) != wavetable_hash(init)
    assert len(wavetable_hash(init)) == 64


# ------------------------------------------------------------------------------------------ built-in


def test_builtin_hashes_are_stable(builtin):
    assert builtin.names == BUILTIN_NAMES
    assert 20 <= len(builtin) <= 32
    assert hashlib.sha256("\n".join(builtin.hashes).encode()).hexdigest() == BUILTIN_GOLDEN
    assert WavetableCatalog.builtin().to_json() == builtin.to_json()


def test_builtin_starts_with_vitals_init_saw(builtin):
    assert builtin[0].name == "Init Saw"
    assert builtin[0].table == vital_init_table()
    assert builtin.index_of(wavetable_hash(vital_init_table())) == 0
    assert all(e.origin == "builtin" and not e.custom for e in builtin)


def test_builtin_frames_are_normalised_and_dc_free(builtin):
    for entry in builtin:
        frames = wavetable_frames(entry.table)
        assert frames is not None and np.all(np.isfinite(frames)), entry.name
        np.testing.assert_array_equal(np.abs(frames).max(axis=1), 1.0, err_msg=entry.name)
        assert np.abs(frames.astype(np.float64).mean(axis=1)).max() < 1e-6, entry.name
        positions = [kf["position"] for kf in entry.table["groups"][0]["components"][0]["keyframes"]]
        assert positions[0] == 0 and positions == sorted(set(positions)), entry.name
        if len(positions) > 1:
            assert positions[-1] == 256, entry.name
    morphing = [e for e in builtin if len(wavetable_frames(e.table)) >= 4]
    assert len(morphing) >= 18


def test_builtin_square_has_no_even_harmonics(builtin):
    frame = wavetable_frames(builtin["Square"].table)[0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(frame))
    assert spectrum[2:1024:2].max() < 1e-9 * spectrum[1]


# ------------------------------------------------------------------------------------------- catalog


def test_catalog_dedups_by_content(builtin):
    table = builtin["Sine"].table
    catalog = WavetableCatalog()
    assert catalog.add(table, name="First", origin="file:a") == (0, True)
    renamed = copy.deepcopy(table)
    renamed["name"] = "Second"
    assert catalog.add(renamed, name="Second", origin="file:b") == (0, False)
    assert len(catalog) == 1 and catalog[0].name == "First" and catalog[0].count == 2
    assert catalog[0].origin == "file:a"
    # A different table under a taken name gets a unique name.
    index, added = catalog.add(builtin["Square"].table, name="First")
    assert (index, added) == (1, True) and catalog.names == ["First", "First (2)"]
    assert catalog["First (2)"].hash == builtin["Square"].hash
    assert catalog.index_of(builtin["Square"].hash) == 1 and builtin["Square"].hash in catalog
    with pytest.raises(KeyError):
        catalog["Nope"]
    with pytest.raises(KeyError):
        catalog.index_of("0" * 64)
    # A stock copy of a custom entry makes it stock.
    custom = WavetableCatalog()
    custom.add(table, origin="file:x", custom=True)
    custom.add(table, origin="vital-install", custom=False)
    assert custom[0].custom is False


def test_catalog_stores_a_copy(builtin):
    table = copy.deepcopy(builtin["Sine"].table)
    catalog = WavetableCatalog()
    catalog.add(table)
    table["groups"].clear()
    assert wavetable_hash(catalog[0].table) == catalog[0].hash


def test_catalog_save_load_round_trip(tmp_path, builtin):
    catalog = WavetableCatalog.builtin()
    odd = copy.deepcopy(vital_init_table())
    odd["groups"][0]["components"][0]["type"] = "Line Source"  # any component type round-trips
    odd["groups"][0]["components"][0]["line"] = {"points": [0.0, 1.0, 1.0, 0.0], "num_points": 2}
    catalog.add(odd, name="Line", origin="file:x.vital", custom=True)
    catalog.add(builtin["Sine"].table)  # duplicate: count 2
    path = tmp_path / "tables.json"
    catalog.save(path)
    loaded = WavetableCatalog.load(path)
    assert loaded.to_json() == catalog.to_json()
    assert loaded.names == catalog.names and loaded.hashes == catalog.hashes
    assert loaded["Line"].table == odd and loaded["Line"].custom and loaded["Sine"].count == 2
    head = json.loads(path.read_text())
    assert head["format"] == "vitalmatch-wavetables" and head["version"] == 1
    path2 = tmp_path / "again.json"
    WavetableCatalog.builtin().save(path2)
    WavetableCatalog.builtin().save(tmp_path / "again2.json")
    assert path2.read_bytes() == (tmp_path / "again2.json").read_bytes()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "\x00\xff garbage",
        json.dumps({"settings": {"wavetables": []}}),
        json.dumps({"format": "vitalmatch-wavetables", "version": 99, "entries": []}),
        json.dumps({"format": "vitalmatch-wavetables", "version": 1, "entries": {}}),
        json.dumps({"format": "vitalmatch-wavetables", "version": 1, "entries": [{"name": "x"}]}),
        json.dumps([1, 2, 3]),
    ],
)
def test_catalog_load_rejects_foreign_json(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ValueError) as info:
        WavetableCatalog.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message


def test_catalog_load_rejects_tampered_hash(tmp_path, builtin):
    catalog = WavetableCatalog()
    catalog.add(builtin["Sine"].table)
    data = json.loads(catalog.to_json())
    data["entries"][0]["table"]["full_normalize"] = False
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="hash"):
        WavetableCatalog.load(path)


# ------------------------------------------------------------------------------------------ injection


def test_inject_validates_and_copies(init_preset, builtin):
    preset = copy.deepcopy(init_preset)
    square = copy.deepcopy(builtin["Square"].table)
    for osc in (0, 4, True, "1", 1.0):
        with pytest.raises(ValueError):
            inject_wavetable(preset, osc, square)
    with pytest.raises(ValueError):
        inject_wavetable({"settings": {}}, 1, square)
    with pytest.raises(ValueError):
        inject_wavetable(preset, 1, {"name": "no groups"})
    inject_wavetable(preset, 3, square)
    square["groups"].clear()
    assert wavetable_hash(preset["settings"]["wavetables"][2]) == builtin["Square"].hash
    assert preset["settings"]["wavetables"][0] == init_preset["settings"]["wavetables"][0]


def test_injected_square_renders_and_round_trips(synth, init_preset, builtin):
    saw_audio = render(synth, init_preset)
    square = builtin["Square"].table
    square_audio = render(synth, with_table(init_preset, square))
    assert np.all(np.isfinite(square_audio))
    assert np.abs(square_audio - saw_audio).max() > 0.1
    assert np.sqrt(np.mean(square_audio**2)) > 1.3 * np.sqrt(np.mean(saw_audio**2))

    saw_levels, square_levels = harmonic_levels(saw_audio), harmonic_levels(square_audio)
    assert saw_levels[1] > 0.3  # a saw has a strong 2nd harmonic
    assert square_levels[[1, 3, 5]].max() < 1e-3  # even harmonics of the square vanish
    assert 0.25 < square_levels[2] < 0.4  # 3rd harmonic ~ 1/3

    loaded = json.loads(synth.to_json())["settings"]["wavetables"][0]
    assert wavetable_hash(loaded) == wavetable_hash(square)
    np.testing.assert_array_equal(wavetable_frames(loaded), wavetable_frames(square))


def test_every_builtin_table_renders(synth, init_preset, builtin):
    """Each table, at its first and last frame: finite, audible, and different from every other table."""
    digests = set()
    for entry in builtin:
        preset = with_table(init_preset, entry.table)
        for frame in (0, 256):
            audio = render(synth, preset, note_dur=0.2, render_dur=0.3, frame=frame)
            assert np.all(np.isfinite(audio)), entry.name
            assert np.sqrt(np.mean(audio**2)) > 0.01, (entry.name, frame)
            assert np.abs(audio).max() < 2.0, entry.name
        digests.add(hashlib.sha256(audio.tobytes()).hexdigest())
    assert len(digests) == len(builtin)


# ------------------------------------------------------------------------------------------ discovery


def write_corrupt_files(folder: Path, init_preset: dict) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "broken.vital": json.dumps(init_preset)[:5000],  # truncated JSON
        "garbage.vital": b"\x00\xff\xfe binary \x80",  # not UTF-8
        "notes.vital": "just some words, not JSON",
        "list.vital": "[1, 2, 3]",  # JSON, but not a preset
        "deep.vital": "[" * 200_000,  # nesting deep enough to blow the parser's recursion limit
    }
    paths = []
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        paths.append(path)
    (folder / "readme.txt").write_text("ignored: not a Vital file")
    return paths


def test_discover_shared_presets(tmp_path, init_preset):
    presets = shared_presets()
    if not presets.is_dir():
        pytest.skip(f"shared presets not found at {presets}")
    n_files = sum(1 for _ in presets.rglob("*.vital"))
    bad = write_corrupt_files(tmp_path / "bad", init_preset)

    pace = slowdown()
    report = discover([presets, tmp_path / "bad"], include_install_dirs=False)
    print(report.summary())

    assert report.files_scanned == n_files + len(bad)
    assert report.presets_parsed == n_files
    assert sorted(path for path, _ in report.skipped) == sorted(str(p) for p in bad)
    assert all(reason and "\n" not in reason for _, reason in report.skipped)
    assert report.tables_found == 3 * n_files
    catalog = report.catalog
    assert report.unique_added == len(catalog) >= 50
    assert 0 < report.custom == sum(e.custom for e in catalog) < len(catalog)
    init = catalog[catalog.index_of(wavetable_hash(vital_init_table()))]
    assert not init.custom and init.count > 10
    assert sum(e.count for e in catalog) == report.tables_found
    assert all(e.origin.startswith("file:") for e in catalog)
    # Tables that are not plain Wave Sources (audio files, lines, modifiers) are kept as-is.
    assert any(wavetable_frames(e.table) is None for e in catalog)
    assert len(set(catalog.names)) == len(catalog)
    assert report.seconds < 20 * pace


def test_discover_survives_bad_files_without_shared(tmp_path, init_preset):
    bad = write_corrupt_files(tmp_path, init_preset)
    report = discover([tmp_path, tmp_path / "missing"], include_install_dirs=False)
    assert report.files_scanned == len(bad) and report.presets_parsed == 0 and len(report.catalog) == 0
    reasons = dict(report.skipped)
    assert reasons[str(tmp_path / "missing")] == "no such file or folder"
    assert reasons[str(tmp_path / "garbage.vital")] == "not UTF-8 text"
    assert reasons[str(tmp_path / "broken.vital")].startswith("invalid JSON")
    assert "not a Vital preset" in reasons[str(tmp_path / "list.vital")]
    assert reasons[str(tmp_path / "deep.vital")].startswith("invalid JSON")


def test_discover_empty_folder(tmp_path):
    report = discover([tmp_path], include_install_dirs=False)
    assert len(report.catalog) == 0 and report.skipped == []
    assert report.files_scanned == report.presets_parsed == report.tables_found == report.unique_added == 0
    assert "scanned 0 files" in report.summary()


def test_discover_install_dirs_tables_and_banks(tmp_path, init_preset, builtin):
    """Install content is stock (custom=False); .vitaltable and .vitalbank files are read too."""
    install, user = tmp_path / "Vital", tmp_path / "user"
    (install / "Factory" / "Wavetables").mkdir(parents=True)
    (install / "Factory" / "Wavetables" / "Factory Square.vitaltable").write_text(
        json.dumps(builtin["Square"].table)
    )
    with zipfile.ZipFile(install / "Pack.vitalbank", "w") as bank:
        bank.writestr(
            "Pack/Presets/Bell.vital", json.dumps(with_table(init_preset, builtin["FM Bell"].table, 2))
        )
        bank.writestr("Pack/Wavetables/Fold.vitaltable", json.dumps(builtin["Fold Sweep"].table))
        bank.writestr("Pack/Wavetables/broken.vitaltable", "{")

    rng = np.random.default_rng(1)
    mine = make_wavetable("Mine", [(0, rng.uniform(-1, 1, 2048)), (256, rng.uniform(-1, 1, 2048))])
    preset = with_table(init_preset, builtin["Square"].table, 1)
    inject_wavetable(preset, 3, mine)
    user.mkdir()
    (user / "song.vital").write_text(json.dumps(preset))
    (user / "Mine.vitaltable").write_text(json.dumps(mine))

    report = discover([user], install_dirs=[install, tmp_path / "not-there"])
    catalog = report.catalog
    assert report.roots == [str(install), str(user)]
    assert report.files_scanned == 4 and report.presets_parsed == 2 and report.table_files_parsed == 3
    assert [reason for _, reason in report.skipped] == [report.skipped[0][1]]
    assert report.skipped[0][0].endswith("Pack.vitalbank!Pack/Wavetables/broken.vitaltable")

    square = catalog[catalog.index_of(builtin["Square"].hash)]
    assert (square.name, square.origin, square.custom) == ("Factory Square", "vital-install", False)
    assert square.count == 2  # factory file + the user's preset
    fold = catalog[catalog.index_of(builtin["Fold Sweep"].hash)]
    assert fold.name == "Fold" and not fold.custom
    assert not catalog[catalog.index_of(builtin["FM Bell"].hash)].custom
    own = catalog[catalog.index_of(wavetable_hash(mine))]
    assert own.custom and own.origin == f"file:{user / 'Mine.vitaltable'}" and own.count == 2  # sorted walk
    assert report.custom == 1
    assert not catalog[catalog.index_of(wavetable_hash(vital_init_table()))].custom

    # Extending the built-in catalog: known tables are counted, not added again.
    extended = discover([user], include_install_dirs=False, catalog=WavetableCatalog.builtin())
    assert extended.unique_added == 1 and len(extended.catalog) == len(builtin) + 1
    assert extended.catalog["Square"].count == 2


def test_existing_install_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("APPDATA", str(tmp_path / "AppData"))
    monkeypatch.delenv("USERPROFILE", raising=False)
    (tmp_path / ".vital").mkdir()
    (tmp_path / "AppData" / "Vital").mkdir(parents=True)
    found = wt.existing_install_dirs()
    assert tmp_path / ".vital" in found and tmp_path / "AppData" / "Vital" in found
    assert all(p.is_dir() for p in found)
    assert len(wt.VITAL_INSTALL_DIRS) == 8
