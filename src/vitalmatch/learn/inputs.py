"""Network inputs: a batch of log-mels as the network sees it, in training and in validation.

Stage: learn (inputs). Input: a batch of :class:`~vitalmatch.learn.data.SplitData` (``"mels"``
``(B, n_mels, frames)`` in dB), the run's normalisation statistics and its :class:`TrainConfig`.
Output: ``(B, 1, n_mels, frames)`` tensors (channels-last where configured), augmented for
training (:func:`augment`), and the autocast context of the forward pass (:func:`autocast`).

Encoder archs (ast / mert) take a batch's ``"wave"`` ``(B, L)`` mono waveforms instead: they get
the same random gain and white-noise floor, applied to the samples (no normalisation here: the
encoder normalises its own input; no SpecAugment), and go to the network as ``(B, L)``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from vitalmatch.learn.augment import db_uniform, gain_and_noise, normalise, spec_augment
from vitalmatch.learn.config import TrainConfig


def autocast(config: TrainConfig, device: torch.device):
    """bf16 autocast where ``config.amp`` asks for it (``auto``: on CUDA only, it is 8-20x slower
    on CPUs), else a null context."""
    use = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    if use and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if use:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_input(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """``(B, n_mels, frames)`` normalised log-mels -> the network's ``(B, 1, n_mels, frames)``;
    ``(B, L)`` waveforms (encoder archs) pass as they are."""
    if x.ndim == 2:
        return x
    x = x.unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def augment(
    batch: dict[str, torch.Tensor], bundle: Any, config: TrainConfig, g: torch.Generator
) -> torch.Tensor:
    """Augmented, normalised log-mels ``(B, n_mels, frames)`` for a training micro-batch.

    Random gain (``±gain_db`` dB) and a white-noise floor (``noise_db_min..noise_db_max`` dBFS, on
    a ``noise_prob`` share of the examples), then normalisation with ``bundle.norm_mean`` /
    ``bundle.norm_std``, then SpecAugment masks. Every draw comes from ``g`` (CPU generator), so a
    step's augmentation depends on its seed only. ``bundle`` needs ``features``, ``norm_mean`` and
    ``norm_std`` (a :class:`~vitalmatch.learn.payload.Bundle`). A batch of ``"wave"`` waveforms:
    :func:`augment_wave`.
    """
    if "wave" in batch:
        return augment_wave(batch["wave"], config, g)
    mels = batch["mels"]
    b = mels.shape[0]
    device = mels.device
    if config.gain_db > 0 or config.noise_prob > 0:
        gain = db_uniform(b, -config.gain_db, config.gain_db, g) if config.gain_db > 0 else torch.zeros(b)
        noise = None
        if config.noise_prob > 0:
            level = db_uniform(b, config.noise_db_min, config.noise_db_max, g)
            use = torch.rand(b, generator=g) < config.noise_prob
            noise = torch.where(use, level, torch.full_like(level, -300.0)).to(device)
        mels = gain_and_noise(mels, gain.to(device), noise, bundle.features)
    x = normalise(mels, bundle.norm_mean.to(device), bundle.norm_std.to(device))
    if config.spec_augment:
        x = spec_augment(
            x,
            g,
            freq_masks=config.freq_masks,
            max_freq=config.max_freq,
            time_masks=config.time_masks,
            max_time=config.max_time,
        )
    return x


def augment_wave(wave: torch.Tensor, config: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """``(B, L)`` waveforms with a random gain (``±gain_db`` dB) and, on a ``noise_prob`` share of
    the examples, white noise of ``noise_db_min..noise_db_max`` dBFS RMS; draws from ``g`` (CPU),
    in the order of :func:`augment`'s."""
    b, device = wave.shape[0], wave.device
    if config.gain_db > 0:
        gain = db_uniform(b, -config.gain_db, config.gain_db, g)
        wave = wave * (10.0 ** (gain / 20.0)).to(device).view(-1, 1)
    if config.noise_prob > 0:
        level = db_uniform(b, config.noise_db_min, config.noise_db_max, g)
        use = torch.rand(b, generator=g) < config.noise_prob
        scale = torch.where(use, 10.0 ** (level / 20.0), torch.zeros_like(level))
        noise = torch.randn(wave.shape, generator=g) * scale.view(-1, 1)
        wave = wave + noise.to(device)
    return wave


def prepare(batch: dict[str, torch.Tensor], bundle: Any) -> torch.Tensor:
    """A batch's network input without augmentation (validation): normalised log-mels
    ``(B, n_mels, frames)``, or the ``"wave"`` waveforms ``(B, L)`` as they are."""
    if "wave" in batch:
        return batch["wave"]
    device = batch["mels"].device
    return normalise(batch["mels"], bundle.norm_mean.to(device), bundle.norm_std.to(device))
