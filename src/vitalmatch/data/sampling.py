"""Preset sampling: a seeded, endless, reproducible stream of random presets for one tier.

Stage: sampling. Input: a :class:`~vitalmatch.synth.params.ParamRegistry` and a
:class:`SamplerConfig`. Output: :class:`Preset` records holding the *full* normalised
vectors (every registry column; parameters outside the tier stay at Vital's init values), and
from Tier 2 on the preset's modulation connections (encoded ``(k, 7)`` rows,
:func:`vitalmatch.synth.modulation.encode`) and, at Tier 3, its LFO shapes (indices into
:data:`~vitalmatch.synth.modulation.LFO_SHAPES`).

Continuous parameters of the tier are drawn by Latin-hypercube sampling in blocks of
``block_size`` presets; categoricals are drawn independently (uniform unless weighted).
Block ``b`` uses the generator ``numpy.random.default_rng([seed, b])`` (and, from Tier 2 on,
``[seed, b, 2]`` for the Tier-2 rules and ``[seed, b, 3]`` for the connections and LFO shapes),
so preset ``i`` depends only on ``(seed, i)`` and the configuration: a resumed run sees exactly
the presets an uninterrupted run would have seen. Tier 1 draws nothing from the extra
generators, so its stream is the one it always was.

Heuristic constraints keep most presets audible (vita-facts §4: 70% of uniform-random presets
are silent): sub-ranges for levels, volume, filter cutoff and envelope times; oscillator
destinations limited to the ones that reach the output when the effects are off; at least one
oscillator on. ``pins`` fix values for reproducibility
(:func:`vitalmatch.synth.params.reproducibility_pins`: ``osc_N_random_phase = 0`` makes every
render bit-identical, vita-facts §6) and are stored with the preset like any other value.

Tier 2 (every registry parameter; rules in :func:`_tier2_ranges`, :func:`_tier2_weights`,
:func:`_tier2_hold`):

* on-probabilities: osc 3 0.4, sample (noise) 0.2, filter 2 0.3, filter_fx 0.2, each effect
  0.2-0.3 (reverb 0.3; chorus, delay, distortion, eq 0.25; compressor, flanger, phaser 0.2);
* useful ranges in raw units, written in dB / Hz / seconds through ``synth/params``: osc 3 like
  oscillators 1-2 at Tier 1 (level 0.4-1, transpose +-24, keytracked 90%); sample level 0.2-0.8;
  filter 2 and filter_fx cutoffs 82 Hz - 21 kHz, styles limited to the five named ones;
  envelopes 2-6 attack <= 1 s, decay and release 20 ms - 2 s / 1.5 s; LFO and random rates
  0.25-16 Hz, tempo divisions 2/1 - 1/16 (never "Freeze"); dry/wet 0.2-0.6 for reverb, 0.1-0.5 for
  delay, 0.2-0.7 for chorus; reverb decay 0.3-6 s; delay 50-670 ms with |feedback| <= 0.85;
  distortion drive -6..+15 dB; compressor near Vital's defaults (band gains 0-20 dB);
  eq gains +-12 dB in their own bands; chorus 1-4 voices; flanger and phaser centres
  100 Hz - 5 kHz with feedback <= 0.8;
* ``effect_chain_order`` uniform over all 9! = 362880 permutation codes (Vital decodes any);
* oscillator and sample destinations stay among FILTER 1, FILTER 2, FILTER 1+2, EFFECTS and
  DIRECT OUT, as at Tier 1: the nine single-effect destinations (CHORUS .. REVERB, 5-13) give
  digital silence on vita 0.1.0 even with that effect on (measured for every one; docs/vita-facts.md
  §8), so drawing them would only make silent presets;
* held at the init value (``hold``, probability 1): ``oversampling`` (acts only on load and
  multiplies the render cost: vita-facts §2.2, §5), ``beats_per_minute`` (the render sets the
  tempo), ``bypass``, ``mpe_enabled``, ``pitch_wheel`` and ``pitch_bend_range`` (the pitch of a
  render stays the note's), the sample's random phase and transpose quantize; mostly at init
  (``init_probability``): portamento time 80% (a single note has nothing to glide from),
  voice transpose 80% (else +-12), LFO delay, fade and stereo 70%, velocity tracking 50%;
* the :data:`FIXED_ROUTINGS`, each active with its own probability (:data:`ROUTINGS`).

Tier 3 adds a sparse random matrix: ``k = Geometric(p) - 1`` further connections (numpy's
geometric counts trials, >= 1, so ``k = 0`` is possible with probability ``p``), clamped to
``[0, max_connections]`` (p = 0.15, 20: mean 5.45), each a distinct (source, destination) pair
over :func:`~vitalmatch.synth.modulation.sources` (weighted by ``matrix_source_weights``: LFOs,
envelopes and random generators first; never the note-on ``random`` source, whose renders depend
on the process, :data:`~vitalmatch.synth.modulation.UNREPRODUCIBLE_SOURCES`) and
:func:`~vitalmatch.synth.modulation.sampled_destinations` (uniform), never one of the fixed
pairs; amount of random sign with magnitude Beta(1.5, 3.5) (mean 0.3), bipolar 50%, power 0 in
80% (else uniform -5..5), stereo 10%. Each LFO gets a shape drawn uniformly from
``LFO_SHAPES``. Fixed routings come first in the slots, then the random ones (at most 28 of the
64 slots).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vitalmatch.synth.modulation import (
    ENCODED_WIDTH,
    LFO_SHAPES,
    NUM_LFOS,
    UNREPRODUCIBLE_SOURCES,
    Connection,
    connection_problem,
    decode,
    destinations,
    encode,
    sampled_destinations,
    sources,
)
from vitalmatch.synth.params import (
    ParamRegistry,
    check_tier,
    envelope_time_raw,
    exponential_time_raw,
    frequency_raw,
    reproducibility_pins,
    semitones_of_hz,
    volume_raw,
)
from vitalmatch.synth.render import PresetExtras


def _tier1_ranges() -> dict[str, tuple[float, float]]:
    """Sub-ranges in *raw* units for Tier-1 continuous parameters (the rest use their full range)."""
    ranges: dict[str, tuple[float, float]] = {
        "volume": (volume_raw(-16.75), volume_raw(1.25)),  # dB; the init preset is at -6 dB
        # below ~82 Hz (E2) most filters mute; the top is clamped to the control's (136 = 21.1 kHz)
        "filter_1_cutoff": (semitones_of_hz(82.41), semitones_of_hz(21_100.0)),
        "env_1_attack": (0.0, envelope_time_raw(1.0)),  # seconds
        "env_1_delay": (0.0, envelope_time_raw(0.1296)),  # seconds of silence before the note
    }
    for osc in (1, 2):
        ranges[f"osc_{osc}_level"] = (0.4, 1.0)
        ranges[f"osc_{osc}_transpose"] = (-24.0, 24.0)
    return ranges


def _tier1_weights() -> dict[str, dict[int, float]]:
    """Option weights for Tier-1 categoricals: ``{name: {option index: weight}}``."""
    weights: dict[str, dict[int, float]] = {
        # 12dB, 24dB, Notch Blend, Notch Spread, B/P/N: the five styles Vital names.
        "filter_1_style": {i: 1.0 for i in range(5)},
        "filter_1_on": {0: 0.3, 1: 0.7},
    }
    for osc in (1, 2):
        # Destinations 5-13 feed single effects, which are off below Tier 2: silent.
        weights[f"osc_{osc}_destination"] = {0: 0.4, 1: 0.1, 2: 0.1, 3: 0.2, 4: 0.2}
        weights[f"osc_{osc}_midi_track"] = {0: 0.1, 1: 0.9}
        weights[f"osc_{osc}_on"] = {0: 0.3, 1: 0.7}
    return weights


def _hz(lo: float, hi: float) -> tuple[float, float]:
    """A range of a control in semitones (cutoffs, centres) from one in Hz."""
    return semitones_of_hz(lo), semitones_of_hz(hi)


def _tier2_ranges() -> dict[str, tuple[float, float]]:
    """Sub-ranges in raw units for the continuous parameters Tier 2 adds (module docstring)."""
    cutoff = _hz(82.41, 21_100.0)
    r: dict[str, tuple[float, float]] = {
        "osc_3_level": (0.4, 1.0),
        "osc_3_transpose": (-24.0, 24.0),
        "sample_level": (0.2, 0.8),
        "sample_transpose": (-24.0, 24.0),
        "filter_2_cutoff": cutoff,
        "filter_fx_cutoff": cutoff,
        "filter_fx_mix": (0.3, 1.0),
        # voice and portamento (portamento and voice transpose are mostly held: _tier2_init)
        "voice_transpose": (-12.0, 12.0),
        "voice_amplitude": (0.5, 1.0),
        "velocity_track": (-0.5, 0.5),
        "portamento_time": (exponential_time_raw(0.01), exponential_time_raw(0.5)),
        # chorus
        "chorus_dry_wet": (0.2, 0.7),
        "chorus_feedback": (-0.6, 0.6),
        "chorus_frequency": (frequency_raw(0.05), frequency_raw(2.0)),
        "chorus_cutoff": _hz(100.0, 16_000.0),
        # compressor: near Vital's defaults (band gains 11.7-16.3 dB, thresholds -36..-25 dB)
        "compressor_mix": (0.5, 1.0),
        # delay
        "delay_dry_wet": (0.1, 0.5),
        "delay_feedback": (-0.85, 0.85),
        "delay_frequency": (frequency_raw(1.5), frequency_raw(20.0)),  # 670 .. 50 ms
        "delay_aux_frequency": (frequency_raw(1.5), frequency_raw(20.0)),
        "delay_filter_cutoff": _hz(200.0, 8_000.0),
        # distortion
        "distortion_drive": (-6.0, 15.0),  # dB
        "distortion_mix": (0.3, 1.0),
        "distortion_filter_cutoff": _hz(200.0, 12_000.0),
        "distortion_filter_resonance": (0.0, 0.8),
        # eq: each band in its own region, +-12 dB
        "eq_low_cutoff": _hz(40.0, 400.0),
        "eq_band_cutoff": _hz(200.0, 5_000.0),
        "eq_high_cutoff": _hz(2_000.0, 16_000.0),
        "eq_low_gain": (-12.0, 12.0),
        "eq_band_gain": (-12.0, 12.0),
        "eq_high_gain": (-12.0, 12.0),
        # flanger and phaser
        "flanger_feedback": (-0.8, 0.8),
        "flanger_frequency": (frequency_raw(1 / 16), frequency_raw(4.0)),
        "flanger_center": _hz(100.0, 5_000.0),
        "phaser_dry_wet": (0.3, 1.0),
        "phaser_feedback": (0.0, 0.8),
        "phaser_frequency": (frequency_raw(1 / 16), frequency_raw(4.0)),
        "phaser_center": _hz(200.0, 5_000.0),
        # reverb
        "reverb_dry_wet": (0.2, 0.6),
        "reverb_decay_time": (exponential_time_raw(0.3), exponential_time_raw(6.0)),
        "reverb_delay": (0.0, 0.1),
        "reverb_pre_low_cutoff": (0.0, 60.0),
        "reverb_pre_high_cutoff": (70.0, 128.0),
        "reverb_chorus_amount": (0.0, 0.5),
    }
    for band in ("low", "band", "high"):
        r[f"compressor_{band}_gain"] = (0.0, 20.0)  # dB
        r[f"compressor_{band}_lower_threshold"] = (-60.0, -20.0)
        r[f"compressor_{band}_upper_threshold"] = (-40.0, -10.0)
        r[f"compressor_{band}_lower_ratio"] = (0.2, 1.0)
        r[f"compressor_{band}_upper_ratio"] = (0.5, 1.0)
    for k in range(2, 7):
        r[f"env_{k}_attack"] = (0.0, envelope_time_raw(1.0))
        r[f"env_{k}_decay"] = (envelope_time_raw(0.02), envelope_time_raw(2.0))
        r[f"env_{k}_release"] = (envelope_time_raw(0.02), envelope_time_raw(1.5))
        r[f"env_{k}_delay"] = (0.0, envelope_time_raw(0.1296))
        r[f"env_{k}_hold"] = (0.0, envelope_time_raw(0.3))
        r[f"env_{k}_attack_power"] = (-6.0, 6.0)
        r[f"env_{k}_decay_power"] = (-8.0, 4.0)
        r[f"env_{k}_release_power"] = (-8.0, 4.0)
    for k in range(1, 9):
        r[f"lfo_{k}_frequency"] = (frequency_raw(0.25), frequency_raw(16.0))
        r[f"lfo_{k}_delay_time"] = (0.0, 0.5)
        r[f"lfo_{k}_fade_time"] = (0.0, 1.0)
        r[f"lfo_{k}_smooth_time"] = (-10.0, -4.0)
        r[f"lfo_{k}_keytrack_transpose"] = (-24.0, 12.0)
    for k in range(1, 5):
        r[f"random_{k}_frequency"] = (frequency_raw(0.25), frequency_raw(16.0))
        r[f"random_{k}_keytrack_transpose"] = (-24.0, 12.0)
    return r


def _tier2_weights() -> dict[str, dict[int, float]]:
    """Option weights for the categoricals Tier 2 adds (module docstring)."""
    off_on = lambda p: {0: 1.0 - p, 1: p}  # noqa: E731 - a one-line table helper
    to_filters_or_out = {0: 0.4, 1: 0.1, 2: 0.1, 3: 0.2, 4: 0.2}  # 5-13 are silent (module docstring)
    w: dict[str, dict[int, float]] = {
        "osc_3_on": off_on(0.4),
        "osc_3_destination": to_filters_or_out,
        "osc_3_midi_track": off_on(0.9),
        "sample_on": off_on(0.2),
        "sample_destination": to_filters_or_out,
        "sample_loop": off_on(0.8),
        "filter_2_on": off_on(0.3),
        "filter_2_style": {i: 1.0 for i in range(5)},
        "filter_fx_on": off_on(0.2),
        "filter_fx_style": {i: 1.0 for i in range(5)},
        "chorus_on": off_on(0.25),
        "compressor_on": off_on(0.2),
        "delay_on": off_on(0.25),
        "distortion_on": off_on(0.25),
        "eq_on": off_on(0.25),
        "flanger_on": off_on(0.2),
        "phaser_on": off_on(0.2),
        "reverb_on": off_on(0.3),
        "portamento_force": off_on(0.2),
        # raw 4..12 = 4/1 .. 1/64 (Vital's table, vita-facts §2.2): 1/2, 1/4, 1/8, 1/16, 1/32
        "delay_tempo": {3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0, 7: 0.5},
        "delay_aux_tempo": {3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0, 7: 0.5},
    }
    sync = {0: 0.5, 1: 0.3, 2: 0.1, 3: 0.1}  # Seconds, Tempo, Dotted, Triplets
    for fx in ("chorus", "flanger", "phaser", "delay", "delay_aux"):
        w[f"{fx}_sync"] = sync
    for fx in ("chorus", "flanger", "phaser"):
        w[f"{fx}_tempo"] = {i: 1.0 for i in range(3, 9)}  # 8/1 .. 1/4, never Freeze
    mod_sync = {0: 0.45, 1: 0.35, 2: 0.05, 3: 0.05, 4: 0.1}  # ... and Keytrack
    mod_tempo = {5: 1.0, 6: 1.0, 7: 1.0, 8: 1.0, 9: 1.0, 10: 0.5}  # 2/1 .. 1/16
    for k in range(1, 9):
        w[f"lfo_{k}_sync"] = mod_sync
        w[f"lfo_{k}_tempo"] = mod_tempo
        # Trigger, Sync, Envelope, Sustain Envelope, Loop Point, Loop Hold
        w[f"lfo_{k}_sync_type"] = {0: 0.5, 1: 0.2, 2: 0.15, 3: 0.05, 4: 0.05, 5: 0.05}
    for k in range(1, 5):
        w[f"random_{k}_sync"] = mod_sync
        w[f"random_{k}_tempo"] = mod_tempo
        w[f"random_{k}_stereo"] = off_on(0.2)
    return w


def _tier2_hold() -> dict[str, float]:
    """``{name: probability}`` that a Tier-2 parameter keeps its init value (module docstring)."""
    held = (
        "oversampling",
        "beats_per_minute",
        "bypass",
        "mpe_enabled",
        "pitch_wheel",
        "pitch_bend_range",
        "sample_random_phase",
        "sample_transpose_quantize",
    )
    p = {name: 1.0 for name in held}
    p |= {"portamento_time": 0.8, "portamento_slope": 0.8, "voice_transpose": 0.8, "velocity_track": 0.5}
    for k in range(1, 9):
        p |= {f"lfo_{k}_delay_time": 0.7, f"lfo_{k}_fade_time": 0.7, f"lfo_{k}_stereo": 0.7}
    return p


def _default_ranges() -> dict[str, tuple[float, float]]:
    return _tier1_ranges() | _tier2_ranges()


def _default_weights() -> dict[str, dict[int, float]]:
    return _tier1_weights() | _tier2_weights()


@dataclass(frozen=True)
class FixedRouting:
    """One of the fixed Tier-2 modulation connections and how it is drawn.

    Attributes:
        source, destination: modulation names (:mod:`vitalmatch.synth.modulation`).
        probability: share of presets in which it is connected.
        magnitude: range of ``|amount|`` (share of the destination's range).
        negative: probability that the amount is negative.
        bipolar: the source swings both ways around the destination's value.
        role: what it does musically.
    """

    source: str
    destination: str
    probability: float
    magnitude: tuple[float, float]
    negative: float
    bipolar: bool
    role: str


#: The fixed Tier-2 routings (order = the label rows of :func:`routing_labels`).
ROUTINGS: tuple[FixedRouting, ...] = (
    FixedRouting("env_2", "filter_1_cutoff", 0.4, (0.1, 0.5), 0.2, False, "filter envelope"),
    FixedRouting("lfo_1", "osc_1_wave_frame", 0.3, (0.1, 0.6), 0.0, False, "wavetable scan"),
    FixedRouting("lfo_2", "osc_1_tune", 0.25, (0.02, 0.25), 0.0, True, "vibrato"),
    FixedRouting("env_3", "osc_2_level", 0.25, (0.2, 0.6), 0.5, False, "second layer swell or fade"),
    FixedRouting("lfo_3", "filter_1_cutoff", 0.25, (0.05, 0.3), 0.0, True, "filter wobble"),
    FixedRouting("random_1", "osc_1_pan", 0.2, (0.1, 0.5), 0.0, True, "random pan"),
    FixedRouting("lfo_4", "osc_1_level", 0.2, (0.1, 0.5), 1.0, False, "tremolo"),
    FixedRouting("env_4", "osc_1_transpose", 0.15, (0.02, 0.15), 0.3, False, "pitch envelope"),
)

#: The 8 fixed ``(source, destination)`` pairs of Tier 2.
FIXED_ROUTINGS: tuple[tuple[str, str], ...] = tuple((r.source, r.destination) for r in ROUTINGS)


def routing_labels(encoded_rows: np.ndarray) -> np.ndarray:
    """``(8, 2)`` float32 labels of the fixed routings from a preset's encoded connections.

    Row ``i`` is ``(amount, active)`` for :data:`FIXED_ROUTINGS` ``[i]``: the amount of the
    connection with that source and destination and 1.0, or ``(0, 0)`` when it is absent. Needs
    no storage beyond the ``(k, 7)`` rows (:func:`vitalmatch.synth.modulation.encode`).
    """
    arr = np.asarray(encoded_rows, dtype=np.float64).reshape(-1, ENCODED_WIDTH)
    si = {n: i for i, n in enumerate(sources())}
    di = {n: i for i, n in enumerate(destinations())}
    out = np.zeros((len(FIXED_ROUTINGS), 2), dtype=np.float32)
    for i, (s, d) in enumerate(FIXED_ROUTINGS):
        hit = np.flatnonzero((arr[:, 1] == si[s]) & (arr[:, 2] == di[d]))
        if len(hit):
            out[i] = (arr[hit[0], 3], 1.0)
    return out


def _matrix_source_weights() -> dict[str, float]:
    """Weights of the Tier-3 random connections' sources (unlisted sources: 1)."""
    w = {f"lfo_{k}": 3.0 for k in range(1, 9)}
    w |= {f"env_{k}": 2.0 for k in range(1, 7)}
    w |= {f"random_{k}": 2.0 for k in range(1, 5)}
    # Performance sources that stay at 0 in a render (no MPE, no wheel): they move nothing.
    w |= {name: 0.25 for name in ("aftertouch", "lift", "slide", "pitch_wheel")}
    # never: renders with it depend on the process's history (synth/modulation.py)
    w |= {name: 0.0 for name in UNREPRODUCIBLE_SOURCES}
    return w


@dataclass
class SamplerConfig:
    """How random presets are drawn.

    Attributes:
        tier: 1, 2 or 3; parameters of higher tiers stay at init values.
        seed: base seed; same seed and config -> same presets.
        block_size: presets per Latin-hypercube block.
        ranges: raw sub-ranges ``{name: (lo, hi)}`` for continuous parameters.
        weights: ``{name: {option index: weight}}`` for categoricals (unlisted options: weight 0).
        pins: fixed raw values ``{name: raw}``, applied after sampling (any tier).
        min_oscillators_on: at least this many of oscillators 1-2 are switched on.
        init_probability: ``{name: p}``: from Tier 2 on, each value is put back to its init value
            with probability ``p`` (1 = held at init).
        routings: the fixed routings drawn from Tier 2 on.
        matrix_p: Tier 3: parameter of the Geometric number of random connections (k = G - 1).
        max_connections: Tier 3: at most this many random connections (on top of the fixed ones).
        matrix_source_weights: Tier 3: weights of the sources (unlisted: 1).
    """

    tier: int = 1
    seed: int = 0
    block_size: int = 256
    ranges: dict[str, tuple[float, float]] = field(default_factory=_default_ranges)
    weights: dict[str, dict[int, float]] = field(default_factory=_default_weights)
    pins: dict[str, float] = field(default_factory=reproducibility_pins)
    min_oscillators_on: int = 1
    init_probability: dict[str, float] = field(default_factory=_tier2_hold)
    routings: tuple[FixedRouting, ...] = ROUTINGS
    matrix_p: float = 0.15
    max_connections: int = 20
    matrix_source_weights: dict[str, float] = field(default_factory=_matrix_source_weights)


def _empty_modulation() -> np.ndarray:
    return np.zeros((0, ENCODED_WIDTH), dtype=np.float32)


def _init_lfo_shapes() -> np.ndarray:
    return np.zeros(NUM_LFOS, dtype=np.int16)


@dataclass(frozen=True)
class Preset:
    """One preset as the datasets store it.

    Attributes:
        index: position in the sampling stream (or in an ingested folder).
        continuous: ``(C,)`` float32 in [0, 1], every registry column.
        categorical: ``(K,)`` int32 option indices, every registry column.
        name: human-readable name.
        source: ``"synthetic"`` or ``"preset"``.
        modulation: ``(k, 7)`` float32 encoded connections in slot order
            (:func:`vitalmatch.synth.modulation.encode`); ``(0, 7)`` at Tier 1.
        lfo_shape: ``(8,)`` int16 indices into an LFO-shape table (:data:`LFO_SHAPES` for sampled
            presets); 0 = Vital's init shape.
    """

    index: int
    continuous: np.ndarray
    categorical: np.ndarray
    name: str = ""
    source: str = "synthetic"
    modulation: np.ndarray = field(default_factory=_empty_modulation)
    lfo_shape: np.ndarray = field(default_factory=_init_lfo_shapes)

    def extras(self, lfo_table: Sequence[dict] = LFO_SHAPES) -> PresetExtras:
        """What the render engine needs beyond the vectors: the decoded connections and the LFO
        shapes looked up in ``lfo_table`` (None where the index is 0, so the init shape stays)."""
        lfos = tuple(None if int(i) == 0 else lfo_table[int(i)] for i in self.lfo_shape)
        return PresetExtras(modulations=tuple(decode(self.modulation)), lfos=lfos)


class PresetSampler:
    """Seeded stream of random presets (see the module docstring for the guarantees)."""

    def __init__(self, registry: ParamRegistry, config: SamplerConfig) -> None:
        check_tier(config.tier)
        if config.block_size < 1:
            raise ValueError("block_size must be >= 1")
        if not 0 < config.matrix_p <= 1:
            raise ValueError(f"matrix_p must be in (0, 1], got {config.matrix_p}")
        if not 0 <= config.max_connections <= 64 - len(config.routings):
            raise ValueError(f"max_connections must be in 0..{64 - len(config.routings)}")
        self.registry = registry
        self.config = config
        tier = config.tier
        self._cont_cols = [i for i, s in enumerate(registry.continuous) if s.tier <= tier]
        self._cat_cols = [i for i, s in enumerate(registry.categorical) if s.tier <= tier]
        # Unit-space bounds of every sampled continuous column.
        lo, hi = [], []
        for i in self._cont_cols:
            spec = registry.continuous[i]
            r_lo, r_hi = config.ranges.get(spec.name, (spec.min, spec.max))
            lo.append(spec.to_unit(r_lo))
            hi.append(spec.to_unit(r_hi))
        self._lo, self._hi = np.array(lo), np.array(hi)
        self._cat_probs = [self._probs(registry.categorical[i]) for i in self._cat_cols]
        self._defaults = registry.defaults()
        self._pins = [(registry.locate(n), v) for n, v in config.pins.items() if n in registry]
        self._osc_on = [registry.locate(f"osc_{o}_on")[1] for o in (1, 2) if f"osc_{o}_on" in registry]
        self._block: tuple[int, np.ndarray, np.ndarray, list[np.ndarray], np.ndarray] | None = None
        if tier >= 2:
            self._prepare_tier2()

    def _prepare_tier2(self) -> None:
        cfg, reg = self.config, self.registry
        self._held = [
            (reg.locate(n), float(p))
            for n, p in cfg.init_probability.items()
            if n in reg and reg[n].tier <= cfg.tier and p > 0
        ]
        for r in cfg.routings:
            problem = connection_problem(Connection(r.source, r.destination, r.magnitude[1]))
            if problem:
                raise ValueError(f"fixed routing {r.source} -> {r.destination}: {problem}")
        self._fixed_pairs = {(r.source, r.destination) for r in cfg.routings}
        src = sources()
        w = np.array([cfg.matrix_source_weights.get(s, 1.0) for s in src], dtype=np.float64)
        if w.min() < 0 or w.sum() <= 0:
            raise ValueError("matrix_source_weights must be >= 0 with a positive sum")
        self._src_p = w / w.sum()
        self._dst = sampled_destinations()

    def _probs(self, spec) -> np.ndarray:
        w = self.config.weights.get(spec.name)
        p = np.ones(spec.n_options) if w is None else np.zeros(spec.n_options)
        for k, v in (w or {}).items():
            if 0 <= k < spec.n_options:
                p[k] = v
        if p.sum() <= 0:
            raise ValueError(f"weights for {spec.name} give no option a positive weight")
        return p / p.sum()

    def _make_block(self, b: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
        cfg, reg = self.config, self.registry
        rng = np.random.default_rng([cfg.seed, b])
        n = cfg.block_size
        cont = np.tile(self._defaults[0], (n, 1)).astype(np.float64)
        cat = np.tile(self._defaults[1], (n, 1))
        if self._cont_cols:
            # imported here: scipy.stats costs ~1.5 s, paid by every generate worker that imports this module
            from scipy.stats import qmc

            lhs = qmc.LatinHypercube(d=len(self._cont_cols), rng=rng).random(n)
            cont[:, self._cont_cols] = self._lo + lhs * (self._hi - self._lo)
        for col, p in zip(self._cat_cols, self._cat_probs, strict=True):
            cat[:, col] = rng.choice(len(p), size=n, p=p)
        if self._osc_on and self.config.min_oscillators_on > 0:
            need = min(self.config.min_oscillators_on, len(self._osc_on))
            for row in np.flatnonzero(cat[:, self._osc_on].sum(axis=1) < need):
                for col in rng.permutation(self._osc_on)[:need]:
                    cat[row, col] = 1
        if cfg.tier >= 2:  # after every Tier-1 draw: Tier 1's stream stays as it was
            self._tier2_rules(np.random.default_rng([cfg.seed, b, 2]), cont, cat)
        for (kind, col), raw in self._pins:
            spec = reg.continuous[col] if kind == "continuous" else reg.categorical[col]
            (cont if kind == "continuous" else cat)[:, col] = spec.to_unit(raw)
        # Snap each value to what the engine will really receive (integers rounded), so that the
        # stored label is exactly the value that was set.
        for j, spec in enumerate(reg.continuous):
            if spec.integer:
                cont[:, j] = [spec.to_unit(spec.from_unit(u)) for u in cont[:, j]]
        mods = [_empty_modulation() for _ in range(n)]
        shapes = np.zeros((n, NUM_LFOS), dtype=np.int16)
        if cfg.tier >= 2:
            mods, shapes = self._modulation(np.random.default_rng([cfg.seed, b, 3]), n)
        return cont.astype(np.float32), cat.astype(np.int32), mods, shapes

    def _tier2_rules(self, rng: np.random.Generator, cont: np.ndarray, cat: np.ndarray) -> None:
        """Values held at init (``init_probability``); draws a fixed amount per block."""
        n = cont.shape[0]
        for (kind, col), p in self._held:
            rows = rng.random(n) < p
            values, init = (cont, self._defaults[0]) if kind == "continuous" else (cat, self._defaults[1])
            values[rows, col] = init[col]

    def _modulation(self, rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Per row the encoded connections (fixed routings, then at Tier 3 the random matrix) and
        the LFO shape indices (Tier 3; zeros at Tier 2)."""
        cfg = self.config
        rules = cfg.routings
        m = len(rules)
        active = rng.random((n, m)) < np.array([r.probability for r in rules])
        lo = np.array([r.magnitude[0] for r in rules])
        hi = np.array([r.magnitude[1] for r in rules])
        magnitude = lo + rng.random((n, m)) * (hi - lo)
        negative = rng.random((n, m)) < np.array([r.negative for r in rules])
        amounts = np.where(negative, -magnitude, magnitude).astype(np.float32)
        shapes = np.zeros((n, NUM_LFOS), dtype=np.int16)
        counts = np.zeros(n, dtype=np.int64)
        if cfg.tier >= 3:
            shapes = rng.integers(0, len(LFO_SHAPES), size=(n, NUM_LFOS)).astype(np.int16)
            counts = np.minimum(rng.geometric(cfg.matrix_p, size=n) - 1, cfg.max_connections)
        src = sources()
        out = []
        for row in range(n):
            conns = [
                Connection(r.source, r.destination, float(amounts[row, j]), r.bipolar)
                for j, r in enumerate(rules)
                if active[row, j]
            ]
            if counts[row]:
                conns += self._random_connections(rng, int(counts[row]), src)
            out.append(encode(conns))
        return out, shapes

    def _random_connections(self, rng: np.random.Generator, k: int, src: Sequence[str]) -> list[Connection]:
        """``k`` distinct random connections, none on a fixed routing's pair."""
        taken = set(self._fixed_pairs)
        conns: list[Connection] = []
        while len(conns) < k:
            s = src[int(rng.choice(len(src), p=self._src_p))]
            d = self._dst[int(rng.integers(len(self._dst)))]
            if (s, d) in taken:
                continue  # a duplicate pair would be refused by the synth's matrix: draw again
            taken.add((s, d))
            magnitude = float(np.clip(rng.beta(1.5, 3.5), 0.01, 1.0))
            sign = -1.0 if rng.random() < 0.5 else 1.0
            bipolar = bool(rng.random() < 0.5)
            power = float(rng.uniform(-5.0, 5.0)) if rng.random() < 0.2 else 0.0
            stereo = bool(rng.random() < 0.1)
            amount, power = float(np.float32(sign * magnitude)), float(np.float32(power))
            conns.append(Connection(s, d, amount, bipolar, power, stereo))
        return conns

    def preset(self, index: int) -> Preset:
        """Preset number ``index`` of the stream (0-based)."""
        if index < 0:
            raise ValueError("preset index must be >= 0")
        b, row = divmod(index, self.config.block_size)
        if self._block is None or self._block[0] != b:
            self._block = (b, *self._make_block(b))
        _, cont, cat, mods, shapes = self._block
        return Preset(
            index,
            cont[row].copy(),
            cat[row].copy(),
            f"random-t{self.config.tier}-{index:07d}",
            modulation=mods[row].copy(),
            lfo_shape=shapes[row].copy(),
        )

    def stream(self, start: int = 0) -> Iterator[Preset]:
        """Endless stream of presets from ``start`` on."""
        i = start
        while True:
            yield self.preset(i)
            i += 1


def preset_hash(continuous: np.ndarray, categorical: np.ndarray, wavetable_hashes: Sequence[str] = ()) -> str:
    """SHA-256 hex of a preset's content: its vectors and the content of its chosen wavetables."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(continuous, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(categorical, dtype="<i4").tobytes())
    for wt in wavetable_hashes:
        h.update(wt.encode())
    return h.hexdigest()


SPLITS = ("train", "val", "test")


def split_of(hash_hex: str, fractions: Mapping[str, float] | Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """Assign a preset to train/val/test from its hash (all notes of a preset share a split).

    The first 52 bits of the hash give a uniform number in [0, 1) compared with the cumulative
    fractions, so the assignment is stable across runs, machines and dataset sizes.
    """
    fr = [fractions[s] for s in SPLITS] if isinstance(fractions, Mapping) else list(fractions)
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fr}")
    u = int(hash_hex[:13], 16) / float(16**13)
    acc = 0.0
    for name, f in zip(SPLITS, fr, strict=True):
        acc += f
        if u < acc:
            return name
    return SPLITS[-1]
