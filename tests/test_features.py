"""Log-mel features: shapes, agreement with librosa, batching and channel mixing."""

from __future__ import annotations

import librosa
import numpy as np
import torch

from vitalmatch.features import FeatureConfig, log_mel, mel_power


def _tone(sr: int = 44100, seconds: float = 2.0, f0: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_shape_matches_the_documented_frames():
    cfg = FeatureConfig()
    mel = log_mel(_tone(), cfg)
    assert mel.shape == (128, 173) == (cfg.n_mels, cfg.n_frames(88200))
    assert mel.dtype == torch.float32


def test_agrees_with_librosa():
    cfg = FeatureConfig()
    x = _tone()
    ours = log_mel(x, cfg).numpy()
    ref = librosa.feature.melspectrogram(
        y=x,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        power=2.0,
        center=True,
        pad_mode="constant",
    )
    np.testing.assert_allclose(ours, np.log(ref + cfg.log_floor), atol=2e-3)


def test_peak_band_follows_pitch():
    cfg = FeatureConfig()
    low = log_mel(_tone(f0=220.0), cfg).mean(-1).argmax()
    high = log_mel(_tone(f0=1760.0), cfg).mean(-1).argmax()
    assert high > low


def test_stereo_and_batches():
    x = _tone(seconds=0.5)
    stereo = np.stack([x, x])
    batch = np.stack([stereo, 0.5 * stereo])
    out = log_mel(batch)
    assert out.shape == (2, 128, 1 + len(x) // 512)
    np.testing.assert_allclose(out[0].numpy(), log_mel(x).numpy(), atol=1e-5)
    # half the amplitude: never louder, and a quarter of the power where the tone is loud
    assert (out[1] <= out[0] + 1e-5).all()
    loud = out[0] > out[0].max() - 3
    np.testing.assert_allclose((out[1] - out[0])[loud].numpy(), np.log(0.25), atol=1e-3)
    silence = log_mel(np.zeros(4410, np.float32))
    assert torch.isfinite(silence).all() and silence.max() <= np.log(1e-5) + 1e-6


def test_log_mel_is_the_log_of_the_mel_power():
    cfg = FeatureConfig(n_fft=1024, hop_length=256, n_mels=64)
    x = _tone(seconds=0.5)
    power = mel_power(x, cfg)
    assert torch.equal(log_mel(x, cfg), torch.log(power + cfg.log_floor))
    # power is quadratic in amplitude
    assert torch.allclose(mel_power(0.5 * x, cfg), 0.25 * power, rtol=1e-4, atol=1e-9)
