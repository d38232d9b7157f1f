"""Wavetables: Vital's wavetable JSON, a content-hashed catalog, a built-in set and discovery.

Stage: synth. Input: wavetable dicts as Vital writes them (inside ``.vital`` presets, ``.vitaltable``
files and ``.vitalbank`` zips, or generated here). Output: a :class:`WavetableCatalog` (saved as one
JSON file) whose tables the render engine puts into presets
(:func:`vitalmatch.synth.render.inject_wavetable`).

* :mod:`~vitalmatch.synth.wavetables.format`: Vital's wavetable JSON (wave codec, validation, hash);
* :mod:`~vitalmatch.synth.wavetables.catalog`: :class:`WavetableCatalog`;
* :mod:`~vitalmatch.synth.wavetables.builtin`: the 28 built-in tables;
* :mod:`~vitalmatch.synth.wavetables.discovery`: :func:`discover` on files and Vital's install folders.
"""

from vitalmatch.synth.wavetables.catalog import (
    CATALOG_FORMAT,
    CATALOG_VERSION,
    CatalogEntry,
    WavetableCatalog,
)
from vitalmatch.synth.wavetables.discovery import (
    VITAL_INSTALL_DIRS,
    DiscoveryReport,
    discover,
    existing_install_dirs,
)
from vitalmatch.synth.wavetables.format import (
    MAX_POSITION,
    NUM_OSCILLATORS,
    WAVE_SIZE,
    decode_wave,
    encode_wave,
    make_wavetable,
    vital_init_table,
    wavetable_frames,
    wavetable_hash,
    wavetable_keyframes,
    wavetable_problem,
)

__all__ = [
    "CATALOG_FORMAT",
    "CATALOG_VERSION",
    "MAX_POSITION",
    "NUM_OSCILLATORS",
    "VITAL_INSTALL_DIRS",
    "WAVE_SIZE",
    "CatalogEntry",
    "DiscoveryReport",
    "WavetableCatalog",
    "decode_wave",
    "discover",
    "encode_wave",
    "existing_install_dirs",
    "make_wavetable",
    "vital_init_table",
    "wavetable_frames",
    "wavetable_hash",
    "wavetable_keyframes",
    "wavetable_problem",
]
