"""Features: audio -> log-mel spectrogram, in torch so it runs on CPU and GPU alike.

Stage: features. Input: audio ``(..., channels, T)`` or ``(..., T)`` float at
``FeatureConfig.sample_rate``. Output: ``(..., n_mels, frames)`` float32 log-mel, with
``frames = 1 + T // hop_length`` (centred STFT). For the defaults (44.1 kHz, 2 s, hop 512, 128
bands) that is ``(128, 173)``.

The same function serves dataset generation (optional stored mels), training and prediction.
The mel filterbank is librosa's (Slaney-normalised), built once per configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel settings.

    Attributes:
        sample_rate: Hz of the input audio.
        n_fft: FFT size (samples); the window is a Hann window of this length.
        hop_length: samples between frames.
        n_mels: mel bands.
        fmin, fmax: band edges in Hz (``fmax=None``: Nyquist).
        log_floor: added before the natural log, to bound silence.
    """

    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 20.0
    fmax: float | None = None
    log_floor: float = 1e-5

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length


@lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(
        np.float32
    )


def mel_basis(config: FeatureConfig):
    """The mel filterbank ``(n_mels, n_fft // 2 + 1)`` float32 torch tensor (librosa, Slaney)."""
    import torch

    return torch.from_numpy(
        _mel_basis(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    )


def mel_power(audio, config: FeatureConfig = FeatureConfig()):
    """Mel power spectrogram of mono-mixed audio (the linear quantity :func:`log_mel` logs).

    Args:
        audio: torch tensor or numpy array ``(..., channels, T)`` (mixed to mono by averaging the
            channel axis when it has 1 or 2 entries and ``T`` is longer) or ``(..., T)``.
        config: feature settings (``log_floor`` is not used here).

    Returns:
        torch float32 tensor ``(..., n_mels, frames)``: mel-weighted ``|STFT|^2`` (audio units
        squared), on the input's device.
    """
    return _mel(audio, config, magnitude=False)


def mel_magnitude(audio, config: FeatureConfig = FeatureConfig()):
    """Mel *magnitude* spectrogram: as :func:`mel_power` with ``|STFT|`` (audio units) in place of
    ``|STFT|^2`` (librosa's ``melspectrogram(power=1)``); ``(..., n_mels, frames)`` float32."""
    return _mel(audio, config, magnitude=True)


def _mel(audio, config: FeatureConfig, magnitude: bool):
    import torch

    x = torch.as_tensor(audio, dtype=torch.float32)
    if x.ndim >= 2 and x.shape[-2] in (1, 2) and x.shape[-1] > 2:
        x = x.mean(dim=-2)
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(config.n_fft, device=x.device)
    spec = torch.stft(
        x,
        config.n_fft,
        config.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    if magnitude:  # sqrt of the power: ~2x faster than torch's complex abs on CPU, same to 1e-6
        power = power.sqrt_()
    basis = torch.from_numpy(
        _mel_basis(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    ).to(x.device)
    return torch.matmul(basis, power).reshape(*lead, config.n_mels, -1)


def log_mel(audio, config: FeatureConfig = FeatureConfig()):
    """Log-mel spectrogram of mono-mixed audio.

    Args:
        audio: as :func:`mel_power`.
        config: feature settings.

    Returns:
        torch float32 tensor ``(..., n_mels, frames)`` of ``log(mel_power + log_floor)``, on the
        input's device.
    """
    import torch

    return torch.log(mel_power(audio, config) + config.log_floor)


def pooled_log_mel(audio, config: FeatureConfig, pool: int = 4):
    """Coarse log-mels for nearest-neighbour search: ``(B, T)`` mono audio ->
    ``(B, (n_mels // pool) * (frames // pool))`` float32, :func:`log_mel` averaged over
    ``pool x pool`` (bands x frames) tiles."""
    import torch

    m = log_mel(
        np.asarray(audio, dtype=np.float32)[:, None, :], config
    )  # (B, 1, T): an explicit channel axis
    return torch.nn.functional.avg_pool2d(m.unsqueeze(1), (pool, pool)).flatten(1)
