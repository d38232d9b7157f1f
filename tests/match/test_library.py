"""Preset libraries (vitalmatch.match.library): index folders of real presets, find the nearest.

Real synth, real files in temporary folders, the real worker pool and HDF5 cache (under a private
``$VITALMATCH_CACHE``). The presets are small: random Tier-1 registry vectors written as ``.vital``
files by the synth (``preset_json`` + ``write_vital``), plus two of the shared real presets
(``../shared/presets``) where present. Renders are short (two notes, 0.6 s at 16 kHz) so the file
stays well under a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_presets_dir
from vitalmatch.match.library import Library, LibraryConfig, LibraryError
from vitalmatch.synth.export import write_vital
from vitalmatch.synth.preset_file import init_preset
from vitalmatch.synth.render import RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import wavetable_hash

CONFIG = LibraryConfig(
    notes=(48, 60), sample_rate=16000, note_s=0.4, render_s=0.6, include_factory=False, progress=False
)
NOTE = 60


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A private ``$VITALMATCH_CACHE`` for every test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("VITALMATCH_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def engine(registry, catalog) -> RenderEngine:
    render = RenderConfig(
        sample_rate=CONFIG.sample_rate,
        notes=(NOTE,),
        note_duration_s=CONFIG.note_s,
        render_duration_s=CONFIG.render_s,
    )
    return RenderEngine(registry, [e.table for e in catalog], render)


@pytest.fixture(scope="module")
def vectors(registry, engine) -> list[tuple[np.ndarray, np.ndarray]]:
    """Six audible random Tier-1 presets ``(continuous, categorical)``."""
    from vitalmatch.data.sampling import PresetSampler, SamplerConfig

    sampler = PresetSampler(registry, SamplerConfig(tier=1, seed=5))
    out = []
    for i in range(300):
        p = sampler.preset(i)
        if 0.05 < np.abs(engine.render(p.continuous, p.categorical)).max() < 0.99:
            out.append((p.continuous, p.categorical))
            if len(out) == 6:
                return out
    raise AssertionError("too few audible presets")


def write(engine, folder: Path, name: str, vec, **raw) -> Path:
    """Write registry vectors (with raw control values ``raw`` on top) as ``folder/name.vital``."""
    preset = engine.preset_json(*vec)
    preset["settings"].update(raw)
    folder.mkdir(parents=True, exist_ok=True)
    return write_vital(folder / f"{name}.vital", preset)


def nudged(registry, vec, **changes):
    """A copy of ``vec`` with unit values moved by ``changes`` (name -> delta)."""
    cont = vec[0].copy()
    for name, delta in changes.items():
        col = registry.locate(name)[1]
        cont[col] = np.clip(cont[col] + delta, 0, 1)
    return cont, vec[1].copy()


def mono(engine, vec) -> np.ndarray:
    return engine.render(*vec)[0].mean(axis=0)


def open_library(registry, catalog, *dirs, notify=None) -> Library:
    return Library(list(dirs), registry, catalog, CONFIG, notify=notify)


def test_a_slightly_changed_copy_of_the_target_is_chosen(tmp_path, registry, catalog, engine, vectors, cache):
    lib_dir = tmp_path / "packs" / "someone"  # laid out like a download-presets pack
    (lib_dir / "Presets").mkdir(parents=True)
    (lib_dir / "LICENSE").write_text("CC0")
    copy_a = nudged(registry, vectors[0], filter_1_cutoff=0.01, env_1_release=0.01)
    copy_b = nudged(registry, vectors[1], osc_1_level=-0.01)
    write(engine, lib_dir / "Presets" / "Leads", "copy of A", copy_a)
    write(engine, lib_dir / "Presets" / "Pads", "copy of B", copy_b)
    for i, vec in enumerate(vectors[2:], start=2):
        write(engine, lib_dir / "Presets", f"other {i}", vec)
    shared = shared_presets_dir()
    real = sorted(shared.rglob("*.vital"))[:2] if shared else []
    for f in real:  # real presets, with custom wavetables
        shutil.copy(f, lib_dir / f.name)

    notices: list[str] = []
    lib = open_library(registry, catalog, tmp_path / "packs", notify=notices.append)
    assert notices == [notices[0]] and notices[0].startswith(f"indexing {6 + len(real)} presets of ")
    assert len(lib) == 6 + len(real) and lib.failures == []
    assert lib.rendered == len(lib) and lib.path.is_relative_to(cache)
    for target, expected, vec in ((vectors[0], "copy of A", copy_a), (vectors[1], "copy of B", copy_b)):
        found = lib.nearest(mono(engine, target), CONFIG.sample_rate, NOTE + 1, 3)
        assert [e.name for e in found][0] == expected, [e.name for e in found]
        assert len(found) == 3 and len({e.name for e in found}) == 3
        best = found[0]
        assert best.file.endswith(f"{expected}.vital")
        np.testing.assert_allclose(best.continuous, vec[0], atol=1e-4)  # the copy's own vectors
        assert np.array_equal(best.categorical, vec[1])
        assert best.wavetable_files == (None, None, None)  # built-in tables: catalog indices

    # a 44.1 kHz query is resampled to the index rate and finds the same copy
    import soxr

    audio = soxr.resample(mono(engine, vectors[0]), CONFIG.sample_rate, 44100)
    assert lib.nearest(audio, 44100, NOTE, 1)[0].name == "copy of A"
    assert lib.nearest(audio, 44100, NOTE, 0) == []

    entries = list(lib.entries())
    custom = [(e, osc) for e in entries for osc, f in enumerate(e.wavetable_files) if f is not None]
    if real:  # the shared presets carry custom tables: written once, named by their content hash
        assert custom
        for e, osc in custom:
            path = Path(e.wavetable_files[osc])
            assert path.parent == cache / "library" / "wavetables"
            assert wavetable_hash(json.loads(path.read_text())) == path.stem
            assert e.extras.wavetable_files == e.wavetable_files
            assert e.categorical[registry.locate(f"osc_{osc + 1}_wavetable")[1]] == 0


def test_only_changed_files_are_indexed_again(tmp_path, registry, catalog, engine, vectors):
    folder = tmp_path / "lib"
    for i in (1, 2, 3):
        write(engine, folder, f"p{i}", vectors[i])
    first = open_library(registry, catalog, folder)
    assert (first.rendered, first.reused, len(first)) == (3, 0, 3)

    stamp = first.path.stat().st_mtime_ns
    again = open_library(registry, catalog, folder)
    assert (again.rendered, again.reused, again.dropped, len(again)) == (0, 3, 0, 3)
    assert again.path.stat().st_mtime_ns == stamp  # nothing changed: the cache is not rewritten

    changed = nudged(registry, vectors[2], filter_1_cutoff=-0.3)
    write(engine, folder, "p2", changed)  # changed content
    (folder / "p3.vital").unlink()  # deleted
    write(engine, folder / "new", "p4", vectors[4])  # added
    st = (folder / "p1.vital").stat()
    os.utime(folder / "p1.vital", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same content
    third = open_library(registry, catalog, folder)
    assert (third.rendered, third.reused, third.dropped) == (2, 1, 1)
    by_name = {e.name: e for e in third.entries()}
    assert sorted(by_name) == ["p1", "p2", "p4"]
    np.testing.assert_allclose(by_name["p2"].continuous, changed[0], atol=1e-4)  # the new content

    fourth = open_library(registry, catalog, folder)
    assert (fourth.rendered, fourth.reused) == (0, 3)


def test_a_missing_empty_or_broken_library_is_one_clear_line(tmp_path, registry, catalog):
    def error(*dirs) -> str:
        with pytest.raises(LibraryError) as e:
            open_library(registry, catalog, *dirs)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert error(tmp_path / "nope") == f"library folder not found: {tmp_path / 'nope'}"
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "README.txt").write_text("no presets here")
    (empty / "__MACOSX").mkdir()
    (empty / "__MACOSX" / "._x.vital").write_bytes(b"\x00\x05\x16\x07")  # a resource fork: ignored
    assert error(empty) == f"no .vital or .vitalbank presets in {empty}"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a text.vital").write_text("hello")
    (broken / "list.vital").write_text("[]")
    (broken / "bank.vitalbank").write_bytes(b"not a zip")
    message = error(broken)
    assert message.startswith(f"no usable presets in {broken}: 3 failed (first: ")
    assert "not JSON" in message
    with pytest.raises(LibraryError, match="library notes must be MIDI note numbers"):
        LibraryConfig(notes=(60, 200))


def test_broken_silent_and_crashing_presets_are_listed_and_the_rest_used(
    tmp_path, registry, catalog, engine, vectors
):
    folder = tmp_path / "mixed"
    good = write(engine, folder, "good", vectors[1])
    write(engine, folder / "deeper", "also good", vectors[2])
    (folder / "text.vital").write_text("hello")
    write(engine, folder, "silent", vectors[3], osc_1_on=0.0, osc_2_on=0.0, osc_3_on=0.0, sample_on=0.0)
    crash = init_preset()
    crash["settings"].update(chorus_on=1.0, chorus_voices=7.0)  # segfaults vita (vita-facts section 4)
    (folder / "crash.vital").write_text(json.dumps(crash))
    with zipfile.ZipFile(folder / "Bank.vitalbank", "w") as z:
        z.write(good, "Bank/Presets/good.vital")
        z.writestr("Bank/Presets/oops.vital", "{")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "x.vital").write_text("ignored")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._good.vital").write_bytes(b"\x00\x05\x16\x07")

    lib = open_library(registry, catalog, folder)
    assert sorted(e.name for e in lib.entries()) == ["Bank/good", "also good", "good"]
    reasons = {Path(f).name if "!" not in f else f.split("!")[1]: r for f, r in lib.failures}
    assert sorted(reasons) == ["Bank/Presets/oops.vital", "crash.vital", "silent.vital", "text.vital"]
    assert "not JSON" in reasons["text.vital"] and "not JSON" in reasons["Bank/Presets/oops.vital"]
    assert "SIGSEGV" in reasons["crash.vital"]
    assert reasons["silent.vital"] == "silent at every indexed note"
    assert all("\n" not in r for r in reasons.values())
    assert lib.rendered == 5

    again = open_library(registry, catalog, folder)  # failures are cached: the crash is not retried
    assert again.rendered == 0 and sorted(again.failures) == sorted(lib.failures)


def test_a_corrupt_cache_file_is_rebuilt(tmp_path, registry, catalog, engine, vectors, cache):
    folder = tmp_path / "lib"
    write(engine, folder, "p1", vectors[1])
    write(engine, folder, "p2", vectors[2])
    lib = open_library(registry, catalog, folder)
    assert lib.path.parent == cache / "library" and lib.path.is_file()  # $VITALMATCH_CACHE honoured
    target = mono(engine, vectors[2])
    assert lib.nearest(target, CONFIG.sample_rate, NOTE, 1)[0].name == "p2"

    lib.path.write_bytes(b"\x89HDF\r\n garbage")
    notices: list[str] = []
    rebuilt = open_library(registry, catalog, folder, notify=notices.append)
    assert rebuilt.rendered == 2 and len(rebuilt) == 2
    assert any("unreadable" in n and "rebuilding" in n for n in notices), notices
    assert all("\n" not in n for n in notices)
    assert rebuilt.nearest(target, CONFIG.sample_rate, NOTE, 1)[0].name == "p2"
    assert open_library(registry, catalog, folder).rendered == 0  # the rebuilt file is sound
