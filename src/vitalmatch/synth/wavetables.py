"""Wavetables: Vital's wavetable JSON, a content-hashed catalog, a built-in set, discovery and injection.

Stage: synth. Input: wavetable dicts as Vital writes them (inside ``.vital`` presets, ``.vitaltable`` files
and ``.vitalbank`` zips, or generated here). Output: a :class:`WavetableCatalog` (saved as one JSON file)
and preset dicts whose oscillators carry the chosen tables.

A wavetable is kept exactly as Vital serialises it (``WavetableCreator::stateToJson``)::

    {"author": str, "full_normalize": bool, "name": str, "remove_all_dc": bool, "version": str,
     "groups": [{"components": [{"type": "Wave Source", "interpolation": 1, "interpolation_style": 1,
                                 "keyframes": [{"position": 0..256, "wave_data": <base64>}, ...]},
                                ...]}]}

``wave_data`` is 2048 little-endian float32 samples (one cycle) in base64. Real presets also hold other
component types ("Audio File Source", "Line Source", "Wave Warp", "Wave Folder", ...); the catalog never
interprets them, it stores the dict as-is so every table round-trips into Vital unchanged.

A ``.vitaltable`` file is that same dict as JSON (Vital's ``WavetableEditSection::exportWavetable`` writes
``stateToJson().dump()``; on load Vital renames the table after the file). A ``.vitalbank`` is a zip
(JUCE ``ZipFile::Builder`` in Vital's ``BankExporter``) of ``<bank>/Presets/*.vital``,
``<bank>/Wavetables/*.vitaltable`` and other folders. Both facts were read in github.com/mtytel/vital.

The built-in tables are generated with float64 arithmetic restricted to IEEE-exact operations (+, -, *,
/, sqrt, floor), a polynomial sine and a pure-Python PRNG, then cast to float32, so their bytes and
hashes do not depend on the machine, libm or numpy's SIMD paths.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import math
import os
import re
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WAVE_SIZE = 2048
"""Samples in one wave frame (``vital::WaveFrame::kWaveformSize``)."""
MAX_POSITION = 256
"""Highest keyframe position (Vital has 257 frame slots, 0..256)."""
NUM_OSCILLATORS = 3

CATALOG_FORMAT = "vitalmatch-wavetables"
CATALOG_VERSION = 1

VITAL_INSTALL_DIRS: tuple[str, ...] = (
    # Linux
    "~/.local/share/vital",
    "~/Documents/Vital",
    "~/.vital",
    # macOS
    "~/Library/Application Support/Vital",
    "~/Music/Vital",
    "/Library/Application Support/Vital",
    # Windows
    "%USERPROFILE%/Documents/Vital",
    "%APPDATA%/Vital",
)
"""Where Vital keeps factory and user content. ``~`` and ``%VAR%`` are expanded at call time."""

PRESET_EXTENSION = ".vital"
TABLE_EXTENSION = ".vitaltable"
BANK_EXTENSION = ".vitalbank"
MAX_FILE_BYTES = 256 * 1024 * 1024
"""Files (and zip members) larger than this are skipped unread."""

__all__ = [
    "CATALOG_FORMAT",
    "CATALOG_VERSION",
    "MAX_POSITION",
    "VITAL_INSTALL_DIRS",
    "WAVE_SIZE",
    "CatalogEntry",
    "DiscoveryReport",
    "WavetableCatalog",
    "decode_wave",
    "discover",
    "encode_wave",
    "existing_install_dirs",
    "inject_wavetable",
    "make_wavetable",
    "vital_init_table",
    "wavetable_frames",
    "wavetable_hash",
    "wavetable_keyframes",
    "wavetable_problem",
]


# --------------------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------------


@dataclass
class CatalogEntry:
    """One unique table. ``count`` is how often its content was added (1 + duplicates seen).

    ``custom`` is False for stock tables (Vital's init table, tables from Vital's install folders and the
    built-in set) and True for tables people made. Do not mutate ``table``: ``hash`` describes it.
    """

    name: str
    hash: str
    origin: str
    custom: bool
    table: dict
    count: int = 1

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "hash": self.hash,
            "origin": self.origin,
            "custom": self.custom,
            "count": self.count,
            "table": self.table,
        }


class WavetableCatalog:
    """Ordered, content-deduplicated wavetables. Index 0 of :meth:`builtin` is Vital's init saw.

    Names are unique: a different table arriving under a taken name becomes "Name (2)", "Name (3)", ...
    Lookup by ``int`` index or by name; :meth:`index_of` finds a content hash.
    """

    def __init__(self) -> None:
        self._entries: list[CatalogEntry] = []
        self._by_hash: dict[str, int] = {}
        self._by_name: dict[str, int] = {}

    def add(
        self, table: dict, name: str | None = None, origin: str = "unknown", custom: bool = True
    ) -> tuple[int, bool]:
        """Add ``table`` (deep-copied) unless its content is already here -> ``(index, added)``.

        A duplicate keeps the first entry's name and origin, bumps its ``count``, and clears ``custom``
        when the new copy is stock (``custom=False``). ``name`` defaults to the table's own name.
        """
        problem = wavetable_problem(table)
        if problem:
            raise ValueError(problem)
        return self._add_hashed(table, wavetable_hash(table), name, origin, custom)

    def _add_hashed(
        self, table: dict, content_hash: str, name: str | None, origin: str, custom: bool
    ) -> tuple[int, bool]:
        index = self._by_hash.get(content_hash)
        if index is not None:
            entry = self._entries[index]
            entry.count += 1
            entry.custom = entry.custom and custom
            return index, False
        base = (name if name is not None else str(table.get("name") or "")).strip() or "Untitled"
        unique, k = base, 2
        while unique in self._by_name:
            unique, k = f"{base} ({k})", k + 1
        index = len(self._entries)
        self._entries.append(CatalogEntry(unique, content_hash, origin, bool(custom), copy.deepcopy(table)))
        self._by_hash[content_hash] = index
        self._by_name[unique] = index
        return index, True

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries)

    def __getitem__(self, key: int | str) -> CatalogEntry:
        """Entry by position (negative allowed) or by exact name; IndexError / KeyError otherwise."""
        if isinstance(key, str):
            if key not in self._by_name:
                raise KeyError(f"no wavetable named {key!r}")
            return self._entries[self._by_name[key]]
        return self._entries[key]

    def __contains__(self, content_hash: object) -> bool:
        return content_hash in self._by_hash

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    @property
    def hashes(self) -> list[str]:
        return [e.hash for e in self._entries]

    def index_of(self, content_hash: str) -> int:
        """Index of the entry with this content hash; KeyError if absent."""
        if content_hash not in self._by_hash:
            raise KeyError(f"no wavetable with hash {content_hash[:12]}...")
        return self._by_hash[content_hash]

    def to_json(self) -> str:
        """``{"format", "version", "entries": [...]}`` with one entry per line (stable bytes)."""
        head = json.dumps({"format": CATALOG_FORMAT, "version": CATALOG_VERSION})[:-1]
        lines = ",\n".join(json.dumps(e.to_json(), separators=(",", ":")) for e in self._entries)
        return f'{head}, "entries": [\n{lines}\n]}}\n'

    def save(self, path: str | os.PathLike) -> None:
        """Write the catalog as JSON (see :meth:`to_json`), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WavetableCatalog:
        """Read a file written by :meth:`save`. ValueError (one line) if it is not such a catalog."""
        path = Path(path)
        try:
            data = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a vitalmatch wavetable catalog (invalid JSON: {e})") from None
        try:
            return cls.from_json_data(data)
        except ValueError as e:
            raise ValueError(f"{path}: not a vitalmatch wavetable catalog ({e})") from None

    @classmethod
    def from_json_data(cls, data: object) -> WavetableCatalog:
        """Build from parsed catalog JSON; checks format, version, fields and every stored hash."""
        if not isinstance(data, dict) or data.get("format") != CATALOG_FORMAT:
            raise ValueError(f"'format' is not {CATALOG_FORMAT!r}")
        if data.get("version") != CATALOG_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}, expected {CATALOG_VERSION}")
        entries = data.get("entries")
        if not isinstance(entries, list):
            raise ValueError("'entries' is not a list")
        catalog = cls()
        for i, raw in enumerate(entries):
            if not isinstance(raw, dict):
                raise ValueError(f"entry {i} is not an object")
            name, origin, custom = raw.get("name"), raw.get("origin"), raw.get("custom")
            count = raw.get("count", 1)
            if not isinstance(name, str) or not isinstance(origin, str) or not isinstance(custom, bool):
                raise ValueError(f"entry {i} lacks name/origin/custom")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"entry {i} has a bad count {count!r}")
            table = raw.get("table")
            problem = wavetable_problem(table)
            if problem:
                raise ValueError(f"entry {i}: {problem}")
            content_hash = wavetable_hash(table)
            if raw.get("hash") != content_hash:
                raise ValueError(f"entry {i} ({name!r}) hash does not match its table")
            if content_hash in catalog._by_hash or name in catalog._by_name:
                raise ValueError(f"entry {i} ({name!r}) duplicates an earlier entry")
            catalog._add_hashed(table, content_hash, name, origin, custom)
            catalog._entries[-1].count = count
        return catalog

    @classmethod
    def builtin(cls) -> WavetableCatalog:
        """The built-in set (see :func:`_builtin_tables`): entry 0 is Vital's init saw, "Init Saw"."""
        catalog = cls()
        for name, table in _builtin_tables():
            catalog.add(table, name=name, origin="builtin", custom=False)
        return catalog


# --------------------------------------------------------------------------------------------------------
# Built-in tables: deterministic float64 generators
# --------------------------------------------------------------------------------------------------------

_IDX = np.arange(WAVE_SIZE, dtype=np.int64)
_T = _IDX / WAVE_SIZE  # exact: the divisor is a power of two
_QUARTER = WAVE_SIZE // 4
# Taylor coefficients of sin: (-1)^j / (2j+1)!; int/int true division is correctly rounded in Python.
_SIN_COEFFS = tuple((-1) ** j * (1 / math.factorial(2 * j + 1)) for j in range(13))


def _sin_cycles(x: np.ndarray) -> np.ndarray:
    """sin(2*pi*x) from +, -, *, floor only, so every machine gets the same bits (error < 1e-15)."""
    f = x - np.floor(x)
    negative = f >= 0.5
    f = np.where(negative, f - 0.5, f)
    f = np.minimum(f, 0.5 - f)  # now in [0, 1/4]: theta in [0, pi/2]
    theta = f * math.tau
    z = theta * theta
    acc = np.full_like(z, _SIN_COEFFS[-1])
    for c in reversed(_SIN_COEFFS[:-1]):
        acc = acc * z + c
    s = acc * theta
    return np.where(negative, -s, s)


_SIN = _sin_cycles(_T)


def _harmonic(k: int, phase: int = 0) -> np.ndarray:
    """sin(2*pi*(k*n + phase)/2048): a table lookup, exact and cheap. ``phase`` is in samples."""
    return _SIN[(k * _IDX + phase) % WAVE_SIZE]


def _additive(amps: Iterable[float], phases: Iterable[int] | None = None) -> np.ndarray:
    """Sum of sine harmonics k = 1, 2, ... with amplitudes ``amps`` (sequential sum: fixed rounding)."""
    out = np.zeros(WAVE_SIZE)
    phases = list(phases) if phases is not None else None
    for k, a in enumerate(amps, start=1):
        if a != 0.0:
            out += float(a) * _harmonic(k, 0 if phases is None else int(phases[k - 1]))
    return out


def _finish(wave: np.ndarray) -> np.ndarray:
    """Remove DC (exact ``math.fsum`` mean) and scale to peak 1."""
    wave = np.asarray(wave, dtype=np.float64)
    wave = wave - math.fsum(wave.tolist()) / WAVE_SIZE
    peak = float(np.max(np.abs(wave)))
    if peak == 0.0:
        raise ValueError("silent frame")
    return wave / peak


def _spread(m: int) -> list[int]:
    """m keyframe positions spread evenly over 0..256 (integer arithmetic)."""
    if m == 1:
        return [0]
    return [(MAX_POSITION * i + (m - 1) // 2) // (m - 1) for i in range(m)]


def _splitmix(seed: int, n: int) -> np.ndarray:
    """n uniform floats in [0, 1) from SplitMix64 in pure Python: identical on every platform/version."""
    mask = (1 << 64) - 1
    x = seed & mask
    out = []
    for _ in range(n):
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append((z >> 11) * 2.0**-53)
    return np.array(out, dtype=np.float64)


def _sine() -> np.ndarray:
    return _SIN.copy()


def _triangle() -> np.ndarray:
    """Sine-phase triangle: 0 -> 1 at n=512 -> -1 at n=1536 -> 0."""
    n = _IDX
    return np.where(n <= 512, n / 512, np.where(n <= 1536, (1024 - n) / 512, (n - 2048) / 512))


def _square() -> np.ndarray:
    """Exact square, +1 then -1: half-wave antisymmetric, so even harmonics are exactly zero."""
    return np.where(_IDX < 1024, 1.0, -1.0)


def _saw_up() -> np.ndarray:
    """Rising saw with Vital's half-sample grid: the negative of Vital's init saw, sine phase."""
    n = _IDX
    return np.where(n < 1024, (2 * n + 1) / 2047, -(2 * (2047 - n) + 1) / 2047)


def _pulse(width: float) -> np.ndarray:
    n = _IDX
    return np.where(n < round(width * WAVE_SIZE), 1.0, -1.0)


def _schroeder(count: int) -> list[int]:
    """Schroeder phases pi*k*(k-1)/K in samples: flat spectra without a tall peak."""
    return [(WAVE_SIZE * k * (k - 1) // (2 * count)) % WAVE_SIZE for k in range(1, count + 1)]


def _table_harmonic_series() -> list[np.ndarray]:
    counts = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128]
    return [_additive([(-1) ** (k + 1) / k for k in range(1, c + 1)]) for c in counts]


def _table_harmonic_sweep() -> list[np.ndarray]:
    return [_harmonic(k) for k in range(1, 9)]


def _table_odd_harmonics() -> list[np.ndarray]:
    counts = [1, 2, 3, 4, 6, 8, 16, 32, 64]
    return [_additive([1 / k if k % 2 and k < 2 * c else 0.0 for k in range(1, 2 * c)]) for c in counts]


def _table_even_harmonics() -> list[np.ndarray]:
    counts = [0, 1, 2, 3, 4, 6, 8, 16, 32]
    return [_additive([1.0] + [1 / k if k % 2 == 0 else 0.0 for k in range(2, 2 * c + 1)]) for c in counts]


def _table_partials(sets: list[dict[int, float]]) -> list[np.ndarray]:
    frames = []
    for partials in sets:
        amps = [0.0] * max(partials)
        for k, a in partials.items():
            amps[k - 1] = a
        frames.append(_additive(amps))
    return frames


def _table_drawbars() -> list[np.ndarray]:
    """Hammond registrations; footages 16' 5 1/3' 8' 4' 2 2/3' 2' 1 3/5' 1 1/3' 1' -> these harmonics."""
    harmonics = [1, 3, 2, 4, 6, 8, 10, 12, 16]
    step = math.sqrt(0.5)  # one drawbar step ~ 3 dB
    registrations = ["008000000", "808000000", "888000000", "688600000", "886400008", "838000008",
                     "888800000", "888888888"]  # fmt: skip
    frames = []
    for reg in registrations:
        partials = {}
        for h, d in zip(harmonics, reg, strict=True):
            if d != "0":
                amp = 1.0
                for _ in range(8 - int(d)):
                    amp *= step
                partials[h] = amp
        frames.extend(_table_partials([partials]))
    return frames


def _table_vowels(f0: float, formants: list[tuple[float, float, float]]) -> list[np.ndarray]:
    """Glottal-like 1/sqrt(k) source through three Lorentzian formants (Hz, for a note at f0 Hz)."""
    count = int(5000 // f0)
    phases = _schroeder(count)
    bandwidths, gains = (80.0, 100.0, 150.0), (1.0, 0.6, 0.35)
    frames = []
    for vowel in formants:
        amps = []
        for k in range(1, count + 1):
            f = k * f0
            env = 0.01
            for fc, bw, g in zip(vowel, bandwidths, gains, strict=True):
                d = (f - fc) / (0.5 * bw)
                env += g / (1.0 + d * d)
            amps.append(env / math.sqrt(k))
        frames.append(_additive(amps, phases))
    return frames


# Formant centres (Hz) for A E I O U: adult male (Peterson & Barney style averages) and adult female.
_VOWELS_LOW = [(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240)]
_VOWELS_HIGH = [(850, 1220, 2810), (610, 2330, 2990), (310, 2790, 3310), (590, 920, 2710), (370, 950, 2670)]


def _table_resonant_sweep() -> list[np.ndarray]:
    """Saw through a 2-pole resonant low-pass (Q=5) whose cutoff climbs from harmonic 2 to 64."""
    q = 5.0
    frames = []
    for kc in [2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]:
        amps = []
        for k in range(1, 257):
            r = k / kc
            a = 1.0 - r * r
            amps.append((-1) ** (k + 1) / k / math.sqrt(a * a + (r / q) * (r / q)))
        frames.append(_additive(amps))
    return frames


def _table_sync(shape: str) -> list[np.ndarray]:
    """Hard sync: a slave cycle at ``ratio`` x the master, restarted every master cycle."""
    frames = []
    for ratio in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0]:
        x = ratio * _T
        frames.append(2.0 * (x - np.floor(x)) - 1.0 if shape == "saw" else _sin_cycles(x))
    return frames


def _table_fm(ratio: int, indices: list[float]) -> list[np.ndarray]:
    """Phase modulation sin(2 pi t + I sin(2 pi ratio t)) over a sweep of indices I."""
    mod = _harmonic(ratio)
    return [_sin_cycles(_T + (index / math.tau) * mod) for index in indices]


def _table_phase_distortion() -> list[np.ndarray]:
    """Casio-CZ style: the read phase bends at d, turning -cos into a resonant saw as d shrinks."""
    t, frames = _T, []
    for d in [0.5, 0.4, 0.3, 0.2, 0.12, 0.07, 0.04, 0.02]:
        phase = np.where(t < d, 0.5 * t / d, 0.5 + 0.5 * (t - d) / (1.0 - d))
        frames.append(_sin_cycles(phase - 0.25))
    return frames


def _table_skew() -> list[np.ndarray]:
    """Triangle whose peak moves from the middle to the start: triangle -> falling saw."""
    t, frames = _T, []
    for d in [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01]:
        frames.append(np.where(t < d, -1.0 + 2.0 * t / d, 1.0 - 2.0 * (t - d) / (1.0 - d)))
    return frames


def _table_fold() -> list[np.ndarray]:
    """Sine driven into a triangle wavefolder (period 4 in amplitude) with rising gain."""
    frames = []
    for gain in [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0]:
        x = gain * _SIN - 1.0
        m = x - 4.0 * np.floor(x / 4.0)
        frames.append(np.abs(m - 2.0) - 1.0)
    return frames


def _table_drive() -> list[np.ndarray]:
    """Sine through the soft clipper g*x / sqrt(1 + (g*x)^2) with rising gain: sine -> near square."""
    frames = []
    for gain in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]:
        x = gain * _SIN
        frames.append(x / np.sqrt(1.0 + x * x))
    return frames


def _table_supersaw() -> list[np.ndarray]:
    """Bright saw (512 harmonics, seeded random phases) with comb ripples like detuned copies beating."""
    count = 512
    phases = [int(u * WAVE_SIZE) for u in _splitmix(0x5A5A, count)]
    frames = []
    for spacing in [0, 5, 11, 23, 37, 59]:
        amps = []
        for k in range(1, count + 1):
            comb = 1.0 if spacing == 0 else 0.6 + 0.4 * float(_SIN[(k * spacing + _QUARTER) % WAVE_SIZE])
            amps.append(comb / k)
        frames.append(_additive(amps, phases))
    return frames


def _table_soft_noise() -> list[np.ndarray]:
    """Seeded random amplitudes and phases under a soft low-pass tilt: a breathy, noise-like cycle."""
    count = 256
    frames = []
    for seed in range(5):
        u = _splitmix(1000 + seed, 2 * count)
        amps = [
            (0.25 + 0.75 * u[k - 1]) / math.sqrt(k) / (1.0 + (k / 48) * (k / 48)) for k in range(1, count + 1)
        ]
        frames.append(_additive(amps, [int(p * WAVE_SIZE) for p in u[count:]]))
    return frames


def _table_metallic() -> list[np.ndarray]:
    """Sparse prime-numbered partials whose emphasis climbs: clangy, bell-like timbres."""
    primes = [1, 7, 11, 17, 23, 29, 37, 43, 53]
    frames = []
    for centre in [1, 7, 13, 19, 25, 31]:
        partials = {}
        for p in primes:
            d = (p - centre) / 8.0
            partials[p] = 0.15 + 1.0 / (1.0 + d * d)
        frames.extend(_table_partials([partials]))
    return frames


_BUILTIN_SPECS: list[tuple[str, Callable[[], list[np.ndarray]]]] = [
    ("Sine", lambda: [_sine()]),
    ("Triangle", lambda: [_triangle()]),
    ("Square", lambda: [_square()]),
    ("Basic Shapes", lambda: [_sine(), _triangle(), _square(), _saw_up()]),
    ("Sine Saw Square", lambda: [_sine(), _saw_up(), _square()]),
    ("Harmonic Series", _table_harmonic_series),
    ("Harmonic Sweep", _table_harmonic_sweep),
    ("Odd Harmonics", _table_odd_harmonics),
    ("Even Harmonics", _table_even_harmonics),
    ("Pulse Width", lambda: [_pulse(w) for w in [0.5, 0.42, 0.35, 0.28, 0.21, 0.15, 0.1, 0.06, 0.03]]),
    ("Skew Sweep", _table_skew),
    (
        "Organ Odd",
        lambda: _table_partials(
            [
                {1: 1.0},
                {1: 1.0, 3: 0.5},
                {1: 1.0, 3: 0.55, 5: 0.35},
                {1: 1.0, 3: 0.6, 5: 0.45, 7: 0.3, 9: 0.2},
                {1: 0.8, 3: 0.8, 5: 0.6, 7: 0.5, 9: 0.4, 11: 0.3, 13: 0.2},
            ]
        ),
    ),
    (
        "Organ Even",
        lambda: _table_partials(
            [
                {1: 1.0, 2: 0.5},
                {1: 1.0, 2: 0.6, 4: 0.4},
                {1: 1.0, 2: 0.7, 4: 0.5, 6: 0.3, 8: 0.2},
                {1: 0.8, 2: 0.8, 4: 0.6, 6: 0.5, 8: 0.4, 10: 0.3, 12: 0.2},
            ]
        ),
    ),
    ("Organ Drawbars", _table_drawbars),
    ("Vowels Low", lambda: _table_vowels(110.0, _VOWELS_LOW)),
    ("Vowels High", lambda: _table_vowels(220.0, _VOWELS_HIGH)),
    ("Resonant Sweep", _table_resonant_sweep),
    ("Sync Saw", lambda: _table_sync("saw")),
    ("Sync Sine", lambda: _table_sync("sine")),
    ("FM Sweep", lambda: _table_fm(1, [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])),
    ("FM Bell", lambda: _table_fm(3, [0.0, 0.4, 0.8, 1.2, 1.8, 2.5, 3.5])),
    ("Phase Distortion", _table_phase_distortion),
    ("Fold Sweep", _table_fold),
    ("Drive Sweep", _table_drive),
    ("Supersaw Stack", _table_supersaw),
    ("Soft Noise", _table_soft_noise),
    ("Metallic", _table_metallic),
]


@functools.cache
def _builtin_tables_cached() -> tuple[tuple[str, dict], ...]:
    tables = [("Init Saw", _init_table_cached())]
    for name, make in _BUILTIN_SPECS:
        waves = [_finish(w) for w in make()]
        tables.append((name, make_wavetable(name, list(zip(_spread(len(waves)), waves, strict=True)))))
    return tuple(tables)


def _builtin_tables() -> list[tuple[str, dict]]:
    """``[(name, table), ...]`` of the built-in set, fresh copies. Generated once per process (~0.3 s).

    0 "Init Saw" is Vital's own init table (from the live synth). The rest are generated here, one
    keyframe per listed wave, positions spread evenly over 0..256; every frame is DC-free with peak 1.
    """
    return [(name, copy.deepcopy(table)) for name, table in _builtin_tables_cached()]


# --------------------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------------------


@dataclass
class DiscoveryReport:
    """What :func:`discover` did. ``skipped`` holds ``(path, one-line reason)``; ``seconds`` is wall time."""

    catalog: WavetableCatalog
    roots: list[str] = field(default_factory=list)
    files_scanned: int = 0
    presets_parsed: int = 0
    table_files_parsed: int = 0
    tables_found: int = 0
    unique_added: int = 0
    custom: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, max_skipped: int = 10) -> str:
        """A few human-readable lines; at most ``max_skipped`` skip reasons are listed."""
        lines = [
            f"scanned {self.files_scanned} files under {len(self.roots)} roots in {self.seconds:.2f} s: "
            f"{self.presets_parsed} presets, {self.table_files_parsed} wavetable files parsed, "
            f"{len(self.skipped)} skipped",
            f"{self.tables_found} tables found -> {self.unique_added} unique added ({self.custom} custom); "
            f"catalog now holds {len(self.catalog)}",
        ]
        for path, reason in self.skipped[:max_skipped]:
            lines.append(f"  skipped {path}: {reason}")
        if len(self.skipped) > max_skipped:
            lines.append(f"  ... and {len(self.skipped) - max_skipped} more skipped")
        return "\n".join(lines)


_ENV_VAR = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")


def _expand(template: str) -> Path | None:
    """Expand ``%VAR%`` (None when unset) and ``~``."""
    missing = False

    def sub(m: re.Match) -> str:
        nonlocal missing
        value = os.environ.get(m.group(1))
        missing = missing or not value
        return value or ""

    text = _ENV_VAR.sub(sub, template)
    if missing:
        return None
    return Path(os.path.expanduser(text))


def existing_install_dirs() -> list[Path]:
    """The folders of :data:`VITAL_INSTALL_DIRS` that exist here, each once, in list order."""
    out: list[Path] = []
    seen = set()
    for template in VITAL_INSTALL_DIRS:
        path = _expand(template)
        if path is None or not path.is_dir():
            continue
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


_CANDIDATES = (PRESET_EXTENSION, TABLE_EXTENSION, BANK_EXTENSION)
_BANK_MEMBERS = (PRESET_EXTENSION, TABLE_EXTENSION)


def _candidate_files(root: Path, report: DiscoveryReport) -> Iterator[Path]:
    """Files under ``root`` with a Vital extension, sorted; unreadable folders go to ``report.skipped``."""
    if root.is_file():
        if root.suffix.lower() in _CANDIDATES:
            yield root
        else:
            report.skipped.append((str(root), f"not a {'/'.join(_CANDIDATES)} file"))
        return
    if not root.is_dir():
        report.skipped.append((str(root), "no such file or folder"))
        return

    def on_error(e: OSError) -> None:
        report.skipped.append((str(e.filename or root), f"unreadable folder ({e.strerror or e})"))

    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in _CANDIDATES:
                yield Path(folder) / name


def _parse_json(data: bytes) -> tuple[object, str | None]:
    """``(value, None)`` or ``(None, one-line reason)``. Vital (JUCE) writes UTF-8; a BOM is tolerated."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"invalid JSON ({e})"
    except (ValueError, RecursionError) as e:
        return None, f"invalid JSON ({type(e).__name__})"


class _Scanner:
    """Feeds parsed files into a report's catalog; ``stock`` marks Vital install content."""

    def __init__(self, report: DiscoveryReport) -> None:
        self.report = report
        self.init_hash = wavetable_hash(_init_table_cached())

    def add_table(self, table: object, name: str, where: str, origin: str, stock: bool) -> None:
        problem = wavetable_problem(table)
        if problem:
            self.report.skipped.append((where, problem))
            return
        self.report.tables_found += 1
        content_hash = wavetable_hash(table)
        custom = not stock and content_hash != self.init_hash
        _, added = self.report.catalog._add_hashed(table, content_hash, name, origin, custom)
        if added:
            self.report.unique_added += 1

    def scan_bytes(self, data: bytes, label: str, stem: str, stock: bool) -> None:
        """One .vital or .vitaltable file's content; ``label`` names it in origins and skip lines."""
        try:
            self._scan_bytes(data, label, stem, stock)
        except Exception as e:  # one odd file must not end a long scan
            first_line = (str(e).splitlines() or [""])[0][:200]
            self.report.skipped.append((label, f"unexpected {type(e).__name__}: {first_line}"))

    def _scan_bytes(self, data: bytes, label: str, stem: str, stock: bool) -> None:
        origin = "vital-install" if stock else f"file:{label}"
        obj, reason = _parse_json(data)
        if reason:
            self.report.skipped.append((label, reason))
            return
        if label.lower().endswith(TABLE_EXTENSION):
            self.report.table_files_parsed += 1
            self.add_table(obj, stem, label, origin, stock)
            return
        settings = obj.get("settings") if isinstance(obj, dict) else None
        tables = settings.get("wavetables") if isinstance(settings, dict) else None
        if not isinstance(tables, list):
            self.report.skipped.append((label, "not a Vital preset (no settings.wavetables list)"))
            return
        self.report.presets_parsed += 1
        for i, table in enumerate(tables[:NUM_OSCILLATORS]):
            name = table.get("name") if isinstance(table, dict) else None
            name = name if isinstance(name, str) and name.strip() else f"{stem} osc {i + 1}"
            self.add_table(table, name, f"{label} [wavetable {i}]", origin, stock)

    def scan_bank(self, path: Path, stock: bool) -> None:
        try:
            with zipfile.ZipFile(path) as bank:
                members = sorted((m for m in bank.infolist() if not m.is_dir()), key=lambda m: m.filename)
                for member in members:
                    if os.path.splitext(member.filename)[1].lower() not in _BANK_MEMBERS:
                        continue
                    label = f"{path}!{member.filename}"
                    if member.file_size > MAX_FILE_BYTES:
                        self.report.skipped.append((label, f"larger than {MAX_FILE_BYTES} bytes"))
                        continue
                    try:
                        data = bank.read(member)
                    except (OSError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as e:
                        self.report.skipped.append((label, f"unreadable zip member ({e})"))
                        continue
                    stem = os.path.splitext(os.path.basename(member.filename))[0]
                    self.scan_bytes(data, label, stem, stock)
        except (OSError, zipfile.BadZipFile) as e:
            self.report.skipped.append((str(path), f"not a readable .vitalbank zip ({e})"))

    def scan_file(self, path: Path, stock: bool) -> None:
        self.report.files_scanned += 1
        if path.suffix.lower() == BANK_EXTENSION:
            self.scan_bank(path, stock)
            return
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                self.report.skipped.append((str(path), f"larger than {MAX_FILE_BYTES} bytes"))
                return
            data = path.read_bytes()
        except OSError as e:
            self.report.skipped.append((str(path), f"unreadable ({e.strerror or e})"))
            return
        self.scan_bytes(data, str(path), path.stem, stock)


def discover(
    paths: Iterable[str | os.PathLike],
    *,
    include_install_dirs: bool = True,
    catalog: WavetableCatalog | None = None,
    install_dirs: Iterable[str | os.PathLike] | None = None,
) -> DiscoveryReport:
    """Collect the wavetables of ``.vital`` presets, ``.vitaltable`` files and ``.vitalbank`` zips.

    ``paths`` are files or folders (walked recursively, sorted, symlinked folders not followed). Each
    preset contributes ``settings.wavetables[0..2]``; a ``.vitaltable`` contributes itself, named after
    its file as Vital does. Tables are deduplicated by content into ``catalog`` (a new empty one when
    None; pass :meth:`WavetableCatalog.builtin` to extend the built-in set).

    Vital's folders (``install_dirs``, default: :func:`existing_install_dirs`) are scanned first when
    ``include_install_dirs``; everything found there is stock: origin ``"vital-install"``, custom=False.
    Elsewhere a table is custom unless it is Vital's init table. Unreadable, non-JSON or foreign files
    are listed in ``report.skipped`` with a one-line reason; nothing raises for bad input files.
    """
    start = time.perf_counter()
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    report = DiscoveryReport(catalog=catalog if catalog is not None else WavetableCatalog())
    before = len(report.catalog)
    scanner = _Scanner(report)

    roots: list[tuple[Path, bool]] = []
    if include_install_dirs:
        dirs = existing_install_dirs() if install_dirs is None else [Path(d) for d in install_dirs]
        roots += [(d, True) for d in dirs if d.is_dir()]
    roots += [(Path(p), False) for p in paths]

    seen: set[str] = set()
    for root, stock in roots:
        report.roots.append(str(root))
        for path in _candidate_files(root, report):
            key = os.path.realpath(path)
            if key in seen:  # a user path inside an install folder, or listed twice
                continue
            seen.add(key)
            scanner.scan_file(path, stock)

    report.custom = sum(1 for e in list(report.catalog)[before:] if e.custom)
    report.seconds = time.perf_counter() - start
    return report


# --------------------------------------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------------------------------------


def inject_wavetable(preset: dict, osc: int, table: dict) -> None:
    """Put a deep copy of ``table`` into ``preset["settings"]["wavetables"][osc - 1]`` (osc is 1..3).

    The render engine does: preset = init JSON dict -> inject tables -> ``synth.load_json(json.dumps(preset))``.
    """
    if isinstance(osc, bool) or not isinstance(osc, int) or not 1 <= osc <= NUM_OSCILLATORS:
        raise ValueError(f"osc must be 1..{NUM_OSCILLATORS}, got {osc!r}")
    problem = wavetable_problem(table)
    if problem:
        raise ValueError(problem)
    settings = preset.get("settings") if isinstance(preset, dict) else None
    tables = settings.get("wavetables") if isinstance(settings, dict) else None
    if not isinstance(tables, list) or len(tables) < osc:
        raise ValueError(f"preset has no settings.wavetables[{osc - 1}]")
    tables[osc - 1] = copy.deepcopy(table)
