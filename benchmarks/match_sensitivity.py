"""Benchmark: how close to the true preset must a match be? (not a test; a few minutes)

For Tier-1 synthetic targets (the test split of ``--data``, the same ones as
``match_quality.py``), runs one match (``--method``, ``--seconds``) and then renders at full
quality, through the matcher's final path:

- ``truth``: the target's own preset (the floor);
- ``truth but X``: the true preset with one parameter X set to the value the match found, for
  every Tier-1 parameter that sounds in the true preset and that the match got wrong (continuous:
  off by more than ``--tolerance`` in normalised units; categorical: another option);
- ``match + true pitch`` / ``+ true categoricals`` / ``+ true continuous``: the match with the
  true oscillator transposes and tunes, all true categoricals, or all true continuous values.

Prints, per target, the distances (multi-scale log-mel L1) and their ratios to the init preset's
distance, and counts the single wrong parameters whose error alone, on the true preset, already
costs more than the synthetic goal (0.20 x the init distance). Writes
``benchmarks/results/match_sensitivity.json``.

    python benchmarks/match_sensitivity.py [--data data/tier1_10k.h5] [--checkpoint CKPT] \\
        [--sounds 4] [--method net+cma] [--seconds 30]
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
PITCH = tuple(f"osc_{i}_{p}" for i in (1, 2) for p in ("transpose", "tune"))


def _variants(registry, truth, found, tier: int, tolerance: float) -> list[tuple[str, tuple]]:
    """``(label, (continuous, categorical))`` of every full-quality render this target needs."""
    from vitalmatch.synth.activity import activity_masks

    (tc, tk), (fc, fk) = truth, found
    cont_active, cat_active = activity_masks(registry, tc, tk)
    out = [("truth", (tc, tk)), ("match", (fc, fk))]
    pitched = fc.copy()
    for name in PITCH:
        pitched[registry.locate(name)[1]] = tc[registry.locate(name)[1]]
    out += [
        ("match + true pitch", (pitched, fk)),
        ("match + true categoricals", (fc, tk.copy())),
        ("match + true continuous", (tc.copy(), fk)),
    ]
    for j, spec in enumerate(registry.continuous):
        if spec.tier <= tier and cont_active[j] and abs(float(fc[j]) - float(tc[j])) > tolerance:
            c = tc.copy()
            c[j] = fc[j]
            label = (
                f"truth but {spec.name}: {spec.from_unit(float(tc[j])):.3g} -> "
                f"{spec.from_unit(float(fc[j])):.3g}"
            )
            out.append((label, (c, tk)))
    for j, spec in enumerate(registry.categorical):
        if spec.tier <= tier and cat_active[j] and int(fk[j]) != int(tk[j]):
            k = tk.copy()
            k[j] = fk[j]
            label = f"truth but {spec.name}: {spec.option_name(int(tk[j]))} -> {spec.option_name(int(fk[j]))}"
            out.append((label, (tc, k)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data/tier1_10k.h5")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs/tier1_10k/best.pt")
    ap.add_argument("--sounds", type=int, default=4)
    ap.add_argument("--method", default="net+cma", choices=sorted(mq.METHODS))
    ap.add_argument("--seconds", type=float, default=30.0, help="search budget per sound")
    ap.add_argument("--tolerance", type=float, default=0.02, help="normalised error counted as wrong")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = ap.parse_args()

    from vitalmatch.match import MatchConfig, Matcher

    if not args.data.is_file():
        sys.exit(f"error: no dataset at {args.data} (run vitalmatch generate first)")
    checkpoint = args.checkpoint if args.checkpoint.is_file() else None
    if checkpoint is None and args.method.startswith("net"):
        sys.exit(f"error: --method {args.method} needs a checkpoint; none at {args.checkpoint}")
    targets = mq._synthetic_targets(args.data, args.sounds)
    config = dataclasses.replace(MatchConfig(budget_s=args.seconds), **mq.METHODS[args.method])
    t_all = time.perf_counter()
    report = []
    with Matcher(config, checkpoint, progress=False) as matcher:
        sr = config.sample_rate
        for target in targets:
            truth = mq._true_vectors(matcher, target)
            if truth is None:
                print(f"{target['name']}: its wavetables are not in the matcher's catalog; skipped")
                continue
            r = matcher.match_audio(target["audio"], target["note"], target["note_s"])
            variants = _variants(
                matcher.registry, truth, (r.continuous, r.categorical), config.tier, args.tolerance
            )
            distances = mq._render_distances(matcher, target, [v for _, v in variants], sr)
            dist = {label: d for (label, _), d in zip(variants, distances, strict=True)}
            init = r.distance_init
            singles = {k: v for k, v in dist.items() if k.startswith("truth but")}
            over = sorted((v, k) for k, v in singles.items() if v > GOAL * init)
            print(
                f"\n== {target['name']}  init {init:.3f}  truth {dist['truth']:.4f}  "
                f"match {dist['match']:.3f}"
                f" ({dist['match'] / init:.2f}x)  wrong parameters {len(singles)}, of which {len(over)}"
                f" alone cost > {GOAL:.2f}x init"
            )
            for label in ("match + true pitch", "match + true categoricals", "match + true continuous"):
                print(f"  {dist[label]:7.3f} ({dist[label] / init:.2f}x)  {label}")
            for d, label in sorted(((v, k) for k, v in singles.items()), reverse=True):
                print(f"  {d:7.3f} ({d / init:.2f}x)  {label}")
            report.append(
                {
                    "target": target["name"],
                    "init": init,
                    "distances": dist,
                    "wrong": len(singles),
                    "wrong_over_goal": len(over),
                }
            )
    if not report:
        sys.exit("error: no target could be analysed")
    summary = {
        "sounds": len(report),
        "median_match_ratio": float(np.median([t["distances"]["match"] / t["init"] for t in report])),
        "median_wrong": float(np.median([t["wrong"] for t in report])),
        "median_wrong_over_goal": float(np.median([t["wrong_over_goal"] for t in report])),
        **{
            f"median_ratio_{key.replace(' ', '_').replace('+', 'with')}": float(
                np.median([t["distances"][key] / t["init"] for t in report])
            )
            for key in ("match + true pitch", "match + true categoricals", "match + true continuous")
        },
        "seconds": time.perf_counter() - t_all,
    }
    print(
        f"\nmedians over {len(report)} sounds: match {summary['median_match_ratio']:.2f}x init; "
        f"wrong parameters {summary['median_wrong']:.0f}, of which {summary['median_wrong_over_goal']:.0f} "
        f"alone cost more than {GOAL:.2f}x init on the true preset"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) for k, v in vars(args).items()}
    (args.out / "match_sensitivity.json").write_text(
        json.dumps({"settings": settings, "summary": summary, "targets": report}, indent=1)
    )
    print(f"wrote {args.out / 'match_sensitivity.json'}")


if __name__ == "__main__":
    main()
