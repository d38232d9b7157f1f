"""Benchmark: what one starting candidate costs a match, piece by piece (issue 20, short budgets).

Usage::

    python benchmarks/start_cost.py [--rows 12] [--model] [--repeat 2] [--out benchmarks/results]

A match scores its starting candidates (the init preset, the start set's nearest presets, the
network's candidates) on the search's workers. Candidates differ in structure (wavetables,
modulations, LFO shapes, custom tables), so each is a full load in the worker
(:meth:`~vitalmatch.synth.render.RenderEngine.update` falls back to
:meth:`~vitalmatch.synth.render.RenderEngine.load`), where a search step of a Tier-2/3 preset
only sets the controls that moved. This script evaluates ``--rows`` presets of the built-in
starting set (and with ``--model`` the default model's candidates for a start-set render) in a
search worker of this process (:class:`vitalmatch.search.worker._Searcher`, one core) against a
2-s target at MIDI 60, each ``--repeat`` times in a row, and times the pieces of each first
evaluation (wall time, this thread):

* ``preset_json``: the preset dict (init preset + values + wavetables copied in, modulations,
  LFOs, the sample);
* ``dumps``: ``json.dumps`` of it; ``load_json``: the synth's parse and load;
* ``set``: the registry controls set again through the handles; ``settle``: the silent render
  after a load;
* ``render``: ``render_note`` (its flush included); ``loss``: features and loss of the render.

Beside them, ``load_json_init_tables``: the same ``load_json`` with the init preset's wavetables in
place of the candidate's (what the candidate's own tables cost the synth to compute).

The second evaluation of the same candidate (no load: nothing changed) is the floor. Writes
``start_cost.json``; prints medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PIECES = ("preset_json", "dumps", "load_json", "set", "settle", "render", "loss")
#: Not part of an evaluation: ``load_json`` of the same preset with the init preset's wavetables.
CONTROL = "load_json_init_tables"


def timed_evaluate(searcher, cont, cat, extras, target) -> dict[str, float]:
    """One evaluation as :meth:`_Searcher.evaluate` does it, with a full load, timed by piece
    (seconds), and the control load (seconds, see the module docstring). The load's steps are
    those of :meth:`RenderEngine.load`."""
    from vitalmatch.search.loss import search_features, search_loss
    from vitalmatch.synth.render import PresetExtras

    eng = searcher.engine
    t = {}
    s = time.perf_counter()
    preset = eng.preset_json(cont, cat, extras)
    t["preset_json"] = time.perf_counter() - s
    plain = dict(
        preset, settings=dict(preset["settings"], wavetables=eng._init_preset["settings"]["wavetables"])
    )
    plain_text = json.dumps(plain)
    s = time.perf_counter()
    eng.synth.load_json(plain_text)
    control = time.perf_counter() - s
    s = time.perf_counter()
    text = json.dumps(preset)
    t["dumps"] = time.perf_counter() - s
    s = time.perf_counter()
    ok = eng.synth.load_json(text)
    t["load_json"] = time.perf_counter() - s
    assert ok, "the synth rejected a start-set preset"
    s = time.perf_counter()
    settings = preset["settings"]
    for name, handle in eng._controls:
        handle.set(settings[name])
    eng.synth.set_bpm(eng.config.bpm)
    t["set"] = time.perf_counter() - s
    s = time.perf_counter()
    eng.settle()
    t["settle"] = time.perf_counter() - s
    x = extras if extras is not None else PresetExtras()
    eng._loaded = eng.registry.to_raw(cont, cat)
    eng._loaded_structure = x.structure_key()
    eng._loaded_amounts = [float(c.amount) for c in x.modulations]
    s = time.perf_counter()
    audio = eng.render_note(int(target.note), float(target.note_s), float(target.render_s))
    t["render"] = time.perf_counter() - s
    s = time.perf_counter()
    mono = audio.mean(axis=0)[: len(target.audio)]
    feats = search_features(mono, target.sample_rate, "fine", target.peak)
    ref = search_features(target.audio, target.sample_rate, "fine", target.peak)
    search_loss(feats, ref, 0.0)
    t["loss"] = time.perf_counter() - s
    return t, control


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--model", action="store_true", help="also the default model's candidates")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)

    import torch

    from vitalmatch.match import MatchConfig, Matcher
    from vitalmatch.search import SearchTarget
    from vitalmatch.search.worker import _Searcher

    torch.set_num_threads(1)
    ckpt = None
    if args.model:
        from vitalmatch.learn.default_model import DEFAULT_MODEL

        ckpt = DEFAULT_MODEL
    rate = 44100
    with Matcher(MatchConfig(workers=1), ckpt) as m:
        registry, tables, starts = m.registry, m.tables, m.starts
        rows = list(range(min(args.rows, len(starts))))
        points = [("start set", *m._from_start_set(r)) for r in rows]
        ref_c, ref_k, ref_x = points[0][1:]
        searcher = _Searcher(registry, tables, rate)
        from vitalmatch.synth.render import RenderConfig, RenderEngine

        eng = RenderEngine(registry, tables, RenderConfig(sample_rate=rate, notes=(60,)))
        target_audio = eng.render(ref_c, ref_k, (60,), ref_x)[0].mean(axis=0)
        target = SearchTarget("start-cost", target_audio.astype(np.float32), rate, 60, 1.0)
        if m.predictor is not None:
            preds = m.predictor.predict_candidates(target_audio, rate, 8, 0)
            points += [("model", p.continuous, p.categorical, None) for p in preds]
    searcher.evaluate(*m._init_vectors, target)  # warm: the target's features, first-call costs
    pieces: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    totals: dict[str, list[float]] = defaultdict(list)
    again: dict[str, list[float]] = defaultdict(list)
    for kind, c, k, x in points:
        searcher.evaluate(*m._init_vectors, target)  # as in a match: the last point was another
        t, control = timed_evaluate(searcher, c, k, x, target)
        for name, v in t.items():
            pieces[kind][name].append(v)
        pieces[kind][CONTROL].append(control)
        totals[kind].append(sum(t.values()))
        for _ in range(args.repeat - 1):
            s = time.perf_counter()
            searcher.evaluate(c, k, target, x)
            again[kind].append(time.perf_counter() - s)
    out = {}
    for kind in pieces:
        med = {n: statistics.median(pieces[kind][n]) for n in (*PIECES, CONTROL)}
        out[kind] = {
            "n": len(totals[kind]),
            "full_load_s": statistics.median(totals[kind]),
            "no_load_s": statistics.median(again[kind]) if again[kind] else None,
            "pieces_s": med,
        }
        shown = ", ".join(f"{n} {1000 * v:.0f}" for n, v in med.items())
        print(
            f"{kind:10s} n={len(totals[kind])}: full load {1000 * out[kind]['full_load_s']:.0f} ms "
            f"(again, no load: {1000 * (out[kind]['no_load_s'] or 0):.0f} ms); ms: {shown}",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "start_cost.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
