"""Augmentation of log-mel spectrograms during training (pure functions, torch).

Stage: learn. Input: un-normalised log-mels ``(B, n_mels, frames)`` as produced by
:func:`vitalmatch.features.log_mel` (``log(mel_power + floor)``), or normalised ones for
SpecAugment. Output: the same shape.

* :func:`gain_and_noise` applies a level change and a white-noise floor *in the mel domain*: a
  gain ``g`` scales mel power by ``g**2`` exactly (the log floor is kept), and white noise of RMS
  ``sigma`` adds its expected mel power ``sigma**2 * sum(window**2) * sum_f(basis)`` to every
  frame. This is what the log-mel of the gained, noisy audio would be on average, without
  recomputing STFTs, so augmentation is free even when the mels were precomputed.
* :func:`spec_augment` is SpecAugment's frequency and time masking (Park et al. 2019).

Every random draw comes from the ``generator`` passed in, so a training step is reproducible
from its seed (exact resume).
"""

from __future__ import annotations

import numpy as np
import torch

from vitalmatch.features import FeatureConfig, mel_basis


def gain_and_noise(
    mels: torch.Tensor,
    gain_db: torch.Tensor,
    noise_db: torch.Tensor | None,
    features: FeatureConfig,
) -> torch.Tensor:
    """Log-mels of the audio scaled by ``gain_db`` and with white noise at ``noise_db`` dBFS RMS.

    Args:
        mels: ``(B, n_mels, frames)`` un-normalised log-mels.
        gain_db: ``(B,)`` level change in dB.
        noise_db: ``(B,)`` noise RMS in dB relative to full scale, or None for no noise.
        features: the settings the mels were made with.
    """
    floor = features.log_floor
    power = (mels.exp() - floor).clamp_min(0)
    power = power * (10.0 ** (gain_db / 10.0)).view(-1, 1, 1)
    if noise_db is not None:
        window_energy = float(torch.hann_window(features.n_fft).square().sum())
        band = mel_basis(features).sum(dim=1).to(mels.device)  # (n_mels,)
        sigma2 = (10.0 ** (noise_db / 10.0)).view(-1, 1, 1)
        power = power + sigma2 * window_energy * band.view(1, -1, 1)
    return torch.log(power + floor)


def spec_augment(
    mels: torch.Tensor,
    generator: torch.Generator,
    *,
    freq_masks: int = 2,
    max_freq: int = 16,
    time_masks: int = 2,
    max_time: int = 20,
    fill: float = 0.0,
) -> torch.Tensor:
    """Mask random bands and frame ranges of each example (a new tensor; ``mels`` is kept).

    Args:
        mels: ``(B, n_mels, frames)``, usually normalised (``fill=0`` is then the mean).
        generator: source of randomness (on the CPU).
        freq_masks, max_freq: how many frequency masks, each up to ``max_freq`` bands wide.
        time_masks, max_time: how many time masks, each up to ``max_time`` frames long.
    """
    b, m, t = mels.shape
    keep = torch.ones(b, m, t, dtype=torch.bool)
    bands = torch.arange(m).view(1, m, 1)
    frames = torch.arange(t).view(1, 1, t)
    for _ in range(freq_masks):
        width = torch.randint(0, max(1, max_freq) + 1, (b,), generator=generator)
        start = (torch.rand(b, generator=generator) * (m - width).clamp_min(0)).long()
        keep &= ~((bands >= start.view(b, 1, 1)) & (bands < (start + width).view(b, 1, 1)))
    for _ in range(time_masks):
        width = torch.randint(0, max(1, max_time) + 1, (b,), generator=generator)
        start = (torch.rand(b, generator=generator) * (t - width).clamp_min(0)).long()
        keep &= ~((frames >= start.view(b, 1, 1)) & (frames < (start + width).view(b, 1, 1)))
    return torch.where(keep.to(mels.device), mels, torch.full_like(mels, fill))


def db_uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` values uniform in [low, high] (dB)."""
    return low + (high - low) * torch.rand(n, generator=generator)


def band_stats(mels, max_items: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and standard deviation ``(n_mels,)`` of log-mels ``(N, n_mels, frames)``
    (a tensor or numpy array)
    over the first ``max_items`` examples (the normalisation saved with a model)."""
    x = torch.as_tensor(np.asarray(mels[:max_items], dtype=np.float32))
    mean = x.mean(dim=(0, 2))
    std = x.std(dim=(0, 2)).clamp_min(1e-3)
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise ValueError("log-mel statistics are not finite (corrupt audio in the dataset?)")
    return mean, std


def normalise(mels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(..., n_mels, frames)`` -> per-band standardised log-mels."""
    return (mels - mean.view(-1, 1)) / std.view(-1, 1)


__all__ = ["band_stats", "db_uniform", "gain_and_noise", "normalise", "spec_augment"]
