"""Tests of vitalmatch.data.reader on real HDF5 files: every column reads back as written, index
forms, errors, reading while a writer commits, and the audio bytes per row."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.data.dataset_rows import T, create, progress_at, rows
from vitalmatch.data.reader import DatasetReader, audio_bytes_per_row
from vitalmatch.data.schema import StorageConfig
from vitalmatch.data.writer import DatasetWriter


@pytest.mark.parametrize("channels", ["stereo", "mono"])
@pytest.mark.parametrize("fmt", ["pcm16", "float16", "float32"])
def test_round_trip_of_every_column(tmp_path, fmt, channels):
    full_scale = 2.0
    path = tmp_path / "d.h5"
    storage = StorageConfig(audio_format=fmt, channels=channels, chunk_rows=4, full_scale=full_scale)
    data = rows(0, 11, scale=2.0)
    with create(path, storage) as w:
        w.append(**rows(0, 5, scale=2.0))
        w.commit(progress_at(5))
        w.append(**rows(5, 11, scale=2.0))
        w.commit(progress_at(11))
        assert w.n_rows == 11
    want = data["audio"] if channels == "stereo" else data["audio"].mean(axis=1, keepdims=True)
    with DatasetReader(path) as r:
        assert len(r) == 11 and r.progress() == progress_at(11)
        got = r.audio(slice(None))
        assert got.dtype == np.float32 and got.shape == want.shape
        if fmt == "pcm16":
            assert np.abs(got - want).max() <= full_scale / 32767
        elif fmt == "float16":
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
        else:
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(r.audio(3), got[3])
        np.testing.assert_array_equal(r.audio([7, 2, 7]), got[[7, 2, 7]])
        np.testing.assert_array_equal(r.continuous(slice(None)), data["continuous"])
        np.testing.assert_array_equal(r.categorical(slice(None)), data["categorical"])
        assert r.categorical(0).dtype == np.int32
        np.testing.assert_allclose(r.log_mel(slice(None)), data["log_mel"], rtol=1e-3)
        for name in ("midi_note", "tier", "preset_index", "source", "preset_hash", "split"):
            np.testing.assert_array_equal(r.metadata(name), np.array(data[name]), err_msg=name)
        names = r.metadata("preset_name")
        assert names.dtype.kind == "U"
        for got_name, want_name in zip(names, data["preset_name"], strict=True):
            assert len(got_name.encode()) <= 80 and want_name.startswith(got_name)  # cut on a character
        assert names[0] == data["preset_name"][0]
        np.testing.assert_array_equal(
            r.split_indices("val"), [i for i, s in enumerate(data["split"]) if s == "val"]
        )
        assert r.sample_rate == 22050 and r.channels == channels and r.audio_format == fmt


def test_reader_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        DatasetReader(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("hello, not HDF5")
    with pytest.raises(ValueError, match="not an HDF5 file") as e:
        DatasetReader(junk)
    assert "\n" not in str(e.value)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not a vitalmatch dataset"):
        DatasetReader(foreign)
    with pytest.raises(ValueError, match="not a vitalmatch dataset"):
        DatasetWriter.resume(foreign)
    with pytest.raises(ValueError, match="not an HDF5 file"):
        DatasetWriter.resume(junk)
    with pytest.raises(FileNotFoundError):
        DatasetWriter.resume(tmp_path / "missing.h5")
    future = tmp_path / "future.h5"
    create(future).close()
    with h5py.File(future, "r+") as f:
        f.attrs["schema_version"] = "9.0.0"
    with pytest.raises(ValueError, match="schema version 9.0.0"):
        DatasetReader(future)
    with pytest.raises(ValueError, match="schema version 9.0.0"):
        DatasetWriter.resume(future)


def test_reader_index_forms(tmp_path):
    path = tmp_path / "d.h5"
    with create(path, StorageConfig(audio_format="float32", chunk_rows=4)) as w:
        w.append(**rows(0, 10))
        w.commit({})
    with DatasetReader(path) as r:
        full = r.continuous(slice(None))
        np.testing.assert_array_equal(r.continuous(-1), full[-1])
        np.testing.assert_array_equal(r.continuous(slice(8, 2, -2)), full[8:2:-2])
        np.testing.assert_array_equal(r.continuous(np.array([9, 0, 9])), full[[9, 0, 9]])
        np.testing.assert_array_equal(r.continuous(full[:, 0] > 0.5), full[full[:, 0] > 0.5])
        assert r.audio([]).shape == (0, 2, T)
        np.testing.assert_array_equal(r.metadata("preset_index", [2, 1]), [0, 0])
        with pytest.raises(IndexError):
            r.audio(10)
        with pytest.raises(KeyError):
            r.metadata("nope")
        with pytest.raises(ValueError):
            r.split_indices("dev")


def test_reader_while_writing_sees_commits_only(tmp_path):
    path = tmp_path / "d.h5"
    w = create(path)
    w.append(**rows(0, 5))
    w.commit(progress_at(5))
    w.append(**rows(5, 13))  # 2 full chunks reach the file, uncommitted
    with DatasetReader(path) as r:
        assert len(r) == 5 and r.progress() == progress_at(5)
        np.testing.assert_array_equal(r.metadata("preset_index"), rows(0, 5)["preset_index"])
        w.commit(progress_at(13))
        with pytest.raises(ValueError, match="reopen"):
            r.audio(0)
    with DatasetReader(path) as r:
        assert len(r) == 13
    w.close()


def test_audio_bytes_per_row(tmp_path):
    path = tmp_path / "d.h5"
    with create(path) as w:
        w.append(**rows(0, 16))
        w.commit({})
    with h5py.File(path, "r") as f:
        stored = f["audio/waveforms"].id.get_storage_size()
    assert audio_bytes_per_row(path) == stored / 16 < 2 * 2 * T  # compressed below raw int16
    empty = tmp_path / "e.h5"
    create(empty).close()
    with pytest.raises(ValueError, match="no rows"):
        audio_bytes_per_row(empty)


# ------------------------------------------------------------------ modulation (schema 1.1.0)
def test_modulation_lfo_sample_and_file_columns_round_trip(tmp_path):
    """Sparse rows of 0-3 connections come back exactly; the dense view puts each connection's
    amount, bipolar, power and stereo at [channel, source, destination]."""
    path = tmp_path / "d.h5"
    data = rows(0, 11)
    with create(path) as w:
        w.append(**rows(0, 6))
        w.commit(progress_at(6))
        w.append(**rows(6, 11))
        w.commit(progress_at(11))
    with DatasetReader(path) as r:
        assert r.has_modulation
        for i in range(11):
            np.testing.assert_array_equal(r.modulation(i), data["modulation"][i])
        batch = r.modulation([7, 2, 7])
        np.testing.assert_array_equal(batch[0], data["modulation"][7])
        np.testing.assert_array_equal(batch[1], data["modulation"][2])
        dense = r.modulation_dense(slice(None))
        assert dense.shape == (11, 4, 32, 428) and dense.dtype == np.float32
        for i, m in enumerate(data["modulation"]):
            assert np.count_nonzero(dense[i][0]) == np.count_nonzero(m[:, 3])
            for _slot, s, d, amount, bipolar, power, stereo in m:
                np.testing.assert_array_equal(dense[i][:, int(s), int(d)], [amount, bipolar, power, stereo])
        np.testing.assert_array_equal(r.modulation_dense(3), dense[3])
        np.testing.assert_array_equal(r.lfo_shape(slice(None)), data["lfo_shape"])
        np.testing.assert_array_equal(r.sample_index(slice(None)), data["sample"])
        assert list(r.preset_file()) == data["preset_file"]


def test_bad_modulation_rows_are_refused_and_nothing_is_kept(tmp_path):
    path = tmp_path / "d.h5"
    with create(path) as w:
        good = rows(0, 2)
        for bad, message in (
            ([np.zeros((1, 6)), np.zeros((0, 7))], "shape"),
            ([np.full((1, 7), np.nan), np.zeros((0, 7))], "finite"),
            ([np.zeros((0, 7))], "2 arrays"),
        ):
            with pytest.raises(ValueError, match=message):
                w.append(**{**good, "modulation": bad})
        assert w.n_rows == 0
        with pytest.raises(ValueError, match="lfo_shape"):
            w.append(**{**good, "lfo_shape": [[0] * 7, [0] * 7]})


def _downgrade_to_1_0_0(path) -> None:
    """Make ``path`` a schema-1.0.0 file, as round 1 wrote them: no modulation, LFO, sample or
    preset-file columns."""
    with h5py.File(path, "r+") as f:
        for name in ("params/modulation", "params/lfo_shape", "params/sample", "metadata/preset_file"):
            del f[name]
        f.attrs["schema_version"] = "1.0.0"


def test_schema_1_0_0_files_still_read_and_resume(tmp_path):
    path = tmp_path / "old.h5"
    with create(path) as w:
        w.append(**{**rows(0, 5), "modulation": None, "lfo_shape": None, "sample": None, "preset_file": None})
        w.commit(progress_at(5))
    _downgrade_to_1_0_0(path)
    with DatasetReader(path) as r:
        assert not r.has_modulation and len(r) == 5
        assert r.modulation(2).shape == (0, 7) and len(r.modulation(slice(None))) == 5
        assert r.modulation_dense([0, 1]).shape == (2, 4, 32, 428) and not r.modulation_dense([0, 1]).any()
        assert r.lfo_shape(slice(None)).shape == (5, 8) and r.sample_index(1) == 0
        np.testing.assert_array_equal(r.continuous(slice(None)), rows(0, 5)["continuous"])
    w, progress = DatasetWriter.resume(path)
    with w:
        assert progress == progress_at(5) and not w.has_modulation
        with pytest.raises(ValueError, match="schema 1.0.0"):
            w.append(**rows(5, 7))  # rows with modulation cannot go into an old file
        w.append(**{**rows(5, 7), "modulation": None, "lfo_shape": None, "sample": None, "preset_file": None})
        w.commit(progress_at(7))
    with DatasetReader(path) as r:
        assert len(r) == 7 and r.attrs["schema_version"] == "1.0.0"


# ------------------------------------------------------------------ a directory of shards (issue 19)
def _shard_dir(tmp_path, bounds=((0, 6), (6, 15), (15, 21))):
    """Shard files written directly with the writer (rows of ``dataset_rows``), as a sharded run
    leaves them: shard attributes, and progress records marked complete."""
    import json

    from tests.data.dataset_rows import ATTRS

    d = tmp_path / "shards"
    d.mkdir()
    for b, (lo, hi) in enumerate(bounds):
        attrs = {
            **ATTRS,
            "shard_block": b,
            "shard_blocks": len(bounds),
            "shard_size": 3,
            "stream_start": 0,
            "run_settings_json": json.dumps({"seed": 7, "tier": 1}),
        }
        with create(d / f"shard-{b:05d}.h5", attrs=attrs) as w:
            w.append(**rows(lo, hi))
            w.commit({**progress_at(hi - lo), "kept_presets": (hi - lo) // 3, "complete": True})
    return d


@pytest.mark.parametrize("virtual", [True, False])
def test_a_directory_of_shards_reads_as_one_file(tmp_path, monkeypatch, virtual):
    """``DatasetReader(DIR)`` gives the rows of the shards in block order, exactly as one file
    holding the same rows, for every index form: through the in-memory virtual dataset, and
    through the shard readers (where the open-file limit forbids it) with one file open at a time."""
    import vitalmatch.data.reader as reader_module
    from vitalmatch.data.reader import ShardedReader
    from vitalmatch.data.shards import index_directory

    max_open = 32 if virtual else 1
    monkeypatch.setattr(ShardedReader, "max_open", max_open)
    if not virtual:
        monkeypatch.setattr(reader_module, "_open_files_allowed", lambda needed: False)
    d = _shard_dir(tmp_path)
    one = tmp_path / "one.h5"
    with create(one) as w:
        w.append(**rows(0, 21))
        w.commit({})
    for with_index in (False, True):
        if with_index:
            assert index_directory(d).rows == 21
        with DatasetReader(d) as r, DatasetReader(one) as f:
            assert isinstance(r, ShardedReader) and len(r) == 21 and len(r._open_shards) <= max_open
            for idx in (
                slice(None),
                7,
                -1,
                slice(19, 2, -3),
                np.array([20, 0, 6, 6, 14]),
                np.arange(21) % 2 == 0,
            ):
                for name in ("audio", "continuous", "categorical", "log_mel", "lfo_shape", "sample_index"):
                    np.testing.assert_array_equal(getattr(r, name)(idx), getattr(f, name)(idx), err_msg=name)
                for name in ("midi_note", "preset_name", "split", "preset_index", "source"):
                    np.testing.assert_array_equal(r.metadata(name, idx), f.metadata(name, idx), err_msg=name)
                if not isinstance(idx, int):
                    for a, b in zip(r.modulation(idx), f.modulation(idx), strict=True):
                        np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(r.modulation_dense([3, 16]), f.modulation_dense([3, 16]))
            np.testing.assert_array_equal(r.preset_file(), f.preset_file())
            assert r.audio([]).shape == (0, 2, T)
            for split in ("train", "val", "test"):
                np.testing.assert_array_equal(r.split_indices(split), f.split_indices(split))
            assert r.progress()["rows"] == 21 and r.progress()["shards"] == 3
            assert r.sample_rate == f.sample_rate and r.has_log_mel and r.attrs["seed"] == 7
            assert audio_bytes_per_row(d) > 0
            with pytest.raises(IndexError):
                r.audio(21)
            if virtual:
                assert "audio/waveforms" in r.h5 and not any(
                    p.name.endswith(".virtual.h5") for p in tmp_path.rglob("*")
                )
            else:
                with pytest.raises(ValueError, match="directory of shards"):
                    _ = r.h5
    # a directory with a hole is refused in one line
    (d / "shard-00001.h5").unlink()
    with pytest.raises(ValueError, match="shards missing") as e:
        DatasetReader(d)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="holds no shard"):
        DatasetReader(tmp_path)
