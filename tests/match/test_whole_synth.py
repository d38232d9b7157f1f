"""Matching with the whole synth: effects and modulations found by the structure phase, starts
from a preset library, the note chosen among the detected one's octaves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitalmatch.synth.modulation import Connection
from vitalmatch.synth.params import exponential_time_raw, reproducibility_pins
from vitalmatch.synth.render import PresetExtras, RenderConfig, RenderEngine

SR = 44100


def _render(registry, catalog, raw: dict, extras=None, note=60, note_s=0.6, render_s=2.0) -> np.ndarray:
    engine = RenderEngine(
        registry,
        [e.table for e in catalog],
        RenderConfig(notes=(note,), note_duration_s=note_s, render_duration_s=render_s),
    )
    cont, cat = registry.from_raw({**reproducibility_pins(), **raw})
    return engine.render(cont, cat, extras=extras)[0].mean(axis=0)


def test_a_reverb_pluck_with_a_filter_envelope_comes_back_with_both(registry, catalog, tmp_path, monkeypatch):
    """From Vital's init preset (no starting set, no library), the structure phase switches reverb
    on and routes an envelope to filter 1's cutoff, because the target shows a tail after
    note-off and a closing cutoff; the written preset holds both (the synth's own JSON)."""
    from vitalmatch.match import MatchConfig, Matcher
    from vitalmatch.search.worker import final_task

    monkeypatch.setenv("VITALMATCH_CACHE", str(tmp_path))
    raw = {
        "filter_1_on": 1,
        "filter_1_cutoff": 60.0,
        "reverb_on": 1,
        "reverb_dry_wet": 0.35,
        "reverb_decay_time": exponential_time_raw(1.5),
        "env_2_decay": 0.6,
        "env_2_sustain": 0.0,
    }
    sweep = PresetExtras(modulations=(Connection("env_2", "filter_1_cutoff", 0.5),))
    target = _render(registry, catalog, raw, sweep)
    config = MatchConfig(tier=2, budget_s=600, max_evals=70, start_set_size=0, pitch_search=False)
    with Matcher(config) as matcher:
        result = matcher.match_audio(target, 60, 0.6)
        # the init preset with reverb alone, for the ratio
        cont, cat = registry.from_raw({**reproducibility_pins(), "reverb_on": 1})
        (plain,) = matcher.pool.map(final_task, [(cont, cat, 60, 0.6, 2.0, SR)])
    settings = result.preset["settings"]
    changes = result.refinement.changes
    assert settings["reverb_on"] == 1.0, changes
    routed = [(m["source"], m["destination"]) for m in settings["modulations"] if m.get("source")]
    assert any(src.startswith("env_") and dst == "filter_1_cutoff" for src, dst in routed), (routed, changes)
    assert any(c.startswith("structure: ") for c in changes)
    assert result.distance < 0.5 * result.distance_init
    assert result.distance <= result.distance_start
    json.dumps(result.preset, allow_nan=False)  # the synth's JSON, as written
    assert plain.ok


@pytest.fixture(scope="module")
def library(registry, catalog, tmp_path_factory):
    """A library folder: a slightly changed copy of the target's preset among three others."""
    from vitalmatch.synth.export import write_vital

    folder = tmp_path_factory.mktemp("library")
    engine = RenderEngine(registry, [e.table for e in catalog], RenderConfig(notes=(60,)))
    presets = {
        "target copy": {"osc_1_wave_frame": 200.0, "filter_1_on": 1, "filter_1_cutoff": 70.0, "chorus_on": 1},
        "bright": {"osc_1_unison_voices": 5, "osc_1_unison_detune": 3.0},
        "dark": {"filter_1_on": 1, "filter_1_cutoff": 30.0},
        "plucky": {"env_1_sustain": 0.0, "env_1_decay": 0.3},
    }
    for name, raw in presets.items():
        cont, cat = registry.from_raw({**reproducibility_pins(), **raw})
        preset = engine.preset_json(cont, cat)
        preset["preset_name"] = name
        write_vital(folder / f"{name}.vital", preset)
    target_raw = {**presets["target copy"], "filter_1_cutoff": 72.0}  # the copy is 2 semitones off
    return folder, target_raw


def test_a_library_copy_of_the_target_is_the_start_and_the_note_follows_the_loss(
    registry, catalog, library, tmp_path, monkeypatch
):
    """``library=(DIR,)``: the slightly changed copy of the target's preset is chosen as the start.
    Told the wrong octave (60 for a sound played at 48, with a confident detector), the matcher
    keeps the note the loss prefers."""
    from vitalmatch.match import MatchConfig, Matcher

    monkeypatch.setenv("VITALMATCH_CACHE", str(tmp_path))
    folder, target_raw = library
    target = _render(registry, catalog, target_raw)
    low = _render(registry, catalog, target_raw, note=48)
    config = MatchConfig(start_set_size=0, library=(str(folder),), refine=False)
    with Matcher(config) as matcher:
        assert len(matcher.library) == 4
        result = matcher.match_audio(target, 60, 0.6)
        octave = matcher.match_audio(low, 60, 0.6, pitch_confidence=0.9)
    assert result.start.startswith("library: target copy"), result.candidates
    assert result.distance < 0.5 * result.distance_init
    assert octave.note == 48 and octave.detected_note == 60, octave.candidates
    assert octave.start.endswith("at note 48")


def test_a_library_folder_that_is_missing_empty_or_broken_is_one_line(library, tmp_path, capsys):
    """CLI: a missing or empty library folder, or one full of broken files, is one error line
    (exit 1); a folder with some broken files lists them and uses the rest."""
    import soundfile as sf

    from tests.match.common import run_match

    folder, _ = library
    wav = tmp_path / "in.wav"
    t = np.arange(SR) / SR
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.vital").write_text("{not json")
    (broken / "b.vital").write_bytes(b"\x00\x01")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "bad.vital").write_text("[]")
    (mixed / "good.vital").write_bytes((folder / "dark.vital").read_bytes())
    base = [
        wav,
        "-o",
        tmp_path / "out.vital",
        "--start-set",
        "0",
        "--no-refine",
        "--no-progress",
        "--overwrite",
    ]
    for lib, words in (
        (tmp_path / "missing", "not found"),
        (empty, "no .vital or .vitalbank presets"),
        (broken, "no usable presets"),
    ):
        r = run_match([*base, "--library", lib], tmp_path / "cache", capsys)
        assert r.returncode == 1, r.stderr
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, r.stderr
    r = run_match([*base, "--library", mixed], tmp_path / "cache", capsys)
    assert r.returncode == 0, r.stderr
    assert "bad.vital" in r.stderr and "1 presets used" in r.stderr, r.stderr
    assert (tmp_path / "out.vital").is_file()
