"""Session fixtures built once per test run, not once per xdist worker.

With ``pytest -n 2 --dist loadfile`` every worker process has its own session, so a session
fixture used by files on both workers (the tiny datasets, the tiny checkpoint, the match tests'
starting set) was built twice, each build slowed by the other on a 2-core machine. Here the first
worker to ask builds it in the run's shared temporary folder, under an exclusive file lock; the
other waits for the lock and reuses the finished folder. Without xdist it is a plain
``tmp_path_factory.mktemp``. The builds are deterministic (seeded), so which worker builds makes
no difference to what the tests see; tests only read these artefacts.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

_DONE = ".built"  # written last: a folder without it is a build that did not finish


def build_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder named ``name`` filled by ``build(folder)`` once for this whole test run.

    Args:
        tmp_path_factory: pytest's session factory (its base folder's parent is shared by the
            workers of one xdist run, and is new for every run).
        name: the artefact's folder name (unique per artefact).
        build: fills the empty folder it is given; must not call :func:`build_once` itself (a
            worker holds one lock at a time, so two workers cannot wait on each other).

    Returns:
        The finished folder.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent
    folder = root / f"once-{name}"
    with open(root / f"once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if build raises
        if not (folder / _DONE).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed on the other worker
            folder.mkdir()
            build(folder)
            (folder / _DONE).touch()
    return folder
