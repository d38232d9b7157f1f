"""Benchmark: which modulation destinations crash, hang or poison the synth (the CRASHING sweep).

Usage::

    python benchmarks/modulation_sweep.py [--sources lfo_1 env_2 random_1 note velocity]
        [--amounts 1 -1] [--limit N] [--out benchmarks/results/modulation_sweep.json]

For every destination of :func:`vitalmatch.synth.modulation.destinations` (all 428, the meta
``modulation_N_amount`` / ``_power`` ones included), every source family given and every
amount, one preset is rendered: the init preset with all 15 modules switched on (3 oscillators,
the sample, both filters and the nine effects) and that single connection. Each render runs in
its own forked child (``RenderEngine`` with ``RenderConfig.reproducible``), so a segfault costs
that render only and comes back as :class:`~vitalmatch.synth.render.RenderError`; a render that
takes longer than ``--timeout`` seconds is killed and counted as a hang. Non-finite output (NaN
or Inf) is counted too, and so is a peak at the engine's output clamp (2.1, vita-facts §4).

The connection is written into the preset JSON (not through ``connect_modulation``), as every
vitalmatch render does. The result (the crashing destinations, per family and amount) belongs in
``vitalmatch.synth.modulation.CRASHING`` and docs/vita-facts.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vitalmatch.synth import render as render_module
from vitalmatch.synth.modulation import Connection, destinations
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import PresetExtras, RenderConfig, RenderEngine, RenderError
from vitalmatch.synth.wavetables import WavetableCatalog

SWITCHES = (
    "osc_1_on",
    "osc_2_on",
    "osc_3_on",
    "sample_on",
    "filter_1_on",
    "filter_2_on",
    "filter_fx_on",
    "chorus_on",
    "compressor_on",
    "delay_on",
    "distortion_on",
    "eq_on",
    "flanger_on",
    "phaser_on",
    "reverb_on",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sources", nargs="+", default=["lfo_1", "env_2", "random_1", "note", "velocity"])
    ap.add_argument("--amounts", nargs="+", type=float, default=[1.0, -1.0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N destinations (smoke runs)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds before a render counts as hung")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/modulation_sweep.json"))
    args = ap.parse_args()

    # A hung child is killed after this (the engine reads the module constant per render).
    render_module.FORK_TIMEOUT_PER_NOTE_S = args.timeout
    catalog = WavetableCatalog.builtin()
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    config = RenderConfig(
        sample_rate=22050, notes=(60,), note_duration_s=0.3, render_duration_s=0.5, settle_duration_s=0.1
    )
    engine = RenderEngine(registry, [e.table for e in catalog], config)
    cont, cat = registry.from_raw({name: 1.0 for name in SWITCHES})
    dests = list(destinations())[: args.limit]
    total = len(dests) * len(args.sources) * len(args.amounts)
    print(f"{total} renders: {len(dests)} destinations x {args.sources} x amounts {args.amounts}", flush=True)

    base = engine.render(cont, cat)
    crashes, hangs, nonfinite, clamped = [], [], [], []
    t0 = time.perf_counter()
    done = 0
    for src in args.sources:
        for amount in args.amounts:
            for dst in dests:
                case = {"source": src, "destination": dst, "amount": amount}
                extras = PresetExtras(modulations=(Connection(src, dst, amount),))
                try:
                    audio = engine.render(cont, cat, extras=extras)
                except RenderError as exc:
                    (hangs if "hung" in str(exc) else crashes).append({**case, "error": str(exc)})
                else:
                    if not np.all(np.isfinite(audio)):
                        nonfinite.append(case)
                    elif float(np.max(np.abs(audio))) >= 2.09:
                        clamped.append(case)
                done += 1
                if done % 200 == 0 or done == total:
                    rate = done / (time.perf_counter() - t0)
                    print(
                        f"{done}/{total} ({rate:.1f}/s, ~{(total - done) / rate / 60:.1f} min left): "
                        f"{len(crashes)} crashes, {len(hangs)} hangs, {len(nonfinite)} NaN/Inf",
                        flush=True,
                    )
    seconds = time.perf_counter() - t0
    result = {
        "vita_version": registry.vita_version,
        "render": {"sample_rate": config.sample_rate, "note_s": 0.3, "render_s": 0.5, "note": 60},
        "modules_on": list(SWITCHES),
        "sources": args.sources,
        "amounts": args.amounts,
        "destinations": len(dests),
        "renders": total,
        "seconds": round(seconds, 1),
        "base_peak": float(np.max(np.abs(base))),
        "crashes": crashes,
        "hangs": hangs,
        "nonfinite": nonfinite,
        "at_output_clamp": clamped,
        "crashing_destinations": sorted({c["destination"] for c in crashes + hangs + nonfinite}),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(
        f"done in {seconds / 60:.1f} min: {len(crashes)} crashes, {len(hangs)} hangs, "
        f"{len(nonfinite)} NaN/Inf, {len(clamped)} at the output clamp; "
        f"crashing destinations: {result['crashing_destinations']}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
