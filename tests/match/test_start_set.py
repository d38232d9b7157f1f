"""The built-in starting set: built on first use, announced, then cached."""

from __future__ import annotations

import re


def test_a_first_start_set_build_is_announced_with_its_time(tmp_path, monkeypatch):
    """Even without progress bars: a large --start-set used to start an hours-long build silently.
    (The library announces through ``notify``; the CLI passes one that prints to stderr.)"""
    from vitalmatch.match import ensure_start_set

    monkeypatch.setenv("VITALMATCH_CACHE", str(tmp_path))
    said: list[str] = []
    starts = ensure_start_set(3, workers=1, progress=False, notify=said.append)
    err = "\n".join(said)
    for tier in (1, 2, 3):  # the whole synth: a third of the set per sampling tier
        assert re.search(
            rf"building the built-in starting set, Tier {tier} \(1 presets x 5 notes, once; about \d+ min "
            r"on 1 workers\)",
            err,
        ), err
    assert len(starts) >= 3 and len(starts.extras) == len(starts)
    names = set(starts.names)
    assert any("t1" in n for n in names) and any("t3" in n for n in names), names
    said.clear()
    ensure_start_set(3, workers=1, progress=False, notify=said.append)  # cached: nothing to say
    assert "building" not in "\n".join(said)


def test_the_default_set_ships_with_the_package_and_loads_without_rendering(tmp_path, monkeypatch):
    """A first match must not spend minutes rendering the default set: the package carries it."""
    from vitalmatch.match import MatchConfig, ensure_start_set
    from vitalmatch.match.start_set import PACKAGED_FILE, PACKAGED_SIZE, START_TIERS

    assert MatchConfig().start_set_size == PACKAGED_SIZE  # what match uses is what ships
    monkeypatch.setenv("VITALMATCH_CACHE", str(tmp_path))
    said: list[str] = []
    starts = ensure_start_set(PACKAGED_SIZE, workers=1, progress=False, notify=said.append)
    assert said == [] and list(tmp_path.iterdir()) == []  # nothing built, nothing written
    assert starts.paths == [PACKAGED_FILE] and len(starts) >= 4 * PACKAGED_SIZE  # several notes each
    assert len(starts.extras) == len(starts.continuous) == len(starts.names) == len(starts)
    for tier in START_TIERS:  # the whole synth, as a build would make it
        assert any(f"-t{tier}-" in n for n in starts.names)
    assert sum(bool(x.modulations) for x in starts.extras) > len(starts) // 4  # Tier 2/3 routings


def test_the_shipped_set_is_what_its_presets_render(registry):
    """Vectors, extras and index belong together: a row rendered again is its own nearest
    neighbour (a shifted or mismatched column would pick another row)."""
    import numpy as np

    from vitalmatch.match.start_set import PACKAGED_FILE, PACKAGED_SIZE, StartSet
    from vitalmatch.synth.render import RenderConfig, RenderEngine

    starts = StartSet.load(PACKAGED_FILE, PACKAGED_SIZE)
    assert starts is not None
    rng = np.random.default_rng(0)
    with_mods = [i for i, x in enumerate(starts.extras) if x.modulations]
    plain = [i for i, x in enumerate(starts.extras) if not x.modulations]
    rows = [int(rng.choice(with_mods)), int(rng.choice(with_mods)), int(rng.choice(plain))]
    for row in rows:
        catalog = starts.catalog_of(row)
        engine = RenderEngine(
            starts.registry,
            [e.table for e in catalog],
            RenderConfig(
                sample_rate=starts.sample_rate,
                notes=(int(starts.notes[row]),),
                note_duration_s=1.0,
                render_duration_s=1.5,
            ),
        )
        audio = engine.render(starts.continuous[row], starts.categorical[row], extras=starts.extras[row])
        near = starts.nearest(audio[0].mean(axis=0), starts.sample_rate, int(starts.notes[row]), k=1)
        assert near == [row], (row, starts.names[row], near)


def test_a_saved_set_reads_back_and_a_foreign_one_is_refused(tmp_path, monkeypatch):
    import numpy as np

    from vitalmatch.match import start_set
    from vitalmatch.match.start_set import PACKAGED_FILE, PACKAGED_SIZE, StartSet

    starts = StartSet.load(PACKAGED_FILE, PACKAGED_SIZE)
    starts.save(tmp_path / "copy.npz")
    again = StartSet.load(tmp_path / "copy.npz", PACKAGED_SIZE)
    assert again.names == starts.names and again.extras == starts.extras
    assert np.array_equal(again.continuous, starts.continuous)
    assert np.allclose(again.index.features, starts.index.features, atol=1e-2)
    assert StartSet.load(tmp_path / "copy.npz", 100) is None  # another size
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert StartSet.load(tmp_path / "bad.npz") is None and StartSet.load(tmp_path / "none.npz") is None
    monkeypatch.setattr(start_set, "START_SET_VERSION", start_set.START_SET_VERSION + 1)  # new recipe
    assert StartSet.load(PACKAGED_FILE, PACKAGED_SIZE) is None
