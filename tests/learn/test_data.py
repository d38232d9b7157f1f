"""Loading a split into memory: columns, stored vs computed log-mels, masks."""

from __future__ import annotations

import numpy as np
import torch

from vitalmatch.data.reader import DatasetReader
from vitalmatch.features import FeatureConfig
from vitalmatch.learn.data import dataset_registry, learnable_registry, load_split
from vitalmatch.synth.activity import activity_masks


def test_learnable_columns(tiny_dataset):
    with DatasetReader(tiny_dataset) as r:
        reg = learnable_registry(r)
        full = dataset_registry(r)
    names = set(reg.continuous_names) | set(reg.categorical_names)
    assert all(reg[n].tier == 1 for n in names)
    assert "osc_1_random_phase" not in names  # pinned to 0: constant
    assert "osc_1_level" in names and "osc_1_wavetable" in names and "lfo_1_frequency" not in names
    assert len(full.continuous) == 322


def test_stored_and_computed_mels_agree(tiny_dataset, tiny_audio_only):
    with DatasetReader(tiny_dataset) as r:
        reg = learnable_registry(r)
        sr = r.sample_rate
    fc = FeatureConfig(sample_rate=sr)
    stored = load_split(tiny_dataset, "train", reg, fc)
    computed = load_split(tiny_audio_only, "train", reg, fc)
    assert stored.mels.shape == computed.mels.shape == (len(stored), 128, fc.n_frames(int(0.5 * sr)))
    torch.testing.assert_close(stored.continuous, computed.continuous)
    # Stored mels come from float audio, computed ones from the stored 16-bit audio: close
    # wherever there is signal (well above the 16-bit noise floor).
    a, b = stored.mels.astype(np.float32), computed.mels.astype(np.float32)
    loud = a > -5
    diff = np.abs(a - b)[loud]
    assert loud.mean() > 0.05 and float(np.median(diff)) < 0.02


def test_masks_follow_activity(tiny_dataset):
    with DatasetReader(tiny_dataset) as r:
        reg = learnable_registry(r)
        full = dataset_registry(r)
        rows = r.split_indices("val")
        want_c, want_k = activity_masks(full, r.continuous(rows), r.categorical(rows))
    data = load_split(tiny_dataset, "val", reg, FeatureConfig(sample_rate=22050))
    ci = [full.locate(n)[1] for n in reg.continuous_names]
    ki = [full.locate(n)[1] for n in reg.categorical_names]
    np.testing.assert_array_equal(data.cont_mask.numpy(), want_c[:, ci])
    np.testing.assert_array_equal(data.cat_mask.numpy(), want_k[:, ki])
    assert not data.cont_mask.all()  # some oscillators or filters are off in these presets


def test_mel_cache_is_written_once_and_reused(tiny_audio_only, tmp_path):
    with DatasetReader(tiny_audio_only) as r:
        reg = learnable_registry(r)
    fc = FeatureConfig(sample_rate=22050, n_mels=64, n_fft=1024, hop_length=256)
    plain = load_split(tiny_audio_only, "val", reg, fc)
    first = load_split(tiny_audio_only, "val", reg, fc, cache_dir=tmp_path)
    files = list(tmp_path.glob("mels-val-*.npy"))
    assert len(files) == 1 and isinstance(first.mels, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.mels), plain.mels)
    stamp = files[0].stat().st_mtime_ns
    again = load_split(tiny_audio_only, "val", reg, fc, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == stamp  # reused, not rewritten
    np.testing.assert_array_equal(np.asarray(again.mels), plain.mels)
    torch.testing.assert_close(
        again.batch(torch.tensor([1, 0]))["mels"], torch.from_numpy(plain.mels[[1, 0]]).float()
    )
    # Other feature settings get their own file.
    load_split(tiny_audio_only, "val", reg, FeatureConfig(sample_rate=22050, n_mels=32), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("mels-val-*.npy"))) == 2
