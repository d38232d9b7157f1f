"""Stored presets: a real preset in a compact form (JSON + wavetables by content hash), and its renders.

Stage: data (real presets, for the preset libraries of ``match --library``,
:mod:`vitalmatch.match.library`). Input: a parsed :class:`~vitalmatch.synth.preset_file.PresetFile`.
Output: :func:`pack_preset` gives ``(blob, hashes)``: the preset's JSON, compact and zlib-compressed,
with each of its three wavetables replaced by the table's content hash
(:func:`~vitalmatch.synth.wavetables.format.wavetable_hash`) and each table written once to
``<tables_dir>/<hash>.json``; :func:`unpack_preset` gives the preset dict back. :func:`render_task`
renders a stored preset at several notes in a :class:`~vitalmatch.synth.pool.WorkerPool` worker
(set up by :func:`init_worker`): ``(n_notes, T)`` mono float32.

Why a form of its own: a real preset is mostly wavetables (the 124 shared presets hold 50 MB of
JSON, 31 MB zlib-compressed; without their tables a preset is ~4 kB compressed), and presets of one
library share tables, so a table is kept once per content. A preset whose sample oscillator is off
keeps no sample (Vital fills a new preset's sample with fresh random noise, ~120 kB each);
:func:`unpack_preset` puts the engine's fixed init noise back, because vita refuses a preset without
one. This module imports no torch, so the workers start quickly (importing torch took 5.5 s on the
loaded 2-core development machine).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vitalmatch.synth.preset_file import PresetFile, PresetTables, stage_preset
from vitalmatch.synth.render import RenderConfig, RenderEngine, init_noise_sample, wavetable_from_file

__all__ = ["init_worker", "pack_preset", "render_task", "table_path", "unpack_preset"]


def table_path(tables_dir: str | os.PathLike, content_hash: str) -> Path:
    """The JSON file of the wavetable with this content hash."""
    return Path(tables_dir) / f"{content_hash}.json"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(tables_dir: str | os.PathLike, content_hash: str, table: dict) -> Path:
    """Write ``table`` as ``<tables_dir>/<hash>.json`` unless it is there (atomic: a temporary
    file, then a rename, so a reader never sees half a table)."""
    path = table_path(tables_dir, content_hash)
    if not path.is_file():
        _write_atomic(path, json.dumps(table, separators=(",", ":"), allow_nan=False).encode())
    return path


def pack_preset(
    preset: PresetFile, tables_dir: str | os.PathLike, scratch: PresetTables
) -> tuple[bytes, tuple[str, ...]]:
    """The stored form of a preset: ``(zlib of compact JSON, the 3 wavetable content hashes)``.

    The preset is checked by :func:`~vitalmatch.synth.preset_file.stage_preset` (which also stands
    Vital's init table in for a missing one); every table goes to ``tables_dir`` (made if needed).

    Args:
        preset: a preset read by :func:`~vitalmatch.synth.preset_file.read_presets`.
        tables_dir: the folder of the table files.
        scratch: side tables for ``stage_preset`` (they grow; their content is not used).

    Raises:
        ValueError: (one line) the preset does not parse (an unusable wavetable).
    """
    from vitalmatch.synth.preset_file import init_preset

    staged = stage_preset(preset, scratch)
    settings = dict(preset.preset["settings"])
    given = settings.get("wavetables")
    given = given if isinstance(given, list) else []
    Path(tables_dir).mkdir(parents=True, exist_ok=True)
    for osc, h in enumerate(staged.wavetables, start=1):
        table = given[osc - 1] if osc - 1 < len(given) and given[osc - 1] is not None else None
        write_table(
            tables_dir, h, table if table is not None else init_preset()["settings"]["wavetables"][osc - 1]
        )
    settings["wavetables"] = list(staged.wavetables)
    if staged.sample == 0:  # the sample oscillator is off (or its sample unusable): not stored
        settings.pop("sample", None)
    compact = json.dumps({**preset.preset, "settings": settings}, separators=(",", ":"))
    return zlib.compress(compact.encode(), 6), tuple(staged.wavetables)


def unpack_preset(blob: bytes, tables_dir: str | os.PathLike, tables: Sequence[dict] | None = None) -> dict:
    """The Vital preset dict of a stored preset.

    Args:
        blob: from :func:`pack_preset`.
        tables_dir: the folder of the table files.
        tables: the three wavetable dicts to use instead of the files (e.g. catalog tables).

    Raises:
        RenderError: a table file is missing or not a usable table.
        ValueError, zlib.error: the blob is damaged.
    """
    preset = json.loads(zlib.decompress(blob))
    settings = preset["settings"]
    if "sample" not in settings:  # not stored (the oscillator is off); vita refuses a preset without one
        settings["sample"] = init_noise_sample()
    if tables is None:
        tables = [wavetable_from_file(str(table_path(tables_dir, h))) for h in settings["wavetables"]]
    settings["wavetables"] = list(tables)
    return preset


# ------------------------------------------------------------------------------------ worker side
_ENGINE: RenderEngine | None = None
_TABLES_DIR = ""


def init_worker(registry_json: str, render: RenderConfig, tables_dir: str) -> None:
    """Worker initializer: one render engine (``render.reproducible`` makes every render a child
    forked from its template synth) and the folder of the table files."""
    global _ENGINE, _TABLES_DIR
    from vitalmatch.synth.params import ParamRegistry

    _ENGINE = RenderEngine(ParamRegistry.from_json(registry_json), [], render)
    _TABLES_DIR = tables_dir


def render_task(blob: bytes) -> np.ndarray:
    """Render a stored preset at the worker's notes: ``(n_notes, T)`` mono float32.

    Raises:
        RenderError: a table file is unusable, or the synth refused, crashed or hung on it.
    """
    assert _ENGINE is not None, "init_worker was not run"
    preset = unpack_preset(blob, _TABLES_DIR)
    return _ENGINE.render_preset_dict(preset).mean(axis=1).astype(np.float32)
