"""Tests of vitalmatch.data.journal: a dataset killed at any instant resumes at its last commit.

The crash tests run this module as a script (``python -m tests.data.test_journal writer PATH
...`` from the repository root): a writer process that follows a fixed plan of appends and
commits, and is killed with SIGKILL at a random moment, or kills itself at its k-th file-system
write (optionally after writing only half of that write's bytes). The parent then resumes,
finishes the plan, and compares every array with an uninterrupted run.
"""

from __future__ import annotations

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

from tests.data.dataset_rows import create, progress_at, rows
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.writer import DatasetWriter

REPO = Path(__file__).resolve().parents[2]
TOTAL = 240  # rows of the crash plan


# --------------------------------------------------------------------------------------------
# the plan of the crash tests


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
            if a[k].dtype == object:  # variable-length rows: compare their values, not pointers
                assert [np.asarray(x).tobytes() for x in a[k]] == [np.asarray(x).tobytes() for x in b[k]], k
            else:
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
        [sys.executable, "-m", "tests.data.test_journal", "writer", str(path), *extra],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
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
        [sys.executable, "-m", "tests.data.test_journal", "writer", "/dev/null/x", "count"],
        capture_output=True,
        cwd=REPO,
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
    # ~10 KiB of rewritten metadata per column (18 columns in schema 1.1.0, the vlen modulation
    # rows' global heap included), far below a copy of the file
    assert max(sizes) < 224 * 1024 and max(sizes) < file_size / 3.5, (sizes, file_size)


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
