"""Tests of vitalmatch.data.storage on real HDF5 files.

The crash tests run this file as a script (``python test_storage.py writer PATH ...``): a
writer process that follows a fixed plan of appends and commits, and is killed with SIGKILL
at a random moment, or kills itself at its k-th file-system write (optionally after writing
only half of that write's bytes). The parent then resumes, finishes the plan, and compares
every array with an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from vitalmatch.data.storage import (
    SCHEMA_VERSION,
    DatasetReader,
    DatasetWriter,
    StorageConfig,
    audio_bytes_per_row,
)

T = 256
C, K = 3, 2
MEL = (4, 3)
TOTAL = 240  # rows of the crash plan


# --------------------------------------------------------------------------------------------
# deterministic rows and plan


def rows(start: int, stop: int, *, scale: float = 1.0) -> dict:
    """Rows ``start..stop`` of a deterministic stream (each row seeded by its index)."""
    out = {k: [] for k in ("audio", "continuous", "categorical", "log_mel")}
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        t = np.arange(T) / 64
        base = np.sin(2 * np.pi * (1 + i % 5) * t) * rng.uniform(0.2, 0.9)
        audio = np.stack([base, np.roll(base, i % 7)]) + rng.normal(0, 0.01, (2, T))
        out["audio"].append((audio * scale).astype(np.float32))
        out["continuous"].append(rng.uniform(0, 1, C).astype(np.float32))
        out["categorical"].append(rng.integers(0, 5, K))
        out["log_mel"].append(rng.normal(-4, 2, MEL).astype(np.float32))
    n = stop - start
    idx = range(start, stop)
    return {
        "audio": np.array(out["audio"]).reshape(n, 2, T),
        "continuous": np.array(out["continuous"]).reshape(n, C),
        "categorical": np.array(out["categorical"], dtype=np.int64).reshape(n, K),
        "log_mel": np.array(out["log_mel"]).reshape(n, *MEL),
        "midi_note": [36 + i % 48 for i in idx],
        "source": ["synthetic" if i % 3 else "preset" for i in idx],
        "tier": [1 + i % 2 for i in idx],
        "preset_hash": [hashlib.sha256(str(i // 3).encode()).hexdigest() for i in idx],
        "preset_name": [f"Préset №{i // 3} " + "ü" * (i % 50) for i in idx],
        "split": [("train", "train", "val", "test")[(i // 3) % 4] for i in idx],
        "preset_index": [i // 3 for i in idx],
    }


def plan(total: int = TOTAL) -> list[tuple[int, int, bool]]:
    """``(start, stop, commit_after)`` batches: 1-6 rows each, a commit every 1-4 batches."""
    rng = random.Random(1234)
    out, pos, until_commit = [], 0, rng.randint(1, 4)
    while pos < total:
        stop = min(total, pos + rng.randint(1, 6))
        until_commit -= 1
        commit = until_commit == 0 or stop == total
        if commit:
            until_commit = rng.randint(1, 4)
        out.append((pos, stop, commit))
        pos = stop
    return out


def progress_at(n: int) -> dict:
    return {"next_preset": n // 3 + 1, "rows": n, "rejections": {"silent": n % 7, "clipped": n % 5}}


STORAGE = StorageConfig(chunk_rows=4)
ATTRS = {"seed": 7, "notes": [48, 60, 72], "names": ["a", "b"], "settings": {"tier": 1, "x": [1.5]}}


def create(path: Path, storage: StorageConfig = STORAGE, **kw) -> DatasetWriter:
    kw.setdefault("mel_shape", MEL)
    return DatasetWriter.create(
        path,
        audio_length=T,
        sample_rate=22050,
        n_continuous=C,
        n_categorical=K,
        storage=storage,
        attrs=kw.pop("attrs", ATTRS),
        **kw,
    )


def follow_plan(writer: DatasetWriter, total: int = TOTAL, echo: bool = False) -> None:
    """Append and commit from the writer's position to the end of the plan, then close."""
    for start, stop, commit in plan(total):
        if start < writer.n_rows:
            continue
        writer.append(**rows(start, stop))
        if commit:
            writer.commit(progress_at(stop))
            if echo:
                print("C", stop, flush=True)
    writer.close()


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every stored array of a file, raw (as h5py reads it)."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
        out["attrs"] = {k: str(v) for k, v in f.attrs.items()}
        out["book"] = {k: str(v) for k, v in f["vitalmatch"].attrs.items()}
    return out


def assert_same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            assert a[k].tobytes() == b[k].tobytes(), k
        else:
            assert a[k] == b[k], k


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    follow_plan(create(path))
    return {"path": path, "arrays": arrays(path)}


def commit_points() -> list[int]:
    return [0] + [stop for _, stop, commit in plan() if commit]


def check_resumed(path: Path, reference: dict, last_seen: int | None) -> int:
    """Resume a killed file, check it holds exactly a commit, finish it, compare; returns n."""
    points = commit_points()
    with DatasetReader(path) as r:  # readable at its last commit even before resume
        n_read = len(r)
    writer, progress = DatasetWriter.resume(path)
    n = writer.n_rows
    assert n == n_read and n in points
    if last_seen is not None:  # the commit printed last, or the one in flight when killed
        i = points.index(last_seen)
        assert n in points[i : i + 2]
    assert progress == (progress_at(n) if n else {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        follow_plan(writer)
    assert_same_arrays(arrays(path), reference["arrays"])
    assert not Path(str(path) + ".journal").exists()
    return n


def spawn_writer(path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "writer", str(path), *extra], stdout=subprocess.PIPE, text=True
    )


# --------------------------------------------------------------------------------------------
# crash safety


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted_run(tmp_path, reference):
    # Each kill is timed from the writer's own progress, not from a clock, so that a slow or
    # loaded machine still kills mid-run: wait for a random commit line, then sleep a random
    # part of the time the writer took for its previous commit (so the kill lands anywhere,
    # inside an append, a flush or a commit).
    seed = int(os.environ.get("VM_CRASH_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    points = commit_points()
    killed_mid_run = 0
    for trial in range(6):
        path = tmp_path / f"killed{trial}.h5"
        after = points[rng.randrange(len(points) - 2)]  # at least two commits left to do
        proc = spawn_writer(path)
        assert proc.stdout.readline().strip() == "ready"
        seen, last, gap = [], time.perf_counter(), 0.05
        while after and (not seen or seen[-1] < after):
            line = proc.stdout.readline().strip()
            assert line.startswith("C "), line
            seen.append(int(line.split()[1]))
            now = time.perf_counter()
            gap, last = now - last, now
        time.sleep(rng.uniform(0, gap))
        proc.send_signal(signal.SIGKILL)
        out = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
        proc.wait(timeout=120)
        seen += [int(line.split()[1]) for line in out.splitlines() if line.startswith("C ")]
        if "done" not in out:
            killed_mid_run += 1
        check_resumed(path, reference, seen[-1] if seen else 0)
    assert killed_mid_run >= 5, f"kills came too late (seed {seed})"


def count_writes() -> int:
    """File-system mutations of a full plan run (what the self-kill test enumerates)."""
    out = subprocess.run(
        [sys.executable, __file__, "writer", "/dev/null/x", "count"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.slow
def test_self_kill_at_the_kth_write_including_torn_writes(tmp_path, reference):
    total = count_writes()
    assert total > 200
    rng = random.Random(int(os.environ.get("VM_CRASH_SEED", time.time_ns() % 10**6)))
    ks = sorted(rng.sample(range(1, total), 5))
    for k, torn in zip(ks, [False, True, False, True, True], strict=True):
        path = tmp_path / f"k{k}.h5"
        proc = spawn_writer(path, "kill-at", str(k), "torn" if torn else "whole")
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, out
        if not path.exists():  # killed while creating: nothing was there to keep
            continue
        seen = [int(line.split()[1]) for line in out.splitlines() if line.startswith("C ")]
        check_resumed(path, reference, seen[-1] if seen else 0)


def test_resume_drops_rows_after_the_last_commit(tmp_path):
    path = tmp_path / "d.h5"
    proc = spawn_writer(path, "uncommitted")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    size_killed = path.stat().st_size
    with DatasetReader(path) as r:
        assert len(r) == 20 and r.progress() == progress_at(20)
    writer, progress = DatasetWriter.resume(path)
    assert writer.n_rows == 20 and progress == progress_at(20)
    assert path.stat().st_size < size_killed  # the uncommitted chunks were cut off
    writer.append(**rows(20, 23))
    writer.commit(progress_at(23))
    writer.close()
    with DatasetReader(path) as r:
        assert len(r) == 23
        np.testing.assert_array_equal(r.metadata("preset_index"), rows(0, 23)["preset_index"])


def test_commit_journal_stays_small(tmp_path):
    """A commit journals the pages HDF5 rewrote in place (metadata), not a copy of the file."""
    path = tmp_path / "d.h5"
    writer = create(path)
    journal = Path(str(path) + ".journal")
    sizes = []
    for start in range(0, 480, 40):
        writer.append(**rows(start, start + 40))
        writer.commit(progress_at(start + 40))
        sizes.append(journal.stat().st_size)
    file_size = path.stat().st_size
    writer.close()
    assert max(sizes) < 160 * 1024 and max(sizes) < file_size / 4, (sizes, file_size)


# --------------------------------------------------------------------------------------------
# round trips


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


def test_pcm16_clips_at_full_scale(tmp_path):
    path = tmp_path / "d.h5"
    data = rows(0, 2)
    data["audio"][0, 0, :3] = [1.5, -3.0, 0.25]
    with create(path, StorageConfig(chunk_rows=4)) as w:
        w.append(**data)
        w.commit({})
    with DatasetReader(path) as r:
        np.testing.assert_allclose(r.audio(0)[0, :3], [1.0, -1.0, 0.25], atol=1 / 32767)


def test_attrs_round_trip(tmp_path):
    attrs = {
        "seed": 3,
        "rate": 0.5,
        "flag": True,
        "name": "tier-1 ✓",
        "notes": [48, 60],
        "gains": [0.5, 1],
        "names": ["osc", "filter"],
        "bools": [True, False],
        "empty": [],
        "settings": {"a": 1, "b": [1, 2], "c": {"d": "e"}},
        "registry_json": '{"kept": "as a string"}',
        "np_int": np.int64(4),
    }
    path = tmp_path / "d.h5"
    create(path, attrs=attrs).close()
    with DatasetReader(path) as r:
        got = r.attrs
    assert got.pop("schema_version") == SCHEMA_VERSION
    assert got == {**attrs, "np_int": 4}
    writer, _ = DatasetWriter.resume(path)
    assert writer.attrs["settings"] == attrs["settings"]
    writer.close()


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({"x": None}, "unsupported type"),
        ({"x": [1, "a"]}, "only strings"),
        ({"schema_version": "2"}, "reserved"),
        ({"s": {"a": 1}, "s_json": "{}"}, "collide"),
        ({"s": {"a": object()}}, "JSON"),
    ],
)
def test_bad_attrs_are_refused(tmp_path, attrs, match):
    with pytest.raises(ValueError, match=match):
        create(tmp_path / "d.h5", attrs=attrs)
    assert not list(tmp_path.iterdir())


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


# --------------------------------------------------------------------------------------------
# the writer process of the crash tests


def _kill_at(k: int, torn: bool) -> list[int]:
    """Make this process SIGKILL itself at its k-th file-system mutation."""
    count = [0]

    def wrap(name):
        real = getattr(os, name)

        def hooked(*args, **kw):
            count[0] += 1
            if count[0] == k:
                if name == "pwrite" and torn and len(args[1]) > 1:
                    data = memoryview(args[1]).cast("B")
                    real(args[0], data[: len(data) // 2], args[2])
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kw)

        setattr(os, name, hooked)

    for name in ("pwrite", "ftruncate", "replace", "unlink"):
        wrap(name)
    return count


def _main(argv: list[str]) -> None:
    path = Path(argv[1])
    mode = argv[2] if len(argv) > 2 else "run"
    if mode == "count":  # count the mutations of a full run, in a scratch directory
        import tempfile

        count = _kill_at(-1, False)
        with tempfile.TemporaryDirectory() as d:
            follow_plan(create(Path(d) / "c.h5"))
        print(count[0])
        return
    if mode == "kill-at":
        _kill_at(int(argv[3]), argv[4] == "torn")
    if mode == "uncommitted":
        w = create(path)
        w.append(**rows(0, 20))
        w.commit(progress_at(20))
        w.append(**rows(20, 31))
        w._h5.flush()  # as a cache eviction would: HDF5 writes the uncommitted chunks and metadata
        os.kill(os.getpid(), signal.SIGKILL)
    writer = create(path)
    print("ready", flush=True)
    follow_plan(writer, echo=True)
    print("done", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        _main(sys.argv[1:])
