"""Loading a split into memory: columns, stored vs computed log-mels, masks."""

from __future__ import annotations

import numpy as np
import torch

from vitalmatch.data.storage import DatasetReader
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
    loud = stored.mels.float() > -5
    diff = (stored.mels.float() - computed.mels.float())[loud].abs()
    assert loud.float().mean() > 0.05 and float(diff.median()) < 0.02


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
