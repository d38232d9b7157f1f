"""What the Vital app checks when it loads a ``.vital`` file, written from Vital's source, for tests
of every writer of presets (match, predict, evaluate, the demo).

Written here independently of :mod:`vitalmatch.synth.export`, so that a mistake there cannot hide
itself. Source: ``src/common/load_save.cpp`` of Vital 1.5.5 (mtytel/vital):

* ``LoadSave::jsonToState``: ``compareFeatureVersionStrings(version, ProjectInfo::versionString) > 0``
  refuses the preset ("created with a newer version"); ``std::string version = data["synth_version"]``
  throws for a missing or non-string version (the app reports the file as corrupted).
* ``compareFeatureVersionStrings`` compares the versions up to their last "."; ``compareVersionStrings``
  compares recursively, one "."-separated component at a time as integers, a non-numeric component
  counting as 0.
* ``LoadSave::loadControls``: ``vital::mono_float value = data[name]`` for every control present;
  a non-number throws. nlohmann's parser rejects NaN and Infinity (not JSON).
* ``LoadSave::loadModulations``: ``std::string source = modulation["source"]`` (and destination).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

#: The app a user has: the latest public release.
APP_VERSION = "1.5.5"


def _int_value(text: str) -> int:
    # JUCE String::getIntValue after the containsOnly("0123456789") test: "" -> 0.
    return int(text) if text and all(c in "0123456789" for c in text) else 0


def compare_version_strings(a: str, b: str) -> int:
    """``LoadSave::compareVersionStrings``, recursion and all."""
    a, b = a.strip(), b.strip()
    if not a and not b:
        return 0
    major_a, major_b = a.split(".", 1)[0], b.split(".", 1)[0]
    va, vb = _int_value(major_a), _int_value(major_b)
    if va > vb:
        return 1
    if va < vb:
        return -1
    rest_a = a.split(".", 1)[1] if "." in a else ""
    rest_b = b.split(".", 1)[1] if "." in b else ""
    return compare_version_strings(rest_a, rest_b)


def compare_feature_version_strings(a: str, b: str) -> int:
    """``LoadSave::compareFeatureVersionStrings``: ``upToLastOccurrenceOf(".", false, true)`` of
    each (the whole string when it has no ".")."""
    a, b = a.strip(), b.strip()
    fa = a[: a.rfind(".")] if "." in a else a
    fb = b[: b.rfind(".")] if "." in b else b
    return compare_version_strings(fa, fb)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def app_load_problems(path: str | Path, app_version: str = APP_VERSION) -> list[str]:
    """Reasons the Vital app ``app_version`` would refuse the file (empty: it loads it)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        return [f"not strict JSON: {e}"]
    version = data.get("synth_version")
    if not isinstance(version, str):
        return [f"synth_version is {version!r}, not a string"]
    problems = []
    if compare_feature_version_strings(version, app_version) > 0:
        problems.append(f"synth_version {version} is newer than Vital {app_version}")
    settings = data.get("settings")
    if not isinstance(settings, dict):
        return problems + ["no settings object"]
    for name, value in settings.items():
        # Structures (modulations, sample, wavetables, lfos; 1.5's custom_warps, random_values) are
        # read by their own loaders; every scalar is a control that loadControls reads as a float.
        if isinstance(value, list | dict):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(f"control {name} is {value!r}, not a number")
    for i, mod in enumerate(settings.get("modulations", [])):
        if not (isinstance(mod.get("source"), str) and isinstance(mod.get("destination"), str)):
            problems.append(f"modulation {i} lacks source/destination strings")
    return problems


def assert_app_loads(path: str | Path) -> None:
    """Fail the test if the Vital app would refuse the file."""
    problems = app_load_problems(path)
    assert not problems, f"Vital {APP_VERSION} would refuse {path}: {'; '.join(problems[:5])}"
