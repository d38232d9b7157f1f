"""Benchmark: dataset-generation throughput and storage size, measured in one run.

Usage::

    python benchmarks/generate_throughput.py [--presets 80] [--tier 1|2|3] [--notes 48,60,72]
        [--only-ratio] [--large 1000] [--out benchmarks/results]

``--reset-costs`` measures, interleaved in this process on the same presets, what each way of
starting a preset from a clean state adds to the bare loop: the fork (with and without the 1-s
settling render) and a fresh ``vita.Synth`` per preset.

``--only-ratio`` measures just the bare loop, the engine loop and the 1-worker pipeline (the
per-worker goal); ``--large N`` adds one 2-worker run of N kept presets and reports its time,
presets/s, rejections by reason and stored bytes per row (audio, parameters, modulation).

What it measures, on the same Tier-1 presets (the first P presets of seed 0's stream, where P
is the number of presets the 1-worker pipeline tried):

1. a *bare loop*: one ``vita.Synth`` in this process; per preset ``load_json`` of the preset with
   its wavetables (and, at Tiers 2-3, its modulations and LFO shapes), set every control, render
   each note. No flushing, validation, IPC or storage, and not reproducible.
2. an *engine loop*: the same renders through ``RenderEngine`` in this process, i.e. the bare
   loop plus the work that makes renders reproducible (a child forked from a template synth per
   preset, settling, flushing before each note), without workers, validation or storage.
3. the *pipeline* (``vitalmatch.data.generate``) with 1 worker, then with 2 workers, writing HDF5
   with the default storage (pcm16 mono); and with 1 worker and ``--reuse-synth`` (one synth per
   worker, not bit-reproducible). Pipeline times exclude worker start-up (reported separately)
   so that the ratios compare steady states.
4. bytes of audio per row in the pipeline's file, and in the other storage options, against
   float32 stereo gzip-4 of the same renders (the reference format of the plan of record).

Goals (issue: dataset generation): pipeline(1 worker) >= 0.85 x bare loop; pipeline(2 workers)
>= 1.7 x pipeline(1 worker); bytes per row <= 25% of float32 stereo gzip-4. The pipeline ratio
is printed three ways: like for like (reproducible pipeline / engine loop, and ``--reuse-synth``
pipeline / bare loop: the pipeline's own overhead) and default pipeline / bare loop (that
overhead plus the price of reproducibility). Everything is written as JSON too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from vitalmatch.data.generate import GenerateConfig, generate, load_catalog
from vitalmatch.data.reader import DatasetReader, audio_bytes_per_row
from vitalmatch.data.sampling import PresetSampler, SamplerConfig
from vitalmatch.data.schema import StorageConfig
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import NO_FORK_ENV, RenderConfig, RenderEngine


def bare_loop(registry, tables, render: RenderConfig, presets) -> tuple[float, list[np.ndarray]]:
    """Seconds for the bare loop over ``presets``, and its audio ``(n_notes, 2, T)`` per preset."""
    import vita

    engine = RenderEngine(registry, tables, render)  # only to build preset JSON; rendering is bare
    synth = vita.Synth()
    synth.set_sample_rate(float(render.sample_rate))
    handles = synth.get_controls()
    specs = [s for s in registry.specs if s.control]
    out = []
    t0 = time.perf_counter()
    for p in presets:
        preset = engine.preset_json(p.continuous, p.categorical, _extras(p))
        synth.load_json(json.dumps(preset))
        for s in specs:
            handles[s.name].set(preset["settings"][s.name])
        notes = [
            synth.render(n, render.velocity, render.note_duration_s, render.render_duration_s)
            for n in render.notes
        ]
        out.append(np.stack(notes))
    return time.perf_counter() - t0, out


def engine_loop(registry, tables, render: RenderConfig, presets) -> float:
    """Seconds for the same renders through ``RenderEngine`` in this process: the bare loop plus
    the reproducibility work (fresh synth per preset, settling, flushes), without the pipeline."""
    engine = RenderEngine(registry, tables, render)
    t0 = time.perf_counter()
    for p in presets:
        engine.render(p.continuous, p.categorical, extras=_extras(p))
    return time.perf_counter() - t0


def _extras(preset):
    """The preset's modulations and LFO shapes (Tiers 2-3; empty at Tier 1)."""
    return preset.extras()


def run_pipeline(path: Path, n: int, workers: int, tier: int, render: RenderConfig) -> dict:
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    summary = generate(
        GenerateConfig(
            output=path,
            n_presets=n,
            tier=tier,
            workers=workers,
            render=render,
            progress=False,
            overwrite=True,
        )
    )
    total = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds_total": total,
        "presets_tried": summary.next_preset,
        "kept": summary.kept_presets,
        "rows": summary.rows,
        "main_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
    }


def _tag(render: RenderConfig) -> str:
    return "" if render.reproducible else "_reuse"


def steady_rate(workers: int, tier: int, render: RenderConfig, n_small: int, n_big: int, tmp: Path) -> dict:
    """Presets tried per second with start-up removed: (big - small) / (t_big - t_small)."""
    small = run_pipeline(tmp / f"small{workers}{_tag(render)}.h5", n_small, workers, tier, render)
    big = run_pipeline(tmp / f"big{workers}{_tag(render)}.h5", n_big, workers, tier, render)
    rate = (big["presets_tried"] - small["presets_tried"]) / (big["seconds_total"] - small["seconds_total"])
    return {
        "small": small,
        "big": big,
        "presets_per_s": rate,
        "startup_s": small["seconds_total"] - small["presets_tried"] / rate,
    }


def pool_overhead_ms(n: int = 2000) -> float:
    """Milliseconds of pool overhead per trivial task (1 worker, warmed up)."""
    from vitalmatch.synth.pool import WorkerPool

    with WorkerPool(1) as pool:
        list(pool.map(abs, range(20)))
        t0 = time.perf_counter()
        list(pool.map(abs, range(n)))
        return (time.perf_counter() - t0) / n * 1e3


def storage_sizes(audio: list[np.ndarray], tmp: Path) -> dict[str, float]:
    """Audio bytes per row for each storage option; reference: float32 stereo, gzip-4, row chunks."""
    rows = np.concatenate(audio)  # (rows, 2, T) float32
    rows = rows[np.abs(rows).max(axis=(1, 2)) <= 1.0]
    ref = tmp / "ref.h5"
    with h5py.File(ref, "w") as f:
        d = f.create_dataset(
            "a", data=rows, chunks=(1, 2, rows.shape[-1]), compression="gzip", compression_opts=4
        )
        ref_bytes = d.id.get_storage_size() / len(rows)
    sizes = {"float32 stereo gzip-4 (reference)": ref_bytes}
    from vitalmatch.data.writer import DatasetWriter

    for fmt in ("pcm16", "float16"):
        for ch in ("mono", "stereo"):
            p = tmp / f"{fmt}_{ch}.h5"
            w = DatasetWriter.create(
                p,
                audio_length=rows.shape[-1],
                sample_rate=44100,
                n_continuous=1,
                n_categorical=1,
                storage=StorageConfig(audio_format=fmt, channels=ch),
                attrs={},
                overwrite=True,
            )
            n = len(rows)
            w.append(
                audio=rows,
                continuous=np.zeros((n, 1), np.float32),
                categorical=np.zeros((n, 1), np.int32),
                midi_note=[60] * n,
                source=["synthetic"] * n,
                tier=[1] * n,
                preset_hash=["0" * 64] * n,
                preset_name=[""] * n,
                split=["train"] * n,
                preset_index=list(range(n)),
            )
            w.commit({})
            w.close()
            sizes[f"{fmt} {ch}"] = audio_bytes_per_row(p)
    return sizes


def reset_costs(tier: int, render: RenderConfig, n: int = 12, rounds: int = 2) -> dict[str, float]:
    """ms per preset of the bare loop and of each reset, measured interleaved (preset by preset,
    each way in turn) so that the machine's drift hits them alike."""
    catalog = load_catalog(None)
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    tables = [e.table for e in catalog]
    sampler = PresetSampler(registry, SamplerConfig(tier=tier, seed=0))
    presets = [sampler.preset(i) for i in range(n)]
    fork = RenderEngine(registry, tables, render)
    no_settle = RenderEngine(registry, tables, replace(render, settle_duration_s=0.0))
    reused = RenderEngine(registry, tables, replace(render, reproducible=False))

    def bare(p) -> None:
        preset = reused.preset_json(p.continuous, p.categorical, _extras(p))
        reused.synth.load_json(json.dumps(preset))
        for name, handle in reused._controls:
            handle.set(preset["settings"][name])
        for note in render.notes:
            reused.synth.render(note, render.velocity, render.note_duration_s, render.render_duration_s)

    def fresh(p) -> None:
        reused._new_synth()
        bare(p)

    ways = {
        "bare loop": bare,
        "fork (engine default)": lambda p: fork.render(p.continuous, p.categorical, extras=_extras(p)),
        "fork, no settling": lambda p: no_settle.render(p.continuous, p.categorical, extras=_extras(p)),
        "fresh synth + bare loop": fresh,
    }
    total = dict.fromkeys(ways, 0.0)
    for _ in range(rounds):
        for p in presets:
            for name, way in ways.items():
                t0 = time.perf_counter()
                way(p)
                total[name] += time.perf_counter() - t0
    ms = {k: 1e3 * v / (rounds * n) for k, v in total.items()}
    print(f"ms per preset, interleaved, tier {tier}, notes {list(render.notes)} ({n} presets x {rounds}):")
    for k, v in ms.items():
        print(f"  {k:26} {v:7.1f}   (+{v - ms['bare loop']:.1f} over the bare loop)")
    return ms


def large_run(n: int, tier: int, render: RenderConfig, tmp: Path) -> dict:
    """One 2-worker run of ``n`` kept presets: time, rates, rejections, bytes per row."""
    path = tmp / f"large_t{tier}.h5"
    t0 = time.perf_counter()
    summary = generate(
        GenerateConfig(output=path, n_presets=n, tier=tier, workers=2, render=render, progress=False)
    )
    seconds = time.perf_counter() - t0
    with h5py.File(path, "r") as f:
        stored = {
            name: f[name].id.get_storage_size() / max(summary.rows, 1)
            for name in ("audio/waveforms", "params/continuous", "params/categorical", "params/modulation")
        }
        heap = sum(len(r) * 4 for r in f["params/modulation"][()]) / max(summary.rows, 1)
        connections = np.mean([len(r) / 7 for r in f["params/modulation"][()]])
    stored["params/modulation (vlen heap values)"] = heap
    file_bytes = path.stat().st_size
    tried = summary.next_preset
    return {
        "kept": summary.kept_presets,
        "tried": tried,
        "rows": summary.rows,
        "seconds": seconds,
        "presets_per_s": summary.kept_presets / seconds,
        "renders_per_s": summary.rows / seconds,
        "preset_rejection_rate": (tried - summary.kept_presets) / max(tried, 1),
        "rejections": summary.rejections,
        "failed": summary.failed,
        "mean_connections_per_row": float(connections),
        "stored_bytes_per_row": stored,
        "file_bytes_per_row": file_bytes / max(summary.rows, 1),
    }


def only_ratio(args, render: RenderConfig) -> None:
    """The per-worker goal alone: pipeline (1 worker) / bare loop on the same presets."""
    n_small = max(4, args.presets // 8)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one = steady_rate(1, args.tier, render, n_small, args.presets, tmp)
        os.environ[NO_FORK_ENV] = "1"  # the workers inherit it: a fresh synth per preset
        try:
            (tmp / "fresh").mkdir()
            fresh = steady_rate(1, args.tier, render, n_small, args.presets, tmp / "fresh")
        finally:
            del os.environ[NO_FORK_ENV]
        tried = one["big"]["presets_tried"]
        catalog = load_catalog(None)
        registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
        sampler = PresetSampler(registry, SamplerConfig(tier=args.tier, seed=0))
        presets = [sampler.preset(i) for i in range(tried)]
        tables = [e.table for e in catalog]
        bare_rate = tried / bare_loop(registry, tables, render, presets)[0]
        engine_rate = tried / engine_loop(registry, tables, render, presets)
        large = large_run(args.large, args.tier, render, tmp) if args.large else None
    result = {
        "tier": args.tier,
        "presets": tried,
        "notes": list(render.notes),
        "bare_presets_per_s": bare_rate,
        "engine_loop_presets_per_s": engine_rate,
        "pipeline_1w_presets_per_s": one["presets_per_s"],
        "ratio_pipeline1_over_bare": one["presets_per_s"] / bare_rate,
        "ratio_pipeline1_over_engine_loop": one["presets_per_s"] / engine_rate,
        "ratio_engine_loop_over_bare": engine_rate / bare_rate,
        "pipeline_1w_fresh_synth_presets_per_s": fresh["presets_per_s"],
        "ratio_pipeline1_fresh_synth_over_bare": fresh["presets_per_s"] / bare_rate,
        "ratio_fork_over_fresh_synth": one["presets_per_s"] / fresh["presets_per_s"],
        "large": large,
    }
    print(
        f"presets: {tried} (tier {args.tier}, notes {list(render.notes)}, "
        f"{render.render_duration_s} s renders)"
    )
    print(f"bare loop            {bare_rate:6.2f} presets/s")
    print(f"engine loop          {engine_rate:6.2f} presets/s   ratio to bare {engine_rate / bare_rate:.2f}")
    print(
        f"pipeline, 1 worker   {one['presets_per_s']:6.2f} presets/s   ratio to bare  "
        f"{result['ratio_pipeline1_over_bare']:.2f}  (goal >= 0.85)"
    )
    print(
        f"pipeline, 1 w, fresh synth per preset (before issue 17) {fresh['presets_per_s']:6.2f} presets/s"
        f"   ratio to bare {result['ratio_pipeline1_fresh_synth_over_bare']:.2f}; "
        f"fork / fresh synth {result['ratio_fork_over_fresh_synth']:.2f}"
    )
    if large:
        print(
            f"large run, 2 workers: {large['kept']} presets ({large['rows']} renders) "
            f"in {large['seconds']:.0f} s, "
            f"{large['presets_per_s']:.2f} presets/s; preset rejection {large['preset_rejection_rate']:.1%}, "
            f"failed {large['failed']}; rejected renders {large['rejections']}"
        )
        print(f"  connections per row {large['mean_connections_per_row']:.2f}; stored bytes per row:")
        for k, v in large["stored_bytes_per_row"].items():
            print(f"    {k:40} {v:10.1f}")
        print(f"  whole file per row {large['file_bytes_per_row']:.0f} bytes")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"generate_throughput_t{args.tier}.json").write_text(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", type=int, default=80, help="presets kept in the long pipeline runs")
    ap.add_argument("--tier", type=int, default=1)
    ap.add_argument("--notes", default="48,60,72", help="MIDI notes per preset, comma-separated")
    ap.add_argument("--only-ratio", action="store_true", help="only the per-worker goal (and --large)")
    ap.add_argument("--large", type=int, default=0, help="also one 2-worker run of this many presets")
    ap.add_argument("--reset-costs", action="store_true", help="only the interleaved reset costs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    render = RenderConfig(notes=tuple(int(n) for n in args.notes.split(",")))
    if args.reset_costs:
        ms = reset_costs(args.tier, render)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"reset_costs_t{args.tier}.json").write_text(json.dumps(ms, indent=2))
        return
    if args.only_ratio:
        only_ratio(args, render)
        return
    n_small = max(4, args.presets // 8)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one = steady_rate(1, args.tier, render, n_small, args.presets, tmp)
        two = steady_rate(2, args.tier, render, n_small, args.presets, tmp)
        reuse = steady_rate(1, args.tier, replace(render, reproducible=False), n_small, args.presets, tmp)
        tried = one["big"]["presets_tried"]
        catalog = load_catalog(None)
        registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
        sampler = PresetSampler(registry, SamplerConfig(tier=args.tier, seed=0))
        presets = [sampler.preset(i) for i in range(tried)]
        bare_s, audio = bare_loop(registry, [e.table for e in catalog], render, presets)
        bare_rate = tried / bare_s
        engine_rate = tried / engine_loop(registry, [e.table for e in catalog], render, presets)
        large = large_run(args.large, args.tier, render, tmp) if args.large else None
        with DatasetReader(tmp / "big1.h5") as ds:
            pipe_bytes = audio_bytes_per_row(tmp / "big1.h5")
            rows = len(ds)
        sizes = storage_sizes(audio, tmp)
    ref = sizes["float32 stereo gzip-4 (reference)"]
    overhead = pool_overhead_ms()
    result = {
        "pool_overhead_ms_per_task": overhead,
        "cpu_count": os.cpu_count(),
        "presets": tried,
        "notes": list(render.notes),
        "bare_presets_per_s": bare_rate,
        "engine_loop_presets_per_s": engine_rate,
        "ratio_pipeline1_over_engine_loop": one["presets_per_s"] / engine_rate,
        "pipeline_1w_presets_per_s": one["presets_per_s"],
        "pipeline_2w_presets_per_s": two["presets_per_s"],
        "pipeline_1w_reuse_synth_presets_per_s": reuse["presets_per_s"],
        "ratio_pipeline1_reuse_synth_over_bare": reuse["presets_per_s"] / bare_rate,
        "startup_s": {"1 worker": one["startup_s"], "2 workers": two["startup_s"]},
        "ratio_pipeline1_over_bare": one["presets_per_s"] / bare_rate,
        "ratio_2w_over_1w": two["presets_per_s"] / one["presets_per_s"],
        "pipeline_rows": rows,
        "pipeline_audio_bytes_per_row": pipe_bytes,
        "bytes_ratio_vs_float32_stereo_gzip4": pipe_bytes / ref,
        "storage_bytes_per_row": sizes,
        "large": large,
    }
    print(
        f"presets: {tried} (tier {args.tier}, notes {list(render.notes)}, "
        f"{render.render_duration_s} s renders)"
    )
    print(f"bare loop            {bare_rate:6.2f} presets/s")
    print(f"engine loop          {engine_rate:6.2f} presets/s   (+ fork, settling, flushes; in-process)")
    print(
        f"pipeline, 1 worker   {one['presets_per_s']:6.2f} presets/s   ratio to bare  "
        f"{result['ratio_pipeline1_over_bare']:.2f}  (goal >= 0.85)"
    )
    print(
        f"pipeline, 2 workers  {two['presets_per_s']:6.2f} presets/s   ratio to 1 w.  "
        f"{result['ratio_2w_over_1w']:.2f}  (goal >= 1.70)"
    )
    print(
        f"pipeline, 1 w, reuse  {reuse['presets_per_s']:6.2f} presets/s   ratio to bare  "
        f"{result['ratio_pipeline1_reuse_synth_over_bare']:.2f}"
        "  (like for like: --reuse-synth, not bit-reproducible)"
    )
    main_ms = 1e3 * two["big"]["main_cpu_s"] / two["big"]["presets_tried"]
    print(
        f"pipeline, 1 worker vs engine loop: {one['presets_per_s'] / engine_rate:.2f}"
        "  (like for like: IPC, validation, storage)"
    )
    print(f"main process CPU per preset (2 workers): {main_ms:.1f} ms")
    print(f"pool overhead per trivial task: {overhead:.3f} ms")
    print(f"worker start-up: {one['startup_s']:.1f} s (1 worker), {two['startup_s']:.1f} s (2 workers)")
    print("audio bytes per row:")
    for k, v in sizes.items():
        print(f"  {k:36} {v / 1e3:8.1f} kB  {v / ref:6.1%} of reference")
    print(
        f"pipeline file (default pcm16 mono): {result['bytes_ratio_vs_float32_stereo_gzip4']:.1%}"
        " of reference (goal <= 25%)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generate_throughput.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
