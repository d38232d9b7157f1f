"""Wavetable injection into a preset (vitalmatch.synth.render.inject_wavetable), rendered by the
real ``vita`` synth: a square sounds like a square, every built-in table renders."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pytest

from tests.synth.wavetables.common import with_table
from vitalmatch.synth.render import inject_wavetable
from vitalmatch.synth.wavetables import wavetable_frames, wavetable_hash

NOTE, VELOCITY, NOTE_DUR, RENDER_DUR = 60, 0.7, 1.0, 1.5
F0 = 440.0 * 2.0 ** ((NOTE - 69) / 12)


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
