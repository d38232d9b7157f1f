"""Benchmark: perturbation importance weights of Tier 1 and Tier 2, and what they change in training.

Usage::

    python benchmarks/importance.py [--presets 200] [--n-base-1 8] [--n-base-2 4] [--epochs 8]
        [--workers 2] [--data-1 T1.h5] [--data-2 T2.h5] [--skip-train] [--out benchmarks/results]

1. Generates a Tier-1 and a Tier-2 dataset of ``--presets`` presets (one note, 60; 22.05 kHz,
   0.5 s note in a 1 s render; split 75/25/0 so that validation has enough rows), unless
   ``--data-1`` / ``--data-2`` name existing files (they are copied, never changed).
2. Runs :func:`vitalmatch.data.importance.compute_weights` on each (``--n-base-1`` / ``--n-base-2``
   bases, delta 0.1) and prints the top-15 and bottom-10 of the measured parameters, with their
   weights renormalised to mean 1 over the measured ones (the columns a model predicts, as
   ``train`` renormalises them), and the time and render rate.
3. Trains the same small model (slim10, 64 mels, ``--epochs`` epochs, seed 0, one thread per
   process) on the Tier-1 data twice: with uniform weights (a copy of the file without them) and
   with the computed ones; prints the validation MAE of the continuous parameters (unit values,
   only where active) overall and per module, from the last validation of each run. The
   validation *loss* is not compared: it is weighted by the weights under test.

Renders dominate the cost (a fresh synth and a preset load per render, ~0.2-0.3 s each on a
quiet core at these settings). The machine's cores may be shared with other jobs: the times are
what this run saw. Results also go to ``importance.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vitalmatch.data.generate import GenerateConfig, generate
from vitalmatch.data.importance import ImportanceConfig, compute_weights
from vitalmatch.synth.render import RenderConfig

RENDER = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=0.5, render_duration_s=1.0)


def _dataset(tier: int, given: str | None, n: int, workers: int, folder: Path) -> tuple[Path, float]:
    path = folder / f"tier{tier}.h5"
    t0 = time.perf_counter()
    if given:
        shutil.copy(given, path)
    else:
        generate(
            GenerateConfig(
                output=path,
                n_presets=n,
                tier=tier,
                seed=0,
                workers=workers,
                render=RENDER,
                split=(0.75, 0.25, 0.0),
                progress=False,
            )
        )
    return path, time.perf_counter() - t0


def _ranking(result, top: int = 15, bottom: int = 10) -> dict:
    names = list(result.importance)
    w = np.array([result.weights[n] for n in names])
    w = w / w.mean()
    order = np.argsort(-w, kind="stable")
    rank = [(names[i], round(float(w[i]), 3), result.active_bases[names[i]]) for i in order]
    return {"top": rank[:top], "bottom": rank[-bottom:], "measured": len(names)}


def _print_ranking(tier: int, result, ranking: dict) -> None:
    rate = result.renders / max(result.seconds, 1e-9)
    print(
        f"\nTier {tier}: {ranking['measured']} parameters measured from {result.n_base} bases, "
        f"{result.renders} renders ({result.failed} failed) in {result.seconds:.0f} s "
        f"({rate:.1f} renders/s), "
        f"floor {result.floor:.4f}, {len(result.not_measured)} never active"
    )
    print("  top:    " + ", ".join(f"{n} {w:.2f}" for n, w, _ in ranking["top"]))
    print("  bottom: " + ", ".join(f"{n} {w:.2f}" for n, w, _ in ranking["bottom"]))


def _train(data: Path, out: Path, epochs: int) -> dict:
    from vitalmatch.learn.config import TrainConfig
    from vitalmatch.learn.train import fit

    config = TrainConfig(
        data=str(data),
        out=str(out),
        arch="slim10",
        epochs=epochs,
        batch_size=16,
        warmup_steps=10,
        n_mels=64,
        n_fft=1024,
        hop_length=256,
        patience=0,
        logger="none",
        threads=1,
        progress=False,
        seed=0,
    )
    t0 = time.perf_counter()
    fit(config)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["kind"] == "val"][-1]
    return {
        "mae": val["mae"],
        "mae_group": val["mae_group"],
        "accuracy": val.get("accuracy"),
        "epoch": val["epoch"],
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", type=int, default=200)
    ap.add_argument("--n-base-1", type=int, default=8)
    ap.add_argument("--n-base-2", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-1", default=None)
    ap.add_argument("--data-2", default=None)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()

    report: dict = {"settings": vars(args), "render": RENDER.__dict__ | {"notes": list(RENDER.notes)}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {}
        for tier, given, n_base in ((1, args.data_1, args.n_base_1), (2, args.data_2, args.n_base_2)):
            path, gen_s = _dataset(tier, given, args.presets, args.workers, folder)
            if tier == 1:
                shutil.copy(path, folder / "tier1_uniform.h5")  # the same rows, no weights
            result = compute_weights(
                ImportanceConfig(data=path, n_base=n_base, workers=args.workers, progress=False)
            )
            ranking = _ranking(result)
            _print_ranking(tier, result, ranking)
            results[tier] = path
            report[f"tier{tier}"] = {
                "generate_s": round(gen_s, 1),
                "n_base": result.n_base,
                "renders": result.renders,
                "failed": result.failed,
                "seconds": round(result.seconds, 1),
                "floor": result.floor,
                "never_active": result.not_measured,
                **ranking,
            }
        if not args.skip_train:
            runs = {
                "uniform": _train(folder / "tier1_uniform.h5", folder / "run_uniform", args.epochs),
                "weighted": _train(results[1], folder / "run_weighted", args.epochs),
            }
            report["training"] = runs
            groups = sorted(runs["uniform"]["mae_group"])
            print(f"\nTier-1 training, {args.epochs} epochs, slim10, seed 0: validation MAE (unit values)")
            print(f"  {'group':10} {'uniform':>8} {'weighted':>9}")
            for g in ["all", *groups]:
                u = runs["uniform"]["mae"] if g == "all" else runs["uniform"]["mae_group"][g]
                w = runs["weighted"]["mae"] if g == "all" else runs["weighted"]["mae_group"][g]
                print(f"  {g:10} {u:8.4f} {w:9.4f}")
            print(
                f"  categorical accuracy: uniform {runs['uniform']['accuracy']:.3f}, "
                f"weighted {runs['weighted']['accuracy']:.3f}; "
                f"train time {runs['uniform']['seconds']:.0f} s / {runs['weighted']['seconds']:.0f} s"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "importance.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {out / 'importance.json'}")


if __name__ == "__main__":
    main()
