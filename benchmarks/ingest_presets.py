"""Benchmark: ingesting real presets, and how the ingested vectors sound against the files.

Usage::

    python benchmarks/ingest_presets.py [--presets ../shared/presets] [--no-render] [--out benchmarks/results]

What it measures:

1. ``vitalmatch.data.ingest.ingest`` over every ``.vital`` / ``.vitalbank`` under ``--presets``:
   wall time, presets parsed, failures by reason, presets with out-of-range values (per
   parameter), unknown controls, skipped modulation slots, custom wavetables added, LFO-shape
   and sample table sizes.
2. (unless ``--no-render``) for every parsed preset, one note (60, 1 s held, 1.5 s at 22.05 kHz)
   rendered twice through the same reproducible engine: from the stored vectors
   (``RenderEngine.render(cont, cat, extras=...)``, what a dataset row holds) and from the original
   file (``RenderEngine.render_preset_dict``). The distance is
   :func:`vitalmatch.metrics.multiscale_mel_l1` on the mono mix (0 = identical spectra). For
   presets that differ, the file is rendered again with one known loss undone at a time, to name
   the reason: ``line_mapping`` (modulation curves removed from the file), ``clamp`` (the file's
   out-of-range values clamped), ``bypass`` (bypassed slots removed); and the vectors are rendered
   in float64 (``float32``: the stored unit values are float32, Vital's controls float32 raw
   values, so some raw values come back a few float32 steps off). A reason is given when undoing it
   removes at least 90% of the distance.

Everything is written as JSON too (``ingest_presets.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: Distances at or below this count as "the same sound" (renders of the same preset through the
#: reproducible engine are bit-identical, distance exactly 0).
SAME = 1e-3


def _mono(audio: np.ndarray) -> np.ndarray:
    return audio[0].mean(axis=0)


def _no_line_mapping(p: dict, parsed, registry) -> None:
    for m in p["settings"].get("modulations", []):
        if isinstance(m, dict):
            m.pop("line_mapping", None)


def _clamped(p: dict, parsed, registry) -> None:
    for name in parsed.out_of_range:
        spec = registry[name]
        p["settings"][name] = spec.clamp(p["settings"].get(name, spec.default))


def _no_bypassed(p: dict, parsed, registry) -> None:
    for k in range(len(p["settings"].get("modulations", []))):
        if p["settings"].get(f"modulation_{k + 1}_bypass", 0) > 0.5:
            p["settings"]["modulations"][k] = {"source": "", "destination": ""}


def _float64_units(original: dict, registry) -> np.ndarray:
    """The continuous vector of ``original`` in float64 (as :func:`finish_preset` computes it)."""
    s = original["settings"]
    out = []
    for spec in registry.continuous:
        v = s.get(spec.name, spec.default)
        out.append(spec.to_unit(float(v)) if isinstance(v, int | float) else spec.to_unit(spec.default))
    return np.array(out, dtype=np.float64)


def _ablations(original: dict, parsed, registry) -> dict[str, dict]:
    """Copies of ``original`` with one known loss of the vectors undone each (and all together)."""
    s = original["settings"]
    fixes = {}
    if any(isinstance(m, dict) and "line_mapping" in m for m in s.get("modulations", [])):
        fixes["line_mapping"] = _no_line_mapping
    if parsed.out_of_range:
        fixes["clamp"] = _clamped
    if any("bypassed" in r for r in parsed.skipped_modulations):
        fixes["bypass"] = _no_bypassed
    out = {}
    for name, fix in fixes.items():
        out[name] = copy.deepcopy(original)
        fix(out[name], parsed, registry)
    if len(fixes) > 1:
        out["all"] = copy.deepcopy(original)
        for fix in fixes.values():
            fix(out["all"], parsed, registry)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=str(REPO.parent / "shared" / "presets"))
    parser.add_argument("--no-render", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="render only the first N presets")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    from vitalmatch.data.ingest import ingest
    from vitalmatch.metrics import multiscale_mel_l1
    from vitalmatch.synth.preset_file import read_presets
    from vitalmatch.synth.render import RenderConfig, RenderEngine, RenderError

    plan = ingest([args.presets])
    print("\n".join(plan.summary()))
    presets = [p.preset for p in plan.presets]
    result: dict = {
        "command": "python benchmarks/ingest_presets.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "presets_dir": args.presets,
        "files": len(plan.files),
        "parsed": len(presets),
        "failed": len(plan.failures),
        "failures_by_reason": dict(plan.failure_reasons()),
        "ingest_seconds": round(plan.seconds, 3),
        "custom_wavetables_added": plan.custom_tables,
        "catalog_size": len(plan.catalog),
        "presets_with_custom_wavetables": sum(1 for p in presets if p.custom_wavetables),
        "lfo_shapes": len(plan.lfo_shapes),
        "samples": len(plan.samples),
        "presets_with_out_of_range": sum(1 for p in presets if p.out_of_range),
        "out_of_range_by_parameter": dict(Counter(k for p in presets for k in p.out_of_range)),
        "presets_with_unknown_controls": sum(1 for p in presets if p.unknown_controls),
        "unknown_controls": dict(Counter(k for p in presets for k in p.unknown_controls)),
        "modulations": int(sum(len(p.modulation) for p in presets)),
        "skipped_modulations": dict(
            Counter(r.split(": ", 1)[-1] for p in presets for r in p.skipped_modulations)
        ),
    }
    print(f"failures by reason: {result['failures_by_reason']}")
    print(f"out of range: {result['out_of_range_by_parameter']}")
    print(f"unknown controls: {result['unknown_controls']}")

    if not args.no_render:
        render = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=1.0, render_duration_s=1.5)
        engine = RenderEngine(plan.registry, [e.table for e in plan.catalog], render)
        originals = {}
        for src in plan.files:
            for pf in read_presets(src.path, src.file)[0]:
                originals[pf.file] = pf.preset
        rows = []
        start = time.perf_counter()
        todo = list(enumerate(presets))[: args.limit or None]
        for i, p in todo:
            row = {"file": p.file}
            try:
                mine = engine.render(p.continuous, p.categorical, extras=plan.extras(i))
                theirs = engine.render_preset_dict(originals[p.file])
            except RenderError as e:
                row["error"] = str(e)
                rows.append(row)
                continue
            d = float(multiscale_mel_l1(_mono(mine), _mono(theirs), render.sample_rate))
            row["distance"] = d
            row["peak"] = float(np.abs(theirs).max())
            if d > SAME:
                fixed = {}
                for why, variant in _ablations(originals[p.file], p, plan.registry).items():
                    alt = engine.render_preset_dict(variant)
                    fixed[why] = float(multiscale_mel_l1(_mono(mine), _mono(alt), render.sample_rate))
                # the vectors in float64 (the stored ones are float32) against the file
                cont64 = _float64_units(originals[p.file], plan.registry)
                alt = engine.render(cont64, p.categorical, extras=plan.extras(i))
                fixed["float32"] = float(multiscale_mel_l1(_mono(alt), _mono(theirs), render.sample_rate))
                row["ablations"] = fixed
                named = [w for w, v in fixed.items() if w != "all" and v <= 0.1 * d]
                if not named and fixed.get("all", d) <= 0.1 * d:
                    named = ["combined"]
                row["reason"] = "+".join(named) if named else "unexplained"
            rows.append(row)
        seconds = time.perf_counter() - start
        dist = np.array([r["distance"] for r in rows if "distance" in r])
        reasons = Counter(r.get("reason", "same") for r in rows if "distance" in r)
        result["render"] = {
            "config": "note 60, 1.0 s held, 1.5 s at 22050 Hz; multiscale_mel_l1 on the mono mix",
            "rendered": int(len(dist)),
            "errors": [r for r in rows if "error" in r],
            "seconds": round(seconds, 1),
            "identical": int((dist == 0).sum()),
            "within_1e-3": int((dist <= SAME).sum()),
            "quantiles": {q: float(np.quantile(dist, q)) for q in (0.5, 0.75, 0.9, 0.95, 1.0)}
            if len(dist)
            else {},
            "reasons": dict(reasons),
            "differing": [r for r in rows if r.get("distance", 0) > SAME],
        }
        rr = result["render"]
        print(
            f"render: {rr['rendered']} presets in {rr['seconds']} s; identical {rr['identical']}, "
            f"<= {SAME:g}: {rr['within_1e-3']}; quantiles {rr['quantiles']}"
        )
        print(f"reasons: {rr['reasons']}")
        for r in rr["differing"]:
            print(f"  {r['distance']:.4f} {r['reason']:>14} {r['file']}  {r.get('ablations')}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest_presets.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'ingest_presets.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
