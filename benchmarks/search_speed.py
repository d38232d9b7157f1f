"""Benchmark: what one search evaluation costs, per preset (not a test; about a minute).

Usage::

    python benchmarks/search_speed.py [--presets 16] [--out benchmarks/results]

For random Tier-1 presets of the built-in starting set (built on first use), one search worker
(:class:`vitalmatch.search.worker._Searcher`, in this process, one core) evaluates each preset against
its own 2 s render (MIDI 60, 1 s note) six times with a tiny control change between evaluations
(the way CMA-ES candidates arrive), at the preset's oversampling (2x) and at 1x. Prints per preset
the median milliseconds per evaluation (render, flush, loss at the best output level) and the
search loss, the time of the loss features alone, and the medians; the ratio 1x / 2x shows what
lower oversampling would save and the 1x loss what it would cost in accuracy. Writes
``search_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = ap.parse_args()

    import torch

    from vitalmatch.match import ensure_start_set
    from vitalmatch.search import SearchTarget, search_features
    from vitalmatch.search.worker import _Searcher
    from vitalmatch.synth.params import ParamRegistry

    torch.set_num_threads(1)
    starts = ensure_start_set(256)
    registry = ParamRegistry.from_synth(wavetable_names=starts.catalog.names)
    searcher = _Searcher(registry, [e.table for e in starts.catalog], 44100)
    oversampling = registry.locate("oversampling")[1]
    rows = np.random.default_rng(0).permutation(len(starts))[: args.presets]
    runs = []
    for row in rows:
        cont, cat = starts.continuous[row].copy(), starts.categorical[row].copy()
        searcher.engine.load(cont, cat)
        audio = searcher.engine.render_note(60, 1.0, 2.0).mean(axis=0).astype(np.float32)
        searcher.engine.flush()
        target = SearchTarget(f"preset {row}", audio, 44100, 60, 1.0)
        run = {"row": int(row)}
        for label, value in (("2x", 1), ("1x", 0)):
            k = cat.copy()
            k[oversampling] = value
            searcher.engine.load(cont, k)  # a full load: oversampling acts on load only
            times, losses = [], []
            for i in range(6):
                c = cont.copy()
                c[5] = np.clip(c[5] + 0.001 * (i % 2), 0, 1)
                t = time.perf_counter()
                losses.append(searcher.evaluate(c, k, target)[0])
                times.append(time.perf_counter() - t)
            run[f"ms_{label}"] = 1000 * float(np.median(times))
            run[f"loss_{label}"] = float(np.median(losses))
        t = time.perf_counter()
        search_features(audio, 44100)
        run["ms_features"] = 1000 * (time.perf_counter() - t)
        runs.append(run)
        print(
            f"preset {row:5d}: 2x {run['ms_2x']:6.0f} ms (loss {run['loss_2x']:.3f})  "
            f"1x {run['ms_1x']:6.0f} ms (loss {run['loss_1x']:.3f})  features {run['ms_features']:.1f} ms",
            flush=True,
        )
    summary = {
        key: float(np.median([r[key] for r in runs]))
        for key in ("ms_2x", "ms_1x", "loss_2x", "loss_1x", "ms_features")
    }
    summary["ms_2x_range"] = [float(min(r["ms_2x"] for r in runs)), float(max(r["ms_2x"] for r in runs))]
    summary["ratio_1x_over_2x"] = float(np.median([r["ms_1x"] / r["ms_2x"] for r in runs]))
    print(
        f"median per evaluation: 2x {summary['ms_2x']:.0f} ms (range {summary['ms_2x_range'][0]:.0f}-"
        f"{summary['ms_2x_range'][1]:.0f}), 1x / 2x time {summary['ratio_1x_over_2x']:.2f}, "
        f"loss at 1x {summary['loss_1x']:.3f} (2x {summary['loss_2x']:.3f}), "
        f"features {summary['ms_features']:.1f} ms"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_speed.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    print(f"wrote {args.out / 'search_speed.json'}")


if __name__ == "__main__":
    main()
