"""Benchmark: beyond one machine, measured here and projected on paper (issue 19, section 4).

Usage::

    python benchmarks/scale.py [--presets 12] [--shards 100] [--ray-presets 60] [--no-ray]
        [--out benchmarks/results]

Measured in this one run (figures that are compared come from the same run):

1. *the per-core render rate*: ``generate`` with the built-in pool on 2 workers, default render
   settings (44.1 kHz, 2-s renders, notes 48/60/72, pcm16 mono), ``--presets`` kept presets of
   Tier 1 and of Tier 2; presets/s (kept, with the rejected ones' cost included) / 2 workers, and
   the stored bytes per row of the real schema (the file's size / rows).
2. *the Ray backend* (``generate --backend ray``, :mod:`vitalmatch.synth.ray_pool`, a local Ray
   on 2 CPUs) against the built-in pool on 2 workers, the same Tier-1 presets: the ratio of
   presets/s (goal >= 0.9) and the per-task overhead in ms, ``(T_ray - T_pool) x 2 / presets``
   (the extra worker-time per preset; start-up of either is inside its time).
3. *a 100-shard dataset*: ``--shards`` shards of one tiny preset each (0.25-s renders); the time
   to open the directory with its ``index.json`` and without (every shard scanned), to read 64
   random rows of audio, and a streamed epoch (:class:`vitalmatch.learn.data.StreamingSplit`,
   log-mels from the audio) in rows/s.
4. *the driver's write rate*: rows/s that h5py writes with the schema's audio storage (chunks of
   16 rows, gzip-4 + shuffle, pcm16) of the measured Tier-1 renders: what a single writing process
   can absorb (the journal and the small columns are not included).

On paper, from those figures: time, node-hours and storage for 1M Tier-1 and 1M Tier-2 presets
at 3 notes on N = 1, 10, 100 nodes of 16 cores, for array jobs (each task writes its own shards:
bounded by rendering, or by one node's writing) and for one Ray driver (bounded by rendering, the
driver's writing of every row, or its per-task overhead), and which bound it is. Everything goes
to ``scale.json`` in ``--out`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from vitalmatch.data.generate import GenerateConfig, generate
from vitalmatch.data.reader import DatasetReader, dataset_bytes
from vitalmatch.synth.render import RenderConfig

CORES_PER_NODE = 16
NODES = (1, 10, 100)
PRESETS_ON_PAPER = 1_000_000
NOTES = 3


def run_generate(out: Path, **kw) -> dict:
    """One ``generate`` run; its kept presets, rows, tried presets, seconds and presets/s."""
    s = generate(GenerateConfig(output=out, progress=False, **kw))
    return {
        "kept": s.kept_presets,
        "rows": s.rows,
        "tried": s.next_preset,
        "seconds": s.seconds,
        "presets_per_s": s.kept_presets / s.seconds,
        "failed": s.failed,
    }


def render_rates(tmp: Path, presets: int) -> dict:
    out = {}
    for tier in (1, 2):
        path = tmp / f"tier{tier}.h5"
        r = run_generate(path, n_presets=presets, tier=tier, workers=2)
        r["per_core_presets_per_s"] = r["presets_per_s"] / 2
        r["bytes_per_row"] = row_bytes(path)
        r["file_bytes_per_row"] = dataset_bytes(path) / max(r["rows"], 1)  # with the fixed blobs
        r["rows_per_preset"] = r["rows"] / max(r["kept"], 1)
        out[f"tier{tier}"] = r
        print(
            f"tier {tier}: {r['kept']} presets ({r['tried']} tried) in {r['seconds']:.1f} s on 2 workers: "
            f"{r['per_core_presets_per_s']:.3f} presets/s per core, {r['bytes_per_row'] / 1e3:.0f} kB/row"
        )
    return out


def row_bytes(path: Path) -> float:
    """Stored bytes per row of every per-row column (audio, parameters, metadata; HDF5's storage
    size, compressed), without the per-file blobs and book-keeping: what 1M rows cost."""
    total = 0
    with h5py.File(path, "r", locking=False) as f:
        n = int(f["vitalmatch"].attrs["n_rows"])

        def add(name, obj):
            nonlocal total
            if isinstance(obj, h5py.Dataset) and not name.startswith(("blobs", "vitalmatch")):
                total += obj.id.get_storage_size()

        f.visititems(add)
    return total / max(n, 1)


def ray_against_pool(tmp: Path, presets: int) -> dict:
    """Section 2, or why it could not run: the same Tier-1 run on the built-in pool and on a
    private 2-CPU Ray (end to end, Ray's start included), Ray's start-up alone, and the per-task
    overhead of a no-op task through each pool (after warm-up)."""
    try:
        from vitalmatch.synth.ray_pool import RayPool
    except ImportError as e:
        return {"todo": f"vitalmatch.synth.ray_pool is not available ({e}); Ray figures not measured"}
    from vitalmatch.synth.pool import WorkerPool

    pool = run_generate(tmp / "pool.h5", n_presets=presets, workers=2, backend="local")
    try:
        ray = run_generate(tmp / "ray.h5", n_presets=presets, workers=2, backend="ray")
    except Exception as e:  # noqa: BLE001 - report, do not lose the other figures
        return {"todo": f"the Ray run failed: {str(e).splitlines()[0][:200]}", "pool": pool}
    t = time.perf_counter()
    with RayPool(2) as rp:
        rp.wait_ready()
        startup = time.perf_counter() - t
        list(rp.map(abs, range(20)))  # warm-up
        t = time.perf_counter()
        list(rp.map(abs, range(300)))
        ray_task = (time.perf_counter() - t) / 300 * 2  # per task per worker
    with WorkerPool(2) as wp:
        list(wp.map(abs, range(20)))
        t = time.perf_counter()
        list(wp.map(abs, range(300)))
        pool_task = (time.perf_counter() - t) / 300 * 2
    ratio = ray["presets_per_s"] / pool["presets_per_s"]
    steady = ray["kept"] / max(ray["seconds"] - startup, 1e-9) / pool["presets_per_s"]
    print(
        f"Ray / pool on 2 CPUs, {presets} Tier-1 presets end to end: {ray['presets_per_s']:.2f} / "
        f"{pool['presets_per_s']:.2f} presets/s = {ratio:.2f} (goal >= 0.9); without Ray's start-up "
        f"({startup:.1f} s): {steady:.2f}; per-task overhead of a no-op task {ray_task * 1e3:.2f} ms (Ray) "
        f"vs {pool_task * 1e3:.2f} ms (pool)"
    )
    return {
        "pool": pool,
        "ray": ray,
        "ratio": ratio,
        "ray_startup_s": startup,
        "ratio_without_startup": steady,
        "overhead_ms_per_task": {"ray": ray_task * 1e3, "pool": pool_task * 1e3},
    }


def shard_figures(tmp: Path, n_shards: int) -> dict:
    """Section 3."""
    from vitalmatch.features import FeatureConfig
    from vitalmatch.learn.data import StreamingSplit, learnable_registry

    d = tmp / "shards"
    render = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=0.1, render_duration_s=0.25)
    made = run_generate(d, n_presets=n_shards, shard_size=1, render=render, workers=2)
    t0 = time.perf_counter()
    with DatasetReader(d) as r:
        n = len(r)
        opened = time.perf_counter() - t0
        g = np.random.default_rng(0)
        rows = g.choice(n, size=min(64, n), replace=False)
        t0 = time.perf_counter()
        r.audio(rows)
        random_read = time.perf_counter() - t0
        reg = learnable_registry(r)
    index = d / "index.json"
    saved = index.read_bytes() if index.exists() else None
    if saved is not None:
        index.unlink()
    t0 = time.perf_counter()
    with DatasetReader(d) as r:
        len(r)
    scanned = time.perf_counter() - t0
    if saved is not None:
        index.write_bytes(saved)
    features = FeatureConfig(sample_rate=22050, n_mels=64, n_fft=1024, hop_length=256)
    stream = StreamingSplit(d, "train", reg, features, shuffle_rows=64, workers=2)
    t0 = time.perf_counter()
    got = sum(len(b["row"]) for b in stream.epoch_batches(0, 0, batch_size=16, drop_last=False))
    streamed = got / (time.perf_counter() - t0)
    out = {
        "shards": n_shards,
        "rows": n,
        "generate_seconds": made["seconds"],
        "open_with_index_s": opened,
        "open_scanning_s": scanned,
        "read_64_random_rows_s": random_read,
        "streamed_epoch_rows_per_s": streamed,
    }
    print(
        f"{n_shards} shards ({n} rows): open {opened * 1e3:.0f} ms with index.json, {scanned * 1e3:.0f} ms "
        f"scanning; 64 random rows {random_read * 1e3:.0f} ms; streamed epoch {streamed:.0f} rows/s"
    )
    return out


def write_rate(tier1_file: Path, seconds: float = 2.0) -> float:
    """Section 4: rows/s of h5py writing the schema's audio storage of the measured renders."""
    with DatasetReader(tier1_file) as r:
        audio = np.round(r.audio(slice(0, min(len(r), 64))) / r.full_scale * 32767).astype(np.int16)
    with tempfile.TemporaryDirectory() as tmp, h5py.File(Path(tmp) / "w.h5", "w") as f:
        ds = f.create_dataset(
            "audio",
            shape=(0, *audio.shape[1:]),
            maxshape=(None, *audio.shape[1:]),
            dtype=np.int16,
            chunks=(16, *audio.shape[1:]),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            ds.resize(n + len(audio), axis=0)
            ds[n : n + len(audio)] = audio
            n += len(audio)
        f.flush()
        rate = n / (time.perf_counter() - t0)
    print(f"driver write rate: {rate:.0f} rows/s (h5py, pcm16, gzip-4 + shuffle, 16-row chunks)")
    return rate


def on_paper(rates: dict, write_rows_per_s: float, overhead_ms: float | None) -> list[dict]:
    """Section 'on paper': one entry per tier, nodes and way of running."""
    table = []
    for tier in ("tier1", "tier2"):
        r = rates[tier]
        rows = PRESETS_ON_PAPER * NOTES * min(r["rows_per_preset"] / NOTES, 1.0)  # validation's rejects
        storage_tb = rows * r["bytes_per_row"] / 1e12
        for nodes in NODES:
            render_s = PRESETS_ON_PAPER / (r["per_core_presets_per_s"] * CORES_PER_NODE * nodes)
            array_write_s = rows / (write_rows_per_s * nodes)  # every node writes its own shards
            driver_write_s = rows / write_rows_per_s  # one Ray driver writes every row
            driver_task_s = PRESETS_ON_PAPER * (overhead_ms or 0.0) / 1e3
            for mode, bounds in (
                ("array jobs", {"rendering": render_s, "writing (per node)": array_write_s}),
                (
                    "Ray driver",
                    {
                        "rendering": render_s,
                        "writing at the driver": driver_write_s,
                        "driver per-task overhead": driver_task_s,
                    },
                ),
            ):
                bound = max(bounds, key=lambda k: bounds[k])
                hours = bounds[bound] / 3600
                table.append(
                    {
                        "tier": tier,
                        "nodes": nodes,
                        "mode": mode,
                        "hours": hours,
                        "node_hours": hours * nodes,
                        "storage_tb": storage_tb,
                        "bound": bound,
                        "bounds_hours": {k: v / 3600 for k, v in bounds.items()},
                    }
                )
    print(
        f"\nOn paper: {PRESETS_ON_PAPER:,} presets x {NOTES} notes, nodes of {CORES_PER_NODE} cores "
        "(rates measured above; Ray overhead "
        f"{f'{overhead_ms:.1f} ms/task' if overhead_ms is not None else 'not measured: counted as 0'})"
    )
    print(f"{'tier':6} {'nodes':>5} {'mode':11} {'hours':>8} {'node-h':>8} {'storage':>9}  bound")
    for e in table:
        print(
            f"{e['tier']:6} {e['nodes']:5d} {e['mode']:11} {e['hours']:8.1f} {e['node_hours']:8.0f} "
            f"{e['storage_tb']:7.2f}TB  {e['bound']}"
        )
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", type=int, default=12, help="kept presets per tier for the render rate")
    ap.add_argument("--ray-presets", type=int, default=60, help="Tier-1 presets of the Ray / pool runs")
    ap.add_argument("--shards", type=int, default=100, help="shards of the sharded dataset")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray / pool comparison")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vm-scale-"))
    print(f"CPUs: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    try:
        rates = render_rates(tmp, args.presets)
        ray = {"todo": "skipped (--no-ray)"} if args.no_ray else ray_against_pool(tmp, args.ray_presets)
        if "todo" in ray:
            print(f"TODO: {ray['todo']}")
        shards = shard_figures(tmp, args.shards)
        writes = write_rate(tmp / "tier1.h5")
        table = on_paper(rates, writes, (ray.get("overhead_ms_per_task") or {}).get("ray"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "cpus": os.cpu_count(),
        "render": rates,
        "ray": ray,
        "shards": shards,
        "driver_write_rows_per_s": writes,
        "on_paper": table,
    }
    (args.out / "scale.json").write_text(json.dumps(result, indent=2, default=float))
    print(f"\nwrote {args.out / 'scale.json'}")


if __name__ == "__main__":
    main()
