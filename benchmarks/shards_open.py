"""Benchmark: opening and reading a sharded dataset, the reader's own row index against an HDF5
virtual dataset (VDS) over the shards (issue 19, docs/cluster.md).

Stage: data (reading). Input: none; it writes ``--shards`` tiny shard files (``--rows`` rows each
of 1 s mono pcm16 audio at 22.05 kHz, the real registry and catalog attributes and blobs of a
Tier-1 run) with :class:`~vitalmatch.data.writer.DatasetWriter`, without rendering: the rows are
deterministic noise, which costs the same to read as renders. Output: JSON on stdout and in
``benchmarks/results/shards_open.json``: the time to open the directory (scanning the shards, or
through ``index.json``), and for three ways of reading it the time to read single random rows
(audio + continuous parameters, the training loader's access) and random batches of 64 rows:
``own`` (the reader's own row index over per-shard readers, an LRU of 32 open), ``vds`` (a
plain HDF5 virtual dataset file over the shards; also its build time) and ``sharded``
(``DatasetReader(DIR)`` as shipped: the row index plus an in-memory virtual dataset per column).

    python benchmarks/shards_open.py --shards 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import vitalmatch.data.reader as reader_module
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import StorageConfig
from vitalmatch.data.shards import STREAM_STRIDE, index_directory, shard_name
from vitalmatch.data.writer import DatasetWriter

_allowed = reader_module._open_files_allowed
RESULTS = Path(__file__).parent / "results" / "shards_open.json"
T = 22050  # 1 s at 22.05 kHz
FIXED = ["audio/waveforms", "params/continuous", "params/categorical", "metadata/preset_index"]


def _attrs_and_blobs():
    """The attributes and blobs a real Tier-1 shard carries (registry, catalog)."""
    from vitalmatch.synth.params import ParamRegistry
    from vitalmatch.synth.wavetables import WavetableCatalog

    catalog = WavetableCatalog.builtin()
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    attrs = {
        "tier": 1,
        "seed": 0,
        "sample_rate": 22050,
        "notes": [60],
        "registry_json": registry.to_json(),
        "continuous_names": registry.continuous_names,
        "categorical_names": registry.categorical_names,
        "wavetable_names": list(catalog.names),
        "wavetable_hashes": list(catalog.hashes),
    }
    return attrs, {"wavetables": catalog.to_json().encode()}, registry


def make_shards(directory: Path, shards: int, rows: int) -> None:
    attrs, blobs, registry = _attrs_and_blobs()
    c, k = len(registry.continuous), len(registry.categorical)
    run = json.dumps({"seed": 0, "tier": 1, "n_presets": shards * rows, "shard_size": rows})
    rng = np.random.default_rng(0)
    for b in range(shards):
        a = {
            **attrs,
            "shard_block": b,
            "shard_blocks": shards,
            "shard_size": rows,
            "stream_start": b * STREAM_STRIDE,
            "run_settings_json": run,
        }
        w = DatasetWriter.create(
            directory / shard_name(b),
            audio_length=T,
            sample_rate=22050,
            n_continuous=c,
            n_categorical=k,
            storage=StorageConfig(channels="mono"),
            attrs=a,
        )
        with w:
            w.write_blob("wavetables", blobs["wavetables"])
            audio = (rng.normal(0, 0.1, (rows, 2, T))).astype(np.float32)
            w.append(
                audio=audio,
                continuous=rng.uniform(0, 1, (rows, c)).astype(np.float32),
                categorical=np.zeros((rows, k), dtype=np.int32),
                midi_note=[60] * rows,
                source=["synthetic"] * rows,
                tier=[1] * rows,
                preset_hash=[f"{b:032x}{i:032x}" for i in range(rows)],
                preset_name=[f"p{i}" for i in range(rows)],
                split=["train"] * rows,
                preset_index=[b * STREAM_STRIDE + i for i in range(rows)],
            )
            w.commit({"kept_presets": rows, "rows": rows, "next_preset": rows, "complete": True})


def build_vds(directory: Path, shards: int, rows: int) -> Path:
    """One VDS file mapping the fixed-shape columns of every shard (vlen modulation cannot map)."""
    path = directory / "virtual.h5"
    with h5py.File(directory / shard_name(0), "r") as f:
        spec = {name: (f[name].shape[1:], f[name].dtype) for name in FIXED}
    with h5py.File(path, "w", libver="latest") as out:
        for name, (tail, dtype) in spec.items():
            layout = h5py.VirtualLayout(shape=(shards * rows, *tail), dtype=dtype)
            for b in range(shards):
                src = h5py.VirtualSource(
                    shard_name(b), name, shape=(rows, *tail)
                )  # relative: the folder moves
                layout[b * rows : (b + 1) * rows] = src
            out.create_virtual_dataset(name, layout)
    return path


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(shards: int, rows: int, reads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        make_shards(d, shards, rows)
        made = time.perf_counter() - t0
        n = shards * rows
        rng = np.random.default_rng(1)
        singles = rng.integers(0, n, reads)
        batches = [np.sort(rng.choice(n, 64, replace=False)) for _ in range(10)]
        out: dict = {"shards": shards, "rows_per_shard": rows, "write_s": round(made, 2)}

        t0 = time.perf_counter()
        index_directory(d)
        out["index_s"] = round(time.perf_counter() - t0, 3)

        def own_open():
            DatasetReader(d).close()

        (d / "index.json").rename(d / "index.off")
        out["open_scan_ms"] = round(_median_ms(own_open, 3), 1)
        (d / "index.off").rename(d / "index.json")
        out["open_index_ms"] = round(_median_ms(own_open, 5), 1)
        # "own": the reader's own row index over per-shard readers (what ShardedReader falls back
        # to); "sharded": ShardedReader as shipped (its in-memory virtual dataset, built on first use)
        for label, virtual in (("own", False), ("sharded", True)):
            reader_module._open_files_allowed = _allowed if virtual else (lambda n: False)
            with DatasetReader(d) as r:
                for rnd in ("first_", ""):  # the first pass opens the shards (and maps the columns)
                    t0 = time.perf_counter()
                    for i in singles:
                        r.audio(int(i))
                        r.continuous(int(i))
                    out[f"{label}_{rnd}row_ms"] = round((time.perf_counter() - t0) * 1e3 / reads, 3)
                    t0 = time.perf_counter()
                    for rows_ in batches:
                        r.audio(rows_)
                        r.continuous(rows_)
                    out[f"{label}_{rnd}batch64_ms"] = round(
                        (time.perf_counter() - t0) * 1e3 / len(batches), 2
                    )
        reader_module._open_files_allowed = _allowed

        t0 = time.perf_counter()
        vds = build_vds(d, shards, rows)
        out["vds_build_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        out["vds_open_ms"] = round(_median_ms(lambda: h5py.File(vds, "r").close(), 5), 1)
        with h5py.File(vds, "r") as f:
            audio, cont = f["audio/waveforms"], f["params/continuous"]
            for rnd in ("first_", ""):
                t0 = time.perf_counter()
                for i in singles:
                    audio[int(i)]
                    cont[int(i)]
                out[f"vds_{rnd}row_ms"] = round((time.perf_counter() - t0) * 1e3 / reads, 3)
                t0 = time.perf_counter()
                for rows_ in batches:
                    audio[rows_]
                    cont[rows_]
                out[f"vds_{rnd}batch64_ms"] = round((time.perf_counter() - t0) * 1e3 / len(batches), 2)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()
    results = [measure(s, args.rows, args.reads) for s in args.shards]
    text = json.dumps(results, indent=1)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
