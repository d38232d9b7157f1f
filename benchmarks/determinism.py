"""Benchmark: which effects and sources render differently from one synth to the next, and whether
the forked renders of ``RenderEngine`` remove it, measured in one run.

Usage::

    python benchmarks/determinism.py [--out benchmarks/results]

For the init preset (random phases pinned to 0) with one effect switched on (or one modulation
source connected to filter 1's cutoff), the max |difference| between two renders (note 60, 1 s
held, 2 s at 44.1 kHz):

* ``reused``: the same synth, loaded and rendered twice;
* ``fresh``: two new ``vita.Synth()`` in this process;
* ``forked``: ``RenderEngine.render`` twice (children forked from one template);
* ``processes``: ``RenderEngine.render`` in two fresh worker processes.

Writes ``determinism.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vitalmatch.synth.modulation import Connection
from vitalmatch.synth.params import ParamRegistry, reproducibility_pins
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.render import PresetExtras, RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import WavetableCatalog

EFFECTS = ("chorus", "compressor", "delay", "distortion", "eq", "filter_fx", "flanger", "phaser", "reverb")
SOURCES = ("lfo_1", "random_1", "random", "env_2")
CONFIG = RenderConfig(notes=(60,))
_ENGINE: RenderEngine | None = None


def _setup():
    catalog = WavetableCatalog.builtin()
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    return registry, [e.table for e in catalog]


def cases(registry):
    """``[(name, continuous, categorical, extras)]``: one effect on, or one source on the cutoff."""
    base_c, base_k = registry.defaults()
    for name, raw in reproducibility_pins().items():
        if name in registry:
            base_c[registry.locate(name)[1]] = registry[name].to_unit(raw)
    base_k[registry.locate("filter_1_on")[1]] = 1
    out = [("init", base_c, base_k, None)]
    for fx in EFFECTS:
        k = base_k.copy()
        k[registry.locate(f"{fx}_on")[1]] = 1
        out.append((fx, base_c, k, None))
    for src in SOURCES:
        extras = PresetExtras(modulations=(Connection(src, "filter_1_cutoff", 0.5, bipolar=True),))
        out.append((f"{src} -> cutoff", base_c, base_k, extras))
    return out


def _init() -> None:
    global _ENGINE
    _ENGINE = RenderEngine(*_setup(), CONFIG)


def _render(case: tuple) -> np.ndarray:
    assert _ENGINE is not None
    _, c, k, extras = case
    return _ENGINE.render(c, k, (60,), extras)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    registry, tables = _setup()
    todo = cases(registry)
    forked = RenderEngine(registry, tables, CONFIG)
    per_process = []
    for _ in range(2):  # two fresh worker processes, each rendering every case once
        with WorkerPool(1, initializer=_init) as pool:
            per_process.append([r.value for r in pool.map(_render, todo)])
    rows = {}
    for i, (name, c, k, extras) in enumerate(todo):
        reused_engine = RenderEngine(registry, tables, RenderConfig(notes=(60,), reproducible=False))
        r1 = reused_engine.render(c, k, (60,), extras)[0]
        r2 = reused_engine.render(c, k, (60,), extras)[0]
        fresh1 = RenderEngine(registry, tables, RenderConfig(notes=(60,), reproducible=False))
        fresh2 = RenderEngine(registry, tables, RenderConfig(notes=(60,), reproducible=False))
        f1, f2 = fresh1.render(c, k, (60,), extras)[0], fresh2.render(c, k, (60,), extras)[0]
        k1, k2 = forked.render(c, k, (60,), extras)[0], forked.render(c, k, (60,), extras)[0]
        p1, p2 = per_process[0][i], per_process[1][i]
        rows[name] = {
            "reused": float(np.abs(r1 - r2).max()),
            "fresh": float(np.abs(f1 - f2).max()),
            "forked": float(np.abs(k1 - k2).max()),
            "processes": float(np.abs(p1 - p2).max()),
            "peak": float(np.abs(k1).max()),
        }
    print(f"{'case':22} {'reused':>9} {'fresh':>9} {'forked':>9} {'processes':>9} {'peak':>7}")
    for name, r in rows.items():
        print(
            f"{name:22} {r['reused']:9.2g} {r['fresh']:9.2g} {r['forked']:9.2g} {r['processes']:9.2g} "
            f"{r['peak']:7.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "determinism.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
