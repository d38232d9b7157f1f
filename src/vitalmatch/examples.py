"""Example sounds: a few short notes of Vital presets, rendered by the synth on first use.

Stage: input (for ``match --example NAME`` and the demo's example buttons). Input: a name from
:data:`EXAMPLES`. Output: a stereo 44.1 kHz WAV in the cache folder, so that a fresh machine can run
the main job without an audio file of its own. The presets are built from Vital's init preset with
the raw values below, through the parameter registry (``ParamRegistry.from_raw``, clamped to the
live synth's ranges).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

#: Example sounds: ``name -> (MIDI note, seconds held, seconds rendered, raw control values)``;
#: the values go through :meth:`~vitalmatch.synth.params.ParamRegistry.from_raw` (clamped to each
#: control's range); every control not listed keeps Vital's init value (oscillator 1 on, a saw),
#: with the reproducibility pins.
EXAMPLES: dict[str, tuple[int, float, float, dict[str, float]]] = {
    "pluck": (
        64, 0.25, 1.5,
        {"osc_1_wavetable": 3, "filter_1_on": 1, "filter_1_cutoff": 92.0, "filter_1_resonance": 0.3,
         "env_1_attack": 0.0, "env_1_decay": 0.7, "env_1_sustain": 0.0, "env_1_release": 0.6},
    ),
    "pad": (
        57, 2.0, 3.0,
        {"osc_1_unison_voices": 6, "osc_1_unison_detune": 3.0, "osc_2_on": 1, "osc_2_wavetable": 1,
         "osc_2_transpose": 12.0, "osc_2_level": 0.4, "filter_1_on": 1, "filter_1_cutoff": 76.0,
         "filter_1_resonance": 0.2, "env_1_attack": 0.9, "env_1_sustain": 0.9, "env_1_release": 0.95},
    ),
    "bass": (
        40, 0.6, 1.2,
        {"osc_1_wavetable": 3, "osc_2_on": 1, "osc_2_wavetable": 1, "osc_2_transpose": -12.0,
         "filter_1_on": 1, "filter_1_model": 2, "filter_1_style": 1, "filter_1_cutoff": 70.0,
         "filter_1_resonance": 0.45, "filter_1_drive": 6.0, "env_1_attack": 0.0, "env_1_decay": 0.7,
         "env_1_sustain": 0.5, "env_1_release": 0.4},
    ),
}  # fmt: skip


def example_names() -> list[str]:
    """The names of :data:`EXAMPLES`, in order."""
    return list(EXAMPLES)


def example_sound(name: str, folder: str | os.PathLike | None = None) -> Path:
    """The WAV of one example (rendered on first use; see :func:`example_sounds`).

    Raises:
        ValueError: ``name`` is not an example (one line listing the names).
    """
    if name not in EXAMPLES:
        raise ValueError(f"no example sound {name!r}; choose from {', '.join(EXAMPLES)}")
    return example_sounds(folder)[list(EXAMPLES).index(name)]


def example_sounds(folder: str | os.PathLike | None = None) -> list[Path]:
    """The example WAVs (:data:`EXAMPLES`), rendered by the synth on first use and then reused.

    Args:
        folder: where they live; default ``vitalmatch.match.cache_dir() / "examples"``. They are
            rendered again when the recipe or the synth version changes.

    Returns:
        One stereo 44.1 kHz WAV per example, in :data:`EXAMPLES` order.
    """
    import soundfile as sf

    from vitalmatch.match import cache_dir
    from vitalmatch.synth.params import _vita_version

    folder = Path(folder) if folder is not None else cache_dir() / "examples"
    paths = [folder / f"{name}.wav" for name in EXAMPLES]
    recipe = json.dumps({"vita": _vita_version(), "examples": EXAMPLES}, sort_keys=True)
    stamp = folder / "recipe.json"
    if stamp.is_file() and stamp.read_text() == recipe and all(p.is_file() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for path, (note, held, length, values) in zip(paths, EXAMPLES.values(), strict=True):
        audio = _render_example(note, held, length, values)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.wav")
        sf.write(tmp, audio.T, 44100, subtype="PCM_16")
        os.replace(tmp, path)
    stamp.write_text(recipe)
    return paths


def _render_example(note: int, held: float, length: float, values: dict[str, float]) -> np.ndarray:
    """``(2, T)`` render of the init preset with ``values`` (raw) at ``note``, peak <= 0.9."""
    from vitalmatch.synth.params import ParamRegistry, reproducibility_pins
    from vitalmatch.synth.render import RenderConfig, RenderEngine
    from vitalmatch.synth.wavetables import WavetableCatalog

    catalog = WavetableCatalog.builtin()
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    for name in values:
        registry.locate(name)  # KeyError for a name the synth does not have
    cont, cat = registry.from_raw({**reproducibility_pins(), **values})
    config = RenderConfig(sample_rate=44100, notes=(note,), note_duration_s=held, render_duration_s=length)
    audio = RenderEngine(registry, [e.table for e in catalog], config).render(cont, cat)[0]
    peak = float(np.abs(audio).max())
    return audio * (0.9 / peak) if peak > 0.9 else audio
