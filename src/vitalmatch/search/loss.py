"""Search loss: how far a candidate's render is from the target sound.

Stage: refine (scoring). Input: mono audio ``(T,)`` float32 of the target and of a candidate at the
same rate, as :func:`search_features`. Output: a scalar loss (natural-log units, lower is closer)
and, with level matching, the output gain in dB it was measured at.

Two objectives (``SearchTarget.objective``), searched coarse to fine:

* ``"fine"``: the matching metric itself (:func:`vitalmatch.metrics.magnitude_mel_l1`): the mean
  over three scales (10 / 25 / 100 ms windows, 32 / 64 / 128 bands) of the L1 distance of
  ``log(mel magnitude + 1e-5)``, both signals divided by the *target's* peak; plus
  ``envelope_weight`` times the L1 distance of ``log(mean square + 1e-5)`` over 10 ms frames (the
  loudness contour; the matcher's final phase uses weight 0: the metric alone).
* ``"coarse"``: a smoother stand-in for the early phases. Along unison detune, chorus rates and
  other beating controls the metric is a needle (measured on Vital's init preset with 4 unison
  voices: 0 at the target's detune, ~0.12 at 0.5% of the range away, then a plateau of
  0.15-0.2): the beating moves energy between the 10-100 ms frames. The coarse loss adds to the
  metric's three terms the same three spectra averaged over the whole clip (which fall towards
  the target along the whole range, as a V: the funnel that leads CMA-ES to the needle) and
  the loudness contour averaged over 50 ms blocks, weighted ``envelope_weight``. The averages
  reuse the metric's spectrograms, so the coarse loss costs what the metric does.

Output level (``SearchTarget.match_level``, on by default). The log-mel distance is very
sensitive to level (on a synthetic target's true preset, a volume 3 dB off alone cost 0.35 and
one 6 dB off 0.68, as much as a wrong wavetable: ``benchmarks/match_sensitivity.py``), and
Vital's master ``volume`` is an exact gain on the output (:func:`vitalmatch.synth.params.volume_db`).
So each candidate is scored at the output gain that fits the target best (:func:`best_gain`,
within what its ``volume`` can still reach), the point kept carries that ``volume``, and CMA-ES
leaves ``volume`` out of its dimensions: the level is solved, not searched. (The metric itself
does no level matching; the preset written carries the level the search chose.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Objectives of :class:`SearchTarget`.
OBJECTIVES = ("coarse", "fine")


@dataclass(frozen=True)
class SearchTarget:
    """What a candidate is compared with, and how it is played.

    Attributes:
        key: identifies the target (workers cache its features by key and objective).
        audio: ``(T,)`` float32 mono at ``sample_rate``; candidates render ``T`` samples.
        sample_rate: Hz of the search renders.
        note: MIDI note.
        note_s: seconds from note-on to note-off (may exceed the render: the note is held).
        envelope_weight: weight of the loudness-contour term of :func:`search_loss`.
        match_level: score each candidate at its best output gain (:func:`best_gain`) and move
            its ``volume`` there (see the module docstring).
        objective: ``"fine"`` (the metric) or ``"coarse"`` (time-pooled; module docstring).
    """

    key: str
    audio: np.ndarray
    sample_rate: int
    note: int
    note_s: float
    envelope_weight: float = 0.5
    match_level: bool = True
    objective: str = "fine"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")

    @property
    def render_s(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def peak(self) -> float:
        """The target's peak (both signals are divided by it; 1 for a silent target)."""
        p = float(np.abs(self.audio).max()) if len(self.audio) else 0.0
        return p if p > 0 else 1.0


_ENV_FRAME_S = 0.010
_LOG_FLOOR = 1e-5
#: Seconds of the blocks the coarse objective's loudness contour averages over.
COARSE_ENVELOPE_S = 0.05
#: Level matching: quietest output level (dB of ``volume``) a candidate is moved to, and the
#: peak its render may reach (vita clamps the output at +-2.1; below that the gain is exact).
LEVEL_MIN_DB = -40.0
OUTPUT_LIMIT = 2.0
#: A render whose peak (full scale) stays below this is silent: never returned by ``match``.
SILENT_PEAK = 1e-4
#: Added to a silent candidate's loss. The metric can prefer silence (a short hit in a long
#: clip is mostly floor, and so is silence: measured on a 0.2 s djembe in 1.5 s, silence 0.62
#: against the init preset's 0.90), so silence must rank below every sounding candidate; the
#: metric itself is at most ~|log(1e-5)| = 11.5.
SILENCE_PENALTY = 100.0


def _pool(x: np.ndarray, hop_s: float, block_s: float) -> np.ndarray:
    """Average ``(..., frames)`` over blocks of ``block_s`` (frames ``hop_s`` apart); the last block
    may be shorter and averages what it holds (``torch.nn.functional.avg_pool1d(..., ceil_mode=True)``).
    """
    k = max(1, int(round(block_s / hop_s)))
    n = x.shape[-1]
    if n < k:
        return x.mean(axis=-1, keepdims=True)
    starts = np.arange(0, n, k)
    counts = np.diff(np.append(starts, n)).astype(x.dtype)
    return np.add.reduceat(x, starts, axis=-1) / counts


def search_features(
    audio: np.ndarray, sample_rate: int, objective: str = "fine", peak: float = 1.0, dtype=np.float32
) -> list:
    """Features :func:`search_loss` compares: ``[(array, exponent), ...]`` linear quantities
    (mel magnitudes ``(n_mels, frames)``, exponent 1; the ``(frames,)`` mean square of 10 ms frames,
    exponent 2: a gain ``g`` scales each by ``g ** exponent``), numpy ``dtype`` (float32; float64
    gives reference values, ~2x slower), of ``audio / peak`` (pass the target's peak for both
    signals).

    The mels are :func:`vitalmatch.features.mel_magnitude`'s at the metric's three scales
    (:func:`vitalmatch.metrics.magnitude_scale_configs`), computed without torch by
    :func:`vitalmatch.search.spectra.mel_magnitude` (a search worker never imports torch).
    """
    from vitalmatch.metrics import magnitude_scale_configs  # numpy only until a metric is called
    from vitalmatch.search.spectra import mel_magnitude

    x = np.asarray(audio, dtype=dtype).reshape(-1) / np.asarray(peak, dtype)
    frame = max(1, int(round(_ENV_FRAME_S * sample_rate)))
    n = (len(x) // frame) * frame
    env = np.square(x[:n].reshape(-1, frame)).mean(axis=1) if n else np.zeros(1, dtype)
    feats = [
        (mel_magnitude(x, c.sample_rate, c.n_fft, c.hop_length, c.n_mels, c.fmin, c.fmax, dtype), 1)
        for c in magnitude_scale_configs(int(sample_rate))
    ]
    if objective == "coarse":  # plus each scale's spectrum averaged over the clip (module docstring)
        feats += [(m.mean(axis=-1, keepdims=True), 1) for m, _ in feats]
        env = _pool(env, _ENV_FRAME_S, COARSE_ENVELOPE_S)
    feats.append((env, 2))
    return feats


def _logs(features: list, gain: float = 1.0) -> list:
    """``log(gain ** exponent x feature + 1e-5)`` of each feature, in the features' dtype."""
    return [np.log(f.dtype.type(gain**exponent) * f + f.dtype.type(_LOG_FLOOR)) for f, exponent in features]


def _distance(log_candidate: list, log_target: list, envelope_weight: float) -> float:
    mel = sum(float(np.abs(c - t).mean()) for c, t in zip(log_candidate[:-1], log_target[:-1], strict=True))
    env = float(np.abs(log_candidate[-1] - log_target[-1]).mean()) if envelope_weight else 0.0
    return mel / (len(log_candidate) - 1) + envelope_weight * env


def search_loss(candidate: list, target: list, envelope_weight: float = 0.5, gain_db: float = 0.0) -> float:
    """Multi-scale log-mel L1 + ``envelope_weight`` x log-loudness-contour L1 (natural-log units)
    between two :func:`search_features` lists of the same length of audio and objective, with the
    candidate made ``gain_db`` louder."""
    return _distance(_logs(candidate, 10.0 ** (gain_db / 20.0)), _logs(target), envelope_weight)


def best_gain(
    candidate: list,
    target: list,
    envelope_weight: float = 0.5,
    lo_db: float = -40.0,
    hi_db: float = 40.0,
    tol_db: float = 0.1,
) -> tuple[float, float]:
    """The output gain that brings ``candidate`` closest to ``target`` by :func:`search_loss`.

    A bounded Brent search (``scipy.optimize.minimize_scalar``, to ``tol_db``) over +-12 dB
    around the gain that equalises the two mean squares, within ``[lo_db, hi_db]``; 0 dB (no
    change) is kept when nothing beats it, so the loss returned is never above
    ``search_loss(candidate, target)``.

    Returns:
        ``(gain_db, loss)``.
    """
    from scipy.optimize import minimize_scalar

    log_t = _logs(target)

    def loss(db: float) -> float:
        return _distance(_logs(candidate, 10.0 ** (db / 20.0)), log_t, envelope_weight)

    best = (0.0, loss(0.0))
    c_ms, t_ms = float(candidate[-1][0].mean()), float(target[-1][0].mean())
    if not (c_ms > 0 and t_ms > 0):
        return best
    centre = 10.0 * math.log10(t_ms / c_ms)
    a, b = max(lo_db, centre - 12.0), min(hi_db, centre + 12.0)
    if not a < b:
        return best
    found = minimize_scalar(loss, bounds=(a, b), method="bounded", options={"xatol": tol_db})
    return (float(found.x), float(found.fun)) if found.fun < best[1] else best
