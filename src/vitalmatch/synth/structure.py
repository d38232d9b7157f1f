"""Structure proposals: module switches and modulation routings suggested by what a sound shows.

Stage: synth (the structure pass of the search, issue 18 section 1). Input: the current preset
(a registry's normalised vectors and its modulation connections) and the target's
:class:`~vitalmatch.analysis.Findings`. Output: :class:`Proposal` records, each a small change
in raw engine values plus connections to add, and :func:`apply`, which makes the changed
vectors. The search renders each proposal and keeps it only when the loss falls; nothing here
renders.

What is proposed, and only where the findings show it and the current preset lacks it:

* a tail after note-off longer than the current release makes: reverb on (decay time from the
  tail's decay, dry/wet from its level), delay on as an alternative, and a longer ``env_1``
  release when the tail starts at the held level (a release, not a reverb, :data:`RELEASE_TAIL_DB`);
* periodic amplitude: a free LFO (one no connection uses) in seconds mode at the tremolo's rate,
  routed to the level of each oscillator that is on, amount from the depth;
* periodic pitch: a free LFO at the vibrato's rate to the tune of each oscillator that is on,
  amount from the depth in cents;
* a noise floor: the sample oscillator (the init sample is white noise) on, routed like the first
  oscillator that is on, its level from the noise share;
* stereo width: chorus on (dry/wet from the width) and, as an alternative, unison voices;
* a centroid sweep: filter 1 on (if off) and a free envelope to ``filter_1_cutoff`` (attack for
  an opening sweep, decay for a closing one, times from the sweep's), and the same with the
  cutoff lowered by the sweep's extent ("close the sweep").

Oscillators and the sample are never routed to a single effect: those destinations are silent on
vita 0.1.0 (docs/vita-facts.md §8).

Every scale used below was measured on the real synth (init preset, note 60, 1 s held in 2 s at
44.1 kHz, ``RenderEngine`` with ``RenderConfig(reproducible=True)``, each render analysed with
:func:`vitalmatch.analysis.analyse`); the comment on each constant says how.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vitalmatch.synth.modulation import MAX_SLOTS, Connection, check_connections
from vitalmatch.synth.params import (
    CATEGORICAL,
    ParamRegistry,
    envelope_time_raw,
    exponential_time_raw,
    frequency_raw,
    semitones_of_hz,
)

if TYPE_CHECKING:  # the findings are plain data; synth/ does not import the analysis at run time
    from vitalmatch.analysis import Findings

# ------------------------------------------------------------------------------ measured scales
#: Pitch swing of an LFO (init triangle shape, bipolar) routed to ``osc_N_tune``: cents (as the
#: analysis fits them, the first harmonic of the swing) per unit amount. Measured at amounts 0.05,
#: 0.1 and 0.2, 5 Hz: 4.03 / 8.05 / 16.08 cents (a sine-shaped LFO gave 99.2 cents per unit, the
#: triangle's first harmonic is 8/pi^2 of that). A static envelope at 1 moved the pitch by 200.0
#: cents per unit amount: the destination's 2-semitone range.
TUNE_CENTS_PER_AMOUNT = 80.4

#: Semitones ``filter_1_cutoff`` moves per unit amount of an envelope held at 1: the static
#: cutoff whose spectrum matched best (1-semitone grid, 60..120) at amounts 0.1 / 0.2 / 0.3 / 0.4
#: from a cutoff of 60 was 73 / 86 / 99 / 111 (130 / 130 / 130 / 127.5 per unit; the control's
#: range is 128).
CUTOFF_SEMITONES_PER_AMOUNT = 129.0

#: How far the cutoff must move for the spectral centroid of a saw to move one octave: envelope
#: sweeps of 2.2 and 4.3 octaves of cutoff (amounts 0.2 and 0.4, decays 0.2 and 0.5 s) moved the
#: centroid by 0.49-1.29 octaves (3.0 to 4.4 cutoff octaves per centroid octave).
CUTOFF_OCTAVES_PER_CENTROID_OCTAVE = 3.5

#: Envelope time per second of the analysis's ``sweep_s`` (90% of the centroid's movement):
#: a decay of 0.2 / 0.5 s gave sweep_s 0.11-0.13 / 0.26-0.33 s (ratio 1.5-1.9); an attack of
#: 0.2 / 0.5 s gave 0.17 / 0.42 s (1.17).
DECAY_PER_SWEEP_S = 1.6
ATTACK_PER_SWEEP_S = 1.17

#: Amplitude of an oscillator goes as its ``osc_N_level`` squared: an LFO (sine, unipolar) at
#: amounts -0.1 / -0.2 from level 0.707 gave depths 0.261 / 0.490, i.e. 1 - (1 - a/L)^p with
#: p = 1.99 / 2.03. The init triangle gives 0.84 of the sine's depth (0.217 / 0.417 at the same
#: amounts).
LEVEL_AMPLITUDE_POWER = 2.0
TRIANGLE_DEPTH_FACTOR = 0.84

#: Reverb ``decay time`` (seconds, Vital's display) per second of the tail's fitted time
#: constant: decay times 0.5 / 1 / 2 s gave decay_s 0.087-0.103 / 0.185-0.205 / 0.325 s.
REVERB_DECAY_PER_TAU = 5.0

#: Tail level 50 ms after note-off (dB under the held part, the analysis's ``tail_db``) against
#: reverb dry/wet, at decay times 0.5, 1 and 2 s (rows) and dry/wet 0.1, 0.25, 0.5 (columns).
REVERB_DECAYS_S = (0.5, 1.0, 2.0)
REVERB_DRY_WET = (0.1, 0.25, 0.5)
REVERB_TAIL_DB = ((-23.9, -19.6, -9.5), (-22.6, -14.8, -4.4), (-19.4, -9.7, 0.0))

#: Seconds of tail (to -60 dB) per second of ``env_1_release``: releases of 0.2 / 0.4 / 0.8 s
#: gave tails of 0.185 / 0.365 / 0.73 s.
TAIL_PER_RELEASE_S = 0.92

#: A tail that starts within this many dB of the held level is a release, not a reverb: releases
#: of 0.2-0.8 s measured -9.3 to -2.1 dB, reverb at dry/wet <= 0.25 -24 to -9.7 dB.
RELEASE_TAIL_DB = -10.0

#: Noise share against the sample's level: share / (1 - share) = c (L_sample / L_osc)^4 with
#: c = 0.78 (sample levels 0.35 / 0.5 / 0.7 beside osc 1 at 0.707, both into filter 1 (off),
#: gave shares 0.046 / 0.163 / 0.419: c = 0.80 / 0.78 / 0.75; amplitude goes as level squared,
#: energy as its fourth power).
NOISE_SHARE_PER_LEVEL4 = 0.78

#: Stereo width (the analysis's side/mid energy) against chorus dry/wet (voices 4, the defaults):
#: dry/wet 0.1 / 0.25 / 0.5 / 0.8 gave widths 0.018 / 0.107 / 0.35 / 0.417.
CHORUS_DRY_WET = (0.1, 0.25, 0.5, 0.8)
CHORUS_WIDTH = (0.018, 0.107, 0.35, 0.417)

#: Unison of osc 1 at detune 1.0: 2 voices gave width 1.0 (the voices are spread left and
#: right), 3 and 4 voices 0.32 and 0.31. Wider detunes beat (tremolo of 3-12 Hz in the analysis).
UNISON_DETUNE = 1.0
UNISON_WIDE = 0.65

#: Delay feedback decays as ``feedback ** (t / T)``: T = 0.25 s and feedback 0.3 / 0.6 gave tail
#: time constants 0.215 / 0.506 s against -T / ln(feedback) = 0.208 / 0.489 s.
DELAY_FEEDBACK_MAX = 0.85

# ------------------------------------------------------------------------------ thresholds
#: Findings weaker than these propose nothing (they also stay clear of what the init preset, its
#: reverb or its vibrato show elsewhere: a vibrato of 0.2 gave a noise share of 0.026).
MIN_NOISE_RATIO = 0.06
MIN_WIDTH = 0.08
TAIL_MARGIN = 1.5

OSCILLATORS = (1, 2, 3)
ENVELOPES = tuple(range(2, 7))  # env_1 is the amplitude envelope
LFOS = tuple(range(1, 9))


@dataclass(frozen=True)
class Proposal:
    """One structural change to try.

    Attributes:
        name: what it does, for logs (``"reverb (tail 1.2 s)"``).
        kind: the finding it answers: ``"tail"``, ``"tremolo"``, ``"vibrato"``, ``"noise"``,
            ``"width"`` or ``"sweep"``.
        values: registry parameter name -> raw engine value to set.
        connections: modulation connections to add (amounts in [-1, 1]).
    """

    name: str
    values: dict[str, float]
    connections: tuple[Connection, ...] = ()
    kind: str = ""


def proposals(
    registry: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
    connections: Sequence[Connection],
    findings: Findings,
) -> list[Proposal]:
    """Proposals for a preset (``(C,)`` / ``(K,)`` vectors of ``registry`` and its connections)
    from the target's ``findings``, grouped by finding, the most direct change of each first.

    Proposals of different findings use different LFOs and envelopes, so several can be applied
    one after the other; alternatives of one finding (reverb, delay, release) are meant to be
    tried one at a time.

    A proposal that needs a parameter the registry lacks (a Tier-1 registry has no reverb) is
    left out; so is one that would exceed :data:`MAX_SLOTS` connections.
    """
    raw = registry.to_raw(continuous, categorical)
    state = _State(registry, raw, tuple(connections))
    out: list[Proposal] = []
    out += _tail(state, findings)
    out += _tremolo(state, findings)
    out += _vibrato(state, findings)
    out += _noise(state, findings)
    out += _width(state, findings)
    out += _sweep(state, findings)
    return [p for p in out if state.fits(p)]


def apply(
    registry: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
    connections: Sequence[Connection],
    proposal: Proposal,
) -> tuple[np.ndarray, np.ndarray, tuple[Connection, ...]]:
    """The preset with ``proposal`` applied: new ``(C,)`` float32 and ``(K,)`` int32 vectors (each
    value clamped to its control's range, categoricals as option indices) and the connections,
    the old ones first and then the proposal's (a pair already connected keeps its old slot).

    Raises:
        KeyError: a value names a parameter the registry lacks.
        ValueError: the connections would be invalid (:func:`check_connections`: more than
            :data:`MAX_SLOTS`, unknown names).
    """
    cont = np.array(continuous, dtype=np.float32, copy=True)
    cat = np.array(categorical, dtype=np.int32, copy=True)
    for name, value in proposal.values.items():
        kind, col = registry.locate(name)
        spec = registry[name]
        if kind == CATEGORICAL:
            cat[col] = int(spec.to_unit(value))
        else:
            cont[col] = spec.to_unit(value)
    taken = {(c.source, c.destination) for c in connections}
    merged = list(connections)
    for c in proposal.connections:
        if (c.source, c.destination) not in taken:
            taken.add((c.source, c.destination))
            merged.append(_clamped(c))
    check_connections(merged)
    return cont, cat, tuple(merged)


# ------------------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class _State:
    registry: ParamRegistry
    raw: dict[str, float]
    connections: tuple[Connection, ...]

    def on(self, module: str) -> bool:
        name = f"{module}_on"
        return name in self.raw and self.raw[name] >= 0.5

    def oscillators_on(self) -> list[int]:
        return [o for o in OSCILLATORS if self.on(f"osc_{o}")]

    def used_sources(self) -> set[str]:
        return {c.source for c in self.connections}

    def free(self, prefix: str, numbers: Sequence[int], skip: Sequence[str] = ()) -> str | None:
        """The first ``{prefix}_{n}`` (an envelope or LFO the registry knows) that no connection
        uses as its source (nor ``skip``)."""
        used = self.used_sources() | set(skip)
        for n in numbers:
            name = f"{prefix}_{n}"
            probe = f"{name}_attack" if prefix == "env" else f"{name}_frequency"
            if name not in used and probe in self.raw:
                return name
        return None

    def routed(self, destination: str) -> bool:
        return any(c.destination == destination for c in self.connections)

    def option(self, name: str, option: str) -> float:
        """Raw value of a categorical's named option (``lfo_1_sync``, ``"Seconds"`` -> 0.0)."""
        spec = self.registry[name]
        return spec.min + spec.options.index(option)

    def fits(self, p: Proposal) -> bool:
        if any(name not in self.registry for name in p.values):
            return False
        new = {(c.source, c.destination) for c in p.connections}
        new -= {(c.source, c.destination) for c in self.connections}
        return len(self.connections) + len(new) <= MAX_SLOTS


def _clamped(c: Connection) -> Connection:
    amount = float(np.clip(c.amount, -1.0, 1.0)) if np.isfinite(c.amount) else 0.0
    return Connection(c.source, c.destination, amount, c.bipolar, c.power, c.stereo)


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    return float(np.interp(x, xs, ys))


def _current_tail_s(s: _State) -> float:
    """Seconds of tail the current preset's amplitude envelope alone gives (no effects)."""
    return TAIL_PER_RELEASE_S * float(s.raw.get("env_1_release", 0.0)) ** 4


def _tail(s: _State, f: Findings) -> list[Proposal]:
    current = _current_tail_s(s)
    if f.tail_s <= max(0.15, TAIL_MARGIN * current + 0.05) or f.decay_s <= 0:
        return []
    out: list[Proposal] = []
    release_like = f.tail_db >= RELEASE_TAIL_DB
    if release_like:
        release = f.tail_s / TAIL_PER_RELEASE_S
        out.append(
            Proposal(
                f"longer release {release:.2f} s (tail {f.tail_s:.2f} s at {f.tail_db:.0f} dB)",
                {"env_1_release": envelope_time_raw(release)},
                kind="tail",
            )
        )
    if not s.on("reverb"):
        decay = float(np.clip(REVERB_DECAY_PER_TAU * f.decay_s, 0.1, 30.0))
        # tail level against dry/wet at this decay time (interpolated in log time between rows)
        logd = np.log2(np.clip(decay, REVERB_DECAYS_S[0], REVERB_DECAYS_S[-1]))
        rows = [float(r) for r in np.log2(REVERB_DECAYS_S)]
        curve = [_interp(logd, rows, [r[j] for r in REVERB_TAIL_DB]) for j in range(len(REVERB_DRY_WET))]
        wet = float(np.clip(_interp(f.tail_db, curve, REVERB_DRY_WET), 0.05, 0.7))
        reverb = Proposal(
            f"reverb (tail {f.tail_s:.2f} s, decay {decay:.2f} s, dry/wet {wet:.2f})",
            {
                "reverb_on": s.option("reverb_on", "On"),
                "reverb_decay_time": exponential_time_raw(decay),
                "reverb_dry_wet": wet,
            },
            kind="tail",
        )
        out.insert(0 if not release_like else 1, reverb)
    if not s.on("delay"):
        # echoes every T with feedback fb decay as fb ** (t / T): fb = exp(-T / decay_s); T such
        # that a few echoes fall in the tail
        period = float(np.clip(f.tail_s / 4.0, 0.05, 0.67))
        feedback = float(np.clip(np.exp(-period / f.decay_s), 0.05, DELAY_FEEDBACK_MAX))
        wet = float(np.clip(_interp(f.tail_db, (-24.0, -6.3, 0.0), (0.1, 0.3, 0.5)), 0.05, 0.6))
        out.append(
            Proposal(
                f"delay {period * 1000:.0f} ms, feedback {feedback:.2f} (tail {f.tail_s:.2f} s)",
                {
                    "delay_on": s.option("delay_on", "On"),
                    "delay_sync": s.option("delay_sync", "Seconds"),
                    "delay_frequency": frequency_raw(1.0 / period),
                    "delay_feedback": feedback,
                    "delay_dry_wet": wet,
                },
                kind="tail",
            )
        )
    return out


def _lfo_values(s: _State, lfo: str, hz: float) -> dict[str, float]:
    return {
        f"{lfo}_sync": s.option(f"{lfo}_sync", "Seconds"),
        f"{lfo}_frequency": frequency_raw(hz),
        f"{lfo}_sync_type": s.option(f"{lfo}_sync_type", "Trigger"),
    }


def _tremolo(s: _State, f: Findings) -> list[Proposal]:
    oscs = [o for o in s.oscillators_on() if not s.routed(f"osc_{o}_level")]
    lfo = s.free("lfo", LFOS)
    if f.tremolo_hz <= 0 or f.tremolo_depth <= 0 or not oscs or lfo is None:
        return []
    depth = min(f.tremolo_depth / TRIANGLE_DEPTH_FACTOR, 0.95)
    conns = []
    for o in oscs:
        level = float(s.raw[f"osc_{o}_level"])
        # unipolar LFO pulling the level down: amplitude (1 - a/L)^2 at the trough
        amount = -level * (1.0 - (1.0 - depth) ** (1.0 / LEVEL_AMPLITUDE_POWER))
        conns.append(Connection(lfo, f"osc_{o}_level", float(np.clip(amount, -1.0, 0.0))))
    return [
        Proposal(
            f"tremolo {lfo} -> {', '.join(c.destination for c in conns)} {f.tremolo_hz:.1f} Hz",
            _lfo_values(s, lfo, f.tremolo_hz),
            tuple(conns),
            kind="tremolo",
        )
    ]


def _vibrato(s: _State, f: Findings) -> list[Proposal]:
    oscs = [o for o in s.oscillators_on() if not s.routed(f"osc_{o}_tune")]
    # not the LFO a tremolo proposal takes: the search may keep both from one round
    tremolo = _tremolo(s, f)
    lfo = s.free("lfo", LFOS, skip=[c.source for p in tremolo for c in p.connections])
    if f.vibrato_hz <= 0 or f.vibrato_cents <= 0 or not oscs or lfo is None:
        return []
    amount = float(np.clip(f.vibrato_cents / TUNE_CENTS_PER_AMOUNT, 0.0, 1.0))
    conns = tuple(Connection(lfo, f"osc_{o}_tune", amount, bipolar=True) for o in oscs)
    return [
        Proposal(
            f"vibrato {lfo} -> {', '.join(c.destination for c in conns)} {f.vibrato_hz:.1f} Hz "
            f"{f.vibrato_cents:.0f} cents",
            _lfo_values(s, lfo, f.vibrato_hz),
            conns,
            kind="vibrato",
        )
    ]


def _noise(s: _State, f: Findings) -> list[Proposal]:
    oscs = s.oscillators_on()
    if f.noise_ratio < MIN_NOISE_RATIO or s.on("sample") or "sample_level" not in s.raw:
        return []
    share = min(f.noise_ratio, 0.95)
    # osc levels' fourth powers add up as energy (amplitude goes as level squared)
    osc4 = sum(float(s.raw[f"osc_{o}_level"]) ** 4 for o in oscs) or 0.25
    level = float(np.clip((share / (1.0 - share) / NOISE_SHARE_PER_LEVEL4 * osc4) ** 0.25, 0.05, 1.0))
    route = s.raw.get(f"osc_{oscs[0]}_destination", 0.0) if oscs else 0.0
    spec = s.registry["sample_destination"]
    if not 0 <= route - spec.min < 5:  # never a single effect (silent: vita-facts §8)
        route = spec.min
    return [
        Proposal(
            f"noise: sample on, level {level:.2f} (noise share {f.noise_ratio:.2f})",
            {"sample_on": s.option("sample_on", "On"), "sample_level": level, "sample_destination": route},
            kind="noise",
        )
    ]


def _width(s: _State, f: Findings) -> list[Proposal]:
    if f.width < MIN_WIDTH:
        return []
    out = []
    if not s.on("chorus"):
        wet = float(np.clip(_interp(f.width, CHORUS_WIDTH, CHORUS_DRY_WET), 0.1, 0.8))
        out.append(
            Proposal(
                f"chorus dry/wet {wet:.2f} (width {f.width:.2f})",
                {"chorus_on": s.option("chorus_on", "On"), "chorus_dry_wet": wet},
                kind="width",
            )
        )
    oscs = [o for o in s.oscillators_on() if s.raw.get(f"osc_{o}_unison_voices", 1.0) < 2]
    if oscs:
        voices = 2.0 if f.width >= UNISON_WIDE else 3.0
        values: dict[str, float] = {}
        for o in oscs:
            values[f"osc_{o}_unison_voices"] = voices
            values[f"osc_{o}_unison_detune"] = UNISON_DETUNE
        out.append(Proposal(f"unison {voices:.0f} voices (width {f.width:.2f})", values, kind="width"))
    return out


def _sweep(s: _State, f: Findings) -> list[Proposal]:
    env = s.free("env", ENVELOPES)
    if f.sweep_octaves == 0 or f.sweep_s <= 0 or env is None or s.routed("filter_1_cutoff"):
        return []
    spec = s.registry["filter_1_cutoff"]
    if s.on("filter_1"):
        base = float(s.raw["filter_1_cutoff"])
    else:  # the closed end of the sweep sits about where the target's centroid is there
        base = semitones_of_hz(max(f.centroid_low_hz, 20.0))
    semitones = abs(f.sweep_octaves) * CUTOFF_OCTAVES_PER_CENTROID_OCTAVE * 12.0
    amount = float(np.clip(semitones / CUTOFF_SEMITONES_PER_AMOUNT, 0.0, 1.0))
    if f.sweep_octaves > 0:  # opening: the envelope's attack raises the cutoff and holds it
        shape = {f"{env}_attack": envelope_time_raw(ATTACK_PER_SWEEP_S * f.sweep_s), f"{env}_sustain": 1.0}
        how = f"attack {ATTACK_PER_SWEEP_S * f.sweep_s:.2f} s"
    else:  # closing (a pluck): from base + sweep down to base over the decay
        shape = {
            f"{env}_attack": 0.0,
            f"{env}_decay": envelope_time_raw(DECAY_PER_SWEEP_S * f.sweep_s),
            f"{env}_sustain": 0.0,
        }
        how = f"decay {DECAY_PER_SWEEP_S * f.sweep_s:.2f} s"
    conn = (Connection(env, "filter_1_cutoff", amount),)
    on = {"filter_1_on": s.option("filter_1_on", "On")}
    out = []
    for label, cutoff in (("", base), (" (sweep closed)", base - amount * CUTOFF_SEMITONES_PER_AMOUNT)):
        cutoff = float(np.clip(cutoff, spec.min, spec.max))
        out.append(
            Proposal(
                f"filter sweep {env} -> filter_1_cutoff {f.sweep_octaves:+.2f} oct, {how}, "
                f"cutoff {cutoff:.0f}{label}",
                on | shape | {"filter_1_cutoff": cutoff},
                conn,
                kind="sweep",
            )
        )
    return out


__all__ = ["Proposal", "apply", "proposals"]
