"""Measure the facts about the ``vita`` bindings that ``docs/vita-facts.md`` states and the code relies on.

Each probe prints one line ``§N name: result``; crash probes run in a fresh child process each (a
segfault there is the expected result, reported as the signal). Timings are medians of repeated runs
in this process and vary with the machine's load. Writes the results as JSON to
``benchmarks/results/vita_facts.json``.

    python benchmarks/vita_facts.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import vita

RESULTS = Path(__file__).parent / "results"


def _crash_probe(code: str, timeout: float = 60.0) -> str:
    """Run ``code`` (with ``import vita`` and ``s = vita.Synth()`` before it) in a fresh process."""
    script = "import vita\ns = vita.Synth()\nc = s.get_controls()\n" + code
    try:
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        return "hang"
    if r.returncode < 0:
        return signal.Signals(-r.returncode).name
    return f"exit {r.returncode}" + (f": {r.stdout.strip()}" if r.stdout.strip() else "")


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out: dict[str, object] = {"vita": getattr(vita, "__version__", "0.1.0")}

    def say(key: str, value: object) -> None:
        out[key] = value
        print(f"{key}: {value}", flush=True)

    s = vita.Synth()
    controls = s.get_controls()
    names = sorted(controls)
    say("§2.1 controls", len(names))
    mod_slots = [n for n in names if n.startswith("modulation_")]
    say("§2.1 modulation slot controls", len(mod_slots))
    scales: dict[str, int] = {}
    for n in names:
        k = str(s.get_control_details(n).scale).split(".")[-1]
        scales[k] = scales.get(k, 0) + 1
    say("§2.1 scales", dict(sorted(scales.items())))
    say("§2.1 on switches", len([n for n in names if n.endswith("_on")]))

    # §2.2 set_normalized on an exponential control: which raw values it reaches.
    h = controls["lfo_1_frequency"]
    d = s.get_control_details("lfo_1_frequency")
    reached = []
    for u in (0.0, 0.5, 1.0):
        h.set_normalized(u)
        reached.append(round(h.value(), 3))
    say("§2.2 lfo_1_frequency set_normalized(0, .5, 1) -> raw", f"{reached} (range {d.min}..{d.max})")
    s.load_init_preset()

    # §2.2 oversampling acts only on load.
    s2 = vita.Synth()
    s2.get_controls()["osc_1_random_phase"].set(0.0)
    a = s2.render(60, 0.7, 0.5, 1.0)
    s2.get_controls()["oversampling"].set(3)
    b = s2.render(60, 0.7, 0.5, 1.0)
    s2.load_json(s2.to_json())
    c = s2.render(60, 0.7, 0.5, 1.0)
    say(
        "§2.2 oversampling 3: max change before / after a load_json round trip",
        f"{float(np.abs(a - b).max()):.2g} / {float(np.abs(a - c).max()):.2g}",
    )

    # §1 render shape, §3 JSON.
    say("§1 render(60, 0.7, 0.5, 0.7) shape", tuple(vita.Synth().render(60, 0.7, 0.5, 0.7).shape))
    preset = json.loads(vita.Synth().to_json())
    say("§3 to_json synth_version", preset["synth_version"])
    say("§3 to_json size (kB)", round(len(json.dumps(preset)) / 1000))
    newer = dict(preset, synth_version="100000.0.0")
    say("§3 load_json of a newer version", vita.Synth().load_json(json.dumps(newer)))
    s3 = vita.Synth()
    s3.get_controls()["filter_1_cutoff"].set(30.0)
    partial = json.loads(s3.to_json())
    del partial["settings"]["filter_1_cutoff"]
    s3.load_json(json.dumps(partial))
    default = s3.get_control_details("filter_1_cutoff").default_value
    say(
        "§3 a control missing from the JSON after load (set 30 before)",
        f"{s3.get_controls()['filter_1_cutoff'].value():g} (default {default:g})",
    )

    # §2.3 modulation.
    s4 = vita.Synth()
    dests = list(vita.get_modulation_destinations())
    results = [s4.connect_modulation("lfo_1", d) for d in dests[:66]]
    kept = sum(1 for m in json.loads(s4.to_json())["settings"]["modulations"] if m["source"])
    say("§2.3 66 connections: returned True / kept", f"{sum(results)} / {kept}")
    say("§2.3 sources / destinations", f"{len(vita.get_modulation_sources())} / {len(dests)}")

    # §4 crashes, each in a fresh process.
    crash = {
        "chorus_voices = 7, chorus on": (
            "c['chorus_on'].set(1); c['chorus_voices'].set(7); s.render(60, 0.7, 0.2, 0.4)"
        ),
        "effect_chain_order = -1": "c['effect_chain_order'].set(-1); s.render(60, 0.7, 0.2, 0.4)",
        "filter_1_cutoff = 1e6, filter on": (
            "c['filter_1_on'].set(1); c['filter_1_cutoff'].set(1e6); s.render(60, 0.7, 0.2, 0.4)"
        ),
        "connect_modulation to a non-destination": (
            "s.connect_modulation('lfo_1', 'filter_1_model'); s.render(60, 0.7, 0.2, 0.4)"
        ),
        "chorus_voices = 4 (in range), chorus on": (
            "c['chorus_on'].set(1); c['chorus_voices'].set(4); s.render(60, 0.7, 0.2, 0.4); print('ok')"
        ),
    }
    for what, code in crash.items():
        say(f"§4 {what}", _crash_probe(code))

    # §6 determinism and state.
    def fresh_render(random_phase: float) -> np.ndarray:
        syn = vita.Synth()
        for osc in (1, 2, 3):
            syn.get_controls()[f"osc_{osc}_random_phase"].set(random_phase)
        return syn.render(60, 0.7, 0.5, 1.0)

    say(
        "§6 two fresh synths, default random phase: max difference",
        f"{float(np.abs(fresh_render(1.0) - fresh_render(1.0)).max()):.3g}",
    )
    say(
        "§6 two fresh synths, random phase 0: max difference",
        f"{float(np.abs(fresh_render(0.0) - fresh_render(0.0)).max()):.3g}",
    )
    init = fresh_render(0.0)
    say("§6 init preset peak at note 60", f"{float(np.abs(init).max()):.4f}")
    syn = vita.Synth()
    syn.get_controls()["osc_1_random_phase"].set(0.0)
    clean = syn.render(60, 0.7, 0.5, 1.0)
    syn.render(48, 0.7, 2.0, 0.5)  # note held past the render's end: its voice keeps sounding
    bled = syn.render(60, 0.7, 0.5, 1.0)
    n50 = int(0.05 * 44100)
    say(
        "§6 voice left sounding by the previous render: max difference in the first 50 ms / after",
        f"{float(np.abs(bled - clean)[:, :n50].max()):.3g} / "
        f"{float(np.abs(bled - clean)[:, 2 * n50 :].max()):.3g}",
    )

    # §5 timings (ms, medians).
    syn = vita.Synth()
    say(
        "§5 render of the init preset, 1 s note in 2 s (ms)",
        round(_median_ms(lambda: syn.render(60, 0.7, 1.0, 2.0), args.repeats), 1),
    )
    text = syn.to_json()
    say("§5 load_json (ms)", round(_median_ms(lambda: syn.load_json(text), args.repeats), 1))
    say("§5 to_json (ms)", round(_median_ms(syn.to_json, args.repeats), 1))
    say("§5 vita.Synth() (ms)", round(_median_ms(vita.Synth, args.repeats), 1))

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vita_facts.json").write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {RESULTS / 'vita_facts.json'}")


if __name__ == "__main__":
    main()
