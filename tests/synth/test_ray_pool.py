"""RayPool and ``generate --backend ray`` on a real two-node Ray cluster started on this machine:
order, isolation of a segfault and of a hang, rows equal to the local pool's, one line for an
unreachable cluster.

One cluster for the module (two nodes of one CPU each; ~15 s to start on 2 cores). Ray rewrites a
loopback address to the machine's own one when a driver connects, so the cluster listens on this
machine's address; nothing leaves the machine. Worker functions live in tests/synth/pool_tasks.py
and in this module (the Ray workers import them by name, from the repository root).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.pace import slowdown
from tests.processes import cli_in_process
from tests.synth import pool_tasks as tasks
from vitalmatch.data.generate import FAULTS_ENV, GenerateConfig, generate
from vitalmatch.data.reader import DatasetReader
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.ray_pool import RayPool, check_backend, open_pool
from vitalmatch.synth.render import RenderConfig

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.timeout(300)

MB = 1024**2
FAST = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=0.25, render_duration_s=0.5)
FAST_ARGS = ["--sample-rate", "22050", "--notes", "60", "--note-duration", "0.25", "--render-duration", "0.5"]


def node_of(_: object) -> str:
    """The Ray node id of the worker running this task."""
    import ray as ray_in_worker

    return ray_in_worker.get_runtime_context().get_node_id()


@pytest.fixture(scope="module")
def cluster():
    """The address of a two-node local Ray cluster (1 CPU, 100 MB object store each)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args=dict(num_cpus=1, object_store_memory=100 * MB, include_dashboard=False),
    )
    c.add_node(num_cpus=1, object_store_memory=100 * MB)
    c.wait_for_nodes()
    yield c.address
    c.shutdown()


def _arrays(path) -> dict[str, np.ndarray]:
    with DatasetReader(path) as ds:
        out = {
            "audio": ds.audio(slice(None)),
            "continuous": ds.continuous(slice(None)),
            "categorical": ds.categorical(slice(None)),
        }
        for name in ("midi_note", "preset_hash", "preset_index", "split"):
            out[name] = ds.metadata(name)
    return out


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """6 Tier-1 presets (1 note, 0.5 s) from the local pool: the reference rows."""
    path = tmp_path_factory.mktemp("local") / "local.h5"
    generate(GenerateConfig(output=path, n_presets=6, render=FAST, workers=2, progress=False, commit_every=2))
    return _arrays(path)


def test_map_keeps_order_and_uses_both_nodes(cluster):
    with RayPool(2, address=cluster, task_timeout_s=60) as pool:
        assert pool.wait_ready(120) == 2
        results = list(pool.map(tasks.square, range(20)))
        assert [(r.index, r.status, r.value) for r in results] == [(i, "ok", i * i) for i in range(20)]
        # a slow first item: completion order differs from input order, every index comes once
        items = [(1.0 if i == 0 else 0.01, i) for i in range(8)]
        unordered = list(pool.map_unordered(tasks.sleep_then, items))
        assert sorted(r.value for r in unordered) == list(range(8))
        assert [r.index for r in unordered] != list(range(8))
        nodes = {r.value for r in pool.map(node_of, range(8))}
    assert len(nodes) == 2  # one actor per node (each node has one CPU)
    assert not ray.is_initialized()  # the pool connected, so it disconnected


def test_a_segfault_costs_its_task_only(cluster):
    with RayPool(2, address=cluster, task_timeout_s=60) as pool:
        results = list(pool.map(tasks.segfault_on, [(i, 3) for i in range(8)]))
        assert results[3].status == "crash" and results[3].error.startswith("worker died"), results[3]
        assert [(r.status, r.value) for r in results if r.index != 3] == [
            ("ok", i) for i in range(8) if i != 3
        ]
        assert [r.value for r in pool.map(tasks.square, range(4))] == [0, 1, 4, 9]
        assert len(pool._slots) == 2  # the dead actor was replaced


def test_a_hang_is_cut_by_the_timeout(cluster):
    limit = round(3.0 * slowdown(), 1)
    items = [(0.01, 0), (600.0, 1), (0.01, 2), (0.01, 3)]
    start = time.monotonic()
    with RayPool(2, address=cluster, task_timeout_s=limit) as pool:
        results = list(pool.map(tasks.sleep_then, items))
    assert time.monotonic() - start < limit + 30
    assert results[1].status == "timeout" and results[1].error == f"timed out after {limit} s"
    assert [(r.status, r.value) for r in results if r.index != 1] == [("ok", 0), ("ok", 2), ("ok", 3)]


def test_generate_on_ray_gives_the_local_rows(cluster, local_run, tmp_path, capsys):
    out = tmp_path / "ray.h5"
    args = ["generate", "-n", "6", "-o", out, "--backend", "ray", "--address", cluster, "--no-progress"]
    r = cli_in_process(capsys, *args, *FAST_ARGS, "--commit-every", "2")
    assert r.returncode == 0, r.stderr
    assert "6 presets" in r.stdout
    got = _arrays(out)
    assert got.keys() == local_run.keys()
    for k in got:
        np.testing.assert_array_equal(got[k], local_run[k], err_msg=k)


def test_crashed_and_hung_ray_workers_cost_their_presets_only(cluster, local_run, tmp_path, monkeypatch):
    # the driver's VITALMATCH_* variables reach the actors (runtime_env): set after the cluster started
    monkeypatch.setenv(FAULTS_ENV, "crash:1;hang:3")
    path = tmp_path / "faults.h5"
    config = GenerateConfig(
        output=path,
        n_presets=6,
        render=FAST,
        workers=2,
        progress=False,
        commit_every=2,
        backend="ray",
        address=cluster,
        # generous against a 0.5-s render on a loaded machine (CI runs two test processes at
        # once): a healthy preset timed out at 4.5 s there; the hang still ends the test early
        task_timeout_s=round(10.0 * slowdown(), 1),
    )
    summary = generate(config)
    assert summary.kept_presets == 6 and summary.failed == 2
    with DatasetReader(path) as ds:
        reasons = {f["preset"]: f["reason"] for f in ds.progress()["failed"]}
    assert set(reasons) == {1, 3}
    assert reasons[1].startswith("worker died") and reasons[3].startswith("timed out")
    got = _arrays(path)
    kept = set(got["preset_index"].tolist())
    assert not kept & {1, 3} and len(kept) == 6
    for idx in kept & set(local_run["preset_index"].tolist()):  # 0, 2, 4, 5: rendered as locally
        np.testing.assert_array_equal(
            got["audio"][got["preset_index"] == idx], local_run["audio"][local_run["preset_index"] == idx]
        )


def test_an_unreachable_address_is_one_line(tmp_path, capsys):
    out = tmp_path / "never.h5"
    start = time.monotonic()
    r = cli_in_process(
        capsys,
        "generate",
        "-n",
        "2",
        "-o",
        out,
        "--backend",
        "ray",
        "--address",
        "127.0.0.1:1",
        "--no-progress",
    )
    assert time.monotonic() - start < 10
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Ray cluster at 127.0.0.1:1"), (
        r.stderr
    )
    assert not out.exists()  # refused before any file was made


def test_address_auto_finds_the_running_cluster_or_says_there_is_none(cluster, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no `ray start` left its address here
    with pytest.raises(ValueError, match="--address auto found no Ray cluster on this machine"):
        check_backend("ray", "auto")
    (tmp_path / "ray_current_cluster").write_text(cluster + "\n")  # what `ray start --head` writes
    check_backend("ray", "auto")  # found, and it answers
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with pytest.raises(RuntimeError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        check_backend("ray", "auto")


@pytest.mark.parametrize(
    ("backend", "address", "message"),
    [
        ("dask", None, "--backend must be one of local, ray"),
        ("local", "auto", "--address needs --backend ray"),
        ("ray", "host:port", "--address must be auto, HOST:PORT"),
    ],
)
def test_bad_backend_settings_are_refused(backend, address, message):
    with pytest.raises(ValueError, match=message):
        check_backend(backend, address)


def test_open_pool_local_is_the_worker_pool_and_ray_is_imported_lazily():
    with open_pool("local", 1) as pool:
        assert isinstance(pool, WorkerPool)
        assert [r.value for r in pool.map(tasks.square, [3])] == [9]
    code = (
        "import sys, vitalmatch, vitalmatch.cli, vitalmatch.data.generate, vitalmatch.match.batch, "
        "vitalmatch.synth.ray_pool; assert 'ray' not in sys.modules, 'ray imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
