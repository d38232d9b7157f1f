"""Augmentation: mel-domain gain and noise against real STFTs, SpecAugment masks."""

from __future__ import annotations

import numpy as np
import torch

from vitalmatch.features import FeatureConfig, log_mel
from vitalmatch.learn.augment import band_stats, gain_and_noise, normalise, spec_augment

FC = FeatureConfig(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=64)


def _tone(seconds=1.0):
    t = np.arange(int(FC.sample_rate * seconds)) / FC.sample_rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1760 * t)).astype(np.float32)


def test_gain_in_the_mel_domain_is_exact():
    x = _tone()
    mels = log_mel(x, FC)[None]
    out = gain_and_noise(mels, torch.tensor([-6.0]), None, FC)
    want = log_mel(x * 10 ** (-6 / 20), FC)[None]
    torch.testing.assert_close(out, want, atol=2e-3, rtol=1e-4)


def test_noise_matches_the_average_log_mel_of_noisy_audio():
    x = _tone()
    rng = np.random.default_rng(0)
    sigma_db = -40.0
    sigma = 10 ** (sigma_db / 20)
    noisy = np.stack([x + sigma * rng.standard_normal(len(x)).astype(np.float32) for _ in range(16)])
    avg_power = log_mel(noisy, FC).exp().mean(0)  # expected mel power of the noisy audio
    out = gain_and_noise(log_mel(x, FC)[None], torch.zeros(1), torch.tensor([sigma_db]), FC)[0]
    # Away from the tone, the noise floor dominates: the expectation matches within ~0.5 dB.
    ratio_db = 10 * torch.log10(out.exp() / avg_power)
    assert float(ratio_db[:, 5:-5].abs().median()) < 0.5
    # And the result is far above the clean floor there.
    assert float((out - log_mel(x, FC)).max()) > 2.0


def test_spec_augment_masks_and_reproducibility():
    x = torch.randn(4, 64, 100)
    a = spec_augment(x, torch.Generator().manual_seed(3), max_freq=10, max_time=12, fill=0.0)
    b = spec_augment(x, torch.Generator().manual_seed(3), max_freq=10, max_time=12, fill=0.0)
    torch.testing.assert_close(a, b)
    masked = a == 0
    assert masked.any() and (masked.float().mean() < 0.5)
    # A masked band is masked over every frame of that example.
    full_bands = masked.all(dim=2)
    assert full_bands.any()
    assert torch.equal(a[~masked], x[~masked])


def test_band_stats_normalise():
    x = torch.randn(10, 8, 30) * 3 + 5
    mean, std = band_stats(x)
    y = normalise(x, mean, std)
    torch.testing.assert_close(y.mean(dim=(0, 2)), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2)), torch.ones(8), atol=1e-4, rtol=0)
