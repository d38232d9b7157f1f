"""The nearest-neighbour index shared by match's starting set and evaluate's ``nn`` baseline."""

from __future__ import annotations

import numpy as np

from vitalmatch.features import FeatureConfig, pooled_log_mel
from vitalmatch.neighbours import NearestNeighbours

SR = 22050
CONFIG = FeatureConfig(sample_rate=SR, n_fft=1024, hop_length=256, n_mels=64)


def _tones(freqs, gains=None) -> np.ndarray:
    """``(len(freqs), SR // 2)`` float32 decaying sine tones (0.5 s) at ``freqs`` Hz."""
    t = np.arange(SR // 2) / SR
    gains = np.ones(len(freqs)) if gains is None else gains
    tones = [g * np.sin(2 * np.pi * f * t) * np.exp(-4 * t) for f, g in zip(freqs, gains, strict=True)]
    return np.stack(tones).astype(np.float32)


def test_each_clip_is_its_own_nearest_and_batches_number_rows_in_order():
    clips = _tones([110, 220, 440, 880, 1760])
    index = NearestNeighbours.build([clips[:2], clips[2:]], CONFIG)
    assert len(index) == 5
    np.testing.assert_array_equal(index.features.numpy(), pooled_log_mel(clips, CONFIG).numpy())
    for row, clip in enumerate(clips):
        assert index.nearest(clip, 1)[0] == row
    assert list(index.nearest(clips[2], 2)) == [2, 1]  # closest first
    assert list(index.nearest(clips[2], 2, among=np.array([0, 4, 3]))) == [0, 3]  # row numbers kept


def test_a_level_normalised_index_ignores_loudness():
    """60 dB quieter, the same tone loses to another pitch unless clips are levelled first."""
    clips = _tones([233, 440], gains=[1.0, 0.001])
    loud_440 = _tones([440])[0]
    assert NearestNeighbours.build([clips], CONFIG).nearest(loud_440, 1)[0] == 0
    levelled = NearestNeighbours.build([clips], CONFIG, rms=0.1)
    assert levelled.nearest(loud_440, 1)[0] == 1
    # features loaded back (a cache file) serve as the built ones
    loaded = NearestNeighbours(levelled.features.numpy(), CONFIG, rms=0.1)
    assert loaded.nearest(loud_440, 1)[0] == 1
