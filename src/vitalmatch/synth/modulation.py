"""Modulation: Vital's modulation matrix and LFO shapes, as data the datasets can store.

Stage: synth (Tier 3 knowledge). Input: connections (:class:`Connection`: a source, a
destination and the slot settings amount, bipolar, power, stereo) and LFO shapes. Output: the
parts of a Vital preset dict that carry them (:func:`write_modulations`, :func:`write_lfos`), a
compact ``(k, 7)`` float32 encoding for storage (:func:`encode` / :func:`decode`) and the dense
``(4, 32, 428)`` view that training uses (:func:`dense`).

Only this module knows Vital's modulation rules (vita-facts §2.3):

* 32 sources and 428 destinations (:func:`sources`, :func:`destinations`, from vita's own lists);
  a name outside them makes ``connect_modulation`` segfault at the next render, so every name is
  checked (:func:`connection_problem`) before it reaches a preset;
* 64 slots: slot ``k`` (0-based) is ``settings.modulations[k]`` plus the scalar controls
  ``modulation_{k+1}_amount`` (-1..1), ``_bipolar`` (0/1), ``_power`` (-10..10), ``_stereo``
  (0/1) and ``_bypass`` (0/1);
* connections are written into the preset JSON, never through ``connect_modulation``: a bogus JSON
  entry is dropped by the synth instead of crashing it, and one ``load_json`` applies everything.

Destinations kept out of sampling (:data:`NOT_SAMPLED`): the 128 ``modulation_N_amount`` /
``modulation_N_power`` destinations (modulating another slot's amount; meaningless for a sparse
random matrix) and ``beats_per_minute`` (the render tempo). :data:`CRASHING` holds destinations
measured to crash the synth (``benchmarks/modulation_sweep.py``: every destination from every
source family at amount +-1, each in its own process); the sweep on vita 0.1.0 found none, as
vita-facts §4 reports for all 13,696 pairs.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Slots of the matrix (vita-facts §2.3: a 65th connection is silently dropped).
MAX_SLOTS = 64

#: Channels of the dense view, in order.
CHANNELS = ("amount", "bipolar", "power", "stereo")

#: Columns of the stored encoding: one row per connection.
ENCODING = ("slot", "source", "destination", "amount", "bipolar", "power", "stereo")
ENCODED_WIDTH = len(ENCODING)

#: Range of ``modulation_N_power`` (curve shape; 0 = linear).
POWER_RANGE = (-10.0, 10.0)

#: Destinations measured to crash the synth (see the module docstring): none on vita 0.1.0.
CRASHING: frozenset[str] = frozenset()

#: Sources whose renders depend on the process's history, not only on the preset: the note-on
#: ``random`` value reads a generator shared by the process, so a preset using it rendered 0.0005
#: apart (max |difference|) in a test process and in a fresh generate worker, where every other
#: source tried (envelopes, LFOs, ``random_1..4``, note, velocity) gave the same bits
#: (docs/vita-facts.md §6). Random matrices leave it out; ingested presets keep it (rendered in
#: fresh workers, so a dataset is still reproducible run to run).
UNREPRODUCIBLE_SOURCES: frozenset[str] = frozenset({"random"})

#: Number of LFOs and their JSON list length in a preset.
NUM_LFOS = 8


@functools.cache
def sources() -> tuple[str, ...]:
    """The 32 modulation source names, in vita's order (the dense view's source axis)."""
    import vita

    return tuple(vita.get_modulation_sources())


@functools.cache
def destinations() -> tuple[str, ...]:
    """The 428 modulation destination names, in vita's order (the dense view's destination axis)."""
    import vita

    return tuple(vita.get_modulation_destinations())


@functools.cache
def _source_index() -> dict[str, int]:
    return {n: i for i, n in enumerate(sources())}


@functools.cache
def _destination_index() -> dict[str, int]:
    return {n: i for i, n in enumerate(destinations())}


def is_meta_destination(name: str) -> bool:
    """True for ``modulation_N_amount`` / ``modulation_N_power``: a slot modulating another slot."""
    return name.startswith("modulation_")


@functools.cache
def sampled_destinations() -> tuple[str, ...]:
    """Destinations random matrices draw from: all but :data:`CRASHING` and the meta ones."""
    return tuple(
        d
        for d in destinations()
        if d not in CRASHING and not is_meta_destination(d) and d != "beats_per_minute"
    )


#: Destinations kept out of random matrices (documented in the module docstring).
def not_sampled() -> frozenset[str]:
    """Destinations that exist but are never sampled (see the module docstring)."""
    return frozenset(destinations()) - frozenset(sampled_destinations())


@dataclass(frozen=True)
class Connection:
    """One modulation connection and its slot settings.

    Attributes:
        source: a name of :func:`sources` (e.g. ``"lfo_1"``).
        destination: a name of :func:`destinations` (e.g. ``"filter_1_cutoff"``).
        amount: -1..1, the share of the destination's range the source moves it by.
        bipolar: the source swings both ways around the destination's value.
        power: -10..10, curve of the source's value (0 = linear).
        stereo: opposite modulation in the left and right channels.
    """

    source: str
    destination: str
    amount: float
    bipolar: bool = False
    power: float = 0.0
    stereo: bool = False


def connection_problem(c: Connection) -> str | None:
    """Why ``c`` must not reach the synth (one line), or None when it is valid."""
    if c.source not in _source_index():
        return f"unknown modulation source {c.source!r}"
    if c.destination not in _destination_index():
        return f"unknown modulation destination {c.destination!r}"
    if c.destination in CRASHING:
        return f"modulation destination {c.destination!r} crashes the synth"
    for name, value, lo, hi in (("amount", c.amount, -1.0, 1.0), ("power", c.power, *POWER_RANGE)):
        if not isinstance(value, int | float) or not _finite(value) or not lo <= value <= hi:
            return f"modulation {name} must be a number in [{lo:g}, {hi:g}], got {value!r}"
    return None


def check_connections(connections: Sequence[Connection]) -> None:
    """Raise ValueError (one line) for a list the synth could not take as it is."""
    if len(connections) > MAX_SLOTS:
        raise ValueError(f"at most {MAX_SLOTS} modulation connections, got {len(connections)}")
    seen: set[tuple[str, str]] = set()
    for c in connections:
        problem = connection_problem(c)
        if problem:
            raise ValueError(problem)
        if (c.source, c.destination) in seen:
            raise ValueError(f"modulation {c.source} -> {c.destination} is connected twice")
        seen.add((c.source, c.destination))


def write_modulations(preset: dict, connections: Sequence[Connection]) -> None:
    """Write ``connections`` into slots 1..k of a preset dict; clears the other slots.

    Sets ``settings.modulations`` (64 entries) and every ``modulation_N_*`` scalar. Raises
    ValueError (one line) for an invalid list (:func:`check_connections`).
    """
    check_connections(connections)
    settings = preset["settings"]
    entries = [{"source": "", "destination": ""} for _ in range(MAX_SLOTS)]
    for k in range(MAX_SLOTS):
        c = connections[k] if k < len(connections) else None
        if c is not None:
            entries[k] = {"source": c.source, "destination": c.destination}
        p = f"modulation_{k + 1}_"
        settings[p + "amount"] = float(c.amount) if c else 0.0
        settings[p + "bipolar"] = float(bool(c.bipolar)) if c else 0.0
        settings[p + "power"] = float(c.power) if c else 0.0
        settings[p + "stereo"] = float(bool(c.stereo)) if c else 0.0
        settings[p + "bypass"] = 0.0
    settings["modulations"] = entries


def read_modulations(settings: Mapping) -> tuple[list[Connection], list[str]]:
    """The active connections of a preset's ``settings`` dict, and why others were skipped.

    A slot is skipped when bypassed (``modulation_N_bypass`` > 0.5), empty, or invalid (unknown
    names, a crashing destination, a duplicate pair); out-of-range amount and power are clamped.
    Returns ``(connections in slot order, reasons)``, one reason line per skipped non-empty slot.
    """
    entries = settings.get("modulations") if isinstance(settings, Mapping) else None
    if not isinstance(entries, list):
        return [], []
    out: list[Connection] = []
    skipped: list[str] = []
    seen: set[tuple[str, str]] = set()
    for k, entry in enumerate(entries[:MAX_SLOTS]):
        if not isinstance(entry, Mapping):
            continue
        src, dst = entry.get("source", ""), entry.get("destination", "")
        if not src and not dst:
            continue
        p = f"modulation_{k + 1}_"
        if _number(settings.get(p + "bypass"), 0.0) > 0.5:
            skipped.append(f"slot {k + 1} {src} -> {dst}: bypassed")
            continue
        amount = _number(settings.get(p + "amount"), 0.0)
        power = _number(settings.get(p + "power"), 0.0)
        c = Connection(
            str(src),
            str(dst),
            float(np.clip(amount, -1.0, 1.0)),
            _number(settings.get(p + "bipolar"), 0.0) > 0.5,
            float(np.clip(power, *POWER_RANGE)),
            _number(settings.get(p + "stereo"), 0.0) > 0.5,
        )
        problem = connection_problem(c)
        if problem is None and (c.source, c.destination) in seen:
            problem = "connected twice"
        if problem:
            skipped.append(f"slot {k + 1} {src} -> {dst}: {problem}")
            continue
        seen.add((c.source, c.destination))
        out.append(c)
    return out, skipped


def _number(x, default: float) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not _finite(x):
        return default
    return float(x)


def _finite(x: int | float) -> bool:
    """math.isfinite that is False (not OverflowError) for a JSON integer too large for a float."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


# ------------------------------------------------------------------------------ storage
def encode(connections: Sequence[Connection]) -> np.ndarray:
    """``(k, 7)`` float32 rows ``slot, source index, destination index, amount, bipolar, power,
    stereo`` (indices into :func:`sources` / :func:`destinations`; exact in float32)."""
    check_connections(connections)
    si, di = _source_index(), _destination_index()
    rows = [
        (k, si[c.source], di[c.destination], c.amount, float(c.bipolar), c.power, float(c.stereo))
        for k, c in enumerate(connections)
    ]
    return np.array(rows, dtype=np.float32).reshape(len(rows), ENCODED_WIDTH)


def decode(rows: np.ndarray) -> list[Connection]:
    """Inverse of :func:`encode` (rows in slot order). Raises ValueError for a malformed array."""
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, ENCODED_WIDTH)
    src, dst = sources(), destinations()
    out = []
    for slot, s, d, amount, bipolar, power, stereo in arr[np.argsort(arr[:, 0], kind="stable")]:
        if not (0 <= s < len(src) and 0 <= d < len(dst)) or s != int(s) or d != int(d):
            raise ValueError(f"stored modulation row of slot {slot:g} names no source/destination")
        c = Connection(src[int(s)], dst[int(d)], float(amount), bipolar > 0.5, float(power), stereo > 0.5)
        out.append(c)
    return out


def dense(rows: np.ndarray, n_sources: int | None = None, n_destinations: int | None = None) -> np.ndarray:
    """The dense ``(4, 32, 428)`` float32 matrix of one preset's encoded connections.

    Channels :data:`CHANNELS`: amount (-1..1), bipolar (0/1), power (-10..10), stereo (0/1),
    indexed ``[channel, source, destination]``; zero where nothing is connected. ``n_sources`` /
    ``n_destinations`` default to vita's list lengths (pass a dataset's own to avoid vita).
    """
    s_n = len(sources()) if n_sources is None else n_sources
    d_n = len(destinations()) if n_destinations is None else n_destinations
    out = np.zeros((len(CHANNELS), s_n, d_n), dtype=np.float32)
    arr = np.asarray(rows, dtype=np.float32).reshape(-1, ENCODED_WIDTH)
    if len(arr):
        s, d = arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64)
        out[:, s, d] = arr[:, 3:7].T
    return out


def dense_batch(batch: Iterable[np.ndarray]) -> np.ndarray:
    """``(B, 4, 32, 428)`` float32 dense views of B presets' encoded connections."""
    mats = [dense(r) for r in batch]
    if not mats:
        return np.zeros((0, len(CHANNELS), len(sources()), len(destinations())), dtype=np.float32)
    return np.stack(mats)


# ------------------------------------------------------------------------------ LFO shapes
def _shape(name: str, points: Sequence[float], powers: Sequence[float] | None = None, smooth=False) -> dict:
    n = len(points) // 2
    return {
        "name": name,
        "num_points": n,
        "points": [float(p) for p in points],
        "powers": [float(p) for p in (powers or [0.0] * n)],
        "smooth": bool(smooth),
    }


#: Built-in LFO shapes, in Vital's JSON (``points`` are x, y pairs in [0, 1] with y = 0 at the
#: top of Vital's editor, as in the init preset's triangle; ``powers`` bend each segment).
#: Index 0 is Vital's init shape, so an unset LFO stores 0.
LFO_SHAPES: tuple[dict, ...] = (
    _shape("Triangle", [0.0, 1.0, 0.5, 0.0, 1.0, 1.0]),
    _shape("Sine", [0.0, 1.0, 0.5, 0.0, 1.0, 1.0], smooth=True),
    _shape("Saw Down", [0.0, 0.0, 1.0, 1.0]),
    _shape("Saw Up", [0.0, 1.0, 1.0, 0.0]),
    _shape("Square", [0.0, 0.0, 0.5, 0.0, 0.5, 1.0, 1.0, 1.0]),
    _shape("Exp Decay", [0.0, 0.0, 1.0, 1.0], powers=[-4.0, 0.0]),
    _shape("Ramp Hold", [0.0, 1.0, 0.25, 0.0, 1.0, 0.0]),
)


def lfo_shape_problem(shape: object) -> str | None:
    """Why ``shape`` is not a usable Vital LFO dict (one line), or None."""
    if not isinstance(shape, Mapping):
        return "an LFO shape must be a JSON object"
    points, powers, n = shape.get("points"), shape.get("powers"), shape.get("num_points")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100:
        return "an LFO shape needs num_points in 1..100"
    if not isinstance(points, list) or len(points) != 2 * n:
        return "an LFO shape needs 2 x num_points point coordinates"
    if not isinstance(powers, list) or len(powers) != n:
        return "an LFO shape needs num_points powers"
    values = points + powers
    if any(isinstance(v, bool) or not isinstance(v, int | float) or not _finite(v) for v in values):
        return "LFO shape points and powers must be finite numbers"
    return None


def write_lfos(preset: dict, shapes: Sequence[dict | None]) -> None:
    """Put LFO shape dicts into ``settings.lfos`` (entry ``i`` for ``lfo_{i+1}``; None keeps it)."""
    if len(shapes) > NUM_LFOS:
        raise ValueError(f"at most {NUM_LFOS} LFO shapes, got {len(shapes)}")
    settings = preset["settings"]
    lfos = list(settings.get("lfos") or [])
    for i, shape in enumerate(shapes):
        if shape is None:
            continue
        problem = lfo_shape_problem(shape)
        if problem:
            raise ValueError(f"lfo_{i + 1}: {problem}")
        while len(lfos) <= i:
            lfos.append(copy.deepcopy(LFO_SHAPES[0]))
        lfos[i] = copy.deepcopy(dict(shape))
    settings["lfos"] = lfos


__all__ = [
    "CHANNELS",
    "CRASHING",
    "ENCODED_WIDTH",
    "ENCODING",
    "LFO_SHAPES",
    "MAX_SLOTS",
    "NUM_LFOS",
    "UNREPRODUCIBLE_SOURCES",
    "Connection",
    "check_connections",
    "connection_problem",
    "decode",
    "dense",
    "dense_batch",
    "destinations",
    "encode",
    "is_meta_destination",
    "lfo_shape_problem",
    "not_sampled",
    "read_modulations",
    "sampled_destinations",
    "sources",
    "write_lfos",
    "write_modulations",
]
