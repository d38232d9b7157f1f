"""Tests of vitalmatch.data.torch_dataset: items equal the reader's rows, in DataLoader workers too."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch

from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import StorageConfig
from vitalmatch.data.torch_dataset import VitalDataset
from vitalmatch.data.writer import DatasetWriter

T, C, K, MEL = 128, 3, 2, (4, 5)
N = 24


def _rows(start: int, stop: int) -> dict:
    rng = np.random.default_rng(start)
    n = stop - start
    idx = range(start, stop)
    return {
        "audio": rng.uniform(-1, 1, (n, 2, T)).astype(np.float32),
        "continuous": rng.uniform(0, 1, (n, C)).astype(np.float32),
        "categorical": rng.integers(0, 7, (n, K)),
        "log_mel": rng.normal(-3, 1, (n, *MEL)).astype(np.float32),
        "midi_note": [40 + i for i in idx],
        "source": ["synthetic"] * n,
        "tier": [1] * n,
        "preset_hash": [hashlib.sha256(str(i).encode()).hexdigest() for i in idx],
        "preset_name": [f"p{i}" for i in idx],
        "split": [("train", "val", "train", "test")[i % 4] for i in idx],
        "preset_index": list(idx),
        "modulation": [
            np.array([[0, i % 32, (5 * i) % 428, 0.5, 1, 0, 0]] * (i % 2), np.float32) for i in idx
        ],
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("torch") / "d.h5"
    with DatasetWriter.create(
        path,
        audio_length=T,
        sample_rate=16000,
        n_continuous=C,
        n_categorical=K,
        storage=StorageConfig(channels="mono", chunk_rows=4),
        attrs={},
        mel_shape=MEL,
    ) as w:
        for start in range(0, N, 6):
            w.append(**_rows(start, start + 6))
            w.commit({"rows": start + 6})
    return path


def _expected(path, split):
    with DatasetReader(path) as r:
        rows = np.arange(len(r)) if split is None else r.split_indices(split)
        return {
            "audio": r.audio(rows),
            "continuous": r.continuous(rows),
            "categorical": r.categorical(rows).astype(np.int64),
            "midi_note": r.metadata("midi_note", rows).astype(np.int64),
            "log_mel": r.log_mel(rows),
        }


def _check_batch(batches, expected, keys):
    for key in keys:
        got = torch.cat([b[key] for b in batches]).numpy()
        np.testing.assert_array_equal(got, expected[key], err_msg=key)


def test_items_match_the_reader(dataset):
    ds = VitalDataset(dataset, split="train", log_mel=True)
    exp = _expected(dataset, "train")
    assert len(ds) == len(exp["audio"]) == N // 2
    item = ds[1]
    assert set(item) == {"audio", "continuous", "categorical", "midi_note", "log_mel"}
    assert item["audio"].shape == (1, T) and item["audio"].dtype == torch.float32
    assert item["continuous"].shape == (C,) and item["continuous"].dtype == torch.float32
    assert item["categorical"].shape == (K,) and item["categorical"].dtype == torch.int64
    assert item["midi_note"].shape == () and item["midi_note"].dtype == torch.int64
    assert item["log_mel"].shape == MEL and item["log_mel"].dtype == torch.float32
    _check_batch([{k: v[None] for k, v in ds[i].items()} for i in range(len(ds))], exp, item.keys())
    np.testing.assert_array_equal(ds[-1]["audio"].numpy(), exp["audio"][-1])
    with pytest.raises(IndexError):
        ds[len(ds)]
    ds.close()


def test_modulation_targets_are_the_dense_matrix(dataset):
    ds = VitalDataset(dataset, split=None, audio=False, modulation=True)
    for i in (0, 1, 7):
        m = ds[i]["modulation"]
        assert m.shape == (4, 32, 428) and m.dtype == torch.float32
        if i % 2:  # one connection: lfo/env index i % 32 -> destination 5i % 428, amount 0.5, bipolar
            assert m[0, i % 32, (5 * i) % 428] == 0.5 and m[1, i % 32, (5 * i) % 428] == 1
            assert int((m != 0).sum()) == 2
        else:
            assert not m.any()
    ds.close()


def test_split_none_and_options(dataset):
    everything = VitalDataset(dataset, split=None, audio=False)
    assert len(everything) == N and "audio" not in everything[0] and "log_mel" not in everything[0]
    assert len(VitalDataset(dataset, split="val")) == N // 4
    with pytest.raises(ValueError, match="split"):
        VitalDataset(dataset, split="dev")


def test_log_mel_requires_a_file_with_mels(tmp_path):
    path = tmp_path / "nomel.h5"
    DatasetWriter.create(
        path,
        audio_length=T,
        sample_rate=16000,
        n_continuous=C,
        n_categorical=K,
        storage=StorageConfig(),
        attrs={},
    ).close()
    with pytest.raises(ValueError, match="no log-mels"):
        VitalDataset(path, log_mel=True)


def test_pickles_after_use(dataset):
    ds = VitalDataset(dataset, split="test")
    first = ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._reader is None
    np.testing.assert_array_equal(clone[0]["audio"].numpy(), first["audio"].numpy())


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_dataloader_with_two_workers(dataset, context):
    ds = VitalDataset(dataset, split=None, log_mel=True)
    ds[0]  # the parent holds an open handle when the workers start
    loader = torch.utils.data.DataLoader(
        ds, batch_size=5, num_workers=2, multiprocessing_context=context, shuffle=False
    )
    batches = list(loader)
    _check_batch(
        batches, _expected(dataset, None), ["audio", "continuous", "categorical", "midi_note", "log_mel"]
    )
    ds.close()
