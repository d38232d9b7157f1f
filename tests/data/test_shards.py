"""Sharded generation (issue 19): directory runs, ``--shard K/N`` array tasks, kill and resume,
``vitalmatch index`` and reading a directory as one dataset, with the real synth, worker pool,
HDF5 files and CLI. Tiny: 0.5 s renders at 22.05 kHz, two notes, 6 presets in shards of 2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.data.test_generate import FAST, FAST_ARGS, _arrays, _assert_same
from tests.processes import cli_in_process
from vitalmatch.data.generate import FAULTS_ENV, GenerateConfig, generate
from vitalmatch.data.reader import DatasetReader, ShardedReader
from vitalmatch.data.shards import (
    INDEX_NAME,
    STREAM_STRIDE,
    ShardError,
    parse_shard,
    plan_blocks,
    shard_name,
)

N, S, SEED = 6, 2, 3
ARGS = ["-n", str(N), "--shard-size", str(S), "--seed", str(SEED), "--workers", "2", "--no-progress"]


def _config(out: Path, **kw) -> GenerateConfig:
    kw.setdefault("seed", SEED)
    kw.setdefault("n_presets", N)
    kw.setdefault("shard_size", S)
    return GenerateConfig(output=out, render=FAST, progress=False, workers=2, commit_every=1, **kw)


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """One directory run of the whole dataset (3 blocks), as one machine writes it."""
    out = tmp_path_factory.mktemp("shards") / "whole"
    summary = generate(_config(out))
    assert summary.kept_presets == N and "3 shards" in (summary.shards or "")
    return out


def test_block_plan():
    plan = plan_blocks(10, 0, 4)  # 3 blocks: 4, 4 and 2 presets
    assert [(b.block, b.quota, b.stream_start) for b in plan] == [
        (0, 4, 0),
        (1, 4, STREAM_STRIDE),
        (2, 2, 2 * STREAM_STRIDE),
    ]
    ingest = plan_blocks(4, 7, 2)  # ceil(7/2) = 4 blocks; ingested in ranges of ceil(7/4) = 2
    assert [b.ingest for b in ingest] == [(0, 2), (2, 4), (4, 6), (6, 7)]
    assert [b.quota for b in ingest] == [2, 2, 0, 0]
    assert parse_shard(" 2/5") == (2, 5)
    for bad in ("5/5", "-1/3", "a/b", "3"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_whole_run_files_and_index(whole):
    names = sorted(p.name for p in whole.iterdir())
    assert names == [INDEX_NAME, shard_name(0), shard_name(1), shard_name(2)]
    index = json.loads((whole / INDEX_NAME).read_text())
    assert index["blocks"] == 3 and index["presets"] == N
    assert [e["block"] for e in index["shards"]] == [0, 1, 2]
    run = None
    for b in range(3):
        with DatasetReader(whole / shard_name(b)) as r:
            a = r.attrs
            assert (a["shard_block"], a["shard_blocks"], a["shard_size"]) == (b, 3, S)
            assert a["stream_start"] == b * STREAM_STRIDE
            assert run is None or a["run_settings_json"] == run  # the same run in every shard
            run = a["run_settings_json"]
            p = r.progress()
            assert p["complete"] is True and p["kept_presets"] == S
            index_col = r.metadata("preset_index")
            assert index_col.min() >= b * STREAM_STRIDE and index_col.max() < b * STREAM_STRIDE + 1000
    assert json.loads(run)["n_presets"] == N and json.loads(run)["seed"] == SEED


def test_block_0_equals_the_first_presets_of_a_single_file_run(whole, tmp_path):
    single = tmp_path / "single.h5"
    generate(_config(single, n_presets=S, shard_size=None))
    _assert_same(_arrays(single), _arrays(whole / shard_name(0)))


def _wait_for_position(path: Path, position: int, proc: subprocess.Popen) -> None:
    """Until ``path`` has committed ``position`` presets tried (or the run ended)."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            with DatasetReader(path) as ds:
                if ds.progress().get("next_preset", 0) >= position:
                    return
        except (ValueError, OSError):
            pass
    raise AssertionError(f"{path} never reached position {position}")


def test_union_of_shard_runs_equals_one_run_with_kill_and_resume(whole, tmp_path, capsys):
    """Shards 0/3 and 2/3 through the API; shard 1/3 through the CLI, killed (SIGKILL) while its
    second preset hangs, refused by ``index`` and the reader as unfinished, then resumed: the
    directory equals the one-machine run, file by file and as one dataset."""
    out = tmp_path / "array"
    for k in (0, 2):
        summary = generate(_config(out, shard=(k, 3)))
        assert summary.kept_presets == S and f"shard {k}/3" in summary.shards
    assert not (out / INDEX_NAME).exists()  # a shard run does not write the index
    args = ["generate", *ARGS, *FAST_ARGS, "--commit-every", "1", "--shard", "1/3", "-o", f"{out}/"]
    env = {**os.environ, FAULTS_ENV: f"hang:{STREAM_STRIDE + 1}"}  # block 1's second sampled preset
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalmatch", *args], env=env, start_new_session=True, stderr=subprocess.PIPE
    )
    try:
        _wait_for_position(out / shard_name(1), 1, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    with DatasetReader(out / shard_name(1)) as ds:
        assert ds.progress()["next_preset"] == 1 and not ds.progress()["complete"]
    r = cli_in_process(capsys, "index", out)
    assert r.returncode == 1 and "shard-00001.h5 is unfinished" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(ShardError, match="unfinished"):
        DatasetReader(out)
    refused = cli_in_process(capsys, *args)  # without --resume an existing shard is refused
    assert refused.returncode == 1 and "--resume" in refused.stderr and "Traceback" not in refused.stderr
    resumed = cli_in_process(capsys, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "vitalmatch index" in resumed.stdout
    for b in range(3):
        _assert_same(_arrays(out / shard_name(b)), _arrays(whole / shard_name(b)))
    r = cli_in_process(capsys, "index", out)
    assert r.returncode == 0 and "3 shards" in r.stdout and f"{N} presets" in r.stdout, r.stderr
    with DatasetReader(out) as a, DatasetReader(whole) as b:
        np.testing.assert_array_equal(a.audio(slice(None)), b.audio(slice(None)))
        np.testing.assert_array_equal(a.continuous(slice(None)), b.continuous(slice(None)))
        np.testing.assert_array_equal(a.metadata("preset_hash"), b.metadata("preset_hash"))


def _copy(whole: Path, dest: Path) -> Path:
    shutil.copytree(whole, dest)
    (dest / INDEX_NAME).unlink()
    return dest


@pytest.mark.parametrize("case", ["missing", "two files for a block", "same preset twice"])
def test_index_refuses_broken_directories(whole, tmp_path, capsys, case):
    d = _copy(whole, tmp_path / "d")
    if case == "missing":
        (d / shard_name(1)).unlink()
        expected = "1 of 3 shards missing (shard-00001.h5)"
    elif case == "two files for a block":
        shutil.copy(d / shard_name(0), d / "shard-00000-copy.h5")
        expected = "both hold block 0"
    else:  # a file relabelled as block 2 still holds block 0's presets
        import h5py

        (d / shard_name(2)).unlink()
        shutil.copy(d / shard_name(0), d / shard_name(2))
        with h5py.File(d / shard_name(2), "r+") as f:
            f.attrs["shard_block"] = 2
            f.attrs["stream_start"] = 0
        expected = "is in shard-00000.h5 and shard-00002.h5"
    r = cli_in_process(capsys, "index", d)
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert expected in r.stderr, r.stderr
    assert not (d / INDEX_NAME).exists()


def test_index_refuses_a_shard_of_another_seed(whole, tmp_path, capsys):
    other = tmp_path / "other"
    generate(_config(other, seed=SEED + 1, shard=(2, 3)))
    d = _copy(whole, tmp_path / "d")
    shutil.copy(other / shard_name(2), d / shard_name(2))
    r = cli_in_process(capsys, "index", d)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"different seed ({SEED} vs {SEED + 1})" in r.stderr and "shard-00002.h5" in r.stderr
    # resuming a directory run with another seed is refused too, before anything is written
    before = (d / shard_name(0)).stat().st_mtime_ns
    with pytest.raises(ValueError, match="seed"):
        generate(_config(d, seed=SEED + 1, resume=True))
    assert (d / shard_name(0)).stat().st_mtime_ns == before


def test_directory_reader_reads_the_shards_in_block_order(whole, tmp_path, capsys):
    files = [DatasetReader(whole / shard_name(b)) for b in range(3)]
    try:
        with DatasetReader(whole) as ds:
            assert isinstance(ds, ShardedReader) and len(ds) == sum(len(f) for f in files)
            for name in ("audio", "continuous", "categorical", "lfo_shape", "sample_index"):
                want = np.concatenate([getattr(f, name)(slice(None)) for f in files])
                np.testing.assert_array_equal(getattr(ds, name)(slice(None)), want, err_msg=name)
                rows = np.array([len(ds) - 1, 0, 5, 5, 2])  # across shards, unsorted, repeated
                np.testing.assert_array_equal(getattr(ds, name)(rows), want[rows], err_msg=name)
                np.testing.assert_array_equal(getattr(ds, name)(7), want[7], err_msg=name)
            hashes = np.concatenate([f.metadata("preset_hash") for f in files])
            np.testing.assert_array_equal(ds.metadata("preset_hash"), hashes)
            mask = np.arange(len(ds)) % 3 == 0
            np.testing.assert_array_equal(ds.metadata("preset_hash", mask), hashes[mask])
            splits = np.concatenate([f.metadata("split") for f in files])
            np.testing.assert_array_equal(ds.split_indices("train"), np.flatnonzero(splits == "train"))
            assert len(ds.modulation(slice(2, 9))) == 7
            assert ds.progress()["kept_presets"] == N and ds.progress()["shards"] == 3
            assert ds.attrs["seed"] == SEED and "shard_block" not in ds.attrs
            assert ds.blob("wavetables") == files[0].blob("wavetables")
            with pytest.raises(IndexError):
                ds.audio(len(ds))
    finally:
        for f in files:
            f.close()
    # without index.json (or with a stale one) the reader scans the files and gives the same rows
    d = _copy(whole, tmp_path / "d")
    with DatasetReader(d) as ds, DatasetReader(whole) as ref:
        np.testing.assert_array_equal(ds.audio(slice(None)), ref.audio(slice(None)))
    r = cli_in_process(capsys, "inspect", f"{whole}/")
    assert r.returncode == 0, r.stderr
    assert f"rows {len(ds)} from {N} presets" in r.stdout and "tier 1, seed 3" in r.stdout


def test_refused_sharded_options(tmp_path, capsys):
    blocker = tmp_path / "file.h5"
    blocker.write_bytes(b"precious")
    for extra, message in (
        (["--shard", "3/3"], "--shard"),
        (["--shard", "x"], "--shard"),
        (["--shard-size", "0"], "--shard-size"),
    ):
        r = cli_in_process(capsys, "generate", "-n", "2", "-o", f"{tmp_path}/new/", *FAST_ARGS, *extra)
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = cli_in_process(capsys, "generate", "-n", "2", "-o", blocker, "--shard-size", "2", *FAST_ARGS)
    assert r.returncode == 1 and "is a file" in r.stderr, r.stderr
    assert blocker.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["file.h5"]
    r = cli_in_process(capsys, "index", tmp_path)
    assert r.returncode == 1 and "no shard-*.h5 files" in r.stderr
