"""Benchmark: how good must the start be for a 30-s search to reach the synthetic goal? (not a
test; ~10-20 minutes)

For Tier-1 synthetic targets (the test split of ``--data``, the same ones as
``match_quality.py``), starts the matcher's search from the target's own preset with known
errors put in, and reports the full-quality distance of the start and of the result as ratios to
the init preset's distance (the synthetic goal: <= 0.20x within 30 s). A level ``SIGMA:FLIP``
adds Gaussian noise of standard deviation ``SIGMA`` (normalised units, clipped to [0, 1]) to every
continuous parameter the search moves (Tier 1, sounding in the true preset; oscillator pitch stays
true) and sets each sounding Tier-1 categorical to another option with probability ``FLIP``.

With ``--checkpoint``, it also measures the network on the same targets in the same units (mean
absolute error over the same columns; share of sounding categoricals wrong), to place today's
network on that scale.

    python benchmarks/match_start_quality.py [--data data/tier1_10k.h5] [--sounds 6] \\
        [--levels 0.05:0,0.1:0,0.2:0,0.1:0.3,0.05:0.6] [--seconds 30] [--sigma0 S] \\
        [--checkpoint CKPT] [--name match_start_quality]

Writes ``benchmarks/results/NAME.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import match_quality as mq  # noqa: E402  (the sibling benchmark's target and truth helpers)

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.20


def _columns(registry, truth, tier: int) -> tuple[np.ndarray, np.ndarray]:
    """``(continuous, categorical)`` column indices: what the search moves / sounding categoricals."""
    from vitalmatch.search import searchable_columns
    from vitalmatch.synth.activity import activity_masks

    cont_cols = searchable_columns(registry, *truth, tier)
    _, cat_active = activity_masks(registry, *truth)
    cat_cols = np.array(
        [j for j, s in enumerate(registry.categorical) if s.tier <= tier and cat_active[j]], dtype=int
    )
    return cont_cols, cat_cols


def _perturbed(registry, truth, cols, sigma: float, flip: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """The true vectors with noise ``sigma`` on ``cols[0]`` and a share ``flip`` of ``cols[1]`` moved
    to another option."""
    cont, cat = truth[0].copy(), truth[1].copy()
    cont_cols, cat_cols = cols
    cont[cont_cols] = np.clip(cont[cont_cols] + rng.normal(0.0, sigma, len(cont_cols)), 0.0, 1.0)
    for j in cat_cols:
        n = registry.categorical[j].n_options
        if n > 1 and rng.random() < flip:
            cat[j] = (int(cat[j]) + int(rng.integers(1, n))) % n
    return cont.astype(np.float32), cat.astype(np.int32)


def _floors(matcher, target: dict, truth, cols, step: float) -> dict:
    """Distances (ratios to the init preset's) of near-copies of the true preset, rendered by the
    matcher's final path: ``random_phase`` -- the true preset twice with Vital's default
    ``osc_N_random_phase = 1`` (the same preset as Vital plays it; the dataset pins 0), and
    ``steps`` -- ``{name: ratio}`` with one searched continuous column moved by ``step``."""
    reg = matcher.registry
    phase = truth[0].copy()
    for osc in (1, 2):
        name = f"osc_{osc}_random_phase"
        phase[reg.locate(name)[1]] = reg[name].to_unit(1.0)
    vectors = [matcher._init_vectors, (phase, truth[1]), (phase, truth[1])]
    names = []
    for j in cols[0]:
        c = truth[0].copy()
        c[j] = c[j] + step if c[j] + step <= 1.0 else c[j] - step
        vectors.append((c, truth[1]))
        names.append(reg.continuous[j].name)
    d = mq._render_distances(matcher, target, vectors, matcher.config.sample_rate)
    init = d[0]
    return {
        "init": init,
        "random_phase": [x / init for x in d[1:3]],
        "steps": {n: x / init for n, x in zip(names, d[3:], strict=True)},
    }


def _errors(truth, vectors, cols) -> tuple[float, float]:
    """``(continuous MAE over cols[0], share of cols[1] wrong)``."""
    cont_cols, cat_cols = cols
    mae = float(np.mean(np.abs(vectors[0][cont_cols] - truth[0][cont_cols]))) if len(cont_cols) else 0.0
    wrong = float(np.mean(vectors[1][cat_cols] != truth[1][cat_cols])) if len(cat_cols) else 0.0
    return mae, wrong


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data/tier1_10k.h5")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs/tier1_10k/best.pt")
    ap.add_argument("--sounds", type=int, default=6)
    ap.add_argument("--levels", default="0.05:0,0.1:0,0.2:0,0.1:0.3,0.05:0.6", help="SIGMA:FLIP,...")
    ap.add_argument("--seconds", type=float, default=30.0, help="search budget per sound")
    ap.add_argument("--step", type=float, default=0.01, help="one-column step of the floor renders")
    ap.add_argument("--sigma0", type=float, default=None, help="CMA-ES initial step (default: the matcher's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="match_start_quality", help="results file stem")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = ap.parse_args()

    from vitalmatch.match import MatchConfig, Matcher

    if not args.data.is_file():
        sys.exit(f"error: no dataset at {args.data} (run vitalmatch generate first)")
    try:
        levels = [tuple(float(x) for x in lv.split(":")) for lv in args.levels.split(",") if lv]
        if any(len(lv) != 2 or lv[0] < 0 or not 0 <= lv[1] <= 1 for lv in levels):
            raise ValueError
    except ValueError:
        sys.exit(f"error: --levels must be SIGMA:FLIP pairs (SIGMA >= 0, FLIP in 0..1), got {args.levels!r}")
    checkpoint = args.checkpoint if args.checkpoint.is_file() else None
    targets = mq._synthetic_targets(args.data, args.sounds)
    config = MatchConfig(budget_s=args.seconds)
    if args.sigma0 is not None:
        config = dataclasses.replace(config, sigma0=args.sigma0)
    rng = np.random.default_rng(args.seed)
    t_all = time.perf_counter()
    rows = []
    network = []
    floors = []
    with Matcher(config, checkpoint, progress=False) as matcher:
        for target in targets:
            truth = mq._true_vectors(matcher, target)
            if truth is None:
                print(f"{target['name']}: its wavetables are not in the matcher's catalog; skipped")
                continue
            cols = _columns(matcher.registry, truth, config.tier)
            if matcher.predictor is not None:
                pred = matcher.predictor.predict_audio(target["audio"], matcher.config.sample_rate)
                network.append(_errors(truth, (pred.continuous, pred.categorical), cols))
            f = {"target": target["name"], **_floors(matcher, target, truth, cols, args.step)}
            floors.append(f)
            worst = sorted(f["steps"].items(), key=lambda kv: -kv[1])[:3]
            print(
                f"{target['name']:28s} floors: Vital's default random phase "
                f"{'/'.join(f'{x:.2f}' for x in f['random_phase'])}x; one column +-{args.step:g}: "
                f"median {np.median(list(f['steps'].values())):.3f}x, costliest "
                + ", ".join(f"{n} {x:.2f}x" for n, x in worst),
                flush=True,
            )
            for sigma, flip in levels:
                start = _perturbed(matcher.registry, truth, cols, sigma, flip, rng)
                mae, wrong = _errors(truth, start, cols)
                r = matcher.match_audio(target["audio"], target["note"], target["note_s"], start=start)
                row = {
                    "target": target["name"],
                    "sigma": sigma,
                    "flip": flip,
                    "start_mae": mae,
                    "start_wrong": wrong,
                    "init": r.distance_init,
                    "start": r.distance_start / r.distance_init,
                    "result": r.distance / r.distance_init,
                    "evals": r.refinement.evals if r.refinement else 0,
                }
                rows.append(row)
                print(
                    f"{target['name']:28s} sigma {sigma:.2f} flip {flip:.1f}: start MAE {mae:.3f}, "
                    f"{wrong:.0%} categoricals wrong -> start {row['start']:.2f}x, "
                    f"after {row['evals']} evals {row['result']:.2f}x init",
                    flush=True,
                )
    if not floors:
        sys.exit("error: no target could be analysed")
    summary = []
    for sigma, flip in levels:
        sel = [r for r in rows if r["sigma"] == sigma and r["flip"] == flip]
        summary.append(
            {
                "sigma": sigma,
                "flip": flip,
                "sounds": len(sel),
                "median_start_mae": float(np.median([r["start_mae"] for r in sel])),
                "median_start_wrong": float(np.median([r["start_wrong"] for r in sel])),
                "median_start_ratio": float(np.median([r["start"] for r in sel])),
                "median_result_ratio": float(np.median([r["result"] for r in sel])),
                "share_at_goal": float(np.mean([r["result"] <= GOAL for r in sel])),
            }
        )
    if summary:
        print(
            "\n| sigma | flip | start MAE | categoricals wrong | start | "
            f"after {args.seconds:.0f} s | at goal |"
        )
        print("|---|---|---|---|---|---|---|")
        for s in summary:
            print(
                f"| {s['sigma']:.2f} | {s['flip']:.1f} | {s['median_start_mae']:.3f} "
                f"| {s['median_start_wrong']:.0%} | {s['median_start_ratio']:.2f}x "
                f"| {s['median_result_ratio']:.2f}x | {s['share_at_goal']:.0%} |"
            )
    phase = [x for f in floors for x in f["random_phase"]]
    costly = [sum(x > GOAL / 2 for x in f["steps"].values()) for f in floors]
    print(
        f"\nfloors over {len(floors)} sounds: the true preset with Vital's default random phase at "
        f"median {np.median(phase):.2f}x (range {min(phase):.2f}-{max(phase):.2f}); "
        f"a {args.step:g} step of one "
        f"column costs more than {GOAL / 2:.2f}x alone in {np.median(costly):.0f} columns per sound (median)"
    )
    net = None
    if network:
        net = {
            "median_mae": float(np.median([m for m, _ in network])),
            "median_wrong": float(np.median([w for _, w in network])),
        }
        print(
            f"\nnetwork ({args.checkpoint}) on the same targets and columns: MAE {net['median_mae']:.3f}, "
            f"{net['median_wrong']:.0%} of sounding categoricals wrong (medians)"
        )
    print(f"{time.perf_counter() - t_all:.0f} s in all")
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) for k, v in vars(args).items()}
    (args.out / f"{args.name}.json").write_text(
        json.dumps(
            {"settings": settings, "summary": summary, "network": net, "floors": floors, "rows": rows},
            indent=1,
        )
    )
    print(f"wrote {args.out / (args.name + '.json')}")


if __name__ == "__main__":
    main()
