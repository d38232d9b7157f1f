"""Search loss: multi-scale log-mel + loudness contour, and the output gain that fits best."""

from __future__ import annotations

import numpy as np
import pytest

from vitalmatch.search.loss import best_gain, search_features, search_loss

SR = 44100


def test_search_loss_is_zero_for_identical_audio_and_grows_with_gain():
    t = np.linspace(0, 0.5, SR // 2, dtype=np.float32)
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    fx = search_features(x, SR)
    assert search_loss(fx, fx) == 0.0
    half = search_loss(search_features(0.5 * x, SR), fx, envelope_weight=0.0)
    quarter = search_loss(search_features(0.25 * x, SR), fx, envelope_weight=0.0)
    assert 0.1 < half < quarter  # loud bins shift by 2 ln 2 per halving (quiet ones stay at the floor)
    assert search_loss(search_features(0.5 * x, SR), fx, envelope_weight=1.0) > half


def test_best_gain_finds_the_level_and_never_loses():
    t = np.linspace(0, 0.5, SR // 2, dtype=np.float32)
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-3 * t)).astype(np.float32)
    fx = search_features(x, SR)
    gain, loss = best_gain(search_features(0.5 * x, SR), fx)
    assert gain == pytest.approx(20 * np.log10(2), abs=0.1) and loss < 0.02
    assert search_loss(search_features(0.5 * x, SR), fx, gain_db=gain) == pytest.approx(loss)
    capped, capped_loss = best_gain(search_features(0.5 * x, SR), fx, hi_db=3.0)  # volume at its top
    assert 2.9 <= capped <= 3.0 and loss < capped_loss < search_loss(search_features(0.5 * x, SR), fx)
    other = search_features(np.sign(x) * 0.01, SR)  # another timbre: whatever the gain, not worse than 0 dB
    assert best_gain(other, fx)[1] <= search_loss(other, fx)
    assert best_gain(search_features(np.zeros_like(x), SR), fx)[0] == 0.0  # silence: nothing to scale
