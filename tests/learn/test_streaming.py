"""Streaming a split from the dataset: the same examples as preloading, a seeded reproducible
order, shares per process, exact resume, and training / validation on a streamed split."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests.processes import cli_in_process
from vitalmatch.data.reader import DatasetReader
from vitalmatch.features import FeatureConfig
from vitalmatch.learn.data import StreamingSplit, learnable_registry, load_split, plan_splits

#: 64-band log-mels, as the tiny training runs use (not the file's stored 128-band ones).
SMALL_MELS = FeatureConfig(sample_rate=22050, n_mels=64, n_fft=1024, hop_length=256)


def _collect(batches) -> dict[str, np.ndarray]:
    parts = list(batches)
    return {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}


def _registry(path):
    with DatasetReader(path) as r:
        return learnable_registry(r), r.split_indices("train")


@pytest.mark.parametrize("stored", [True, False], ids=["stored-mels", "computed-mels"])
def test_one_streamed_epoch_is_the_preloaded_split(stored, tiny_dataset, tiny_audio_only):
    path = tiny_dataset if stored else tiny_audio_only
    reg, rows = _registry(path)
    features = FeatureConfig(sample_rate=22050) if stored else SMALL_MELS  # stored mels: 128 bands
    pre = load_split(path, "train", reg, features)
    stream = StreamingSplit(path, "train", reg, features, shuffle_rows=8, workers=2, block_rows=16)
    assert stream.use_stored is stored and len(stream.bounds) - 1 >= 2  # several blocks
    got = _collect(stream.epoch_batches(seed=1, epoch=0, batch_size=3, drop_last=False))
    # Every training row exactly once, not in file order ...
    assert sorted(got["row"].tolist()) == rows.tolist() and got["row"].tolist() != rows.tolist()
    # ... with the inputs and targets the preloaded split holds for it.
    at = np.searchsorted(rows, got["row"])
    np.testing.assert_array_equal(got["mels"], pre.mels[at].astype(np.float32))
    np.testing.assert_array_equal(got["continuous"], pre.continuous.numpy()[at])
    np.testing.assert_array_equal(got["categorical"], pre.categorical.numpy()[at])
    np.testing.assert_array_equal(got["cont_mask"], pre.cont_mask.numpy()[at])
    np.testing.assert_array_equal(got["cat_mask"], pre.cat_mask.numpy()[at])
    # The small questions a split answers agree too.
    assert stream.frames == pre.frames
    np.testing.assert_array_equal(stream.head_mels(5), pre.mels[:5])
    np.testing.assert_array_equal(stream.targets().continuous.numpy(), pre.continuous.numpy())


def test_the_order_is_seeded_blockwise_and_the_same_with_any_workers(tiny_audio_only):
    reg, rows = _registry(tiny_audio_only)
    stream = StreamingSplit(tiny_audio_only, "train", reg, SMALL_MELS, shuffle_rows=8, block_rows=16)
    epoch = stream.epoch_rows(seed=0, epoch=0)
    assert [len(w) for w in epoch][:-1] == [8] * (len(epoch) - 1)
    # Blocks are whole runs of 16 file rows: each window draws its rows from few blocks.
    assert all(len(np.unique(w // 16)) <= 2 for w in epoch)
    again = StreamingSplit(
        tiny_audio_only, "train", reg, SMALL_MELS, shuffle_rows=8, block_rows=16, workers=0
    )
    assert all(np.array_equal(a, b) for a, b in zip(epoch, again.epoch_rows(0, 0), strict=True))
    other = np.concatenate(stream.epoch_rows(seed=0, epoch=1))
    assert not np.array_equal(np.concatenate(epoch), other)  # a new order each epoch
    # Read by 0 or 3 DataLoader workers: the same stream, batch for batch.
    by = {}
    for workers in (0, 3):
        stream.workers = workers  # 3 > the 2 cores here: torch warns, nothing else
        by[workers] = _collect(stream.epoch_batches(0, 0, batch_size=4))["row"]
    np.testing.assert_array_equal(by[0], by[3])
    assert len(by[0]) == len(rows) // 4 * 4  # drop_last: whole batches only
    # Two processes: disjoint equal shares that together are the split.
    shares = [np.concatenate(stream.epoch_rows(0, 0, rank=r, world=2)) for r in (0, 1)]
    assert abs(len(shares[0]) - len(shares[1])) <= 1 and not set(shares[0]) & set(shares[1])
    assert sorted(np.concatenate(shares).tolist()) == rows.tolist()


def test_a_resumed_epoch_skips_the_rows_already_used(tiny_audio_only):
    reg, _ = _registry(tiny_audio_only)
    stream = StreamingSplit(tiny_audio_only, "train", reg, SMALL_MELS, shuffle_rows=5, block_rows=16)
    whole = _collect(stream.epoch_batches(3, 2, batch_size=2))
    tail = _collect(stream.epoch_batches(3, 2, batch_size=2, skip_batches=3, max_batches=4))
    np.testing.assert_array_equal(tail["row"], whole["row"][6:14])
    np.testing.assert_array_equal(tail["mels"], whole["mels"][6:14])


def test_plan_streams_what_does_not_fit_the_budget(tiny_dataset):
    with DatasetReader(tiny_dataset) as r:
        n_train, n_val = len(r.split_indices("train")), len(r.split_indices("val"))
        length = r.audio_length
    row = SMALL_MELS.n_mels * SMALL_MELS.n_frames(length) * 2
    limits = {"train": None, "val": None}
    assert plan_splits(tiny_dataset, limits, SMALL_MELS, "auto", 1.0) == {"train": False, "val": False}
    # The budget holds the validation split but not the training split: only train streams.
    budget = (max(n_val, 4) * row + 1) / 1e9
    assert n_train > n_val or n_train * row > budget * 1e9
    plan = plan_splits(tiny_dataset, {"train": None, "val": None}, SMALL_MELS, "auto", budget)
    assert plan == {"train": n_train * row > budget * 1e9, "val": False}
    assert plan_splits(tiny_dataset, limits, SMALL_MELS, "on", 1.0) == {"train": True, "val": True}
    assert plan_splits(tiny_dataset, limits, SMALL_MELS, "off", 1e-12) == {"train": False, "val": False}


def _records(out, kind):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_training_on_a_streamed_split_validates_alike_and_resumes_exactly(
    tiny_config, tiny_dataset, tmp_path
):
    from vitalmatch.learn import checkpoint
    from vitalmatch.learn.config import TrainingInterrupted
    from vitalmatch.learn.train import _setup, fit
    from vitalmatch.learn.validate import evaluate_split

    common = dict(stream="on", shuffle_rows=6, loader_workers=2, epochs=2, max_train_rows=16)
    whole = fit(tiny_config(tiny_dataset, tmp_path / "whole", **common))
    start = _records(tmp_path / "whole", "start")[0]
    assert start["streamed"] == ["train", "val"] and whole.step == 2 * (16 // 4)
    # Stopped after 3 steps (mid-epoch 0) and resumed: the same weights as the whole run.
    with pytest.raises(TrainingInterrupted):
        fit(tiny_config(tiny_dataset, tmp_path / "cut", stop_after=3, **common))
    fit(tiny_config(tiny_dataset, tmp_path / "cut", **{**common, "loader_workers": 0}), resume=True)
    a = checkpoint.load(tmp_path / "whole" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "cut" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Validation of one model on the streamed and on the preloaded val split: the same metrics.
    shutil.copytree(tmp_path / "whole", tmp_path / "again")
    run = _setup(
        tiny_config(tiny_dataset, tmp_path / "again", **common, stop_after=1), resume=True, overwrite=False
    )
    assert isinstance(run.val, StreamingSplit)
    pre = load_split(tiny_dataset, "val", run.bundle.registry, run.bundle.features)
    # (the same batches: the loss terms are per-batch means, so other batch sizes round otherwise)
    streamed = evaluate_split(
        run.validated, run.val, run.bundle, run.config, run.device, run.ddp, batch_size=3
    )
    preloaded = evaluate_split(run.validated, pre, run.bundle, run.config, run.device, run.ddp, batch_size=3)
    assert streamed["examples"] == preloaded["examples"] == len(pre)
    assert streamed["loss"] == pytest.approx(preloaded["loss"], rel=1e-5)
    assert streamed["mae"] == pytest.approx(preloaded["mae"], rel=1e-5)
    assert streamed["accuracy"] == preloaded["accuracy"]


def test_cli_stream_flag_and_bad_values(tiny_dataset, tmp_path, capsys):
    r = cli_in_process(capsys, "train", "--data", tiny_dataset, "--out", tmp_path / "o", "--stream", "maybe")
    assert r.returncode == 1 and r.stderr.strip() == "error: stream must be auto, on or off, got 'maybe'"
    r = cli_in_process(
        capsys, "train", "--data", tiny_dataset, "--out", tmp_path / "o", "--shuffle-rows", "0"
    )
    assert r.returncode == 1 and r.stderr.strip() == "error: shuffle_rows must be >= 1, got 0"


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory):
    """12 Tier-1 presets x 2 notes in 3 shards of 4 presets (the sharded form of a tiny dataset)."""
    from tests.learn.conftest import TINY
    from vitalmatch.data.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("shards") / "data"
    generate(
        GenerateConfig(
            output=out,
            n_presets=12,
            render=TINY,
            workers=2,
            progress=False,
            split=(0.75, 0.25, 0.0),
            shard_size=4,
        )
    )
    return out


def test_a_sharded_directory_streams_and_trains(tiny_shards, tiny_config, tmp_path, capsys):
    with DatasetReader(tiny_shards) as r:
        reg, rows = learnable_registry(r), r.split_indices("train")
        starts = np.cumsum([0] + [s.rows for s in r.shards])
    assert len(starts) == 4
    stream = StreamingSplit(tiny_shards, "train", reg, SMALL_MELS, shuffle_rows=4, block_rows=4)
    # Blocks never span two shards (each shard's rows are at least one block).
    blocks = [stream.rows[a:b] for a, b in zip(stream.bounds[:-1], stream.bounds[1:], strict=True)]
    assert len(blocks) >= 3 and sum(map(len, blocks)) == len(rows)
    assert all(len(np.unique(np.searchsorted(starts, b, side="right"))) == 1 for b in blocks)
    pre = load_split(tiny_shards, "train", reg, SMALL_MELS)
    got = _collect(stream.epoch_batches(seed=5, epoch=0, batch_size=4, drop_last=False))
    assert sorted(got["row"].tolist()) == rows.tolist()
    np.testing.assert_array_equal(got["mels"], pre.mels[np.searchsorted(rows, got["row"])].astype(np.float32))
    # train --data DIR/ through the command line, streaming.
    out = tmp_path / "run"
    r = cli_in_process(
        capsys, "train", "--data", f"{tiny_shards}/", "--out", out, "--stream", "on", "--batch-size", "4",
        "--epochs", "1", "--n-mels", "64", "--n-fft", "1024", "--hop-length", "256", "--no-progress",
        "--logger", "none", "--threads", "1", "--loader-workers", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    start = _records(out, "start")[0]
    assert start["streamed"] == ["train", "val"] and start["train_examples"] == len(rows)
    assert _records(out, "end")[0]["step"] == len(rows) // 4
