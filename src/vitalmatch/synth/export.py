"""Export: a parameter vector -> a ``.vital`` preset file that loads in Vital.

Stage: synth (output). Input: full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry` (``(C,)`` in [0, 1], ``(K,)`` option indices) and
the wavetable catalog they index. Output: Vital preset JSON (a dict, or a ``.vital`` file).

The preset is produced by the synth itself: the engine applies the values (one ``load_json`` of the
init preset with the values and wavetables, then every control set through its handle, clamped and
rounded), and ``Synth.to_json`` writes the state back. Whatever Vital would store, in its own format,
is therefore what the file holds, so it renders like the in-memory state (tested: export, load into a
fresh synth, render; bit-identical).

The version stamp is the one thing the file must not keep from vita: ``to_json`` writes
``"synth_version": "99999.9.9"`` (the version vita is built as), and Vital refuses any preset whose
*feature version* is newer than its own (``LoadSave::jsonToState`` in Vital's
``src/common/load_save.cpp``: ``compareFeatureVersionStrings(version, ProjectInfo::versionString) >
0`` returns false, and the app reports the preset as made by a newer version). :func:`write_vital`
therefore stamps :data:`VITAL_RELEASE`, the latest public release. A preset older than the engine
goes through ``LoadSave::updateFromOldVersion``, whose newest conversion is for versions below 0.9.0,
so none applies to 1.5.5 (tested: a preset stamped 1.5.5 loads into the same state and renders
bit-identically to the same preset stamped 99999.9.9). See ``docs/vita-facts.md``, "What the Vital
app checks".
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from vitalmatch.synth.render import RenderEngine

#: Preset metadata fields Vital shows in its browser.
META_FIELDS = ("preset_name", "author", "comments", "preset_style")

#: The version every written preset carries: the latest public Vital release (1.5.5, 2022). Vital
#: 1.5.x loads it; an older app refuses it, as it refuses the presets that release itself saves.
VITAL_RELEASE = "1.5.5"

#: The version the ``vita`` engine reports (``ProjectInfo::versionString`` of its build): the newest
#: feature version it loads; ``load_json`` returns False past it.
VITA_ENGINE_VERSION = "99999.9.9"

#: Vital's preset browser reads ``preset_style`` from the first 5000 bytes of the file
#: (``LoadSave::getStyleFromFile``); the writer keeps it there.
STYLE_SCAN_BYTES = 5000


def compare_versions(a: str, b: str) -> int:
    """Vital's ``LoadSave::compareVersionStrings``: -1, 0 or 1 as version ``a`` is older, equal, newer.

    Component by component, from the left: a component is the text up to the next ".", compared as
    an integer; a component that is not all digits counts as 0, and a missing one as 0 ("1.5" equals
    "1.5.0"). Both strings are trimmed first.
    """
    a, b = a.strip(), b.strip()
    while a or b:
        head_a, _, a = a.partition(".")
        head_b, _, b = b.partition(".")
        # JUCE's getIntValue of "" is 0, and containsOnly("0123456789") is true for "".
        x = int(head_a) if head_a.isdigit() and head_a.isascii() else 0
        y = int(head_b) if head_b.isdigit() and head_b.isascii() else 0
        if x != y:
            return 1 if x > y else -1
    return 0


def feature_version(version: str) -> str:
    """The version up to its last "." (JUCE ``upToLastOccurrenceOf(".", false, true)``): "1.5.5" ->
    "1.5"; a version without a "." is returned whole."""
    version = version.strip()
    return version.rpartition(".")[0] if "." in version else version


def app_loads_version(version: object, app_version: str = VITAL_RELEASE) -> bool:
    """Whether Vital ``app_version`` accepts a preset stamped ``version``: the rule of
    ``LoadSave::jsonToState`` (the preset's feature version must not be newer than the app's).
    A missing or non-string version fails there too (``std::string version = data["synth_version"]``
    throws, and the app reports the file as corrupted)."""
    if not isinstance(version, str):
        return False
    return compare_versions(feature_version(version), feature_version(app_version)) <= 0


def _check_finite(value: object, where: str) -> None:
    """Raise ValueError if a number in ``value`` is NaN or infinite (strict JSON has neither, and
    Vital's parser rejects the whole file)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write a preset: {where} is {value}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, k)
    elif isinstance(value, list):
        for v in value:
            _check_finite(v, where)


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


def vital_file_text(preset: dict) -> str:
    """The text of a ``.vital`` file for ``preset``, as the Vital app will load it.

    Stamps :data:`VITAL_RELEASE` as ``synth_version``, puts the metadata fields first (Vital's
    browser scans the start of the file for the author and style), and writes strict JSON.

    Raises:
        ValueError: a number in the preset is NaN or infinite.
    """
    _check_finite(preset, "a value")
    head = {k: preset[k] for k in ("author", "preset_name", "preset_style", "comments") if k in preset}
    body = {k: v for k, v in preset.items() if k not in head and k != "synth_version"}
    # Compact separators, as Vital's own files (nlohmann ``dump()``): its browser's fast path reads
    # the author from the bytes after '{"author":"'.
    text = json.dumps(
        {**head, **body, "synth_version": VITAL_RELEASE}, allow_nan=False, separators=(",", ":")
    )
    return text


def write_vital(path: str | os.PathLike, preset: dict) -> Path:
    """Write a preset dict as a ``.vital`` file that the Vital app loads (see :func:`vital_file_text`),
    atomically: a temporary file, then a rename. Every writer of presets (match, predict, evaluate,
    the demo) goes through here.

    Raises:
        ValueError: the folder does not exist or is not writable, or the preset holds NaN/Inf (one
            line).
    """
    path = Path(path)
    if path.suffix.lower() != ".vital":
        path = path.with_suffix(".vital")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    text = vital_file_text(preset)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write {path}: {e.strerror}") from None
    return path


def read_vital(path: str | os.PathLike) -> dict:
    """Read a ``.vital`` file's JSON.

    Accepts every version Vital has written (real presets carry 1.0.0 to 1.5.5; vita converts
    pre-0.9 ones as Vital does) up to the newest feature version the engine loads
    (:data:`VITA_ENGINE_VERSION`).

    Raises:
        ValueError: (one line) the file is missing or unreadable, not JSON (or nested too deeply to
            parse), has no settings or no version string, or was made by a newer Vital than the
            engine understands.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such preset file")
    try:
        preset = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a Vital preset (not JSON: {e.__class__.__name__})") from None
    except RecursionError:  # e.g. 200,000 nested arrays: Python's parser gives up, so would Vital
        raise ValueError(f"{path} is not a Vital preset (JSON nested too deeply)") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    return check_vital_preset(preset, str(path))


def check_vital_preset(preset: object, where: str) -> dict:
    """``preset`` (parsed JSON) if it is a Vital preset the engine loads, else ValueError (one
    line, naming ``where``): it needs ``settings`` and a ``synth_version`` string no newer than
    :data:`VITA_ENGINE_VERSION`'s feature version."""
    if not isinstance(preset, dict) or not isinstance(preset.get("settings"), dict):
        raise ValueError(f"{where} is not a Vital preset (no settings)")
    version = preset.get("synth_version")
    if not isinstance(version, str):
        raise ValueError(f"{where} is not a Vital preset (no synth_version string)")
    if not app_loads_version(version, VITA_ENGINE_VERSION):
        raise ValueError(
            f"{where} was made by Vital {version}, newer than this synth engine understands "
            f"(up to {feature_version(VITA_ENGINE_VERSION)})"
        )
    return preset
