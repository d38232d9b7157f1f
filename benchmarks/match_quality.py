"""Benchmark: match quality against search budget, the goals of issue 18 (section 6). Not a test:
about ``sounds x budgets`` matches (72 sounds at 30 s: ~40 min on 2 cores).

Stage: benchmark. Input: four sets of target sounds, each written as a float WAV (44.1 kHz) and
matched as a new user would: ``Matcher.match_file`` (pitch detection and note length included), no
checkpoint, 2 workers, one separate match per sound and budget. Output:
``benchmarks/results/match_quality.json`` (every row and the summary, rewritten after every
match), ``match_quality.md`` (the table beside the goals), ``match_quality.png`` (median ratio per
set and budget), with ``--curve`` ``match_quality_curve.png`` (quality against time) and
``docs/images/match_<set>_<name>.png`` (target beside match, ``--spectrograms``).

Sets (``--sets``, ``--sounds N`` each; defaults 20, 20, 20, 12):

* ``presets``: real presets of ``--presets`` (``../shared/presets``; ``rglob *.vital``, order drawn
  with seed 0), each rendered reproducibly at note 60, 1 s held in a 2 s render; silent or
  unreadable ones are skipped and reported; the set is skipped when the folder is absent;
* ``t1``: random Tier-1 presets of :mod:`vitalmatch.data.sampling` (seed :data:`BENCH_SEED`, not
  the datasets' 0 nor the starting set's ``START_SET_SEED``), each at a note drawn in 48..72, 1 s
  held in 2 s; silent ones (peak < 1e-3) are replaced by the next of the stream;
* ``t23``: the same with half Tier-2 and half Tier-3 presets, rendered with their modulations and
  LFO shapes (``Preset.extras()``);
* ``other``: sounds Vital did not make (``benchmarks/other_sounds.py``: Faust instruments rendered
  by DawDreamer, played at known notes; ``pip install -e '.[bench]'``).

The metric of the goals is :func:`vitalmatch.metrics.magnitude_mel_l1` of the returned match's
full-quality render against the prepared target (``MatchResult.target``); ``ratio`` is that over
the same distance of Vital's init preset rendered by the matcher's final path at the target's
*true* note (the note it was made at), held and as long as the match is played (``note_s``,
``render_s``). Beside it: the old metric (:func:`~vitalmatch.metrics.multiscale_mel_l1` and its
init ratio), :func:`~vitalmatch.metrics.mfcc_distance`,
:func:`~vitalmatch.metrics.envelope_cosine`, evaluations and evaluations per second, the start
chosen, seconds, the note pitch detection heard and the note the match is played at against the
true one, and three failure counts (issue 18 section 3): worse than the start (the matcher's own
``distance`` against its ``distance_start``), worse than init (``ratio > 1``) and silent (peak <
1e-4). Goals at 30 s: presets <= 0.40, t1 <= 0.20,
t23 <= 0.35, other <= 0.35; medians with 95% bootstrap intervals
(:func:`vitalmatch.metrics.median_ci`).

``--clap DIR`` (a local transformers CLAP checkpoint, :mod:`vitalmatch.clap`) adds ``clap``: the
cosine similarity of the CLAP audio embeddings of the match and the target (higher is better; 1
for the same sound), and ``init_clap`` for Vital's init preset; the summary gives their medians.
Without it the rows hold None and the table says it was not computed.

``--given-note`` calls ``match_audio`` with the true note and note length instead (the search
alone, no pitch detection). ``--curve`` keeps, in the match at the longest budget, the search's best
point at 5 / 10 / 30 / 60 / 120 s (those within the budget; ``on_batch``), renders each at full
quality and scores it: the quality-against-time curve. ``--resume`` keeps the rows of an earlier
run in ``--out`` and skips their (set, sound, budget, tier, mode).

    python benchmarks/match_quality.py [--sets presets,t1,t23,other] [--sounds N]
        [--budgets 5,30,120] [--curve] [--tier T] [--given-note] [--spectrograms 4] [--resume]
        [--presets ../shared/presets] [--out benchmarks/results] [--images docs/images] [--clap DIR]

Smoke run (a few minutes): ``--sounds 2 --budgets 3 --spectrograms 1 --out /tmp/mq_smoke``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 44100
SETS = ("presets", "t1", "t23", "other")
DEFAULT_SOUNDS = {"presets": 20, "t1": 20, "t23": 20, "other": 12}
#: Median ratio to reach at 30 s (issue 18 section 6).
GOALS = {"presets": 0.40, "t1": 0.20, "t23": 0.35, "other": 0.35}
GOAL_BUDGET_S = 30.0
#: Seed of the t1 / t23 presets: neither the datasets' default (0) nor START_SET_SEED (20260).
BENCH_SEED = 1818
#: Snapshot times of ``--curve`` (seconds into the match).
CURVE_S = (5.0, 10.0, 30.0, 60.0, 120.0)
#: Targets quieter than this are silent and skipped (peak, full scale).
TARGET_SILENT = 1e-3
#: A returned match quieter than this is silent (the matcher's own rule).
MATCH_SILENT = 1e-4


# ------------------------------------------------------------------------------------------ targets
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "sound"


def _write_wav(folder: Path, name: str, audio: np.ndarray) -> Path:
    """``audio`` ``(2, T)`` float32 as a float WAV ``folder/<slug>.wav``."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(name)}.wav"
    sf.write(path, np.asarray(audio, np.float32).T, SR, subtype="FLOAT")
    return path


def _target(set_name: str, name: str, path: Path, note: int, note_s: float, render_s: float, **info) -> dict:
    return {
        "set": set_name,
        "name": name,
        "path": str(path),
        "note": int(note),
        "note_s": float(note_s),
        "render_s": float(render_s),
        **info,
    }


def _engine(reproducible: bool = True):
    """A render engine of the built-in wavetables: 1 s held in a 2 s render at 44.1 kHz."""
    from vitalmatch.synth.params import ParamRegistry
    from vitalmatch.synth.render import RenderConfig, RenderEngine
    from vitalmatch.synth.wavetables import WavetableCatalog

    catalog = WavetableCatalog.builtin()
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    config = RenderConfig(notes=(60,), note_duration_s=1.0, render_duration_s=2.0, reproducible=reproducible)
    return RenderEngine(registry, [e.table for e in catalog], config)


def preset_targets(folder: Path, n: int, wav_dir: Path) -> tuple[list[dict], list[str]]:
    """``n`` real presets of ``folder`` at note 60 (1 s held in 2 s), and the skipped ones as
    ``"name: why"`` lines. Order: ``rglob("*.vital")`` sorted, permuted with seed 0."""
    from vitalmatch.synth.export import read_vital
    from vitalmatch.synth.render import RenderError

    files = sorted(folder.rglob("*.vital"))
    files = [files[i] for i in np.random.default_rng(0).permutation(len(files))]
    engine = _engine()
    out, skipped = [], []
    for f in files:
        if len(out) >= n:
            break
        name = str(f.relative_to(folder).with_suffix(""))
        try:
            audio = engine.render_preset_dict(read_vital(f), notes=(60,))[0]
        except (ValueError, RenderError) as e:
            skipped.append(f"{name}: {str(e).splitlines()[0]}")
            continue
        peak = float(np.abs(audio).max())
        if not np.isfinite(audio).all() or peak < TARGET_SILENT:
            skipped.append(f"{name}: silent at note 60 (peak {peak:.1e})")
            continue
        path = _write_wav(wav_dir / "presets", name, audio)
        out.append(_target("presets", name, path, 60, 1.0, 2.0, source=str(f)))
    return out, skipped


def sampled_targets(set_name: str, n: int, wav_dir: Path) -> tuple[list[dict], list[str]]:
    """``n`` random presets: ``t1`` all Tier 1, ``t23`` half Tier 2 then half Tier 3 (with their
    modulations and LFO shapes); each at a note drawn in 48..72, 1 s held in 2 s; silent ones
    (or ones the synth refused) are replaced by the next preset of the stream."""
    from vitalmatch.data.sampling import PresetSampler, SamplerConfig
    from vitalmatch.synth.render import RenderError

    engine = _engine()
    tiers = [1] * n if set_name == "t1" else [2] * ((n + 1) // 2) + [3] * (n // 2)
    samplers = {t: PresetSampler(engine.registry, SamplerConfig(tier=t, seed=BENCH_SEED)) for t in set(tiers)}
    next_index = dict.fromkeys(samplers, 0)
    out, skipped = [], []
    for tier in tiers:
        while True:
            i = next_index[tier]
            next_index[tier] += 1
            preset = samplers[tier].preset(i)
            note = int(np.random.default_rng([BENCH_SEED, tier, i]).integers(48, 73))
            name = f"{preset.name}@{note}"
            try:
                audio = engine.render(preset.continuous, preset.categorical, (note,), preset.extras())[0]
            except RenderError as e:
                skipped.append(f"{name}: {str(e).splitlines()[0]}")
                continue
            peak = float(np.abs(audio).max())
            if np.isfinite(audio).all() and peak >= TARGET_SILENT:
                break
            skipped.append(f"{name}: silent (peak {peak:.1e})")
        path = _write_wav(wav_dir / set_name, name, audio)
        out.append(
            _target(set_name, name, path, note, 1.0, 2.0, tier=tier, connections=int(len(preset.modulation)))
        )
    return out, skipped


def other_targets(n: int) -> tuple[list[dict], list[str]]:
    """The first ``n`` sounds of ``benchmarks/other_sounds.py`` (rendered into its cache folder
    when missing)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import other_sounds

    rows = other_sounds.ensure_other_sounds(log=lambda line: print(line, flush=True))[:n]
    return [
        _target(
            "other",
            r["name"],
            Path(r["path"]),
            r["note"],
            r["note_s"],
            r["render_s"],
            tags=r["tags"],
            heard_when_made=r["detected_note"],
        )
        for r in rows
    ], []


# ------------------------------------------------------------------------------------------ scoring
def _mono_target(path: str) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == SR, f"{path}: {rate} Hz"
    return audio.mean(axis=1)


def _final_renders(matcher, vectors: list, note: int, note_s: float, render_s: float) -> list:
    """Full-quality mono renders ``(T,)`` (None where a render failed) of ``[(continuous,
    categorical[, extras]), ...]`` by the matcher's final path (fresh synth)."""
    from vitalmatch.search import final_task

    tasks = [
        (
            v[0],
            v[1],
            int(note),
            float(note_s),
            float(render_s),
            SR,
            *([v[2]] if len(v) > 2 and v[2] is not None else []),
        )
        for v in vectors
    ]
    return [res.value[0].mean(axis=0) if res.ok else None for res in matcher.pool.map(final_task, tasks)]


def _scores(audio: np.ndarray | None, target: np.ndarray, clap=None) -> dict:
    """New and old metric, MFCC distance and envelope cosine of mono ``audio`` against ``target``
    (both ``(T,)`` at :data:`SR`), and ``clap``: the cosine of their CLAP audio embeddings with a
    :class:`vitalmatch.clap.Clap` (None without one; NaN where the render failed)."""
    from vitalmatch.metrics import envelope_cosine, magnitude_mel_l1, mfcc_distance, multiscale_mel_l1

    if audio is None:
        nan = math.nan
        return {
            "distance": nan,
            "old": nan,
            "mfcc": nan,
            "envelope_cosine": nan,
            "clap": nan if clap is not None else None,
        }
    return {
        "distance": float(magnitude_mel_l1(audio, target, SR)),
        "old": float(multiscale_mel_l1(audio, target, SR)),
        "mfcc": float(mfcc_distance(audio, target, SR)),
        "envelope_cosine": float(envelope_cosine(audio, target, SR)),
        "clap": float(clap.similarity([audio], [target], SR)[0]) if clap is not None else None,
    }


class _Snapshots:
    """The search's best point as it was when it passed each time mark: ``on_batch``.

    Args:
        marks: seconds into the match.

    Attributes:
        points: ``{seconds: (continuous, categorical, extras or None, evals, seconds_at)}``; the
            extras (modulations) when the search passes them as a fourth item of ``best``.
    """

    def __init__(self, marks: tuple[float, ...]) -> None:
        self.marks = sorted(marks)  # not yet passed
        self.points: dict[float, tuple] = {}

    def __call__(self, evals: int, seconds: float, best: tuple) -> None:
        extras = best[3] if len(best) > 3 else None
        while self.marks and seconds >= self.marks[0]:
            self.points[self.marks.pop(0)] = (best[0], best[1], extras, evals, seconds)

    def finish(self, ref) -> dict[float, tuple]:
        """The points, with the search's final point for the marks it stopped before."""
        if ref is not None:
            for mark in self.marks:
                extras = getattr(ref, "extras", None)
                self.points[mark] = (ref.continuous, ref.categorical, extras, ref.evals, ref.seconds)
        self.marks = []
        return self.points


def match_one(matcher, target: dict, budget: float, args, init_cache: dict, clap=None) -> tuple[dict, object]:
    """One match of ``target`` at ``budget`` seconds -> (row, MatchResult); ``clap`` (a
    :class:`vitalmatch.clap.Clap` or None) scores ``clap`` and ``init_clap``."""
    curve_marks = (
        tuple(s for s in CURVE_S if s <= budget) if args.curve and budget == max(args.budgets) else ()
    )
    snapshots = _Snapshots(curve_marks) if curve_marks else None
    kwargs = {"on_batch": snapshots} if snapshots is not None else {}
    if args.given_note:
        r = matcher.match_audio(_mono_target(target["path"]), target["note"], target["note_s"], **kwargs)
    else:
        r = matcher.match_file(target["path"], **kwargs)
    # Vital's init preset at the target's true note, as long and held as the match is played
    key = (target["set"], target["name"], round(r.note_s, 4), round(r.render_s, 4))
    if key not in init_cache:
        init_vectors = matcher.registry.from_raw(_pins())
        (init_audio,) = _final_renders(matcher, [init_vectors], target["note"], r.note_s, r.render_s)
        init_cache[key] = _scores(init_audio, r.target, clap)
    init = init_cache[key]
    match_mono = r.render.mean(axis=0)
    got = _scores(match_mono, r.target, clap)
    ref = r.refinement
    ratio = got["distance"] / init["distance"] if init["distance"] > 0 else math.nan
    row = {
        "set": target["set"],
        "sound": target["name"],
        "budget_s": budget,
        "tier": matcher.config.tier,
        "mode": "given-note" if args.given_note else "file",
        "true_note": target["note"],
        "true_note_s": target["note_s"],
        "note": r.note,
        "note_s": r.note_s,
        "render_s": r.render_s,
        "detected_note": getattr(r, "detected_note", None),  # what pitch detection heard
        "pitch": _pitch_class(r.note, target["note"]),  # the played note against the true one
        "detected_pitch": (
            _pitch_class(r.detected_note, target["note"])
            if getattr(r, "detected_note", None) is not None
            else None
        ),
        "ratio": ratio,
        "distance": got["distance"],
        "init_distance": init["distance"],
        "old_ratio": got["old"] / init["old"] if init["old"] > 0 else math.nan,
        "old_distance": got["old"],
        "old_init_distance": init["old"],
        "mfcc": got["mfcc"],
        "init_mfcc": init["mfcc"],
        "envelope_cosine": got["envelope_cosine"],
        "init_envelope_cosine": init["envelope_cosine"],
        "clap": got["clap"],  # None without --clap
        "init_clap": init.get("clap"),
        # the matcher's own numbers (its metric; its init is played at the detected note)
        "matcher_distance": r.distance,
        "matcher_distance_start": r.distance_start,
        "matcher_distance_init": r.distance_init,
        "worse_than_start": bool(r.distance > r.distance_start + 1e-9),
        "worse_than_init": bool(ratio > 1.0),
        "silent": bool(float(np.abs(r.render).max()) < MATCH_SILENT),
        "start": r.start,
        "kept": r.kept,
        "seconds": r.seconds,
        "evals": ref.evals if ref else 0,
        "evals_per_s": ref.evals / ref.seconds if ref and ref.seconds > 0 else None,
        "failures": ref.failures if ref else 0,
        "stopped_by": ref.stopped_by if ref else None,
    }
    if snapshots is not None:
        points = snapshots.finish(ref)
        renders = _final_renders(matcher, [p[:3] for p in points.values()], r.note, r.note_s, r.render_s)
        row["curve"] = {
            f"{mark:g}": {
                "ratio": _scores(audio, r.target)["distance"] / init["distance"],
                "evals": int(p[-2]),
                "seconds": float(p[-1]),
                # False: on_batch gave no extras, so a Tier-2/3 point was rendered without its modulations
                "with_extras": p[2] is not None,
            }
            for (mark, p), audio in zip(points.items(), renders, strict=True)
        }
    return row, r


def _pins() -> dict:
    from vitalmatch.synth.params import reproducibility_pins

    return reproducibility_pins()


def _pitch_class(detected: int, true: int) -> str:
    """``exact``, ``octave`` (a whole number of octaves off), ``neighbour`` (1-2 semitones) or
    ``other``."""
    d = abs(int(detected) - int(true))
    if d == 0:
        return "exact"
    if d % 12 == 0:
        return "octave"
    return "neighbour" if d <= 2 else "other"


# ------------------------------------------------------------------------------------------ summary
def summarise(rows: list[dict]) -> list[dict]:
    """Per (set, budget): medians (ratio with a 95% bootstrap CI), failure counts, speed."""
    from vitalmatch.metrics import median_ci

    out = []
    keys = sorted({(r["set"], r["budget_s"]) for r in rows}, key=lambda k: (SETS.index(k[0]), k[1]))
    for set_name, budget in keys:
        rs = [r for r in rows if r["set"] == set_name and r["budget_s"] == budget]
        med, lo, hi = median_ci([r["ratio"] for r in rs])
        speeds = [r["evals_per_s"] for r in rs if r["evals_per_s"]]

        def median(key: str, rs=rs) -> float:
            vals = [r.get(key) for r in rs]  # rows of a run before a key existed lack it
            vals = [v for v in vals if v is not None and not math.isnan(v)]
            return float(np.median(vals)) if vals else math.nan

        goal = GOALS[set_name]
        out.append(
            {
                "set": set_name,
                "budget_s": budget,
                "n": len(rs),
                "ratio": med,
                "ratio_ci": [lo, hi],
                "goal": goal,
                "met": bool(med <= goal) if budget == GOAL_BUDGET_S else None,
                "old_ratio": median("old_ratio"),
                "mfcc": median("mfcc"),
                "envelope_cosine": median("envelope_cosine"),
                "clap": median("clap"),  # NaN: not computed (no --clap) or every render failed
                "init_clap": median("init_clap"),
                "worse_than_start": sum(r["worse_than_start"] for r in rs),
                "worse_than_init": sum(r["worse_than_init"] for r in rs),
                "silent": sum(r["silent"] for r in rs),
                "pitch_exact": sum(r["pitch"] == "exact" for r in rs),
                "detected_exact": sum(r.get("detected_pitch") == "exact" for r in rs),
                "evals_per_s": float(np.median(speeds)) if speeds else None,
                "seconds": median("seconds"),
                "curve": _curve_medians(rs),
            }
        )
    return out


def _curve_medians(rows: list[dict]) -> dict:
    marks = sorted({m for r in rows for m in r.get("curve", {})}, key=float)
    return {
        m: float(np.median([r["curve"][m]["ratio"] for r in rows if m in r.get("curve", {})])) for m in marks
    }


def table(summary: list[dict], clap_note: str | None = None) -> str:
    """The summary as a markdown table; ``clap_note``: a line under it on the CLAP column
    (default: "not computed" when no row of the summary has a CLAP median)."""
    head = (
        "| set | budget | n | ratio (magnitude mel) [95% CI] | goal at 30 s | old-metric ratio | MFCC | "
        "envelope cos | CLAP cos (init) | worse than start | worse than init | silent | "
        "true note heard / played | evals/s | s |"
    )
    lines = [head, "|" + "---|" * 15]
    for s in summary:
        met = "" if s["met"] is None else (" met" if s["met"] else " not met")
        speed = f"{s['evals_per_s']:.1f}" if s["evals_per_s"] else "-"
        lo, hi = s["ratio_ci"]
        ci = f" [{lo:.2f}, {hi:.2f}]" if not math.isnan(lo) else ""
        cells = [
            s["set"],
            f"{s['budget_s']:g} s",
            s["n"],
            f"{s['ratio']:.2f}x{ci}",
            f"<= {s['goal']:.2f}x{met}",
            f"{s['old_ratio']:.2f}x",
            f"{s['mfcc']:.1f}",
            f"{s['envelope_cosine']:.3f}",
            _clap_cell(s),
            s["worse_than_start"],
            s["worse_than_init"],
            s["silent"],
            f"{s['detected_exact']} / {s['pitch_exact']} of {s['n']}",
            speed,
            f"{s['seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if clap_note is None and not any(_has_clap(s) for s in summary):
        clap_note = CLAP_NOT_GIVEN
    if clap_note:
        lines += ["", f"CLAP cos: {clap_note}."]
    curves = [s for s in summary if s["curve"]]
    if curves:
        lines += [
            "",
            "Quality against time (median ratio of the search's best point, full-quality render):",
            "",
        ]
        for s in curves:
            pts = ", ".join(f"{m} s: {v:.2f}x" for m, v in s["curve"].items())
            lines.append(f"- {s['set']} (match of {s['budget_s']:g} s): {pts}")
    return "\n".join(lines)


#: The table's note when the CLAP column is empty.
CLAP_NOT_GIVEN = "not computed (no --clap DIR given)"


def _has_clap(s: dict) -> bool:
    value = s.get("clap")
    return value is not None and not math.isnan(value)


def _clap_cell(s: dict) -> str:
    if not _has_clap(s):
        return "-"
    init = s.get("init_clap")
    return f"{s['clap']:.3f}" + (f" ({init:.3f})" if init is not None and not math.isnan(init) else "")


# ------------------------------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_budgets(summary: list[dict], path: Path) -> None:
    """Median ratio (with its CI) against budget, one line per set, the goals dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, set_name in enumerate(SETS):
        ss = [s for s in summary if s["set"] == set_name]
        if not ss:
            continue
        x = [s["budget_s"] * (1 + 0.04 * (i - 1.5)) for s in ss]  # side by side, not on top
        y = [s["ratio"] for s in ss]
        err = np.array(
            [[max(s["ratio"] - s["ratio_ci"][0], 0), max(s["ratio_ci"][1] - s["ratio"], 0)] for s in ss]
        )
        err = np.nan_to_num(err).T
        line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=set_name)
        ax.axhline(GOALS[set_name], color=line[0].get_color(), ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("budget per sound (s)")
    ax.set_ylabel("median distance / init distance")
    ax.set_title("match quality (magnitude mel L1); dashed: goals at 30 s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(summary: list[dict], path: Path) -> None:
    """Per set: the search's best point against time (median ratio), the separate matches of each
    budget as points, the goal dashed."""
    plt = _plt()
    sets = [s for s in SETS if any(row["set"] == s for row in summary)]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.6), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=True):
        ss = [s for s in summary if s["set"] == set_name]
        for s in ss:
            if s["curve"]:
                ax.plot(
                    [float(m) for m in s["curve"]],
                    list(s["curve"].values()),
                    marker=".",
                    label="best point so far",
                )
        ax.plot([s["budget_s"] for s in ss], [s["ratio"] for s in ss], "o", label="returned, separate match")
        ax.axhline(GOALS[set_name], color="grey", ls="--", lw=1, label="goal at 30 s")
        ax.set_xscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("median distance / init distance")
        ax.set_title(set_name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_spectrogram(target: np.ndarray, match: np.ndarray, title: str, path: Path) -> None:
    """Target beside match: log magnitude mel (the metric's 25 ms scale), both divided by the
    target's peak, one colour scale."""
    from vitalmatch.features import mel_magnitude
    from vitalmatch.metrics import MEL_LOG_FLOOR, magnitude_scale_configs

    plt = _plt()
    config = magnitude_scale_configs(SR)[1]
    peak = float(np.abs(target).max()) or 1.0
    mels = [np.log(mel_magnitude(x / peak, config).numpy() + MEL_LOG_FLOOR) for x in (target, match)]
    vmin, vmax = float(min(m.min() for m in mels)), float(max(m.max() for m in mels))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    hop_s = config.hop_length / SR
    for ax, mel, label in zip(axes, mels, ("target", "match"), strict=True):
        ax.imshow(
            mel, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
            extent=(0, mel.shape[1] * hop_s, 0, mel.shape[0]),
        )  # fmt: skip
        ax.set_title(label)
        ax.set_xlabel("seconds")
    axes[0].set_ylabel(f"mel band ({config.n_mels})")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ main
def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, path)  # atomic: an interrupt never leaves half a file


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated of " + ", ".join(SETS))
    ap.add_argument("--sounds", type=int, default=None, help="sounds per set (default 20, 20, 20, 12)")
    ap.add_argument("--budgets", default="30", help="seconds per match, comma-separated (e.g. 5,30,120)")
    ap.add_argument(
        "--curve", action="store_true", help="quality-against-time snapshots in the longest budget"
    )
    ap.add_argument("--tier", type=int, default=None, help="search tier (default: MatchConfig's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--given-note", action="store_true", help="match_audio with the true note (no pitch detection)"
    )
    ap.add_argument("--spectrograms", type=int, default=4, help="target/match images (one per set in turn)")
    ap.add_argument("--resume", action="store_true", help="keep the rows in --out and skip them")
    ap.add_argument("--presets", type=Path, default=ROOT.parent / "shared/presets")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    ap.add_argument(
        "--images",
        type=Path,
        default=None,
        help="default: docs/images (with the default --out), else OUT/images",
    )
    ap.add_argument(
        "--clap",
        type=Path,
        default=None,
        help="local CLAP checkpoint folder (transformers ClapModel): adds the CLAP cosine per row",
    )
    args = ap.parse_args()
    args.sets = [s for s in args.sets.split(",") if s]
    bad = [s for s in args.sets if s not in SETS]
    if bad:
        ap.error(f"unknown set(s) {', '.join(bad)}; choose from {', '.join(SETS)}")
    try:
        args.budgets = sorted({float(b) for b in args.budgets.split(",") if b})
    except ValueError:
        ap.error(f"--budgets must be numbers of seconds, got {args.budgets!r}")
    if not args.budgets or min(args.budgets) <= 0:
        ap.error("--budgets must be positive seconds")
    if args.sounds is not None and args.sounds < 1:
        ap.error("--sounds must be >= 1")
    if args.images is None:
        default_out = args.out.resolve() == (ROOT / "benchmarks/results").resolve()
        args.images = ROOT / "docs/images" if default_out else args.out / "images"
    return args


def main() -> None:
    args = _parse()
    from vitalmatch.match import MatchConfig, Matcher
    from vitalmatch.match.start_set import cache_dir

    clap = None
    if args.clap is not None:  # before any target or match: a broken folder stops here
        from vitalmatch.clap import Clap

        try:
            clap = Clap(args.clap)
        except ValueError as e:
            sys.exit(f"error: {e}")
    clap_note = (
        None
        if clap is None
        else f"cosine of the CLAP audio embeddings of match and target ({args.clap}, {clap.dim} "
        "dimensions), Vital's init preset in brackets; higher is better"
    )

    wav_dir = cache_dir() / "bench" / "match_quality"
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / "match_quality.json", args.out / "match_quality.md"
    t_all = time.perf_counter()

    # 1. targets (written as WAVs, as a user would hand them over)
    targets: list[dict] = []
    skipped: dict[str, list[str]] = {}
    for set_name in args.sets:
        n = args.sounds or DEFAULT_SOUNDS[set_name]
        t0 = time.perf_counter()
        if set_name == "presets":
            if not args.presets.is_dir():
                print(f"presets: skipped, no folder {args.presets}", flush=True)
                skipped["presets"] = [f"no folder {args.presets}"]
                continue
            got, skip = preset_targets(args.presets, n, wav_dir)
        elif set_name == "other":
            try:
                got, skip = other_targets(n)
            except ImportError:
                print("other: skipped, DawDreamer is not installed (pip install -e '.[bench]')", flush=True)
                skipped["other"] = ["DawDreamer is not installed"]
                continue
        else:
            got, skip = sampled_targets(set_name, n, wav_dir)
        targets += got
        skipped[set_name] = skip
        print(
            f"{set_name}: {len(got)} sounds ({len(skip)} skipped) in {time.perf_counter() - t0:.0f} s"
            + "".join(f"\n  skipped {s}" for s in skip),
            flush=True,
        )
    if not targets:
        sys.exit("error: no target sounds (see the lines above)")

    # 2. matches
    base = MatchConfig(budget_s=args.budgets[0], workers=args.workers, seed=0)
    if args.tier is not None:
        base = dataclasses.replace(base, tier=args.tier)
    mode = "given-note" if args.given_note else "file"
    rows: list[dict] = []
    failed: list[str] = []
    if args.resume and json_path.is_file():
        rows = json.loads(json_path.read_text()).get("rows", [])
        print(f"resume: {len(rows)} rows kept from {json_path}", flush=True)
    done = {(r["set"], r["sound"], r["budget_s"], r["tier"], r["mode"]) for r in rows}
    sets_in_run = list(dict.fromkeys(t["set"] for t in targets))
    shown = {(sets_in_run[i % len(sets_in_run)], i // len(sets_in_run)) for i in range(args.spectrograms)}
    index_in_set = {
        (s, t["name"]): i for s in sets_in_run for i, t in enumerate(x for x in targets if x["set"] == s)
    }

    def report() -> dict:
        current = [r for r in rows if r["tier"] == base.tier and r["mode"] == mode]
        summary = summarise(current)
        data = {
            "machine": f"{platform.node()} {os.cpu_count()} cpus",
            "seconds": time.perf_counter() - t_all,
            "settings": {k: str(v) for k, v in vars(args).items()} | {"tier": base.tier, "seed": BENCH_SEED},
            "goals_at_30_s": GOALS,
            "skipped": skipped,
            "failed": failed,
            "summary": summary,
            "rows": rows,
        }
        _write_json(json_path, data)
        md_path.write_text(
            f"# match quality (issue 18), tier {base.tier}, mode {mode}\n\n"
            + table(summary, clap_note)
            + "\n"
        )
        return data

    todo = [
        (target, budget)
        for target in targets
        for budget in args.budgets
        if (target["set"], target["name"], budget, base.tier, mode) not in done
    ]
    init_cache: dict = {}
    if todo:  # the matcher's pool and starting set cost ~10-40 s to start
        with Matcher(base, None, progress=True) as matcher:
            for target, budget in todo:
                matcher.config = dataclasses.replace(base, budget_s=budget)
                try:
                    row, r = match_one(matcher, target, budget, args, init_cache, clap)
                except Exception as e:  # one broken match must not end a run of hours: listed, skipped
                    failed.append(
                        f"{target['set']}/{target['name']} at {budget:g} s: {type(e).__name__}: {e}"
                    )
                    print(
                        f"{target['set']:7} {target['name'][:30]:30} {budget:5g} s  FAILED: {e}", flush=True
                    )
                    report()
                    continue
                if r.interrupted:  # Ctrl-C: a partial match is no measurement; keep what is done
                    print("interrupted: the rows so far are kept (--resume goes on)", flush=True)
                    break
                rows.append(row)
                report()
                print(
                    f"{row['set']:7} {row['sound'][:30]:30} {budget:5g} s  ratio {row['ratio']:.3f} "
                    f"(old {row['old_ratio']:.3f})  note {row['note']}/{row['true_note']}  "
                    f"{row['evals']} evals ({row['evals_per_s'] or 0:.1f}/s)  start {row['start'][:28]}"
                    + ("  WORSE THAN INIT" if row["worse_than_init"] else "")
                    + ("  SILENT" if row["silent"] else ""),
                    flush=True,
                )
                is_shown = (target["set"], index_in_set[target["set"], target["name"]]) in shown
                if is_shown and budget == max(args.budgets):
                    args.images.mkdir(parents=True, exist_ok=True)
                    image = args.images / f"match_{target['set']}_{_slug(target['name'])}.png"
                    plot_spectrogram(
                        r.target,
                        r.render.mean(axis=0),
                        f"{target['set']} / {target['name']} ({budget:g} s): {row['ratio']:.2f}x init "
                        f"(magnitude mel), {row['old_ratio']:.2f}x (old metric)",
                        image,
                    )
                    print(f"wrote {image}", flush=True)
    data = report()
    print(table(data["summary"], clap_note))
    plot_budgets(data["summary"], args.out / "match_quality.png")
    written = [json_path, md_path, args.out / "match_quality.png"]
    if any(s["curve"] for s in data["summary"]):
        plot_curve(data["summary"], args.out / "match_quality_curve.png")
        written.append(args.out / "match_quality_curve.png")
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
