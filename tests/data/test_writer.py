"""Tests of vitalmatch.data.writer on real HDF5 files: conversions, validation of appended rows,
refusals (existing file, bad locations, a second writer) and closing without a commit.

The crash safety of commits is tested in ``test_journal.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.dataset_rows import C, K, T, create, progress_at, rows
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import StorageConfig
from vitalmatch.data.writer import DatasetWriter


def test_pcm16_clips_at_full_scale(tmp_path):
    path = tmp_path / "d.h5"
    data = rows(0, 2)
    data["audio"][0, 0, :3] = [1.5, -3.0, 0.25]
    with create(path, StorageConfig(chunk_rows=4)) as w:
        w.append(**data)
        w.commit({})
    with DatasetReader(path) as r:
        np.testing.assert_allclose(r.audio(0)[0, :3], [1.0, -1.0, 0.25], atol=1 / 32767)


def test_blob_round_trip(tmp_path):
    path = tmp_path / "d.h5"
    with create(path) as w:
        w.write_blob("catalog", b'{"tables": [1, 2]}')
        w.write_blob("empty", b"")
        w.commit({})
    with DatasetReader(path) as r:
        assert r.blob("catalog") == b'{"tables": [1, 2]}' and r.blob("empty") == b""
        with pytest.raises(KeyError):
            r.blob("nope")


def test_file_without_mels(tmp_path):
    path = tmp_path / "d.h5"
    data = rows(0, 3)
    data.pop("log_mel")
    with create(path, mel_shape=None) as w:
        w.append(**data)
        w.commit({})
        with pytest.raises(ValueError, match="no log-mels"):
            w.append(**rows(3, 4))
    with DatasetReader(path) as r:
        assert len(r) == 3 and not r.has_log_mel
        with pytest.raises(ValueError, match="no log-mels"):
            r.log_mel(0)


# --------------------------------------------------------------------------------------------
# validation and errors


def _bad(key, value):
    data = rows(0, 4)
    data[key] = value
    return data


@pytest.mark.parametrize(
    "data, match",
    [
        (_bad("audio", np.zeros((4, 1, T), np.float32)), "audio must have shape"),
        (_bad("audio", np.zeros((4, 2, T + 1), np.float32)), "audio must have shape"),
        (_bad("audio", np.zeros((4, 2, T), np.int16)), "floating point"),
        (_bad("audio", np.full((4, 2, T), np.nan, np.float32)), "NaN"),
        (_bad("continuous", np.zeros((4, C + 1))), "continuous must have shape"),
        (_bad("continuous", np.full((4, C), 1.5)), r"\[0, 1\]"),
        (_bad("categorical", np.zeros((4, K)) + 0.5), "integer"),
        (_bad("categorical", -np.ones((4, K), int)), "option indices"),
        (_bad("midi_note", [60, 61, 62]), "3 values for 4 rows"),
        (_bad("midi_note", [60, 61, 62, 200]), "0..127"),
        (_bad("source", "synthetic"), "list of 4 strings"),
        (_bad("source", ["x" * 17] * 4), "longer than 16"),
        (_bad("preset_hash", ["abc"] * 4), "64 hex"),
        (_bad("split", ["train", "train", "dev", "test"]), "split must be one of"),
        (_bad("preset_index", [-1, 0, 1, 2]), "preset_index"),
        (_bad("log_mel", np.zeros((4, 5, 3))), "log_mel must be"),
        (_bad("log_mel", None), "log_mel is required"),
    ],
)
def test_append_validation(tmp_path, data, match):
    with create(tmp_path / "d.h5") as w:
        w.append(**rows(0, 2))
        with pytest.raises(ValueError, match=match):
            w.append(**data)
        assert w.n_rows == 2  # nothing of the bad batch was kept
        w.commit({})


def test_commit_progress_must_be_a_json_dict(tmp_path):
    with create(tmp_path / "d.h5") as w:
        with pytest.raises(TypeError):
            w.commit([1, 2])
        with pytest.raises(ValueError, match="JSON"):
            w.commit({"x": object()})
        w.commit({"ok": 1})


def test_existing_file_is_refused_and_overwrite_replaces_it(tmp_path):
    path = tmp_path / "d.h5"
    with create(path) as w:
        w.append(**rows(0, 3))
        w.commit({"old": True})
    with pytest.raises(FileExistsError) as e:
        create(path)
    msg = str(e.value)
    assert "--overwrite" in msg and "--resume" in msg and "\n" not in msg
    # an overwrite that fails its checks leaves the old file untouched
    with pytest.raises(ValueError):
        create(path, overwrite=True, attrs={"bad": None})
    with pytest.raises(ValueError):
        create(path, overwrite=True, storage=StorageConfig(audio_format="mp3"))
    with DatasetReader(path) as r:
        assert len(r) == 3 and r.progress() == {"old": True}
    create(path, overwrite=True).close()
    with DatasetReader(path) as r:
        assert len(r) == 0 and r.progress() == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]


def test_unwritable_locations_give_one_line_errors(tmp_path):
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    with pytest.raises(OSError) as e:
        create(regular / "d.h5")
    assert "\n" not in str(e.value) and "h5py" not in str(e.value) and "not a directory" in str(e.value)
    with pytest.raises(OSError) as e:
        create(tmp_path / "missing" / "d.h5")
    assert "does not exist" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(OSError, match="directory"):
        create(tmp_path)


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "d.h5"
    with create(path):
        with pytest.raises(BlockingIOError, match="another process"):
            DatasetWriter.resume(path)
        with pytest.raises(BlockingIOError):
            create(path, overwrite=True)
    DatasetWriter.resume(path)[0].close()


def test_close_without_commit_keeps_the_last_commit_and_warns(tmp_path):
    path = tmp_path / "d.h5"
    w = create(path)
    w.append(**rows(0, 6))
    w.commit(progress_at(6))
    w.append(**rows(6, 15))
    with pytest.warns(RuntimeWarning, match="9 rows"):
        w.close()
    with pytest.raises(ValueError, match="closed"):
        w.append(**rows(15, 16))
    with DatasetReader(path) as r:
        assert len(r) == 6 and r.progress() == progress_at(6)
    assert not Path(str(path) + ".journal").exists()
