"""Validation: reject renders that are unusable as training data.

Stage: validation. Input: one render ``(channels, T)`` float32. Output: ``None`` if accepted,
else the reason, one of :data:`REASONS`.

Vital clamps its output to +-2.1 (vita-facts §4); a render is "clipping" when its peak exceeds
``clip_peak`` (1.0 = 0 dBFS: such audio would clip in a DAW and cannot be stored as 16-bit PCM
without loss). "silent" means a peak below ``silence_peak_db`` dBFS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REASONS = ("nonfinite", "silent", "clipping")

#: Lowest accepted silence threshold, dBFS (``MIN_SILENCE_DB <= silence_peak_db < 0``). -200 dBFS
#: (a peak of 1e-10) lies far below the quietest non-zero 16-bit sample (-90 dBFS) and float32
#: rounding noise, so lower values mean nothing; 0 dBFS and above would call every render that
#: does not clip "silent".
MIN_SILENCE_DB = -200.0
#: Highest accepted ``clip_peak`` (+20 dBFS). Vital never outputs more than 2.1, so any value
#: above 2.1 already turns the clipping check off; larger ones would only coarsen 16-bit storage,
#: whose full scale ``generate`` sets to ``max(1, clip_peak)``.
MAX_CLIP_PEAK = 10.0


@dataclass(frozen=True)
class ValidationConfig:
    """Rejection thresholds.

    Attributes:
        silence_peak_db: renders whose peak is below this level (dBFS) are silent; finite, in
            ``[MIN_SILENCE_DB, 0)`` = [-200, 0).
        clip_peak: renders whose peak exceeds this linear amplitude are clipping; finite, in
            ``(10 ** (silence_peak_db / 20), MAX_CLIP_PEAK]`` (above the silence threshold's
            peak, at most 10).

    Thresholds outside these ranges are refused (:meth:`check`, run on construction): with them
    no render, or only digital silence, could be told apart, and a generation run would search
    for usable presets forever.
    """

    silence_peak_db: float = -60.0
    clip_peak: float = 1.0

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ValueError with a one-line message naming the first invalid threshold."""
        db, peak = self.silence_peak_db, self.clip_peak
        if not _finite(db) or not MIN_SILENCE_DB <= db < 0:
            raise ValueError(
                f"the silence threshold (--silence-db) must be a finite level in [{MIN_SILENCE_DB:g}, 0) "
                f"dBFS, got {db!r}"
            )
        if not _finite(peak) or not 0 < peak <= MAX_CLIP_PEAK:
            raise ValueError(
                f"clip_peak (--clip-peak) must be a finite amplitude in (0, {MAX_CLIP_PEAK:g}], got {peak!r}"
            )
        floor = 10 ** (db / 20)
        if not peak > floor:
            raise ValueError(
                f"the silence threshold must lie below the clipping threshold: --clip-peak {peak:g} is not "
                f"above the peak of --silence-db {db:g} ({floor:.4g})"
            )


def _finite(x: object) -> bool:
    return (
        isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool) and math.isfinite(x)
    )


def check_audio(audio: np.ndarray, config: ValidationConfig = ValidationConfig()) -> str | None:
    """Reason to reject ``audio`` (any shape), or None when it is usable."""
    if not np.all(np.isfinite(audio)):
        return "nonfinite"
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 10 ** (config.silence_peak_db / 20):
        return "silent"
    if peak > config.clip_peak:
        return "clipping"
    return None
