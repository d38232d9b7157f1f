"""Benchmark: match quality against search budget (not a test; minutes to hours).

For each target sound and each method, runs :class:`vitalmatch.match.Matcher` once with snapshots
of the best preset after 100, 300 and 1000 renders and after 30 s, renders every snapshot at full
quality and reports the median multi-scale log-mel L1 relative to the init preset's distance
(``ratio``; goals: <= 0.20 on Tier-1 synthetic sounds and <= 0.50 on real presets within 30 s) and
the search speed in candidate evaluations per second (goal >= 40 on a 2-core machine).
``returned`` is the distance of the preset the matcher returns (the closest of its final
full-quality renders of the start, the result and the search's runner-up best points);
``truth`` (synthetic targets) that of the target's own preset re-rendered the same way, the
floor a perfect search would reach; each synthetic run also reports how many of the true
preset's active categoricals the returned preset got wrong.

Methods: ``init+cma`` (start: Vital's init preset), ``nn+cma`` (start: the nearest presets of the
built-in starting set), ``net`` (the network's prediction, no search), ``net+cma``.

Targets: the test split of ``--data`` (Tier-1 synthetic sounds, played at their stored note with
the dataset's note length) and the real presets of ``--presets`` rendered at MIDI 60 for 2 s with a
1 s note (skipped when absent). The notes are given to the matcher (no pitch detection), so the
figures measure the search.

    python benchmarks/match_quality.py --data data/tier1_10k.h5 --checkpoint runs/tier1_10k/best.pt \\
        [--presets ../shared/presets] [--sounds 6] [--max-evals 1000] [--max-seconds 90] \\
        [--methods init+cma,...] [--refine FIELD=JSON ...]

Writes ``benchmarks/results/match_quality.json`` and ``match_quality.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MARKS = (("evals", 0), ("evals", 100), ("evals", 300), ("evals", 1000), ("s", 30))
METHODS = {
    "init+cma": {"start_from": "init"},
    "nn+cma": {"start_from": "neighbour"},
    "net": {"start_from": "prediction", "refine": False},
    "net+cma": {"start_from": "prediction"},
}


def _synthetic_targets(path: Path, n: int) -> list[dict]:
    from vitalmatch.data.reader import DatasetReader
    from vitalmatch.synth.params import ParamRegistry
    from vitalmatch.synth.wavetables import WavetableCatalog

    with DatasetReader(path) as reader:
        rows = reader.split_indices("test")
        rows = rows[np.random.default_rng(0).permutation(len(rows))[:n]]
        note_s = float(reader.attrs["note_duration_s"])
        catalog = WavetableCatalog.from_json_data(json.loads(reader.blob("wavetables").decode()))
        registry = ParamRegistry.from_json(reader.attrs["registry_json"])
        wt_cols = {s.name: j for j, s in enumerate(registry.categorical) if s.name.endswith("_wavetable")}
        out = []
        for r in sorted(int(r) for r in rows):
            cat = reader.categorical(r)
            out.append(
                {
                    "set": "synthetic",
                    "name": f"{reader.metadata('preset_name', r)}@{int(reader.metadata('midi_note', r))}",
                    "audio": reader.audio(r).mean(axis=0).astype(np.float32),
                    "note": int(reader.metadata("midi_note", r)),
                    "note_s": note_s,
                    # the true preset, for the "truth" column (wavetables by content hash)
                    "truth": (
                        reader.continuous(r),
                        cat,
                        {name: catalog[int(cat[j])].hash for name, j in wt_cols.items()},
                        registry.continuous_names,
                        registry.categorical_names,
                    ),
                }
            )
        return out


def _true_vectors(matcher, target: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The synthetic target's own preset in the matcher's registry and catalog (wavetables by
    content hash); None when the registries differ or a wavetable is not in the catalog."""
    cont, cat, hashes, cont_names, cat_names = target["truth"]
    reg = matcher.registry
    if cont_names != reg.continuous_names or cat_names != reg.categorical_names:
        return None
    cat = cat.copy()
    for name, content_hash in hashes.items():
        try:
            cat[reg.locate(name)[1]] = matcher.catalog.index_of(content_hash)
        except KeyError:
            return None
    return cont, cat


def _render_distances(matcher, target: dict, vectors, sr: int) -> list[float]:
    """Full-quality distances to ``target`` of presets ``[(continuous, categorical), ...]``
    rendered by the matcher's final path (fresh synth, the target's note and length); NaN for a
    render that failed."""
    from vitalmatch.metrics import multiscale_mel_l1
    from vitalmatch.search import final_task

    render_s = len(target["audio"]) / sr
    tasks = [(c, k, target["note"], target["note_s"], render_s, sr) for c, k in vectors]
    return [
        float(multiscale_mel_l1(res.value[0].mean(axis=0), target["audio"], sr)) if res.ok else float("nan")
        for res in matcher.pool.map(final_task, tasks)
    ]


def _truth_distance(matcher, target: dict, truth, sr: int) -> float | None:
    """Full-quality distance of the target's own preset re-rendered by the matcher's final path
    (the floor the search could reach)."""
    (d,) = _render_distances(matcher, target, [truth], sr)
    return None if np.isnan(d) else d


def _wrong_categoricals(matcher, truth, categorical: np.ndarray, tier: int) -> tuple[int, int]:
    """``(wrong, active)``: the tier's categoricals that sound in the true preset, and how many of
    them the match set to another option."""
    from vitalmatch.synth.activity import activity_masks

    _, active = activity_masks(matcher.registry, *truth)
    cols = [j for j, s in enumerate(matcher.registry.categorical) if s.tier <= tier and active[j]]
    return sum(int(categorical[j]) != int(truth[1][j]) for j in cols), len(cols)


def _preset_targets(folder: Path, n: int) -> list[dict]:
    from vitalmatch.evaluate import _init_worker, _render_task
    from vitalmatch.synth.export import read_vital
    from vitalmatch.synth.params import ParamRegistry
    from vitalmatch.synth.pool import WorkerPool
    from vitalmatch.synth.render import RenderConfig
    from vitalmatch.synth.wavetables import WavetableCatalog

    files = sorted(folder.rglob("*.vital"))
    files = [files[i] for i in np.random.default_rng(0).permutation(len(files))[:n]]
    cat = WavetableCatalog.builtin()
    reg = ParamRegistry.from_synth(wavetable_names=cat.names)
    render = RenderConfig(notes=(60,), note_duration_s=1.0, render_duration_s=2.0)
    tasks = [("preset", json.dumps(read_vital(f)), 60) for f in files]
    out = []
    with WorkerPool(
        2, initializer=_init_worker, initargs=(reg.to_json(), [e.table for e in cat], render)
    ) as pool:
        for f, res in zip(files, pool.map(_render_task, tasks), strict=True):
            if res.ok and np.abs(res.value).max() > 1e-3:
                out.append({"set": "presets", "name": f.name, "audio": res.value, "note": 60, "note_s": 1.0})
    return out


class _Snapshots:
    """The search's best point as it was when it passed each mark: ``match_audio``'s ``on_batch``.

    Args:
        marks: ``(("evals", 100), ("s", 30), ...)``: evaluation counts / seconds.

    Attributes:
        points: ``{"evals:100": (continuous, categorical, loss, evals, seconds), "s:30": ...}``.
    """

    def __init__(self, marks: tuple[tuple[str, float], ...]) -> None:
        self.marks = list(marks)  # not yet passed
        self.points: dict[str, tuple] = {}

    def _keep(self, mark: tuple[str, float], point: tuple) -> None:
        self.points[f"{mark[0]}:{mark[1]:g}"] = point
        self.marks.remove(mark)

    def __call__(self, evals: int, seconds: float, best: tuple[np.ndarray, np.ndarray, float]) -> None:
        for mark in list(self.marks):
            if (evals if mark[0] == "evals" else seconds) >= mark[1]:
                self._keep(mark, (*best, evals, seconds))

    def finish(self, ref) -> dict[str, tuple]:
        """The points, with the search's final point for the marks it stopped before."""
        for mark in list(self.marks):
            self._keep(mark, (ref.continuous, ref.categorical, ref.loss, ref.evals, ref.seconds))
        return self.points


def _full_distances(matcher, target: dict, result, snapshots: _Snapshots, sr: int) -> dict:
    """Full-quality distance of the start and every snapshot."""
    points = {"evals:0": (result.distance_start, 0, 0.0)}
    ref = result.refinement
    if ref is None:
        return points
    snaps = snapshots.finish(ref)
    distances = _render_distances(matcher, target, [(c, k) for c, k, *_ in snaps.values()], sr)
    for key, d in zip(snaps, distances, strict=True):
        _, _, _, evals, seconds = snaps[key]
        points[key] = (min(d, result.distance_start), evals, seconds)  # the match keeps the start if closer
    return points


def _tuned(base, overrides: dict):
    """``base`` whose searches use ``RefineConfig`` fields ``overrides`` (``--refine``)."""
    from vitalmatch.match import MatchConfig

    if not overrides:
        return base

    @dataclasses.dataclass(frozen=True)
    class Tuned(MatchConfig):
        def refine_config(self):
            return dataclasses.replace(super().refine_config(), **overrides)

    return Tuned(**dataclasses.asdict(base))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data/tier1_10k.h5")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs/tier1_10k/best.pt")
    ap.add_argument("--presets", type=Path, default=ROOT.parent / "shared/presets")
    ap.add_argument("--sounds", type=int, default=6, help="targets per set")
    ap.add_argument("--max-evals", type=int, default=1000)
    ap.add_argument("--max-seconds", type=float, default=90.0, help="time cap per search")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument(
        "--refine",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="override a RefineConfig field, e.g. --refine alternatives=null (repeatable)",
    )
    args = ap.parse_args()
    overrides = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.refine)}

    from vitalmatch.match import MatchConfig, Matcher

    methods = [m for m in args.methods.split(",") if m]
    checkpoint = args.checkpoint if args.checkpoint.is_file() else None
    if checkpoint is None:
        print(f"no checkpoint at {args.checkpoint}: network methods skipped", file=sys.stderr)
        methods = [m for m in methods if not m.startswith("net")]
    targets = _synthetic_targets(args.data, args.sounds) if args.data.is_file() else []
    if args.presets.is_dir():
        targets += _preset_targets(args.presets, args.sounds)
    if not targets:
        sys.exit("error: no targets (neither --data nor --presets found)")
    base = _tuned(MatchConfig(budget_s=args.max_seconds, max_evals=args.max_evals), overrides)
    runs = []
    t_all = time.perf_counter()
    with Matcher(base, checkpoint, progress=True) as matcher:
        for target in targets:
            true_vectors = _true_vectors(matcher, target) if "truth" in target else None
            truth = None
            if true_vectors is not None:
                truth = _truth_distance(matcher, target, true_vectors, base.sample_rate)
                print(f"{target['set']:9} {target['name'][:28]:28} truth    {truth:.4f}", flush=True)
            for method in methods:
                matcher.config = dataclasses.replace(base, **METHODS[method])
                snapshots = _Snapshots(tuple((k, v) for k, v in MARKS if v > 0))
                r = matcher.match_audio(target["audio"], target["note"], target["note_s"], on_batch=snapshots)
                points = _full_distances(matcher, target, r, snapshots, base.sample_rate)
                ref = r.refinement
                runs.append(
                    {
                        "set": target["set"],
                        "target": target["name"],
                        "method": method,
                        "init": r.distance_init,
                        "truth": truth,
                        "final": r.distance,
                        "seconds": r.seconds,
                        "evals": ref.evals if ref else 0,
                        "evals_per_s": ref.evals / ref.seconds if ref and ref.seconds > 0 else None,
                        "failures": ref.failures if ref else 0,
                        "points": points,
                        # categoricals the returned preset got wrong, of the active ones (synthetic)
                        "wrong_categoricals": (
                            _wrong_categoricals(matcher, true_vectors, r.categorical, base.tier)
                            if true_vectors is not None
                            else None
                        ),
                    }
                )
                print(
                    f"{target['set']:9} {target['name'][:28]:28} {method:8} init {r.distance_init:.3f} "
                    + " ".join(f"{k}={v[0]:.3f}" for k, v in points.items())
                    + (f"  {runs[-1]['evals_per_s']:.1f} ev/s" if ref else "")
                    + (
                        "  wrong categoricals {}/{}".format(*runs[-1]["wrong_categoricals"])
                        if runs[-1]["wrong_categoricals"]
                        else ""
                    ),
                    flush=True,
                )
    summary = _summarise(runs, methods)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": f"{platform.node()} {os.cpu_count()} cpus",
        "seconds": time.perf_counter() - t_all,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "summary": summary,
        "runs": runs,
    }
    (args.out / "match_quality.json").write_text(json.dumps(report, indent=1, default=float))
    print(_table(summary))
    _plot(summary, args.out / "match_quality.png")
    print(f"wrote {args.out / 'match_quality.json'} and {args.out / 'match_quality.png'}")


def _summarise(runs: list[dict], methods: list[str]) -> dict:
    out: dict = {}
    for s in sorted({r["set"] for r in runs}):
        for m in methods:
            rs = [r for r in runs if r["set"] == s and r["method"] == m]
            if not rs:
                continue
            row = {"n": len(rs), "init": float(np.median([r["init"] for r in rs]))}
            for kind, v in MARKS:
                key = f"{kind}:{v:g}"
                vals = [(r["points"][key] if key in r["points"] else r["points"]["evals:0"]) for r in rs]
                row[key] = {
                    "distance": float(np.median([p[0] for p in vals])),
                    "ratio": float(np.median([p[0] / r["init"] for p, r in zip(vals, rs, strict=True)])),
                    "seconds": float(np.median([p[2] for p in vals])),
                    "reached": sum(key in r["points"] for r in rs),
                }
            truths = [r["truth"] for r in rs if r.get("truth") is not None]
            row["truth"] = float(np.median(truths)) if truths else None  # the target's own preset
            row["returned"] = {  # what the matcher returns: the closest of its final renders
                "distance": float(np.median([r["final"] for r in rs])),
                "ratio": float(np.median([r["final"] / r["init"] for r in rs])),
            }
            speeds = [r["evals_per_s"] for r in rs if r["evals_per_s"]]
            row["evals_per_s"] = float(np.median(speeds)) if speeds else None
            out[f"{s}/{m}"] = row
    return out


def _table(summary: dict) -> str:
    head = "| set | method | init | 0 renders | 100 | 300 | 1000 | after 30 s | returned | renders/s |"
    lines = [head, "|" + "---|" * 10]
    for key, row in summary.items():
        s, m = key.split("/")
        cells = []
        for kind, v in MARKS:
            p = row[f"{kind}:{v:g}"]
            t = f" ({p['seconds']:.0f} s)" if kind == "evals" and v else ""
            cells.append(f"{p['distance']:.2f} = {p['ratio']:.2f}x{t}")
        cells.append(f"{row['returned']['distance']:.2f} = {row['returned']['ratio']:.2f}x")
        speed = f"{row['evals_per_s']:.1f}" if row["evals_per_s"] else "-"
        lines.append(
            f"| {s} (n={row['n']}) | {m} | {row['init']:.2f} | " + " | ".join(cells) + f" | {speed} |"
        )
    truths = {k.split("/")[0]: row["truth"] for k, row in summary.items() if row.get("truth") is not None}
    for s, t in truths.items():
        lines.append(f"\n{s}: median distance of the targets' own presets re-rendered (truth): {t:.4f}")
    return "\n".join(lines)


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = sorted({k.split("/")[0] for k in summary})
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    xs = [v for kind, v in MARKS if kind == "evals"]
    for ax, s in zip(axes[0], sets, strict=True):
        for key, row in summary.items():
            if not key.startswith(s + "/"):
                continue
            ys = [row[f"evals:{v:g}"]["ratio"] for v in xs]
            ax.plot([max(x, 10) for x in xs], ys, marker="o", label=key.split("/")[1])
        ax.axhline(0.2 if s == "synthetic" else 0.5, color="grey", ls="--", lw=1, label="goal")
        ax.set_xscale("log")
        ax.set_xticks([10, 100, 300, 1000], ["0", "100", "300", "1000"])
        ax.set_xlabel("renders")
        ax.set_ylabel("median distance / init distance")
        ax.set_title(s)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
