"""What the shipped model buys (issue 20's goals), on the matching issue's sets and metric.

For each sound of the sets of ``benchmarks/match_quality.py`` (real presets at note 60, random
Tier-1 and Tier-2/3 sounds at notes 48..72; the same targets, seeds and WAVs), against Vital's init
preset at the true note (the issue-18 metric, ``vitalmatch.metrics.magnitude_mel_l1``):

- ``network``: the network alone, its plain prediction rendered (no search, the true note given);
- ``network-top-k``: the best of its ``--candidates`` top-K candidates by the search loss (no search);
- ``neighbour``: the nearest-neighbour start of the built-in starting set (no search, no model);
- ``5s`` / ``5s-model``: a user's match of the WAV (``Matcher.match_file``: pitch detection
  included) at a 5 s budget without and with the model; likewise ``30s`` / ``30s-model`` on the
  first ``--sounds-30`` sounds of each set.

Goals (issue 20): the median ratio of ``5s-model`` <= 0.8x the median of ``5s`` per set;
``30s-model`` no worse than ``30s``; ``network`` below ``neighbour`` on every set.

Usage::

    python benchmarks/model_quality.py [--model src/vitalmatch/learn/default-model.safetensors]
        [--sets presets,t1,t23] [--sounds 20] [--sounds-30 5] [--candidates 8] [--resume]

Writes ``benchmarks/results/model_quality.json`` and ``.md``. Needs a quiet machine: each 5 s
match is timed by the wall clock. About 20 min for 60 sounds without the 30 s runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import match_quality as mq  # noqa: E402  (the same targets and scores as the matching benchmark)

ROOT = Path(__file__).resolve().parents[1]
MODES = ("network", "network-top-k", "neighbour", "5s", "5s-model", "30s", "30s-model")


def _modes(rows: list[dict]) -> list[str]:
    """:data:`MODES`, then the ``--only`` variants found in ``rows`` (e.g. ``5s-model-k2``)."""
    return [*MODES, *sorted({r["mode"] for r in rows} - set(MODES))]


def _parse() -> argparse.Namespace:
    from vitalmatch.learn.default_model import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model file or training checkpoint")
    p.add_argument("--sets", default="presets,t1,t23")
    p.add_argument("--sounds", type=int, default=20, help="sounds per set")
    p.add_argument("--sounds-30", type=int, default=5, help="sounds per set also matched at 30 s (0: none)")
    p.add_argument(
        "--candidates",
        type=int,
        default=8,
        help="top-K candidates of the network (the default 8 is MatchConfig's)",
    )
    p.add_argument("--presets", type=Path, default=ROOT.parent / "shared" / "presets")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--resume", action="store_true", help="keep the rows of an earlier run")
    p.add_argument(
        "--only",
        default="",
        help="run only these modes (comma-separated); with --candidates other than 8, the model's "
        "modes are recorded as e.g. 5s-model-k2",
    )
    args = p.parse_args()
    args.sets = [s for s in args.sets.split(",") if s]
    return args


def _targets(args) -> list[dict]:
    from vitalmatch.match.start_set import cache_dir

    wav_dir = cache_dir() / "bench" / "match_quality"
    targets = []
    for set_name in args.sets:
        if set_name == "presets":
            if not args.presets.is_dir():
                print(f"presets: skipped, no folder {args.presets}", flush=True)
                continue
            got, _ = mq.preset_targets(args.presets, args.sounds, wav_dir)
        else:
            got, _ = mq.sampled_targets(set_name, args.sounds, wav_dir)
        targets += got
        print(f"{set_name}: {len(got)} sounds", flush=True)
    return _index(targets)


def _no_search_row(matcher, target: dict, mode: str, init_cache: dict) -> dict:
    """The chosen start, no search, at the true note: its ratio to init at that note."""
    r = matcher.match_audio(mq._mono_target(target["path"]), target["note"], target["note_s"])
    key = (target["set"], target["name"], round(r.note_s, 4), round(r.render_s, 4))
    if key not in init_cache:
        (init_audio,) = mq._final_renders(
            matcher, [matcher.registry.from_raw(mq._pins())], target["note"], r.note_s, r.render_s
        )
        init_cache[key] = mq._scores(init_audio, r.target)
    got = mq._scores(r.render.mean(axis=0), r.target)
    init = init_cache[key]
    return {
        "set": target["set"],
        "sound": target["name"],
        "mode": mode,
        "ratio": got["distance"] / init["distance"] if init["distance"] > 0 else math.nan,
        "distance": got["distance"],
        "init_distance": init["distance"],
        "mfcc": got["mfcc"],
        "start": r.start,
        "seconds": r.seconds,
    }


def _search_row(matcher, target: dict, mode: str, budget: float, init_cache: dict) -> dict:
    ns = argparse.Namespace(curve=False, budgets=[budget], given_note=False)
    row, _ = mq.match_one(matcher, target, budget, ns, init_cache)
    return {
        "set": row["set"],
        "sound": row["sound"],
        "mode": mode,
        "ratio": row["ratio"],
        "distance": row["distance"],
        "init_distance": row["init_distance"],
        "mfcc": row["mfcc"],
        "start": row["start"],
        "seconds": row["seconds"],
        "evals": row["evals"],
        "pitch": row["pitch"],
    }


def summarise(rows: list[dict]) -> dict:
    """``{set: {mode: {"median", "n"}}}`` and the goal checks per set."""
    out: dict = {}
    for s in dict.fromkeys(r["set"] for r in rows):
        by_mode = {}
        for m in _modes(rows):
            vals = [
                r["ratio"] for r in rows if r["set"] == s and r["mode"] == m and math.isfinite(r["ratio"])
            ]
            if vals:
                by_mode[m] = {"median": statistics.median(vals), "n": len(vals)}
        goals = {}

        def med(m, by_mode=by_mode):
            return by_mode.get(m, {}).get("median", math.nan)

        if "5s" in by_mode and "5s-model" in by_mode:
            goals["5s-model / 5s (goal <= 0.8)"] = med("5s-model") / med("5s")
        if "30s" in by_mode and "30s-model" in by_mode:
            goals["30s-model / 30s (goal <= 1.0)"] = med("30s-model") / med("30s")
        if "network" in by_mode and "neighbour" in by_mode:
            goals["network / neighbour (goal < 1)"] = med("network") / med("neighbour")
        out[s] = {"modes": by_mode, "goals": goals}
    return out


def table(summary: dict) -> str:
    modes = list(dict.fromkeys(m for v in summary.values() for m in [*MODES, *v["modes"]]))
    head = "| set | " + " | ".join(modes) + " | 5s-model / 5s | 30s-model / 30s | network / neighbour |"
    lines = [head, "|" + "---|" * (len(modes) + 4)]
    for s, v in summary.items():
        cells = [
            f"{v['modes'][m]['median']:.3f} (n={v['modes'][m]['n']})" if m in v["modes"] else "-"
            for m in modes
        ]
        g = v["goals"]
        goal_cells = [
            f"{g[k]:.2f}" if k in g else "-"
            for k in (
                "5s-model / 5s (goal <= 0.8)",
                "30s-model / 30s (goal <= 1.0)",
                "network / neighbour (goal < 1)",
            )
        ]
        lines.append(f"| {s} | " + " | ".join(cells + goal_cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = _parse()
    from vitalmatch.match import MatchConfig, Matcher

    if not args.model.is_file():
        sys.exit(f"error: no model file {args.model} (train one: docs/model.md)")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / "model_quality.json", args.out / "model_quality.md"
    t_all = time.perf_counter()
    targets = _targets(args)
    rows: list[dict] = []
    if args.resume and json_path.is_file():
        rows = json.loads(json_path.read_text()).get("rows", [])
    done = {(r["set"], r["sound"], r["mode"]) for r in rows}

    def report() -> None:
        summary = summarise(rows)
        data = {
            "machine": f"{platform.node()} {os.cpu_count()} cpus",
            "seconds": time.perf_counter() - t_all,
            "settings": {k: str(v) for k, v in vars(args).items()},
            "summary": summary,
            "rows": rows,
        }
        mq._write_json(json_path, data)
        md_path.write_text("# what the model buys (issue 20)\n\n" + table(summary) + "\n")

    base = MatchConfig(workers=args.workers, seed=0)
    fixed = dataclasses.replace(base, refine=False, pitch_search=False)
    runs = [  # (mode, checkpoint, config, budget or None for no search)
        ("neighbour", None, dataclasses.replace(fixed, start_from="neighbour"), None),
        (
            "network",
            args.model,
            dataclasses.replace(fixed, start_from="prediction", model_candidates=1),
            None,
        ),
        (
            "network-top-k",
            args.model,
            dataclasses.replace(fixed, start_from="prediction", model_candidates=args.candidates),
            None,
        ),
        ("5s", None, dataclasses.replace(base, budget_s=5.0), 5.0),
        (
            "5s-model",
            args.model,
            dataclasses.replace(base, budget_s=5.0, model_candidates=args.candidates),
            5.0,
        ),
        ("30s", None, dataclasses.replace(base, budget_s=30.0), 30.0),
        (
            "30s-model",
            args.model,
            dataclasses.replace(base, budget_s=30.0, model_candidates=args.candidates),
            30.0,
        ),
    ]
    if args.candidates != 8:  # a variant: its own rows beside the default's
        runs = [(m + f"-k{args.candidates}" if ckpt is not None else m, ckpt, c, b) for m, ckpt, c, b in runs]
    if args.only:
        wanted = {m for m in args.only.split(",") if m}
        runs = [r for r in runs if r[0] in wanted or r[0].rsplit("-k", 1)[0] in wanted]
    init_cache: dict = {}
    for mode, ckpt, cfg, budget in runs:
        todo = [t for t in targets if (t["set"], t["name"], mode) not in done]
        if budget == 30.0:
            todo = [t for t in todo if t["index_in_set"] < args.sounds_30]
        if not todo:
            continue
        with Matcher(cfg, ckpt, progress=False) as matcher:
            for t in todo:
                try:
                    row = (
                        _no_search_row(matcher, t, mode, init_cache)
                        if budget is None
                        else _search_row(matcher, t, mode, budget, init_cache)
                    )
                except Exception as e:  # noqa: BLE001 - one failed sound is a row, not the end of the run
                    print(f"{mode} {t['set']}/{t['name']}: failed: {e}", flush=True)
                    continue
                rows.append(row)
                print(f"{mode:14s} {t['set']}/{t['name']}: {row['ratio']:.3f}  ({row['start']})", flush=True)
                report()
    report()
    print(table(summarise(rows)))


def _index(targets: list[dict]) -> list[dict]:
    seen: dict[str, int] = {}
    for t in targets:
        t["index_in_set"] = seen.get(t["set"], 0)
        seen[t["set"]] = t["index_in_set"] + 1
    return targets


if __name__ == "__main__":
    main()
