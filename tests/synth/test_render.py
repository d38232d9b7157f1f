"""Render engine on the real synth: shapes, determinism, voice flushing, wavetable choice."""

from __future__ import annotations

import numpy as np
import pytest

from vitalmatch.data.sampling import PresetSampler, SamplerConfig
from vitalmatch.synth.render import RenderConfig, RenderEngine, RenderError

FAST = RenderConfig(notes=(48, 60), note_duration_s=0.3, render_duration_s=0.5)


@pytest.fixture(scope="module")
def tables(catalog):
    return [e.table for e in catalog]


@pytest.fixture(scope="module")
def presets(registry):
    s = PresetSampler(registry, SamplerConfig(seed=3, block_size=8))
    return [s.preset(i) for i in range(4)]


def test_shape_and_dtype(registry, tables, presets):
    eng = RenderEngine(registry, tables, FAST)
    audio = eng.render(presets[0].continuous, presets[0].categorical)
    assert audio.shape == (2, 2, FAST.n_samples) and audio.dtype == np.float32
    assert FAST.n_samples == int(np.float32(0.5) * 44100)


def test_bit_identical_across_engines_and_history(registry, tables, presets):
    """Rendering does not depend on what the engine rendered before."""
    a = RenderEngine(registry, tables, FAST)
    b = RenderEngine(registry, tables, FAST)
    first = [a.render(p.continuous, p.categorical) for p in presets]
    # b renders the same presets in reverse order
    second = [b.render(p.continuous, p.categorical) for p in reversed(presets)][::-1]
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)


def test_voices_are_flushed(registry, tables):
    """A held note with a long release must not bleed into the next render on the same synth."""
    cfg = RenderConfig(notes=(60,), note_duration_s=1.0, render_duration_s=2.0, reproducible=False)

    def sequence(flush: bool) -> np.ndarray:
        eng = RenderEngine(registry, tables, cfg)
        eng.synth.get_controls()["env_1_release"].set(2.3)
        eng.synth.render(48, 0.7, 3.0, 2.0)  # note still held at the end: a lingering voice
        eng.synth.load_init_preset()
        for osc in (1, 2, 3):
            eng.synth.get_controls()[f"osc_{osc}_random_phase"].set(0.0)
        if flush:
            eng.flush()
        return eng.synth.render(60, 0.7, 1.0, 2.0)

    eng = RenderEngine(registry, tables, cfg)
    eng.synth.load_init_preset()
    for osc in (1, 2, 3):
        eng.synth.get_controls()[f"osc_{osc}_random_phase"].set(0.0)
    clean = eng.synth.render(60, 0.7, 1.0, 2.0)
    assert np.abs(sequence(flush=False) - clean).max() > 0.1  # the bleed is real
    np.testing.assert_array_equal(sequence(flush=True), clean)


def test_history_independence_needs_a_fresh_synth(registry, tables):
    """Without a fresh synth per preset, earlier presets change the first ~50 ms of a render."""
    cont, cat = registry.defaults()
    for osc in (1, 2):
        cont[registry.locate(f"osc_{osc}_random_phase")[1]] = 0.0
    other = cont.copy()
    other[registry.locate("osc_1_level")[1]] = 0.2
    other[registry.locate("osc_1_phase")[1]] = 0.9

    def after_other(reproducible: bool) -> tuple[np.ndarray, np.ndarray]:
        cfg = RenderConfig(notes=(60,), note_duration_s=0.3, render_duration_s=0.5, reproducible=reproducible)
        clean = RenderEngine(registry, tables, cfg).render(cont, cat)
        eng = RenderEngine(registry, tables, cfg)
        eng.render(other, cat)
        return eng.render(cont, cat), clean

    dirty, clean = after_other(reproducible=False)
    assert np.abs(dirty - clean).max() > 1e-3  # the effect the default engine exists to remove
    dirty, clean = after_other(reproducible=True)
    np.testing.assert_array_equal(dirty, clean)


def test_wavetable_choice_changes_audio(registry, tables, catalog):
    cont, cat = registry.defaults()
    cont[registry.locate("osc_1_random_phase")[1]] = 0.0
    eng = RenderEngine(registry, tables, FAST)
    base = eng.render(cont, cat)
    other = cat.copy()
    other[registry.locate("osc_1_wavetable")[1]] = len(catalog) - 1
    assert np.abs(eng.render(cont, other) - base).max() > 1e-3
    bad = cat.copy()
    bad[registry.locate("osc_1_wavetable")[1]] = len(catalog) + 5
    with pytest.raises(RenderError, match="outside the catalog"):
        eng.render(cont, bad)


def test_stored_values_are_what_the_synth_holds(registry, tables, presets):
    eng = RenderEngine(registry, tables, FAST)
    p = presets[1]
    eng.load(p.continuous, p.categorical)
    handles = eng.synth.get_controls()
    raw = registry.to_raw(p.continuous, p.categorical)
    for spec in registry.specs:
        if spec.control:
            assert handles[spec.name].value() == pytest.approx(raw[spec.name], rel=1e-6, abs=1e-6), spec.name


def test_lower_sample_rate(registry, tables):
    cfg = RenderConfig(sample_rate=22050, notes=(69,), note_duration_s=0.5, render_duration_s=0.5)
    cont, cat = registry.defaults()
    cont[registry.locate("osc_1_random_phase")[1]] = 0.0
    audio = RenderEngine(registry, tables, cfg).render(cont, cat)[0, 0]
    assert audio.shape[0] == 11025
    spectrum = np.abs(np.fft.rfft(audio[2000:10000] * np.hanning(8000)))
    f0 = np.argmax(spectrum) * 22050 / 8000
    assert abs(f0 - 440.0) < 5.0  # A4 at the right pitch at 22.05 kHz


def test_bad_render_config():
    with pytest.raises(ValueError, match="notes"):
        RenderConfig(notes=(200,))
    with pytest.raises(ValueError, match="sample rate"):
        RenderConfig(sample_rate=100)


def test_a_note_renders_the_same_alone_or_after_others(registry, tables, presets):
    """The settling render makes the first note after a load like any later one."""
    cfg = RenderConfig(sample_rate=22050, notes=(48, 60, 72), note_duration_s=0.25, render_duration_s=0.5)
    eng = RenderEngine(registry, tables, cfg)
    for p in presets:
        together = eng.render(p.continuous, p.categorical)
        alone = eng.render(p.continuous, p.categorical, notes=[72])[0]
        np.testing.assert_array_equal(alone, together[2])
    # without settling the first note after a load is different
    unsettled = RenderEngine(registry, tables, RenderConfig(**{**cfg.__dict__, "settle_duration_s": 0.0}))
    worst = 0.0
    for p in presets:
        together = unsettled.render(p.continuous, p.categorical)
        alone = unsettled.render(p.continuous, p.categorical, notes=[72])[0]
        worst = max(worst, float(np.abs(alone - together[2]).max()))
    assert worst > 1e-3


def test_volume_is_an_exact_output_gain(registry, tables, presets):
    """What level matching in the search relies on (vitalmatch.synth.params.volume_db)."""
    from vitalmatch.synth.params import volume_db

    engine = RenderEngine(registry, tables, FAST)
    spec, j = registry["volume"], registry.locate("volume")[1]
    for preset in presets[:2]:
        cont, cat = preset.continuous, preset.categorical
        quiet = registry.with_output_gain(cont, -9.0)
        gain_db = volume_db(spec.from_unit(float(cont[j]))) - volume_db(spec.from_unit(float(quiet[j])))
        loud, soft = engine.render(cont, cat), engine.render(quiet, cat)
        assert np.abs(loud).max() > 1e-3
        np.testing.assert_allclose(soft * 10 ** (gain_db / 20), loud, rtol=0, atol=1e-5 * np.abs(loud).max())


class _Recorder:
    """Stands in for a ``vita.Synth``: records ``render`` calls and passes everything on."""

    def __init__(self, synth) -> None:
        self._synth = synth
        self.renders: list[tuple] = []

    def render(self, *args):
        self.renders.append(args)
        return self._synth.render(*args)

    def __getattr__(self, name):
        return getattr(self._synth, name)


def test_render_note_plays_the_configured_velocity_and_durations(registry, tables, presets):
    cfg = RenderConfig(
        sample_rate=22050, notes=(60,), velocity=0.55, note_duration_s=0.2, render_duration_s=0.3
    )
    eng = RenderEngine(registry, tables, cfg)
    eng.load(presets[0].continuous, presets[0].categorical)
    eng.synth = _Recorder(eng.synth)
    assert eng.render_note(64).shape == (2, cfg.n_samples)
    assert eng.render_note(64, 0.5, 0.4).shape == (2, int(np.float32(0.4) * 22050))
    notes = [r for r in eng.synth.renders if r[0] != 0]  # the flushes play note 0
    assert notes == [(64, 0.55, 0.2, 0.3), (64, 0.55, 0.5, 0.4)]
    assert len(eng.synth.renders) == 4  # a flush before each note


def test_update_sets_only_what_changed(registry, tables, presets, monkeypatch):
    """update() = load() in what the synth holds; it reloads only for load-only controls and
    wavetables (and always with a reproducible engine)."""
    cfg = RenderConfig(notes=(60,), note_duration_s=0.3, render_duration_s=0.5, reproducible=False)
    eng = RenderEngine(registry, tables, cfg)
    loads = []
    real_load = eng.load
    monkeypatch.setattr(eng, "load", lambda c, k, x=None: (loads.append(1), real_load(c, k, x)))
    a, b = presets[0], presets[1]
    eng.update(a.continuous, a.categorical)  # nothing loaded yet: a full load
    assert len(loads) == 1
    cont = a.continuous.copy()
    cont[registry.locate("filter_1_cutoff")[1]] = 0.3
    cont[registry.locate("osc_1_level")[1]] = 0.5
    eng.update(cont, a.categorical)
    assert len(loads) == 1
    handles = eng.synth.get_controls()
    for spec in registry.specs:
        if spec.control:
            assert handles[spec.name].value() == pytest.approx(
                registry.to_raw(cont, a.categorical)[spec.name]
            )
    cat = a.categorical.copy()
    cat[registry.locate("osc_1_wavetable")[1]] = (cat[registry.locate("osc_1_wavetable")[1]] + 1) % len(
        tables
    )
    eng.update(cont, cat)  # a wavetable: written into the preset JSON, so a load
    assert len(loads) == 2
    over = cat.copy()
    over[registry.locate("oversampling")[1]] = 1 - int(cat[registry.locate("oversampling")[1]] > 0)
    eng.update(cont, over)  # oversampling acts on load only (vita-facts §2.2)
    assert len(loads) == 3
    # the sound: after update() to b (same wavetables and oversampling, so no load), the synth plays
    # what a synth loaded with b plays. Measured: only from the second note on -- the first note
    # after an update still carries smoothing towards the new values (0.16 of a 0.59 peak here),
    # as it did in the search before update() existed.
    keep = [registry.locate(n)[1] for n in ("osc_1_wavetable", "osc_2_wavetable", "osc_3_wavetable")]
    keep.append(registry.locate("oversampling")[1])
    b_cat = b.categorical.copy()
    b_cat[keep] = over[keep]
    n = len(loads)
    eng.update(b.continuous, b_cat)
    assert len(loads) == n
    eng.render_note(60)
    updated = eng.render_note(60)
    fresh = RenderEngine(registry, tables, cfg)
    fresh.load(b.continuous, b_cat)
    loaded = fresh.render_note(60)
    assert np.abs(loaded).max() > 0.01
    np.testing.assert_allclose(updated, loaded, rtol=0, atol=1e-4 * np.abs(loaded).max())
    eng.load_preset_dict(eng.preset_json(a.continuous, a.categorical))  # state unknown: next is a load
    n = len(loads)
    eng.update(a.continuous, a.categorical)
    assert len(loads) == n + 1
    repro = RenderEngine(registry, tables, FAST)
    repro_loads = []
    monkeypatch.setattr(repro, "load", lambda c, k, x=None: repro_loads.append(1))
    repro._loaded = registry.to_raw(a.continuous, a.categorical)
    repro.update(a.continuous, a.categorical)
    assert repro_loads == [1]  # a reproducible engine builds a fresh synth per preset


# ------------------------------------------------------------------ forked renders (reproducible)
EFFECTS = ("chorus", "compressor", "delay", "distortion", "eq", "flanger", "phaser", "reverb", "filter_fx")


def _all_effects_on(registry, cont, cat):
    cont, cat = cont.copy(), cat.copy()
    for fx in EFFECTS:
        cat[registry.locate(f"{fx}_on")[1]] = 1
    return cont, cat


def test_renders_with_every_effect_on_are_bit_identical_across_engines_and_history(registry, tables, presets):
    """A synth reused renders every effect differently each time (voice and effect state left
    over); the forked render from a never-played template does not."""
    cfg = RenderConfig(notes=(60,), note_duration_s=0.3, render_duration_s=0.6)
    wet = [_all_effects_on(registry, p.continuous, p.categorical) for p in presets[:3]]
    a = RenderEngine(registry, tables, cfg)
    first = [a.render(c, k) for c, k in wet]
    again = a.render(*wet[0])
    b = RenderEngine(registry, tables, cfg)
    second = [b.render(c, k) for c, k in reversed(wet)][::-1]
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(first[0], again)
    # the same renders on a reused synth differ: what the fork removes
    reused = RenderEngine(registry, tables, RenderConfig(**{**cfg.__dict__, "reproducible": False}))
    r1, r2 = reused.render(*wet[0]), reused.render(*wet[0])
    assert not np.array_equal(r1, r2)


def test_a_real_preset_renders_bit_identically(registry, tables, presets_dir):
    """Real presets (random phases, chorus, reverb ...) too: the same bits every time."""
    import json

    files = sorted(presets_dir.rglob("*.vital"))[:3]
    eng = RenderEngine(
        registry, tables, RenderConfig(notes=(60,), note_duration_s=0.5, render_duration_s=1.0)
    )
    for f in files:
        preset = json.loads(f.read_text())
        x, y = eng.render_preset_dict(preset), eng.render_preset_dict(preset)
        np.testing.assert_array_equal(x, y)


def test_a_synth_crash_costs_the_render_not_the_engine(registry, tables, presets):
    """``chorus_voices`` = 7 segfaults vita (vita-facts §4): the forked child dies, the engine lives."""
    import json

    eng = RenderEngine(registry, tables, FAST)
    bad = json.loads(eng.to_json())
    bad["settings"].update(chorus_on=1.0, chorus_voices=7.0)
    with pytest.raises(RenderError, match="crashed"):
        eng.render_preset_dict(bad)
    audio = eng.render(presets[0].continuous, presets[0].categorical)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


def test_modulation_and_lfo_shapes_reach_the_synth(registry, tables, presets):
    """PresetExtras: an LFO on the cutoff and a square LFO shape change the sound, reproducibly."""
    from vitalmatch.synth.modulation import LFO_SHAPES, Connection
    from vitalmatch.synth.render import PresetExtras

    eng = RenderEngine(
        registry, tables, RenderConfig(notes=(60,), note_duration_s=0.8, render_duration_s=1.0)
    )
    cont, cat = registry.defaults()  # init: osc 1 (saw) into filter 1
    for osc in (1, 2, 3):
        cont[registry.locate(f"osc_{osc}_random_phase")[1]] = 0.0
    cat[registry.locate("filter_1_on")[1]] = 1
    cut = registry.locate("filter_1_cutoff")[1]
    cont[cut] = 0.5
    plain = eng.render(cont, cat)
    lfo = PresetExtras(modulations=(Connection("lfo_1", "filter_1_cutoff", 0.6, bipolar=True),))
    square = PresetExtras(modulations=lfo.modulations, lfos=(LFO_SHAPES[4],))
    with_lfo, with_lfo2, with_square = (
        eng.render(cont, cat, extras=lfo),
        eng.render(cont, cat, extras=lfo),
        eng.render(cont, cat, extras=square),
    )
    np.testing.assert_array_equal(with_lfo, with_lfo2)
    assert np.abs(with_lfo - plain).max() > 1e-2
    assert np.abs(with_square - with_lfo).max() > 1e-2
    # what the engine wrote is what Vital holds
    preset = eng.preset_json(cont, cat, square)
    assert preset["settings"]["modulations"][0] == {"source": "lfo_1", "destination": "filter_1_cutoff"}
    assert preset["settings"]["modulation_1_amount"] == pytest.approx(0.6)
    assert preset["settings"]["lfos"][0]["name"] == "Square"


def test_invalid_modulation_names_never_reach_the_synth(registry, tables, presets):
    from vitalmatch.synth.modulation import Connection
    from vitalmatch.synth.render import PresetExtras

    eng = RenderEngine(registry, tables, FAST)
    for bad in (Connection("lfo_1", "filter_1_model", 0.5), Connection("lfo_9", "filter_1_cutoff", 0.5)):
        with pytest.raises(ValueError, match="unknown modulation"):
            eng.render(presets[0].continuous, presets[0].categorical, extras=PresetExtras(modulations=(bad,)))
