"""Audio distances: exact values on identical signals, orderings on known perturbations, batching,
a golden value through log_mel, length handling, and the bootstrap median interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from vitalmatch.features import log_mel
from vitalmatch.metrics import (
    all_metrics,
    envelope_cosine,
    median_ci,
    mel_scale_configs,
    mfcc,
    mfcc_config,
    mfcc_distance,
    mrstft,
    multiscale_mel_l1,
)

SR = 44100


def _adsr(n: int, attack=0.02, decay=0.1, sustain=0.5, release=0.3) -> np.ndarray:
    t = np.arange(n) / SR
    dur = n / SR
    env = np.where(
        t < attack,
        t / attack,
        np.where(t < attack + decay, 1 - (1 - sustain) * (t - attack) / decay, sustain),
    )
    return np.where(t > dur - release, sustain * np.clip((dur - t) / release, 0, 1), env)


def _tone(f0: float = 220.0, seconds: float = 1.0, onset: float = 0.0) -> np.ndarray:
    """Ten harmonics (1/k amplitudes) under an ADSR envelope, starting ``onset`` seconds in."""
    n = int(SR * seconds)
    m = n - int(SR * onset)
    t = np.arange(m) / SR
    x = 0.3 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 11)) * _adsr(m)
    return np.concatenate([np.zeros(n - m), x]).astype(np.float32)


TARGET = _tone()
CASES = {
    "detune_1pct": _tone(220.0 * 1.01),
    "detune_20pct": _tone(220.0 * 1.2),
    "noise": (np.random.default_rng(0).standard_normal(SR) * TARGET.std()).astype(np.float32),
    "louder_6db": (TARGET * 10 ** (6 / 20)).astype(np.float32),
    "shift_200ms": _tone(onset=0.2),
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Small clips: one intra-op thread is fastest, and avoids stalls when other jobs hold the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scores() -> dict[str, dict[str, float]]:
    """all_metrics of every case against TARGET, computed as one batch."""
    names = list(CASES)
    out = all_metrics(np.stack([CASES[k] for k in names]), np.stack([TARGET] * len(names)), SR)
    return {name: {key: float(val[i]) for key, val in out.items()} for i, name in enumerate(names)}


def test_identical_signals():
    m = all_metrics(TARGET, TARGET, SR)
    assert set(m) == {"mel_l1", "mrstft", "mfcc", "envelope_cos"}
    assert all(isinstance(v, float) for v in m.values())
    assert m["mel_l1"] == 0.0
    assert m["mrstft"] < 1e-6
    assert m["mfcc"] == 0.0
    assert m["envelope_cos"] == 1.0


@pytest.mark.parametrize("key", ["mel_l1", "mrstft", "mfcc"])
def test_detuning_and_noise_order(scores, key):
    assert 0 < scores["detune_1pct"][key] < scores["detune_20pct"][key] < scores["noise"][key]


def test_gain_and_time_shift(scores):
    assert scores["louder_6db"]["mel_l1"] > 0.3  # identical gives 0
    assert scores["louder_6db"]["envelope_cos"] == pytest.approx(1.0, abs=1e-6)
    shifted = scores["shift_200ms"]["envelope_cos"]
    assert shifted < 0.9
    assert shifted < scores["louder_6db"]["envelope_cos"] - 0.1
    # the detuned copies keep the envelope's shape
    assert scores["detune_1pct"]["envelope_cos"] > 0.99


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_batched_matches_one_at_a_time(batch):
    # batches of 1 and 2 are the ones log_mel could mistake for channels
    names = list(CASES)[:batch]
    preds = torch.from_numpy(np.stack([CASES[k] for k in names]))
    targets = torch.from_numpy(np.stack([TARGET] * batch))
    batched = all_metrics(preds, targets, SR)
    for values in batched.values():
        assert isinstance(values, torch.Tensor) and values.shape == (batch,) and values.dtype == torch.float32
    for i, name in enumerate(names):
        single = all_metrics(CASES[name], TARGET, SR)
        for key in batched:
            assert float(batched[key][i]) == pytest.approx(single[key], rel=1e-4, abs=1e-6), (name, key)


def test_scales():
    at_44k = mel_scale_configs(44100)
    assert [(c.n_fft, c.hop_length, c.n_mels) for c in at_44k] == [
        (512, 128, 32),
        (1024, 256, 64),
        (4096, 1024, 128),
    ]
    assert [c.n_fft for c in mel_scale_configs(16000)] == [128, 512, 2048]
    assert all(c.log_floor == 1e-5 for c in at_44k)


def test_half_amplitude_golden_value():
    """Half amplitude = a quarter of the power: log-mels differ by ln 4 wherever the tone is loud."""
    half = (0.5 * TARGET).astype(np.float32)
    direct, loud_diffs = [], []
    for config in mel_scale_configs(SR):
        ref, low = log_mel(TARGET, config), log_mel(half, config)
        direct.append(float((low - ref).abs().mean()))
        loud = ref > -2.0  # mel power > 0.13, far above the 1e-5 floor
        assert loud.float().mean() > 0.05
        loud_diffs.append((ref - low)[loud])
    np.testing.assert_allclose(torch.cat(loud_diffs).numpy(), math.log(4.0), atol=2e-3)
    value = multiscale_mel_l1(half, TARGET, SR)
    assert value == pytest.approx(np.mean(direct), rel=1e-6)
    # bins near the floor move by less than ln 4, so the full mean is below it
    assert 0.3 < value < math.log(4.0)


def test_mfcc_is_the_ortho_dct_of_the_log_mel():
    ours = mfcc(TARGET, SR, n_mfcc=20).numpy()
    mel = log_mel(TARGET, mfcc_config(SR)).numpy()
    ref = scipy.fft.dct(mel, type=2, norm="ortho", axis=0)[:20]
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)
    assert mfcc(np.stack([TARGET] * 3), SR).shape == (3, 20, ours.shape[-1])


def test_envelope_cosine_silence_and_gain():
    zeros = np.zeros(SR // 10, np.float32)
    clip = TARGET[: SR // 10]
    assert envelope_cosine(zeros, zeros, SR) == 1.0
    assert envelope_cosine(zeros, clip, SR) == 0.0
    assert envelope_cosine(clip, zeros, SR) == 0.0
    assert envelope_cosine(1e-3 * clip, clip, SR) == pytest.approx(1.0, abs=1e-6)
    # a batch mixing the three cases
    out = envelope_cosine(np.stack([zeros, zeros, clip]), np.stack([zeros, clip, clip]), SR)
    np.testing.assert_allclose(out.numpy(), [1.0, 0.0, 1.0], atol=1e-6)


def test_length_mismatch_crops_to_the_shorter():
    longer = np.concatenate([TARGET, CASES["noise"][: SR // 4]])
    assert multiscale_mel_l1(longer, TARGET, SR) == 0.0
    assert mfcc_distance(TARGET, longer, SR) == 0.0
    assert envelope_cosine(longer, TARGET, SR) == 1.0
    short = CASES["detune_20pct"][: SR // 2]
    assert mrstft(short, TARGET, SR) == pytest.approx(mrstft(short, TARGET[: SR // 2], SR), rel=1e-6)
    # clips shorter than auraloss's largest FFT still work
    assert mrstft(TARGET[:500], TARGET[:500], SR) < 1e-6


@pytest.mark.parametrize("fn", [multiscale_mel_l1, mrstft, mfcc_distance, envelope_cosine, all_metrics])
def test_bad_inputs_raise(fn):
    empty = np.zeros(0, np.float32)
    with pytest.raises(ValueError):
        fn(empty, TARGET, SR)
    with pytest.raises(ValueError):
        fn(np.zeros((2, 0), np.float32), np.zeros((2, 100), np.float32), SR)
    with pytest.raises(ValueError):  # (T,) against (B, T)
        fn(TARGET, np.stack([TARGET, TARGET]), SR)
    with pytest.raises(ValueError):  # batch sizes differ
        fn(np.stack([TARGET] * 3), np.stack([TARGET] * 2), SR)


def test_median_ci():
    values = np.arange(1.0, 102.0)  # median 51
    med, low, high = median_ci(values)
    assert med == 51.0
    assert low < med < high
    assert low > 40 and high < 62
    assert median_ci(values) == (med, low, high)  # deterministic with the seed
    assert median_ci(values, seed=1) != (med, low, high)
    # NaNs are ignored
    assert median_ci(np.concatenate([values, [np.nan, np.nan]])) == (med, low, high)
    # a narrower confidence gives a narrower interval
    _, low80, high80 = median_ci(values, confidence=0.8)
    assert low <= low80 <= high80 <= high


def test_median_ci_narrows_with_more_samples():
    rng = np.random.default_rng(3)
    widths = []
    for n in (20, 2000):
        med, low, high = median_ci(rng.normal(5.0, 1.0, size=n), n_boot=500)
        assert low <= med <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 4


def test_median_ci_small_samples():
    med, low, high = median_ci([3.0, np.nan])
    assert med == 3.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in median_ci([]))
    with pytest.raises(ValueError):
        median_ci([1.0, 2.0], confidence=1.0)
