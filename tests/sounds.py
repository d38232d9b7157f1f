"""Helpers shared by the matching and demo tests: synthetic target sounds and `.vital` checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from vitalmatch.synth.render import RenderConfig, RenderEngine

NOTE = 57
#: Presets in the tests' starting set (the product default is 256).
START_SET = 8


def write_audible_wavs(
    registry, catalog, folder: Path, names: list[str], *, seed: int, note_s: float, render_s: float
) -> list[Path]:
    """Render random Tier-1 presets at MIDI :data:`NOTE` until ``len(names)`` are audible and not
    clipping (peak in 0.05..0.99); write them as 44.1 kHz WAVs named ``names`` in ``folder``."""
    from vitalmatch.data.sampling import PresetSampler, SamplerConfig

    engine = RenderEngine(
        registry,
        [e.table for e in catalog],
        RenderConfig(sample_rate=44100, notes=(NOTE,), note_duration_s=note_s, render_duration_s=render_s),
    )
    sampler = PresetSampler(registry, SamplerConfig(tier=1, seed=seed))
    paths: list[Path] = []
    for i in range(50 * len(names)):
        p = sampler.preset(i)
        audio = engine.render(p.continuous, p.categorical)[0]
        if 0.05 < np.abs(audio).max() < 0.99:
            path = folder / names[len(paths)]
            sf.write(path, audio.T, 44100)
            paths.append(path)
            if len(paths) == len(names):
                return paths
    raise AssertionError(f"fewer than {len(names)} audible presets in {50 * len(names)} draws")


def render_vital(preset: dict) -> np.ndarray:
    """A `.vital` preset dict loaded into a fresh synth (built-in catalog), one note: ``(2, T)``."""
    from vitalmatch.synth.params import ParamRegistry
    from vitalmatch.synth.wavetables import WavetableCatalog

    cat = WavetableCatalog.builtin()
    engine = RenderEngine(
        ParamRegistry.from_synth(wavetable_names=cat.names),
        [e.table for e in cat],
        RenderConfig(notes=(NOTE,), note_duration_s=0.6, render_duration_s=1.2),
    )
    engine.load_preset_dict(preset)
    return engine.render_note(NOTE)
