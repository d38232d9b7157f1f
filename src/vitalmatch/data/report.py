"""Dataset report: what a generated HDF5 file holds, for ``vitalmatch inspect``.

Stage: inspection. Input: a dataset path. Output: a JSON-able dict (schema, counts per
split/source/note, rejection statistics, parameter coverage, storage size) and its text form;
optionally a few renders written as WAV files.

Parameter coverage is measured on the parameters the file's tier varies: for a continuous
parameter, the fraction of 10 equal bins of [0, 1] that hold at least one preset plus min/max;
for a categorical, how many of its options occur.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from vitalmatch.data.reader import DatasetReader, audio_bytes_per_row, dataset_bytes
from vitalmatch.synth.params import ParamRegistry

COVERAGE_BINS = 10


def describe(path: Path) -> dict[str, Any]:
    """Everything ``inspect`` prints, as plain data."""
    with DatasetReader(path) as ds:
        attrs = ds.attrs
        n = len(ds)
        registry = ParamRegistry.from_json(attrs["registry_json"]).for_tier(int(attrs["tier"]))
        full = ParamRegistry.from_json(attrs["registry_json"])
        report: dict[str, Any] = {
            "path": str(path),
            "schema_version": attrs.get("schema_version"),
            "created_by": attrs.get("created_by"),
            "tier": int(attrs["tier"]),
            "seed": attrs.get("seed"),
            "sample_rate": attrs.get("sample_rate"),
            "render_duration_s": attrs.get("render_duration_s"),
            "note_duration_s": attrs.get("note_duration_s"),
            "notes": list(attrs.get("notes", [])),
            "rows": n,
            "file_bytes": dataset_bytes(path),
            "audio_bytes_per_row": audio_bytes_per_row(path) if n else 0.0,
            "parameters": {"continuous": len(full.continuous), "categorical": len(full.categorical)},
            "wavetables": len(attrs.get("wavetable_names", [])),
            "progress": ds.progress(),
        }
        if n == 0:
            report.update(splits={}, sources={}, notes_count={}, presets=0, coverage={})
            return report
        hashes = ds.metadata("preset_hash")
        report["presets"] = len(set(hashes.tolist()))
        report["splits"] = dict(Counter(ds.metadata("split").tolist()))
        if ds.has_modulation:
            report["modulation"] = _modulation_stats(ds, attrs, n)
        report["sources"] = dict(Counter(ds.metadata("source").tolist()))
        report["notes_count"] = {
            str(k): v for k, v in sorted(Counter(ds.metadata("midi_note").tolist()).items())
        }
        _, first = np.unique(hashes, return_index=True)
        first = np.sort(first)
        cont = ds.continuous(slice(None))[first]
        cat = ds.categorical(slice(None))[first]
        coverage: dict[str, Any] = {}
        for spec in registry.continuous:
            col = cont[:, full.locate(spec.name)[1]]
            occupied = np.unique(np.minimum((col * COVERAGE_BINS).astype(int), COVERAGE_BINS - 1)).size
            coverage[spec.name] = {
                "kind": "continuous",
                "bins": occupied / COVERAGE_BINS,
                "min": float(col.min()),
                "max": float(col.max()),
            }
        for spec in registry.categorical:
            col = cat[:, full.locate(spec.name)[1]]
            coverage[spec.name] = {
                "kind": "categorical",
                "options_seen": int(np.unique(col).size),
                "options": spec.n_options,
            }
        report["coverage"] = coverage
    return report


def format_report(report: dict[str, Any]) -> str:
    """Human-readable text of :func:`describe`'s dict."""
    p = report["progress"]
    lines = [
        f"{report['path']}  (schema {report['schema_version']}, {report['created_by']})",
        f"tier {report['tier']}, seed {report['seed']}, {report['sample_rate']} Hz, "
        f"{report['render_duration_s']} s renders, notes {report['notes']} "
        f"held {report['note_duration_s']} s",
        f"rows {report['rows']} from {report.get('presets', 0)} presets; "
        f"file {report['file_bytes'] / 1e6:.1f} MB, "
        f"audio {report['audio_bytes_per_row'] / 1e3:.1f} kB per row",
        f"parameters: {report['parameters']['continuous']} continuous, {report['parameters']['categorical']} "
        f"categorical; wavetables in catalog: {report['wavetables']}",
        "splits: " + ", ".join(f"{k} {v}" for k, v in sorted(report.get("splits", {}).items())),
        "sources: " + ", ".join(f"{k} {v}" for k, v in sorted(report.get("sources", {}).items())),
        "rows per note: " + ", ".join(f"{k}: {v}" for k, v in report.get("notes_count", {}).items()),
    ]
    if p:
        tried = max(int(p.get("next_preset", 0)), 1)
        rej = p.get("rejections", {})
        lines.append(
            f"presets tried {p.get('next_preset', 0)}, kept {p.get('kept_presets', 0)} "
            f"({p.get('kept_presets', 0) / tried:.1%}), failed {p.get('n_failed', 0)}; renders rejected: "
            + (", ".join(f"{k} {v}" for k, v in sorted(rej.items())) or "none")
        )
    mod = report.get("modulation")
    if mod:
        top = ", ".join(f"{k} {v}" for k, v in mod["top_destinations"].items()) or "none"
        lines.append(
            f"modulation: {mod['mean_connections']:.2f} connections per row (max {mod['max_connections']}), "
            f"{mod['rows_with_modulation']:.0%} of rows modulated, "
            f"{mod['stored_bytes_per_row']:.0f} bytes per row stored; top destinations: {top}"
        )
    cov = report.get("coverage", {})
    if cov:
        lines.append(f"parameter coverage ({len(cov)} parameters of the tier):")
        for name, c in cov.items():
            if c["kind"] == "continuous":
                lines.append(f"  {name:34} bins {c['bins']:4.0%}  range [{c['min']:.3f}, {c['max']:.3f}]")
            else:
                lines.append(f"  {name:34} options {c['options_seen']}/{c['options']}")
    return "\n".join(lines)


def export_wavs(path: Path, out_dir: Path, k: int = 5, seed: int = 0) -> list[Path]:
    """Write ``k`` evenly spaced renders as 16-bit WAV files named after preset and note."""
    import soundfile as sf

    if k < 1:
        raise ValueError(f"-k must be >= 1, got {k}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with DatasetReader(path) as ds:
        n = len(ds)
        if n == 0:
            raise ValueError(f"{path} holds no renders to export")
        rows = np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))
        names = ds.metadata("preset_name")
        notes = ds.metadata("midi_note")
        sr = int(ds.attrs["sample_rate"])
        for i in rows:
            audio = ds.audio(int(i))
            f = out_dir / f"{i:06d}_{names[i]}_note{int(notes[i])}.wav"
            sf.write(f, np.clip(audio.T, -1, 1), sr, subtype="PCM_16")
            written.append(f)
    return written


def _modulation_stats(ds: DatasetReader, attrs: dict, n: int) -> dict[str, Any]:
    """Connections per row, the most used destinations and the bytes the sparse column takes."""
    rows = ds.modulation(slice(None)) if n else []
    counts = np.array([len(r) for r in rows]) if n else np.zeros(0)
    names = list(attrs.get("modulation_destinations") or [])
    dest: Counter[str] = Counter()
    for r in rows:
        dest.update(names[int(d)] if int(d) < len(names) else str(int(d)) for d in r[:, 2])
    stored = ds.storage_size("params/modulation") + sum(r.nbytes for r in rows)  # descriptors + heap values
    return {
        "mean_connections": float(counts.mean()) if n else 0.0,
        "max_connections": int(counts.max()) if n else 0,
        "rows_with_modulation": float((counts > 0).mean()) if n else 0.0,
        "top_destinations": dict(dest.most_common(5)),
        "stored_bytes_per_row": stored / max(n, 1),
    }
