"""Benchmark: how audible and how varied the sampled presets of each tier are.

Usage::

    python benchmarks/sampling_audibility.py [--presets 150] [--tiers 1 2 3] [--seed 0]
        [--uniform-tier2] [--effect-checks 6] [--out benchmarks/results/sampling_audibility.json]

For each tier, the first N presets of the seed's stream (:class:`PresetSampler`, with their
modulation connections and LFO shapes) are rendered through :class:`RenderEngine` (forked,
reproducible renders) at 22.05 kHz, note 60, 1 s note in a 2 s render, and judged by the
dataset validation (:func:`vitalmatch.data.validation.check_audio` with the
:class:`ValidationConfig` defaults: silent below -60 dBFS peak, clipping above 1.0, non-finite).

Variety, over the accepted presets (mono mix): the spread (standard deviation, and the 10-90%
range) across presets of the RMS level (dB), the spectral centroid (octaves re 1 Hz), the
spectral flatness and the envelope's modulation depth (std / mean of 20 ms frame RMS over the
note), and the median pairwise distance of the standardised 4-feature vectors.

``--uniform-tier2`` adds the Tier-2 rules as they were before issue 17 (every extra parameter
uniform over its full range, Tier-1 rules only, no held values, no routings):
the "before" figures. ``--effect-checks K``: for up to K accepted Tier-2 presets per effect that
have it on, the same preset rendered with that effect switched off, and the log-spectral
distance (dB) between the two (is the effect audible?).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from vitalmatch.data.sampling import PresetSampler, SamplerConfig, _tier1_ranges, _tier1_weights
from vitalmatch.data.validation import ValidationConfig, check_audio
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import RenderConfig, RenderEngine, RenderError
from vitalmatch.synth.wavetables import WavetableCatalog

EFFECTS = ("chorus", "compressor", "delay", "distortion", "eq", "filter_fx", "flanger", "phaser", "reverb")
RENDER = RenderConfig(sample_rate=22050, notes=(60,))


def features(audio: np.ndarray, sr: int, note_s: float) -> np.ndarray:
    """RMS dB, centroid (log2 Hz), flatness, envelope modulation depth of one ``(2, T)`` render."""
    x = audio.mean(axis=0).astype(np.float64)
    rms = np.sqrt(np.mean(x**2)) + 1e-12
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) + 1e-12
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    centroid = float(np.sum(freqs * spec) / np.sum(spec))
    flatness = float(np.exp(np.mean(np.log(spec))) / np.mean(spec))
    hop = int(0.02 * sr)
    frames = x[: int(note_s * sr) // hop * hop].reshape(-1, hop)
    env = np.sqrt(np.mean(frames**2, axis=1))
    depth = float(env.std() / (env.mean() + 1e-12))
    return np.array([20 * np.log10(rms), np.log2(max(centroid, 1.0)), flatness, depth])


def log_spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference in dB of the magnitude spectra of two mono mixes (floor -100 dB)."""
    sa = 20 * np.log10(np.abs(np.fft.rfft(a.mean(axis=0))) + 1e-5)
    sb = 20 * np.log10(np.abs(np.fft.rfft(b.mean(axis=0))) + 1e-5)
    return float(np.sqrt(np.mean((sa - sb) ** 2)))


def uniform_tier2(seed: int) -> SamplerConfig:
    """Tier 2 as it was sampled before issue 17."""
    return SamplerConfig(
        tier=2,
        seed=seed,
        ranges=_tier1_ranges(),
        weights=_tier1_weights(),
        init_probability={},
        routings=(),
    )


def run(label, registry, engine, config, n, validation, effect_checks=0) -> dict:
    sampler = PresetSampler(registry, config)
    reasons: Counter[str] = Counter()
    feats, kept = [], []
    t0 = time.perf_counter()
    for i in range(n):
        p = sampler.preset(i)
        try:
            audio = engine.render(p.continuous, p.categorical, extras=p.extras())[0]
        except RenderError as exc:
            reasons[f"render error: {exc}"] += 1
            continue
        reason = check_audio(audio, validation)
        if reason:
            reasons[reason] += 1
            continue
        kept.append((p, audio))
        feats.append(features(audio, RENDER.sample_rate, RENDER.note_duration_s))
        if (i + 1) % 25 == 0:
            print(f"  {label}: {i + 1}/{n}, rejected {sum(reasons.values())}", flush=True)
    seconds = time.perf_counter() - t0
    f = np.array(feats)
    z = (f - f.mean(axis=0)) / (f.std(axis=0) + 1e-12)
    d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))[np.triu_indices(len(z), 1)]
    names = ("rms_db", "centroid_log2_hz", "flatness", "envelope_depth")
    out = {
        "presets": n,
        "rejected": sum(reasons.values()),
        "rejection_rate": round(sum(reasons.values()) / n, 3),
        "reasons": dict(reasons),
        "seconds": round(seconds, 1),
        "mean_connections": float(np.mean([len(sampler.preset(i).modulation) for i in range(n)])),
        "spread": {
            k: {
                "std": round(float(f[:, j].std()), 3),
                "p10_p90": [round(float(v), 3) for v in np.percentile(f[:, j], [10, 90])],
            }
            for j, k in enumerate(names)
        },
        "median_pairwise_distance_std_units": round(float(np.median(d)), 3),
    }
    if effect_checks:
        out["effect_audibility_db"] = effect_audibility(registry, engine, kept, effect_checks)
    return out


def effect_audibility(registry, engine, kept, k) -> dict:
    """Median log-spectral distance (dB) between a preset with an effect on and with it off."""
    out = {}
    for fx in EFFECTS:
        kind, col = registry.locate(f"{fx}_on")
        dists = []
        for p, audio in kept:
            if p.categorical[col] != 1 or len(dists) >= k:
                continue
            cat = p.categorical.copy()
            cat[col] = 0
            try:
                off = engine.render(p.continuous, cat, extras=p.extras())[0]
            except RenderError:
                continue
            dists.append(log_spectral_distance(audio, off))
        out[fx] = {"n": len(dists), "median_db": round(float(np.median(dists)), 2) if dists else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", type=int, default=150)
    ap.add_argument("--tiers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--uniform-tier2", action="store_true")
    ap.add_argument("--effect-checks", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sampling_audibility.json"))
    args = ap.parse_args()

    catalog = WavetableCatalog.builtin()
    registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    engine = RenderEngine(registry, [e.table for e in catalog], RENDER)
    validation = ValidationConfig()
    results = {
        "render": {
            "sample_rate": RENDER.sample_rate,
            "notes": list(RENDER.notes),
            "note_s": 1.0,
            "render_s": 2.0,
        },
        "validation": {"silence_peak_db": validation.silence_peak_db, "clip_peak": validation.clip_peak},
        "seed": args.seed,
        "tiers": {},
    }
    runs = [(f"tier {t}", SamplerConfig(tier=t, seed=args.seed)) for t in args.tiers]
    if args.uniform_tier2:
        runs.append(("tier 2 uniform (before)", uniform_tier2(args.seed)))
    for label, config in runs:
        checks = args.effect_checks if config.tier >= 2 else 0
        r = run(label, registry, engine, config, args.presets, validation, checks)
        results["tiers"][label] = r
        print(
            f"{label}: rejected {r['rejected']}/{r['presets']} ({100 * r['rejection_rate']:.1f}%) "
            f"{r['reasons']}; spread {json.dumps(r['spread'])}; "
            f"pairwise {r['median_pairwise_distance_std_units']}; {r['seconds']} s",
            flush=True,
        )
        if "effect_audibility_db" in r:
            print(f"  effects on vs off (median dB): {r['effect_audibility_db']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
