"""The built-in tables (vitalmatch.synth.wavetables.builtin): stable bytes, Vital's init saw
first, normalised frames."""

from __future__ import annotations

import hashlib

import numpy as np

from vitalmatch.synth.wavetables import WavetableCatalog, vital_init_table, wavetable_frames, wavetable_hash

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
