"""Preset sampling: a seeded, endless, reproducible stream of random presets for one tier.

Stage: sampling. Input: a :class:`~vitalmatch.synth.params.ParamRegistry` and a
:class:`SamplerConfig`. Output: :class:`Preset` records holding the *full* normalised
vectors (every registry column; parameters outside the tier stay at Vital's init values).

Continuous parameters of the tier are drawn by Latin-hypercube sampling in blocks of
``block_size`` presets; categoricals are drawn independently (uniform unless weighted).
Block ``b`` uses the generator ``numpy.random.default_rng([seed, b])``, so preset ``i`` depends
only on ``(seed, i)`` and the configuration: a resumed run sees exactly the presets an
uninterrupted run would have seen.

Heuristic constraints keep most presets audible (vita-facts §4: 70% of uniform-random presets
are silent): sub-ranges for levels, volume, filter cutoff and envelope times; oscillator
destinations limited to the ones that reach the output when the effects are off; at least one
oscillator on. ``pins`` fix values for reproducibility
(:func:`vitalmatch.synth.params.reproducibility_pins`: ``osc_N_random_phase = 0`` makes every
render bit-identical, vita-facts §6) and are stored with the preset like any other value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vitalmatch.synth.params import (
    ParamRegistry,
    check_tier,
    envelope_time_raw,
    reproducibility_pins,
    semitones_of_hz,
    volume_raw,
)


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


@dataclass
class SamplerConfig:
    """How random presets are drawn.

    Attributes:
        tier: 1 or 2; parameters of higher tiers stay at init values.
        seed: base seed; same seed and config -> same presets.
        block_size: presets per Latin-hypercube block.
        ranges: raw sub-ranges ``{name: (lo, hi)}`` for continuous parameters.
        weights: ``{name: {option index: weight}}`` for categoricals (unlisted options: weight 0).
        pins: fixed raw values ``{name: raw}``, applied after sampling (any tier).
        min_oscillators_on: at least this many of oscillators 1-2 are switched on.
    """

    tier: int = 1
    seed: int = 0
    block_size: int = 256
    ranges: dict[str, tuple[float, float]] = field(default_factory=_tier1_ranges)
    weights: dict[str, dict[int, float]] = field(default_factory=_tier1_weights)
    pins: dict[str, float] = field(default_factory=reproducibility_pins)
    min_oscillators_on: int = 1


@dataclass(frozen=True)
class Preset:
    """One preset as the datasets store it.

    Attributes:
        index: position in the sampling stream (or in an ingested folder).
        continuous: ``(C,)`` float32 in [0, 1], every registry column.
        categorical: ``(K,)`` int32 option indices, every registry column.
        name: human-readable name.
        source: ``"synthetic"`` or ``"preset"``.
    """

    index: int
    continuous: np.ndarray
    categorical: np.ndarray
    name: str = ""
    source: str = "synthetic"


class PresetSampler:
    """Seeded stream of random presets (see the module docstring for the guarantees)."""

    def __init__(self, registry: ParamRegistry, config: SamplerConfig) -> None:
        check_tier(config.tier)
        if config.block_size < 1:
            raise ValueError("block_size must be >= 1")
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
        self._block: tuple[int, np.ndarray, np.ndarray] | None = None

    def _probs(self, spec) -> np.ndarray:
        w = self.config.weights.get(spec.name)
        p = np.ones(spec.n_options) if w is None else np.zeros(spec.n_options)
        for k, v in (w or {}).items():
            if 0 <= k < spec.n_options:
                p[k] = v
        if p.sum() <= 0:
            raise ValueError(f"weights for {spec.name} give no option a positive weight")
        return p / p.sum()

    def _make_block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
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
        for (kind, col), raw in self._pins:
            spec = reg.continuous[col] if kind == "continuous" else reg.categorical[col]
            (cont if kind == "continuous" else cat)[:, col] = spec.to_unit(raw)
        # Snap each value to what the engine will really receive (integers rounded), so that the
        # stored label is exactly the value that was set.
        for j, spec in enumerate(reg.continuous):
            if spec.integer:
                cont[:, j] = [spec.to_unit(spec.from_unit(u)) for u in cont[:, j]]
        return cont.astype(np.float32), cat.astype(np.int32)

    def preset(self, index: int) -> Preset:
        """Preset number ``index`` of the stream (0-based)."""
        if index < 0:
            raise ValueError("preset index must be >= 0")
        b, row = divmod(index, self.config.block_size)
        if self._block is None or self._block[0] != b:
            self._block = (b, *self._make_block(b))
        _, cont, cat = self._block
        return Preset(index, cont[row].copy(), cat[row].copy(), f"random-t{self.config.tier}-{index:07d}")

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
