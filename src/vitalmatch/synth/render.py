"""Rendering: normalised parameter vectors -> stereo audio from Vital's engine.

Stage: render. Input: a preset as the full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry` (``(C,)`` float32 in [0, 1] and ``(K,)`` int32)
plus the wavetables it chooses. Output: ``(n_notes, 2, T)`` float32 audio, one row per MIDI note,
``T = int(float32(render_duration_s) * sample_rate)``.

:class:`RenderEngine` holds one ``vita.Synth``; make one per worker process (a segfault then
kills only that worker, see :mod:`vitalmatch.synth.pool`). Per preset it

1. reloads the init preset with the chosen wavetables and every raw value written into the
   preset JSON (one ``load_json``: resets all controls and modulations, and makes controls such
   as ``oversampling`` that only act on load take effect, vita-facts §2.2);
2. sets every registry control again through cached handles, clamped and rounded
   (``ControlValue.set`` does no clamping, vita-facts §4);
3. before each note, renders a short throw-away note: ``render`` does not stop voices, and a voice
   still sounding from the previous render bleeds into the first ~50 ms of the next
   (vita-facts §6).

Reproducibility. Vital smooths some per-voice values (oscillator level and phase among them)
and each voice of its pool keeps its smoothed state from its last use; the voices rotate, so
the first ~50 ms of a render depend on the presets rendered before it (measured: up to 0.6 of
full scale; no length of priming render, nor polyphony 1, removes it). With
``RenderConfig.reproducible`` (the default) the engine therefore builds a fresh ``vita.Synth``
for every preset (~40 ms). With ``osc_N_random_phase = 0`` (the sampler's pin) and no effects
with internal randomness (chorus, flanger, delay, reverb, compressor: Tier 2) renders are then
bit-identical across engines, processes and histories. Searches that render thousands of
candidates may turn it off for speed, and then move from one candidate to the next with
:meth:`RenderEngine.update`, which sets only the controls that changed (a full load only when a
load-only control or a wavetable changes).

Vital also smooths global values towards a newly loaded preset while audio is processed, so the
first note rendered after a load would differ from later ones. :meth:`RenderEngine.load` ends
with a silent render of ``settle_duration_s`` (1 s, ~5 ms of work) that lets them settle: a note
then renders bit for bit the same whether it comes first or after other notes of the same
preset (measured: 0.38 apart without settling, 2e-9 after 0.5 s, 0 after 1 s).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.wavetables.format import NUM_OSCILLATORS, wavetable_problem


class RenderError(RuntimeError):
    """The synth refused a preset (for example ``load_json`` returned False)."""


def inject_wavetable(preset: dict, osc: int, table: dict) -> None:
    """Put a deep copy of ``table`` into ``preset["settings"]["wavetables"][osc - 1]`` (osc is 1..3).

    The render engine does: preset = init JSON dict -> inject tables ->
    ``synth.load_json(json.dumps(preset))``.

    Raises:
        ValueError: ``osc`` is not 1..3, ``table`` is not a wavetable dict
            (:func:`~vitalmatch.synth.wavetables.format.wavetable_problem`), or the preset has no
            ``settings.wavetables[osc - 1]``.
    """
    if isinstance(osc, bool) or not isinstance(osc, int) or not 1 <= osc <= NUM_OSCILLATORS:
        raise ValueError(f"osc must be 1..{NUM_OSCILLATORS}, got {osc!r}")
    problem = wavetable_problem(table)
    if problem:
        raise ValueError(problem)
    settings = preset.get("settings") if isinstance(preset, dict) else None
    tables = settings.get("wavetables") if isinstance(settings, dict) else None
    if not isinstance(tables, list) or len(tables) < osc:
        raise ValueError(f"preset has no settings.wavetables[{osc - 1}]")
    tables[osc - 1] = copy.deepcopy(table)


@dataclass(frozen=True)
class RenderConfig:
    """How every preset is played.

    Attributes:
        sample_rate: Hz; rendering directly at a lower rate is cheaper than resampling later.
        notes: MIDI notes, one render each.
        velocity: MIDI velocity in [0, 1] (the init preset ignores it: ``velocity_track`` = 0).
        note_duration_s: seconds from note-on to note-off.
        render_duration_s: seconds of audio returned per note (the release tail follows note-off).
        bpm: tempo for tempo-synced controls.
        flush_duration_s: length of the throw-away render that ends lingering voices.
        reproducible: build a fresh synth per preset so that a render does not depend on
            earlier ones (see the module docstring).
        settle_duration_s: silent render after each load that lets smoothed values settle.
    """

    sample_rate: int = 44100
    notes: tuple[int, ...] = (48, 60, 72)
    velocity: float = 0.7
    note_duration_s: float = 1.0
    render_duration_s: float = 2.0
    bpm: float = 120.0
    flush_duration_s: float = 0.05
    reproducible: bool = True
    settle_duration_s: float = 1.0

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample rate must be in 8000..192000 Hz, got {self.sample_rate}")
        if not self.notes or any(not 0 <= n <= 127 for n in self.notes):
            raise ValueError(f"notes must be MIDI numbers in 0..127, got {list(self.notes)}")
        if not 0 < self.render_duration_s <= 60:
            raise ValueError(f"render duration must be in (0, 60] s, got {self.render_duration_s}")
        if not self.note_duration_s > 0:
            raise ValueError(f"note duration must be > 0 s, got {self.note_duration_s}")
        if not 0 <= self.velocity <= 1:
            raise ValueError(f"velocity must be in [0, 1], got {self.velocity}")

    @property
    def n_samples(self) -> int:
        """Samples per render, exactly as vita computes it."""
        return int(np.float32(self.render_duration_s) * self.sample_rate)


class RenderEngine:
    """One ``vita.Synth`` with cached control handles (state: the synth).

    Args:
        registry: the full registry (every column of the stored vectors).
        wavetables: catalog tables in catalog order (Vital wavetable JSON dicts); the
            ``osc_N_wavetable`` categoricals index this list.
        config: render settings.
    """

    def __init__(
        self, registry: ParamRegistry, wavetables: Sequence[dict], config: RenderConfig = RenderConfig()
    ) -> None:
        self.registry = registry
        self.wavetables = list(wavetables)
        self.config = config
        self._control_names = [s.name for s in registry.specs if s.control]
        self._needs_load = [s.name for s in registry.specs if s.needs_load]
        self._loaded: dict[str, float] | None = None  # raw values the synth holds (None: unknown)
        self._new_synth()
        self._init_preset = json.loads(self.synth.to_json())
        self._wt_cols = {
            osc: registry.locate(f"osc_{osc}_wavetable")[1]
            for osc in (1, 2, 3)
            if f"osc_{osc}_wavetable" in registry
        }

    # ------------------------------------------------------------------------------------ state
    def _new_synth(self) -> None:
        """Replace the synth (and its control handles, which must not outlive it)."""
        import vita

        self._controls = []
        self.synth = vita.Synth()
        self.synth.set_sample_rate(float(self.config.sample_rate))
        handles = self.synth.get_controls()
        self._controls = [(name, handles[name]) for name in self._control_names]

    def preset_json(self, continuous: np.ndarray, categorical: np.ndarray) -> dict:
        """The Vital preset dict for a parameter vector (init preset + values + wavetables)."""
        raw = self.registry.to_raw(continuous, categorical)
        preset = dict(self._init_preset)
        settings = dict(preset["settings"])
        settings.update({name: raw[name] for name, _ in self._controls})
        settings["wavetables"] = list(settings["wavetables"])
        preset["settings"] = settings
        for osc, col in self._wt_cols.items():
            index = int(categorical[col])
            if not 0 <= index < len(self.wavetables):
                raise RenderError(
                    f"osc_{osc}_wavetable index {index} is outside the catalog (size {len(self.wavetables)})"
                )
            inject_wavetable(preset, osc, self.wavetables[index])
        return preset

    def load(self, continuous: np.ndarray, categorical: np.ndarray) -> None:
        """Reset the synth to the preset given by the normalised vectors."""
        self._loaded = None
        preset = self.preset_json(continuous, categorical)
        if self.config.reproducible:
            self._new_synth()
        if not self.synth.load_json(json.dumps(preset)):
            raise RenderError("the synth rejected the preset JSON")
        settings = preset["settings"]
        for name, handle in self._controls:
            handle.set(settings[name])
        self.synth.set_bpm(self.config.bpm)
        self.settle()
        self._loaded = self.registry.to_raw(continuous, categorical)

    def update(self, continuous: np.ndarray, categorical: np.ndarray) -> None:
        """Bring the synth to another preset, changing only what differs from the last one.

        Sets, through the cached handles, only the controls whose clamped raw value changed since
        the last :meth:`load` / :meth:`update`. A full :meth:`load` happens instead when there was
        none, when a control that acts only on load (``oversampling``, vita-facts §2.2) or a
        wavetable choice changed, or with ``config.reproducible`` (a fresh synth per preset).
        Vital smooths the values it was given towards their targets while audio is processed:
        :meth:`render_note`'s flush lets them arrive. Cost: ~0.1 ms plus the controls set, against
        ~15-40 ms for a load.
        """
        raw = self.registry.to_raw(continuous, categorical)
        old = self._loaded
        if old is None or self.config.reproducible or any(raw[n] != old[n] for n in self._needs_load):
            self.load(continuous, categorical)
            return
        for name, handle in self._controls:
            if raw[name] != old[name]:
                handle.set(raw[name])
        self._loaded = raw

    def load_preset_dict(self, preset: dict) -> None:
        """Load an arbitrary Vital preset dict (e.g. a real ``.vital`` file) as it is."""
        self._loaded = None
        if self.config.reproducible:
            self._new_synth()
        if not self.synth.load_json(json.dumps(preset)):
            raise RenderError("the synth rejected the preset JSON")
        self.synth.set_bpm(self.config.bpm)
        self.settle()

    def to_json(self) -> str:
        """The synth's current state as ``.vital`` JSON text."""
        return self.synth.to_json()

    # ------------------------------------------------------------------------------------ audio
    def settle(self) -> None:
        """Silent render that lets Vital's smoothed values reach the loaded preset's values."""
        if self.config.settle_duration_s > 0:
            self.synth.render(0, 0.0, 0.001, self.config.settle_duration_s)

    def flush(self) -> None:
        """End voices left over from earlier renders (a short throw-away note)."""
        self.synth.render(0, 0.0, 0.001, self.config.flush_duration_s)

    def render_note(
        self, note: int, note_s: float | None = None, render_s: float | None = None
    ) -> np.ndarray:
        """``(2, T)`` float32 render of one MIDI note of the loaded preset at the configured velocity,
        after a flush.

        Args:
            note: MIDI note.
            note_s: seconds from note-on to note-off (may exceed ``render_s``: the note is then
                held to the end); default ``config.note_duration_s``.
            render_s: seconds of audio, ``T = int(float32(render_s) * sample_rate)``; default
                ``config.render_duration_s``.
        """
        cfg = self.config
        note_s = cfg.note_duration_s if note_s is None else float(note_s)
        render_s = cfg.render_duration_s if render_s is None else float(render_s)
        self.flush()
        return self.synth.render(int(note), cfg.velocity, note_s, render_s)

    def crash(self) -> None:
        """Test hook: crash this process for real (SIGSEGV), as a bad preset would.

        Sets ``chorus_voices`` to 7, unclamped on purpose (vita-facts §4), and renders. Tests use it
        through the fault switches of the worker pools (``generate``'s and the search's) to check
        that a crashed worker costs one task, not the job.
        """
        handles = self.synth.get_controls()
        handles["chorus_on"].set(1.0)
        handles["chorus_voices"].set(7.0)
        self.synth.render(60, self.config.velocity, 0.1, 0.2)

    def render(
        self, continuous: np.ndarray, categorical: np.ndarray, notes: Sequence[int] | None = None
    ) -> np.ndarray:
        """Load a preset and render it at each note: ``(n_notes, 2, T)`` float32."""
        self.load(continuous, categorical)
        notes = self.config.notes if notes is None else notes
        return np.stack([self.render_note(n) for n in notes])
