"""Benchmark: the search loss without torch against the torch version it replaced, in one run.

Usage::

    python benchmarks/search_loss_speed.py [--evals 12] [--rounds 2] [--pools 2] [--out benchmarks/results]

A search worker (:mod:`vitalmatch.search.worker`) computed its loss with torch
(:func:`vitalmatch.features.mel_magnitude`: ``torch.stft`` and a dense mel matmul, torch on one
thread), and imported torch (and, for the filterbank, librosa) to do it. It now computes the same
loss in numpy + scipy.fft (:mod:`vitalmatch.search.spectra`). Measured here, the two versions
alternating so that both see the same machine load (the torch version is the one below, what
``search_features`` / ``_logs`` / ``_distance`` were, patched into the loss module):

1. *per evaluation*: CPU ms (this thread) of :meth:`vitalmatch.search.worker._Searcher.evaluate`
   on Vital's init preset and on a random Tier-2 preset with its modulations (the presets and
   candidates of ``benchmarks/search_speed.py``: ``--columns`` CMA-ES columns moved by N(0, 0.02);
   target the preset's own 2 s render, MIDI 60, 1 s note), under both objectives, level matched;
   and the loss alone (the candidate's features + the level search, no render) on the same audio;
2. *worker start-up*: seconds from ``WorkerPool(2, initializer=init_worker)`` to the first result
   of :func:`vitalmatch.search.evaluate_batch` (one candidate per worker) and to the last: what
   each ``match`` pays before its search starts (the torch version's initializer imports torch and
   sets one thread, as it did; its first evaluation imports librosa for the filterbank);
3. the features of one 2 s clip in float32 (what the workers run) and float64.

Writes ``search_loss_speed.json``. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
RATE = 44100


# ------------------------------------------------------------------------- the torch version
def torch_features(audio, sample_rate, objective="fine", peak=1.0):
    """``search_features`` as it was: torch float32 via :func:`vitalmatch.features.mel_magnitude`."""
    import torch

    from vitalmatch.features import mel_magnitude
    from vitalmatch.metrics import magnitude_scale_configs

    x = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1)) / float(peak)
    frame = max(1, round(0.010 * sample_rate))
    n = (len(x) // frame) * frame
    env = x[:n].reshape(-1, frame).square().mean(dim=1) if n else torch.zeros(1)
    feats = [(mel_magnitude(x, c), 1) for c in magnitude_scale_configs(int(sample_rate))]
    if objective == "coarse":
        feats += [(m.mean(dim=-1, keepdim=True), 1) for m, _ in feats]
        if env.shape[-1] < 5:
            env = env.mean(dim=-1, keepdim=True)
        else:
            env = torch.nn.functional.avg_pool1d(env.reshape(1, 1, -1), 5, 5, ceil_mode=True).reshape(-1)
    feats.append((env, 2))
    return feats


def torch_logs(features, gain=1.0):
    import torch

    return [torch.log((gain**e) * f + 1e-5) for f, e in features]


def torch_distance(log_candidate, log_target, envelope_weight):
    mel = sum(float((c - t).abs().mean()) for c, t in zip(log_candidate[:-1], log_target[:-1], strict=True))
    env = float((log_candidate[-1] - log_target[-1]).abs().mean()) if envelope_weight else 0.0
    return mel / (len(log_candidate) - 1) + envelope_weight * env


_NUMPY = {}


def use(version: str) -> None:
    """Point the search worker at the ``"torch"`` or the ``"numpy"`` loss (in this process)."""
    import vitalmatch.search.loss as loss_module
    import vitalmatch.search.worker as worker_module

    if not _NUMPY:
        _NUMPY.update(
            features=worker_module.search_features, logs=loss_module._logs, distance=loss_module._distance
        )
    if version == "torch":
        import torch

        torch.set_num_threads(1)
        worker_module.search_features = torch_features
        loss_module._logs, loss_module._distance = torch_logs, torch_distance
    else:
        worker_module.search_features = _NUMPY["features"]
        loss_module._logs, loss_module._distance = _NUMPY["logs"], _NUMPY["distance"]


def init_worker_torch(*args) -> None:
    """The search worker's initializer as it was: torch imported, one thread, the torch loss."""
    from vitalmatch.search.worker import init_worker

    use("torch")
    init_worker(*args)


# ------------------------------------------------------------------------- measurements
def per_evaluation(registry, tables, cases, args) -> dict:
    """CPU ms per ``_Searcher.evaluate`` and per loss alone (no render), candidate by candidate
    in both versions (each with its own synth; the order swaps every round): mean per version and
    the median of the paired differences (torch - numpy)."""
    import dataclasses

    import vitalmatch.search.loss as loss_module
    import vitalmatch.search.worker as worker_module
    from search_speed import candidates

    versions = ("torch", "numpy")
    searchers = {v: worker_module._Searcher(registry, tables, RATE) for v in versions}
    out: dict = {}
    for case in cases:
        for objective in ("coarse", "fine"):
            target = dataclasses.replace(case.target, objective=objective)
            weight = target.envelope_weight if objective == "coarse" else 0.0
            batch = candidates(case, np.random.default_rng(1), args.evals + 1, args.columns, 0.02)
            for v in versions:  # load the preset, cache the target's features in this version
                use(v)
                searchers[v].evaluate(batch[0][0], batch[0][1], target, batch[0][2])
            audios = []
            for c, k, extras in batch[1:]:
                searchers["numpy"].engine.update(c, k, extras)
                audios.append(searchers["numpy"].engine.render_note(60, 1.0, target.render_s).mean(axis=0))
            ms: dict = {(v, p): [] for v in versions for p in ("evaluate", "loss")}
            for r in range(args.rounds):
                order = versions if r % 2 == 0 else versions[::-1]
                for (c, k, extras), mono in zip(batch[1:], audios, strict=True):
                    for v in order:
                        use(v)
                        t0 = time.thread_time()
                        searchers[v].evaluate(c, k, target, extras)
                        t1 = time.thread_time()
                        feats = worker_module.search_features(mono, RATE, objective, target.peak)
                        loss_module.best_gain(feats, searchers[v].target_feats, weight, -40.0, 20.0)
                        t2 = time.thread_time()
                        ms[(v, "evaluate")].append(1000 * (t1 - t0))
                        ms[(v, "loss")].append(1000 * (t2 - t1))
            row = {f"{p}_{v}": statistics.mean(ms[(v, p)]) for v in versions for p in ("evaluate", "loss")}
            for p in ("evaluate", "loss"):
                diffs = [a - b for a, b in zip(ms[("torch", p)], ms[("numpy", p)], strict=True)]
                row[f"{p}_saved_median"] = statistics.median(diffs)
            out[f"{case.group} {objective}"] = row
    use("numpy")
    return out


def pool_start(registry, tables, cont, cat, args) -> dict:
    """Seconds from a new pool of 2 search workers to its first and last evaluation result."""
    from vitalmatch.search import SearchTarget, evaluate_task, init_worker
    from vitalmatch.synth.pool import WorkerPool

    t = np.arange(RATE // 2) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    target = SearchTarget("start", tone, RATE, 60, 0.3)
    out: dict = {"torch": [], "numpy": []}
    for _ in range(args.pools):
        for version, init in (("torch", init_worker_torch), ("numpy", init_worker)):
            t0 = time.perf_counter()
            with WorkerPool(2, initializer=init, initargs=(registry.to_json(), tables, RATE)) as pool:
                times = []
                for result in pool.map_unordered(evaluate_task, [(cont, cat, None, target)] * 2):
                    assert result.ok, result
                    times.append(time.perf_counter() - t0)
            out[version].append({"first_s": times[0], "last_s": times[-1]})
    return {
        v: {k: statistics.median(r[k] for r in rows) for k in ("first_s", "last_s")}
        for v, rows in out.items()
    }


def clip_features(reps: int = 10) -> dict:
    """CPU ms of the fine features of one 2 s clip: numpy float32 / float64, torch float32."""
    from vitalmatch.search.loss import search_features

    x = (0.3 * np.random.default_rng(0).standard_normal(2 * RATE)).astype(np.float32)
    runs = {
        "numpy float32": lambda: search_features(x, RATE),
        "numpy float64": lambda: search_features(x, RATE, dtype=np.float64),
        "torch float32": lambda: torch_features(x, RATE),
    }
    out = {}
    for name, fn in runs.items():
        fn()
        t0 = time.thread_time()
        for _ in range(reps):
            fn()
        out[name] = 1000 * (time.thread_time() - t0) / reps
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evals", type=int, default=12, help="evaluations per preset, objective and version")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two versions")
    ap.add_argument("--pools", type=int, default=2, help="pool starts per version")
    ap.add_argument("--columns", type=int, default=4, help="columns moved per candidate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = ap.parse_args()

    from search_speed import sample_cases
    from vitalmatch.synth.params import ParamRegistry
    from vitalmatch.synth.render import RenderConfig, RenderEngine
    from vitalmatch.synth.wavetables import WavetableCatalog

    t_start, load_start = time.perf_counter(), os.getloadavg()
    catalog = WavetableCatalog.builtin()
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    tables = [e.table for e in catalog]
    engine = RenderEngine(registry, tables, RenderConfig(sample_rate=RATE, reproducible=False))

    def render(cont, cat, extras):
        engine.load(cont, cat, extras)
        return engine.render_note(60, 1.0, 2.0).mean(axis=0).astype(np.float32)

    cases = sample_cases(registry, 0, 1, args.seed, True, render)  # the init preset, one Tier-2 preset
    evaluation = per_evaluation(registry, tables, cases, args)
    start = pool_start(registry, tables, cases[0].cont, cases[0].cat, args)
    clip = clip_features()
    load_end = os.getloadavg()

    print("CPU ms per evaluation (render + loss; mean) and per loss alone (features + level search):")
    for case in cases:
        for objective in ("coarse", "fine"):
            r = evaluation[f"{case.group} {objective}"]
            print(
                f"  {case.group:8s} {case.name[:18]:18s} {objective:6s}  evaluate: "
                f"torch {r['evaluate_torch']:6.1f}  numpy {r['evaluate_numpy']:6.1f}  "
                f"(saved, median of pairs {r['evaluate_saved_median']:+.1f});"
                f"  loss: torch {r['loss_torch']:5.1f}  numpy {r['loss_numpy']:5.1f}"
                f"  (saved {r['loss_saved_median']:+.1f})"
            )
    print("worker pool (2 workers) start to first / last result, s:")
    for version, s in start.items():
        print(f"  {version:6s} {s['first_s']:.2f} / {s['last_s']:.2f}")
    print("fine features of a 2 s clip, CPU ms: " + ", ".join(f"{k} {v:.1f}" for k, v in clip.items()))
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} ({os.cpu_count()} cores)")
    result = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "presets": [{"group": c.group, "name": c.name} for c in cases],
        "cpu_ms_per_evaluation": evaluation,
        "pool_start_s": start,
        "clip_features_cpu_ms": clip,
        "load_average": {"start": load_start, "end": load_end, "cores": os.cpu_count()},
        "seconds": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_loss_speed.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out / 'search_loss_speed.json'} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
