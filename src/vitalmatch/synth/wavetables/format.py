"""Vital's wavetable JSON format: the wave codec, validation, content hashing, building a table.

Stage: synth (wavetables). Input: wavetable dicts as Vital writes them (inside ``.vital`` presets and
``.vitaltable`` files) or ``(2048,)`` waves. Output: validated tables, their keyframe waves, and a
content hash that names a table's sound.

A wavetable is kept exactly as Vital serialises it (``WavetableCreator::stateToJson``)::

    {"author": str, "full_normalize": bool, "name": str, "remove_all_dc": bool, "version": str,
     "groups": [{"components": [{"type": "Wave Source", "interpolation": 1, "interpolation_style": 1,
                                 "keyframes": [{"position": 0..256, "wave_data": <base64>}, ...]},
                                ...]}]}

``wave_data`` is 2048 little-endian float32 samples (one cycle) in base64. Real presets also hold other
component types ("Audio File Source", "Line Source", "Wave Warp", "Wave Folder", ...); vitalmatch never
interprets them, it keeps the dict as-is so every table round-trips into Vital unchanged.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json

import numpy as np

WAVE_SIZE = 2048
"""Samples in one wave frame (``vital::WaveFrame::kWaveformSize``)."""
MAX_POSITION = 256
"""Highest keyframe position (Vital has 257 frame slots, 0..256)."""
NUM_OSCILLATORS = 3
"""Wavetable oscillators of a preset (``settings.wavetables[0..2]``)."""

__all__ = [
    "MAX_POSITION",
    "NUM_OSCILLATORS",
    "WAVE_SIZE",
    "decode_wave",
    "encode_wave",
    "make_wavetable",
    "vital_init_table",
    "wavetable_frames",
    "wavetable_hash",
    "wavetable_keyframes",
    "wavetable_problem",
]


def decode_wave(b64: str) -> np.ndarray:
    """Decode one keyframe's ``wave_data``: base64 of 2048 little-endian float32 -> ``(2048,)`` float32."""
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 4 * WAVE_SIZE:
        raise ValueError(f"wave_data holds {len(raw)} bytes, expected {4 * WAVE_SIZE}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def encode_wave(arr: np.ndarray) -> str:
    """Encode a ``(2048,)`` wave (any float dtype, cast to float32) as Vital's base64 ``wave_data``."""
    wave = np.asarray(arr)
    if wave.shape != (WAVE_SIZE,):
        raise ValueError(f"a wave frame must have shape ({WAVE_SIZE},), got {wave.shape}")
    wave = wave.astype("<f4")
    if not np.all(np.isfinite(wave)):
        raise ValueError("a wave frame must be finite")
    return base64.b64encode(wave.tobytes()).decode("ascii")


@functools.cache
def _init_table_cached() -> dict:
    import vita  # only synth/ touches Vital; imported lazily so the catalog works without a synth

    preset = json.loads(vita.Synth().to_json())
    return preset["settings"]["wavetables"][0]


def vital_init_table() -> dict:
    """Osc 1's table in Vital's init preset (the "Init" saw), as a fresh dict. Built once per process."""
    return copy.deepcopy(_init_table_cached())


def make_wavetable(name: str, keyframes: list[tuple[int, np.ndarray]], author: str = "vitalmatch") -> dict:
    """Build a one-group, one-Wave-Source table laid out like Vital's init table.

    ``keyframes`` is ``[(position, wave), ...]`` with integer positions in 0..256, strictly increasing, and
    ``(2048,)`` waves (cast to float32). Every other key (``version``, ``full_normalize``, ``remove_all_dc``,
    the component's ``interpolation`` settings) is copied from the live synth's init table.
    """
    if not keyframes:
        raise ValueError("a wavetable needs at least one keyframe")
    frames = []
    last = -1
    for position, wave in keyframes:
        if isinstance(position, bool) or not isinstance(position, int | np.integer):
            raise ValueError(f"keyframe position must be an int, got {position!r}")
        position = int(position)
        if not last < position <= MAX_POSITION:
            raise ValueError(f"keyframe positions must increase within 0..{MAX_POSITION}, got {position}")
        last = position
        frames.append({"position": position, "wave_data": encode_wave(wave)})

    template = _init_table_cached()
    table = copy.deepcopy(template)
    table["name"] = name
    table["author"] = author
    component = table["groups"][0]["components"][0]
    component["keyframes"] = frames
    table["groups"] = [{"components": [component]}]
    return table


def wavetable_problem(table: object) -> str | None:
    """Why ``table`` is not a usable Vital wavetable dict (one line), or None if it looks fine.

    Checks the structure Vital's loader walks (groups -> components -> type/keyframes), not the content.
    """
    if not isinstance(table, dict):
        return f"wavetable is a {type(table).__name__}, not an object"
    groups = table.get("groups")
    if not isinstance(groups, list):
        return "wavetable has no 'groups' list"
    for g, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("components"), list):
            return f"group {g} has no 'components' list"
        for c, comp in enumerate(group["components"]):
            if not isinstance(comp, dict) or not isinstance(comp.get("type"), str):
                return f"group {g} component {c} has no 'type'"
            if not isinstance(comp.get("keyframes", []), list):
                return f"group {g} component {c} 'keyframes' is not a list"
    return None


def wavetable_keyframes(table: dict) -> list[tuple[int, np.ndarray]] | None:
    """``[(position, (2048,) float32), ...]`` of a plain Wave Source table; None for any other layout.

    "Plain" means one group holding one "Wave Source" component, which is how Vital's init table, tables
    drawn in Vital's editor and :func:`make_wavetable` tables look. Raises ValueError on bad wave data.
    """
    groups = table.get("groups") if isinstance(table, dict) else None
    if not isinstance(groups, list) or len(groups) != 1:
        return None
    components = groups[0].get("components") if isinstance(groups[0], dict) else None
    if not isinstance(components, list) or len(components) != 1:
        return None
    comp = components[0]
    if not isinstance(comp, dict) or comp.get("type") != "Wave Source":
        return None
    out = []
    for i, kf in enumerate(comp.get("keyframes", [])):
        try:
            out.append((int(kf["position"]), decode_wave(kf["wave_data"])))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"keyframe {i} is not a valid Wave Source keyframe ({e})") from None
    return out or None


def wavetable_frames(table: dict) -> np.ndarray | None:
    """Keyframe waves of a plain Wave Source table, ``(n_keyframes, 2048)`` float32; None otherwise."""
    keyframes = wavetable_keyframes(table)
    if keyframes is None:
        return None
    return np.stack([wave for _, wave in keyframes])


def _canonical(obj: object) -> object:
    """JSON value with numbers unified (1 == 1.0, -0.0 == 0.0) so equal content serialises equally."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        as_float = float(obj)
        return as_float + 0.0 if as_float == obj else obj
    if isinstance(obj, float):
        return obj + 0.0
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    raise TypeError(f"not a JSON value: {type(obj).__name__}")


def wavetable_hash(table: dict) -> str:
    """sha256 hex of the table's sound: ``groups`` plus the ``full_normalize``/``remove_all_dc`` flags.

    Name, author and version are left out, so one table saved under two names hashes the same. The
    serialisation is sorted-key compact JSON with numbers unified (see ``_canonical``).
    """
    problem = wavetable_problem(table)
    if problem:
        raise ValueError(problem)
    payload = {
        "full_normalize": table.get("full_normalize"),
        "remove_all_dc": table.get("remove_all_dc"),
        "groups": table["groups"],
    }
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
