"""Export: a parameter vector -> a ``.vital`` preset file that loads in Vital.

Stage: synth (output). Input: full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry` (``(C,)`` in [0, 1], ``(K,)`` option indices) and
the wavetable catalog they index. Output: Vital preset JSON (a dict, or a ``.vital`` file).

The preset is produced by the synth itself: the engine applies the values (one ``load_json`` of the
init preset with the values and wavetables, then every control set through its handle, clamped and
rounded), and ``Synth.to_json`` writes the state back. Whatever Vital would store, and in its own
format and version string, is therefore what the file holds, so it loads in Vital and renders like
the in-memory state (tested: export, load into a fresh synth, render; bit-identical).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vitalmatch.synth.render import RenderEngine

#: Preset metadata fields Vital shows in its browser.
META_FIELDS = ("preset_name", "author", "comments", "preset_style")


def preset_dict(
    engine: RenderEngine,
    continuous: np.ndarray,
    categorical: np.ndarray,
    *,
    name: str = "vitalmatch",
    author: str = "vitalmatch",
    comments: str = "",
    style: str = "",
) -> dict:
    """The Vital preset of a parameter vector, as written by the synth after applying it.

    Args:
        engine: a render engine built on the registry and catalog the vectors refer to.
        continuous, categorical: full normalised vectors.
        name, author, comments, style: metadata Vital shows (its browser reads ``preset_name``).
    """
    engine.load(continuous, categorical)
    preset = json.loads(engine.to_json())
    preset.update({"preset_name": name, "author": author, "comments": comments, "preset_style": style})
    return preset


def write_vital(path: str | os.PathLike, preset: dict) -> Path:
    """Write a preset dict as a ``.vital`` file (atomically: a temporary file, then a rename).

    Raises:
        ValueError: the folder does not exist or is not writable (one line).
    """
    path = Path(path)
    if path.suffix.lower() != ".vital":
        path = path.with_suffix(".vital")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(preset))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write {path}: {e.strerror}") from None
    return path


def read_vital(path: str | os.PathLike) -> dict:
    """Read a ``.vital`` file's JSON; ``ValueError`` (one line) if it is missing or not a preset."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such preset file")
    try:
        preset = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a Vital preset (not JSON: {e.__class__.__name__})") from None
    if not isinstance(preset, dict) or not isinstance(preset.get("settings"), dict):
        raise ValueError(f"{path} is not a Vital preset (no settings)")
    return preset
