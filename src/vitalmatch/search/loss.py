"""Search loss: how far a candidate's render is from the target sound.

Stage: refine (scoring). Input: mono audio ``(T,)`` float32 of the target and of a candidate at the
same rate, as :func:`search_features`. Output: a scalar loss (natural-log power units, lower is
closer) and, with level matching, the output gain in dB it was measured at.

Loss (:func:`search_loss`): the mean over three scales (~10 / 25 / 100 ms windows, as
:func:`vitalmatch.metrics.multiscale_mel_l1`) of the L1 distance of ``log(mel + 1e-5)``, plus
``envelope_weight`` times the L1 distance of ``log(mean square + 1e-5)`` over 10 ms frames (the
loudness contour, same natural-log power units).

Output level (``SearchTarget.match_level``, on by default). The log-mel distance is very
sensitive to level (on a synthetic target's true preset, a volume 3 dB off alone cost 0.35 and
one 6 dB off 0.68, as much as a wrong wavetable: ``benchmarks/match_sensitivity.py``), and
Vital's master ``volume`` is an exact gain on the output (:func:`vitalmatch.synth.params.volume_db`).
So each candidate is scored at the output gain that fits the target best (:func:`best_gain`,
within what its ``volume`` can still reach), the point kept carries that ``volume``, and CMA-ES
leaves ``volume`` out of its dimensions: the level is solved, not searched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SearchTarget:
    """What a candidate is compared with, and how it is played.

    Attributes:
        key: identifies the target (workers cache its features by key).
        audio: ``(T,)`` float32 mono at ``sample_rate``; candidates render ``T`` samples.
        sample_rate: Hz of the search renders.
        note: MIDI note.
        note_s: seconds from note-on to note-off (may exceed the render: the note is held).
        envelope_weight: weight of the loudness-contour term of :func:`search_loss`.
        match_level: score each candidate at its best output gain (:func:`best_gain`) and move
            its ``volume`` there (see the module docstring).
    """

    key: str
    audio: np.ndarray
    sample_rate: int
    note: int
    note_s: float
    envelope_weight: float = 0.5
    match_level: bool = True

    @property
    def render_s(self) -> float:
        return len(self.audio) / self.sample_rate


_ENV_FRAME_S = 0.010
_LOG_FLOOR = 1e-5
#: Level matching: quietest output level (dB of ``volume``) a candidate is moved to, and the
#: peak its render may reach (vita clamps the output at +-2.1; below that the gain is exact).
LEVEL_MIN_DB = -40.0
OUTPUT_LIMIT = 2.0


def search_features(audio: np.ndarray, sample_rate: int) -> list:
    """Features :func:`search_loss` compares, as linear powers (audio units squared): three mel
    spectrograms ``(n_mels, frames)`` and the ``(frames,)`` mean square of 10 ms frames; torch
    tensors, float32."""
    import torch

    from vitalmatch.features import mel_power
    from vitalmatch.metrics import mel_scale_configs

    x = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1))
    feats = [mel_power(x, config) for config in mel_scale_configs(int(sample_rate))]
    frame = max(1, int(round(_ENV_FRAME_S * sample_rate)))
    n = (len(x) // frame) * frame
    feats.append(x[:n].reshape(-1, frame).square().mean(dim=1) if n else torch.zeros(1))
    return feats


def _logs(features: list, power_gain: float = 1.0) -> list:
    import torch

    return [torch.log(power_gain * f + _LOG_FLOOR) for f in features]


def _distance(log_candidate: list, log_target: list, envelope_weight: float) -> float:
    mel = sum(float((c - t).abs().mean()) for c, t in zip(log_candidate[:-1], log_target[:-1], strict=True))
    env = float((log_candidate[-1] - log_target[-1]).abs().mean())
    return mel / (len(log_candidate) - 1) + envelope_weight * env


def search_loss(candidate: list, target: list, envelope_weight: float = 0.5, gain_db: float = 0.0) -> float:
    """Multi-scale log-mel L1 + ``envelope_weight`` x log-loudness-contour L1 (natural-log power
    units) between two :func:`search_features` lists of the same length of audio, with the
    candidate made ``gain_db`` louder."""
    return _distance(_logs(candidate, 10.0 ** (gain_db / 10.0)), _logs(target), envelope_weight)


def best_gain(
    candidate: list,
    target: list,
    envelope_weight: float = 0.5,
    lo_db: float = -40.0,
    hi_db: float = 40.0,
    tol_db: float = 0.05,
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
        return _distance(_logs(candidate, 10.0 ** (db / 10.0)), log_t, envelope_weight)

    best = (0.0, loss(0.0))
    c_ms, t_ms = float(candidate[-1].mean()), float(target[-1].mean())
    if not (c_ms > 0 and t_ms > 0):
        return best
    centre = 10.0 * math.log10(t_ms / c_ms)
    a, b = max(lo_db, centre - 12.0), min(hi_db, centre + 12.0)
    if not a < b:
        return best
    found = minimize_scalar(loss, bounds=(a, b), method="bounded", options={"xatol": tol_db})
    return (float(found.x), float(found.fun)) if found.fun < best[1] else best
