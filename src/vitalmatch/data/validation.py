"""Validation: reject renders that are unusable as training data.

Stage: validation. Input: one render ``(channels, T)`` float32. Output: ``None`` if accepted,
else the reason, one of :data:`REASONS`.

Vital clamps its output to +-2.1 (vita-facts §4); a render is "clipping" when its peak exceeds
``clip_peak`` (1.0 = 0 dBFS: such audio would clip in a DAW and cannot be stored as 16-bit PCM
without loss). "silent" means a peak below ``silence_peak_db`` dBFS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REASONS = ("nonfinite", "silent", "clipping")


@dataclass(frozen=True)
class ValidationConfig:
    """Rejection thresholds.

    Attributes:
        silence_peak_db: renders whose peak is below this level (dBFS) are silent.
        clip_peak: renders whose peak exceeds this linear amplitude are clipping.
    """

    silence_peak_db: float = -60.0
    clip_peak: float = 1.0

    def __post_init__(self) -> None:
        if not self.clip_peak > 0:
            raise ValueError(f"clip_peak must be > 0, got {self.clip_peak}")
        if not self.silence_peak_db < 20 * np.log10(self.clip_peak):
            raise ValueError("silence threshold must lie below the clipping threshold")


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
