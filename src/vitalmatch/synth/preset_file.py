"""Preset files: real Vital ``.vital`` presets and ``.vitalbank`` banks -> registry vectors.

Stage: synth (ingestion of real presets). Input: ``.vital`` files (JSON) and ``.vitalbank`` files
(zip archives of presets and other files). Output: one :class:`ParsedPreset` per preset: the
registry's normalised vectors (``(C,)`` float32 in [0, 1], ``(K,)`` int32 option indices), the
encoded modulations ``(k, 7)``, 8 LFO-shape indices and one sample index into side tables
(:class:`PresetTables`), plus what did not fit (values out of range, unknown controls, skipped
modulation slots). Datasets render the *vectors* (:meth:`RenderEngine.render` with
:func:`preset_extras`), so a stored row is exactly what the synth played.

Vital's rules followed here (read in github.com/mtytel/vital, ``src/common/load_save.cpp``):

* ``LoadSave::loadControls`` sets every control the file holds and resets every control it lacks
  to its default, so a missing control takes :attr:`ParamSpec.default`; keys that are no control
  of this engine (e.g. ``custom_warps``, ``random_values`` and ``osc_N_spectral_morph_phase`` that
  Vital 1.5 writes and vita 0.1.0 lacks) are ignored by the synth: they are counted and listed in
  :attr:`ParsedPreset.unknown_controls`, never fatal.
* ``loadWavetables`` / ``loadLfos`` / ``loadSample`` replace only what the file holds; a missing
  wavetable, LFO shape or sample keeps the init preset's (the engine starts from it).
* A preset whose sample oscillator is off (``sample_on`` = 0) cannot play its sample, so it stores
  the init sample (index 0): Vital fills a new preset's sample with fresh random white noise, so
  almost every saved preset carries a different 118 kB one (78 of the 124 shared presets).
* A bank (``BankExporter``: JUCE ``ZipFile::Builder``) holds ``<bank>/Presets/**/*.vital`` beside
  wavetables, LFOs and samples; only ``.vital`` members are read, in memory (never extracted), with
  the size limits :data:`MAX_PRESET_BYTES`, :data:`MAX_BANK_MEMBERS` and :data:`MAX_BANK_BYTES`.
  macOS resource forks (``__MACOSX/``, ``._name``) are skipped.

What the vectors cannot carry: a modulation's ``line_mapping`` curve (they keep amount, bipolar,
power and stereo), out-of-range values (clamped here), bypassed slots (skipped: they do nothing),
unknown controls, and the last float32 steps of some values (unit values are float32, and so are
Vital's raw values: for ranges such as -30..30 not every raw float32 has a unit float32). Measured
by ``benchmarks/ingest_presets.py`` on the 124 shared presets (note 60, 1.5 s at 22.05 kHz,
multi-scale mel L1 between rendering the vectors and rendering the file): 108 within 1e-3 (median
2e-6); 13 differ by their ``line_mapping`` curves (0.003 to 2.6; the file without its curves
matches to 2e-5); 3 by float32 rounding (0.001 to 0.04: ``distortion_drive`` of the "Down Sample"
distortion is a step function; float64 vectors match exactly). Clamping changed no render (3
presets hold compressor ratios above their range).

Values: continuous controls are clamped to ``[min, max]`` then made unit (integers rounded);
categoricals are clamped and rounded to option indices; a non-number or non-finite value takes
the default. Every value outside its range (or not a number) is listed per parameter in
:attr:`ParsedPreset.out_of_range`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeGuard

import numpy as np

from vitalmatch.synth.export import check_vital_preset, read_vital
from vitalmatch.synth.modulation import (
    LFO_SHAPES,
    MAX_SLOTS,
    NUM_LFOS,
    Connection,
    decode,
    encode,
    lfo_shape_problem,
    read_modulations,
)
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import PresetExtras
from vitalmatch.synth.wavetables.catalog import WavetableCatalog
from vitalmatch.synth.wavetables.format import NUM_OSCILLATORS, _canonical, wavetable_hash, wavetable_problem

PRESET_EXTENSION = ".vital"
BANK_EXTENSION = ".vitalbank"

#: A preset file (or bank member) larger than this is refused unread (the init preset is 174 kB;
#: the largest shared preset, with a long sample, is ~3 MB).
MAX_PRESET_BYTES = 64 * 1024 * 1024
#: At most this many members in a bank's zip directory (a bank of a few hundred presets is large).
MAX_BANK_MEMBERS = 10_000
#: At most this many uncompressed bytes of ``.vital`` members read from one bank.
MAX_BANK_BYTES = 1024 * 1024 * 1024

#: ``settings`` keys that are not scalar controls (handled on their own).
STRUCTURED_KEYS = frozenset({"modulations", "lfos", "sample", "wavetables"})

#: Relative tolerance (of a control's span) before a value counts as out of range: Vital writes
#: float32 values, exact in JSON, so this only absorbs rounding in files written by other tools.
RANGE_TOLERANCE = 1e-6

_META_RE = re.compile(r"^modulation_(\d+)_(amount|power)$")

__all__ = [
    "BANK_EXTENSION",
    "MAX_BANK_BYTES",
    "MAX_BANK_MEMBERS",
    "MAX_PRESET_BYTES",
    "PRESET_EXTENSION",
    "ParsedPreset",
    "PresetFile",
    "PresetTables",
    "StagedPreset",
    "content_hash",
    "factory_dirs",
    "finish_preset",
    "init_preset",
    "preset_extras",
    "preset_from_bytes",
    "read_presets",
    "sample_problem",
    "stage_preset",
    "to_vectors",
    "vital_data_dirs",
]


# ------------------------------------------------------------------------------------ the engine's init
@functools.cache
def _init_preset_text() -> str:
    import vita  # only synth/ touches Vital

    return vita.Synth().to_json()


def init_preset() -> dict:
    """Vital's init preset as the engine writes it (a fresh dict; the synth is built once per process)."""
    return json.loads(_init_preset_text())


@functools.cache
def _control_names() -> frozenset[str]:
    """The engine's scalar controls: the init preset's settings keys (772 on vita 0.1.0)."""
    return frozenset(init_preset()["settings"]) - STRUCTURED_KEYS


# ------------------------------------------------------------------------------------ Vital's folders
def vital_data_dirs() -> list[Path]:
    """Vital's data folders on this machine that exist (``LoadSave::getDataDirectory``).

    The folder named by ``data_directory`` in Vital's config file (Linux ``~/.vital/Vital.config``,
    macOS ``~/Library/Application Support/vital/Vital.config``, Windows
    ``%APPDATA%/vital/Vital.config``), then the defaults: Linux ``$XDG_DATA_HOME/vital`` or
    ``~/.local/share/vital``; macOS ``~/Music/Vital``; Windows ``Documents/Vital``. Each once.
    """
    home = Path(os.path.expanduser("~"))
    configs = [home / ".vital" / "Vital.config", home / "Library/Application Support/vital/Vital.config"]
    if os.environ.get("APPDATA"):
        configs.append(Path(os.environ["APPDATA"]) / "vital" / "Vital.config")
    candidates: list[Path] = []
    for config in configs:
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("data_directory"), str):
            candidates.append(Path(data["data_directory"]))
    if os.environ.get("XDG_DATA_HOME", "").strip():
        candidates.append(Path(os.environ["XDG_DATA_HOME"]) / "vital")
    candidates += [home / ".local/share/vital", home / "Music/Vital", home / "Documents/Vital"]
    if os.environ.get("USERPROFILE"):
        candidates.append(Path(os.environ["USERPROFILE"]) / "Documents" / "Vital")
    out, seen = [], set()
    for path in candidates:
        if path.is_dir() and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            out.append(path)
    return out


def factory_dirs() -> list[Path]:
    """Vital's factory content folders that exist here: ``<data folder>/Factory`` of each
    :func:`vital_data_dirs` (where Vital's installer puts its presets, wavetables and LFOs; the
    user's own content lives in ``<data folder>/User``)."""
    return [d / "Factory" for d in vital_data_dirs() if (d / "Factory").is_dir()]


# ------------------------------------------------------------------------------------ reading files
@dataclass(frozen=True)
class PresetFile:
    """One preset read from a file.

    Attributes:
        name: the file's stem (what Vital's browser shows); ``"bank/member"`` for a bank member.
        file: where it came from, as given by the caller (relative path string); a bank member is
            ``"<bank file>!<member path>"``.
        preset: the preset JSON (``settings`` dict and a ``synth_version`` the engine loads).
    """

    name: str
    file: str
    preset: dict


def preset_from_bytes(data: bytes, where: str) -> dict:
    """Parse a ``.vital`` file's bytes (e.g. a bank member) with the checks of
    :func:`~vitalmatch.synth.export.read_vital`; ``where`` names it in the error.

    Raises:
        ValueError: (one line) not UTF-8 JSON, nested too deeply, no settings or version string,
            or made by a newer Vital than the engine loads.
    """
    try:
        preset = json.loads(data.decode("utf-8-sig"))  # JUCE writes UTF-8; tolerate a BOM
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where} is not a Vital preset (not JSON: {e.__class__.__name__})") from None
    except RecursionError:
        raise ValueError(f"{where} is not a Vital preset (JSON nested too deeply)") from None
    return check_vital_preset(preset, where)


def _without_prefix(message: str, where: str) -> str:
    """``read_vital``'s message without the leading path (the failure list names the file)."""
    for prefix in (f"{where}: ", f"{where} "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _is_resource_fork(member: str) -> bool:
    parts = PurePosixPath(member.replace("\\", "/")).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1].startswith("._"))


def read_presets(
    path: str | os.PathLike, file: str | None = None
) -> tuple[list[PresetFile], list[tuple[str, str]]]:
    """Read the presets of one ``.vital`` or ``.vitalbank`` file.

    Args:
        path: the file.
        file: the name to record for it (default: ``str(path)``); bank members add ``!member``.

    Returns:
        ``(presets, failures)``: one :class:`PresetFile` for a ``.vital`` file, one per readable
        ``.vital`` member (sorted by member path) for a bank; ``failures`` lists
        ``(file, one-line reason)`` for the file or the members that could not be read. Nothing
        raises for bad input.
    """
    path = Path(path)
    file = str(path) if file is None else file
    if path.suffix.lower() == BANK_EXTENSION:
        return _read_bank(path, file)
    try:
        if path.stat().st_size > MAX_PRESET_BYTES:
            return [], [(file, f"larger than {MAX_PRESET_BYTES >> 20} MiB")]
        preset = read_vital(path)
    except OSError as e:
        return [], [(file, f"cannot read ({e.strerror or e})")]
    except ValueError as e:
        return [], [(file, _without_prefix(str(e), str(path)))]
    return [PresetFile(path.stem, file, preset)], []


def _read_bank(path: Path, file: str) -> tuple[list[PresetFile], list[tuple[str, str]]]:
    presets: list[PresetFile] = []
    failures: list[tuple[str, str]] = []
    bank_name = path.stem
    try:
        with zipfile.ZipFile(path) as bank:
            infos = bank.infolist()
            if len(infos) > MAX_BANK_MEMBERS:
                return [], [(file, f"not a usable .vitalbank (more than {MAX_BANK_MEMBERS} members)")]
            members = sorted(
                (
                    m
                    for m in infos
                    if not m.is_dir()
                    and m.filename.lower().endswith(PRESET_EXTENSION)
                    and not _is_resource_fork(m.filename)
                ),
                key=lambda m: m.filename,
            )
            if not members:
                return [], [(file, "a .vitalbank with no .vital presets")]
            total = 0
            for m in members:
                where = f"{file}!{m.filename}"
                if m.file_size > MAX_PRESET_BYTES:
                    failures.append((where, f"larger than {MAX_PRESET_BYTES >> 20} MiB"))
                    continue
                total += m.file_size
                if total > MAX_BANK_BYTES:
                    failures.append((where, f"bank holds more than {MAX_BANK_BYTES >> 20} MiB of presets"))
                    break
                try:
                    # zipfile stops at the declared size (and checks the CRC), so a member cannot
                    # inflate past MAX_PRESET_BYTES; read one byte more to be sure.
                    with bank.open(m) as stream:
                        data = stream.read(MAX_PRESET_BYTES + 1)
                    if len(data) > MAX_PRESET_BYTES:
                        raise ValueError(f"larger than {MAX_PRESET_BYTES >> 20} MiB")
                    preset = preset_from_bytes(data, where)
                except (OSError, zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as e:
                    failures.append((where, f"unreadable bank member ({type(e).__name__}: {e})"))
                    continue
                except ValueError as e:
                    failures.append((where, _without_prefix(str(e), where)))
                    continue
                stem = PurePosixPath(m.filename.replace("\\", "/")).stem
                presets.append(PresetFile(f"{bank_name}/{stem}", where, preset))
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as e:
        return [], [(file, f"not a readable .vitalbank zip ({type(e).__name__}: {e})")]
    return presets, failures


# ------------------------------------------------------------------------------------ side tables
def content_hash(obj: Mapping, drop: Sequence[str] = ("name",)) -> str:
    """sha256 hex of a JSON object's content without the keys ``drop`` (sorted-key compact JSON,
    numbers unified so 1 == 1.0): two LFO shapes or samples that differ only by name hash alike."""
    payload = {k: v for k, v in obj.items() if k not in drop}
    text = json.dumps(_canonical(payload), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def sample_problem(sample: object) -> str | None:
    """Why ``sample`` is not a usable Vital sample dict (one line), or None.

    Vital's ``Sample::stateToJson`` writes ``name``, ``length`` (frames), ``sample_rate`` (Hz),
    ``samples`` (base64 16-bit PCM) and, for stereo samples, ``samples_stereo``.
    """
    if not isinstance(sample, Mapping):
        return "a sample must be a JSON object"
    for key in ("length", "sample_rate"):
        v = sample.get(key)
        if isinstance(v, bool) or not _is_number(v) or v < 0:
            return f"a sample needs a non-negative number {key!r}"
    for key in ("samples", "samples_stereo"):
        if key in sample and not isinstance(sample[key], str):
            return f"sample {key!r} must be a base64 string"
    if "samples" not in sample:
        return "a sample needs 'samples'"
    return None


class PresetTables:
    """The tables a set of parsed presets index, grown as presets are read (state: the tables).

    * ``lfo_shapes``: Vital LFO dicts; starts with :data:`~vitalmatch.synth.modulation.LFO_SHAPES`
      (index 0 = the init triangle), deduplicated by content (:func:`content_hash`, name left out);
    * ``samples``: Vital sample dicts; index 0 = the init preset's white noise (as :func:`init_preset`
      holds it), deduplicated the same way;
    * the wavetables of the presets that the base ``catalog`` lacks, deduplicated by
      :func:`~vitalmatch.synth.wavetables.format.wavetable_hash` in first-seen order:
      :meth:`catalog` returns the base catalog extended by them.

    Args:
        catalog: the base wavetable catalog (not changed).
    """

    def __init__(self, catalog: WavetableCatalog) -> None:
        self.base = catalog
        self.lfo_shapes: list[dict] = []
        self.samples: list[dict] = []
        self._lfo_index: dict[str, int] = {}
        self._sample_index: dict[str, int] = {}
        self._custom: dict[str, tuple[dict, str, str]] = {}  # hash -> (table, name, origin), in order
        self._extended: WavetableCatalog | None = None
        for shape in LFO_SHAPES:
            self.lfo_index(shape)
        self.sample_index(init_preset()["settings"]["sample"])

    def lfo_index(self, shape: dict) -> int:
        """Index of ``shape`` (a valid LFO dict) in :attr:`lfo_shapes`, added when new."""
        return self._index(shape, self.lfo_shapes, self._lfo_index)

    def sample_index(self, sample: dict) -> int:
        """Index of ``sample`` (a valid sample dict) in :attr:`samples`, added when new."""
        return self._index(sample, self.samples, self._sample_index)

    @staticmethod
    def _index(item: dict, items: list[dict], index: dict[str, int]) -> int:
        key = content_hash(item)
        if key not in index:
            index[key] = len(items)
            items.append(copy.deepcopy(dict(item)))
        return index[key]

    def add_wavetable(self, table: dict, content_hash_: str, name: str, origin: str) -> None:
        """Note a preset's table (hash from ``wavetable_hash``); kept once when the base lacks it."""
        if content_hash_ not in self.base and content_hash_ not in self._custom:
            self._custom[content_hash_] = (copy.deepcopy(table), name, origin)
            self._extended = None

    @property
    def n_custom_wavetables(self) -> int:
        """Unique tables the base catalog lacks, seen so far."""
        return len(self._custom)

    def catalog(self) -> WavetableCatalog:
        """The base catalog followed by every custom table in first-seen order (custom=True)."""
        if self._extended is None:
            self._extended = self.base.extended(self._custom.values())
        return self._extended

    def extras(self, modulation: np.ndarray, lfo_shape: np.ndarray, sample: int) -> PresetExtras:
        """:func:`preset_extras` over these tables."""
        return preset_extras(modulation, lfo_shape, sample, self.lfo_shapes, self.samples)


def preset_extras(
    modulation: np.ndarray,
    lfo_shape: Sequence[int] | np.ndarray,
    sample: int,
    lfo_shapes: Sequence[dict],
    samples: Sequence[dict],
) -> PresetExtras:
    """The :class:`~vitalmatch.synth.render.PresetExtras` that renders a stored preset.

    Args:
        modulation: ``(k, 7)`` encoded connections (:func:`~vitalmatch.synth.modulation.encode`).
        lfo_shape: ``(8,)`` indices into ``lfo_shapes``.
        sample: index into ``samples``. Always written into the preset, index 0 too: vita fills
            a synth's init sample with white noise from a per-process generator, so the init
            sample of a worker depends on how many synths its process built before (measured:
            the first and the second ``vita.Synth()`` of a process hold different noise), and
            only the stored sample is the one the dataset row names.
        lfo_shapes, samples: the tables (a dataset's ``lfo_shapes`` / ``samples`` blobs).

    Raises:
        ValueError: an index outside its table, or malformed modulation rows.
    """
    shapes = []
    for i, k in enumerate(np.asarray(lfo_shape).reshape(-1)):
        if not 0 <= int(k) < len(lfo_shapes):
            raise ValueError(
                f"lfo_{i + 1} shape index {int(k)} is outside the table (size {len(lfo_shapes)})"
            )
        shapes.append(copy.deepcopy(lfo_shapes[int(k)]))
    if not 0 <= int(sample) < len(samples):
        raise ValueError(f"sample index {int(sample)} is outside the table (size {len(samples)})")
    return PresetExtras(
        modulations=tuple(decode(modulation)),
        lfos=tuple(shapes),
        sample=copy.deepcopy(samples[int(sample)]),
    )


# ------------------------------------------------------------------------------------ presets
@dataclass(frozen=True, eq=False)
class ParsedPreset:
    """A real preset as registry vectors and side-table indices.

    Attributes:
        continuous: ``(C,)`` float32 in [0, 1].
        categorical: ``(K,)`` int32 option indices; ``osc_N_wavetable`` indexes the extended catalog.
        modulation: ``(k, 7)`` float32 encoded connections (slots renumbered 0..k-1).
        lfo_shape: ``(8,)`` int16 indices into the LFO-shape table.
        sample: index into the sample table.
        name, file: see :class:`PresetFile`.
        out_of_range: ``{parameter: raw value as in the file}`` for values outside the control's
            range or not numbers (clamped, or the default used).
        unknown_controls: settings keys that are no control of this engine (ignored).
        skipped_modulations: one line per modulation slot left out (bypassed, unknown names, ...).
        custom_wavetables: oscillator numbers (1..3) whose table is custom in the catalog.
        notes: other things replaced by the init preset's (an invalid LFO shape or sample).
    """

    continuous: np.ndarray
    categorical: np.ndarray
    modulation: np.ndarray
    lfo_shape: np.ndarray
    sample: int
    name: str
    file: str
    out_of_range: dict[str, object] = field(default_factory=dict)
    unknown_controls: list[str] = field(default_factory=list)
    skipped_modulations: list[str] = field(default_factory=list)
    custom_wavetables: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class StagedPreset:
    """What :func:`stage_preset` reads from a preset before the catalog is final (small: no tables).

    ``values`` holds the file's scalar controls as given; ``wavetables`` the content hash of each
    oscillator's table.
    """

    name: str
    file: str
    values: dict[str, object]
    wavetables: tuple[str, ...]
    modulation: np.ndarray
    lfo_shape: np.ndarray
    sample: int
    unknown_controls: list[str]
    skipped_modulations: list[str]
    notes: list[str]


def _renumber_meta(connections: list[Connection], settings: Mapping, skipped: list[str]) -> list[Connection]:
    """Point ``modulation_N_amount/power`` destinations at the slots the kept connections move to.

    :func:`~vitalmatch.synth.modulation.read_modulations` drops bypassed/invalid slots and the
    encoding renumbers the rest 1..k, so a connection that modulates slot N's amount must follow
    slot N; one whose target slot was dropped (or is empty) does nothing in Vital either and is
    skipped (repeated until no such connection is left).
    """
    found = settings.get("modulations")
    entries: list = found if isinstance(found, list) else []
    original: list[int] = []  # 1-based slot each kept connection came from, in order
    for slot, entry in enumerate(entries[:MAX_SLOTS], start=1):
        bypassed = _is_number(b := settings.get(f"modulation_{slot}_bypass")) and float(b) > 0.5
        if len(original) < len(connections) and isinstance(entry, Mapping) and not bypassed:
            c = connections[len(original)]
            if (entry.get("source"), entry.get("destination")) == (c.source, c.destination):
                original.append(slot)
    if len(original) != len(connections):  # read_modulations keeps slot order; never expected
        return connections
    while True:
        kept = set(original)
        drop = {
            i
            for i, c in enumerate(connections)
            if (m := _META_RE.match(c.destination)) and int(m.group(1)) not in kept
        }
        if not drop:
            break
        for i in sorted(drop):
            c = connections[i]
            target = _META_RE.match(c.destination).group(1)  # type: ignore[union-attr]
            skipped.append(f"slot {original[i]} {c.source} -> {c.destination}: slot {target} is not kept")
        connections = [c for i, c in enumerate(connections) if i not in drop]
        original = [s for i, s in enumerate(original) if i not in drop]
    new_slot = {old: new for new, old in enumerate(original, start=1)}
    out = []
    for c in connections:
        m = _META_RE.match(c.destination)
        if m and new_slot[int(m.group(1))] != int(m.group(1)):
            c = dataclasses.replace(c, destination=f"modulation_{new_slot[int(m.group(1))]}_{m.group(2)}")
        out.append(c)
    return out


def stage_preset(preset: PresetFile, tables: PresetTables) -> StagedPreset:
    """First pass over a preset: everything but the registry vectors.

    Registers the preset's LFO shapes and sample in ``tables`` (indices), and its wavetables that
    the base catalog lacks (:meth:`PresetTables.add_wavetable`).

    Raises:
        ValueError: (one line) a wavetable the synth could not load (``wavetable_problem``).
    """
    settings = preset.preset["settings"]
    controls = _control_names()
    values = {k: v for k, v in settings.items() if k in controls}
    unknown = sorted(k for k in settings if k not in controls and k not in STRUCTURED_KEYS)
    notes: list[str] = []

    hashes = []
    given = settings.get("wavetables")
    given = given if isinstance(given, list) else []
    for osc in range(1, NUM_OSCILLATORS + 1):
        table = given[osc - 1] if osc - 1 < len(given) else None
        if table is None:
            table = init_preset()["settings"]["wavetables"][osc - 1]  # Vital keeps the init table
            notes.append(f"osc {osc}: no wavetable in the file, the init table is used")
        problem = wavetable_problem(table)
        if problem:
            raise ValueError(f"osc {osc} wavetable: {problem}")
        h = wavetable_hash(table)
        name = table.get("name") if isinstance(table.get("name"), str) and table["name"].strip() else None
        tables.add_wavetable(table, h, name or f"{preset.name} osc {osc}", f"preset:{preset.file}")
        hashes.append(h)

    lfo_shape = np.zeros(NUM_LFOS, dtype=np.int16)
    lfos = settings.get("lfos")
    lfos = lfos if isinstance(lfos, list) else []
    for i in range(NUM_LFOS):
        shape = lfos[i] if i < len(lfos) else None
        if shape is None:
            continue  # Vital keeps the init shape: index 0
        problem = lfo_shape_problem(shape)
        if problem:
            notes.append(f"lfo_{i + 1}: {problem}; the init shape is used")
            continue
        lfo_shape[i] = tables.lfo_index(shape)

    sample = 0
    sample_on = values.get("sample_on", 0.0)
    if not _is_number(sample_on) or float(sample_on) < 0.5:
        pass  # the sample oscillator is off: its sample cannot sound, store the init one
    elif "sample" in settings:
        problem = sample_problem(settings["sample"])
        if problem:
            notes.append(f"sample: {problem}; the init sample is used")
        else:
            sample = tables.sample_index(settings["sample"])

    connections, skipped = read_modulations(settings)
    connections = _renumber_meta(connections, settings, skipped)
    return StagedPreset(
        name=preset.name,
        file=preset.file,
        values=values,
        wavetables=tuple(hashes),
        modulation=encode(connections),
        lfo_shape=lfo_shape,
        sample=sample,
        unknown_controls=unknown,
        skipped_modulations=skipped,
        notes=notes,
    )


def _is_number(v: object) -> TypeGuard[int | float]:
    """A finite JSON number (bool counts: Vital reads it as 0/1; an integer too large for a float
    does not)."""
    if not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def finish_preset(staged: StagedPreset, registry: ParamRegistry, catalog: WavetableCatalog) -> ParsedPreset:
    """Second pass: the registry vectors of a staged preset, wavetables indexed in ``catalog``.

    Args:
        staged: from :func:`stage_preset`.
        registry: the full registry whose ``osc_N_wavetable`` options are ``catalog``'s names.
        catalog: a catalog holding every table of the preset (:meth:`PresetTables.catalog`).

    Raises:
        ValueError: the registry does not match the catalog, or a table is not in it.
    """
    out_of_range: dict[str, object] = {}
    cont = np.empty(len(registry.continuous), dtype=np.float32)
    cat = np.empty(len(registry.categorical), dtype=np.int32)
    custom = []
    for specs, arr in ((registry.continuous, cont), (registry.categorical, cat)):
        for j, spec in enumerate(specs):
            if not spec.control:  # osc_N_wavetable: the catalog index of the file's table
                osc = int(spec.name.split("_")[1])
                if spec.n_options != len(catalog):
                    raise ValueError(
                        f"the registry's {spec.name} has {spec.n_options} options but the catalog "
                        f"holds {len(catalog)} tables"
                    )
                try:
                    arr[j] = catalog.index_of(staged.wavetables[osc - 1])
                except KeyError:
                    raise ValueError(f"{staged.file}: osc {osc}'s wavetable is not in the catalog") from None
                if catalog[int(arr[j])].custom:
                    custom.append(osc)
                continue
            raw = staged.values.get(spec.name, spec.default)
            if not _is_number(raw):
                out_of_range[spec.name] = raw
                raw = spec.default
            else:
                tol = RANGE_TOLERANCE * max(spec.span, 1.0)
                if not spec.min - tol <= float(raw) <= spec.max + tol:
                    out_of_range[spec.name] = float(raw)
            arr[j] = spec.to_unit(float(raw))
    return ParsedPreset(
        continuous=cont,
        categorical=cat,
        modulation=staged.modulation,
        lfo_shape=staged.lfo_shape,
        sample=staged.sample,
        name=staged.name,
        file=staged.file,
        out_of_range=out_of_range,
        unknown_controls=list(staged.unknown_controls),
        skipped_modulations=list(staged.skipped_modulations),
        custom_wavetables=sorted(custom),
        notes=list(staged.notes),
    )


def to_vectors(
    preset: dict | PresetFile,
    registry: ParamRegistry,
    catalog: WavetableCatalog,
    tables: PresetTables | None = None,
    *,
    name: str = "",
    file: str = "",
) -> ParsedPreset:
    """One preset dict -> :class:`ParsedPreset` (both passes at once).

    The catalog must already hold the preset's wavetables (for many files use the two passes,
    :func:`stage_preset` then :func:`finish_preset`, as :func:`vitalmatch.data.ingest.ingest` does).

    Args:
        preset: a Vital preset dict (or a :class:`PresetFile`).
        registry: the full registry built on ``catalog``'s names.
        catalog: the wavetable catalog the ``osc_N_wavetable`` indices refer to.
        tables: the LFO-shape and sample tables the indices refer to (they grow); a new
            ``PresetTables(catalog)`` when None.
        name, file: recorded in the result (for a dict).

    Raises:
        ValueError: (one line) an unusable wavetable, or one missing from ``catalog``.
    """
    if not isinstance(preset, PresetFile):
        preset = PresetFile(name, file, check_vital_preset(preset, name or "the preset"))
    tables = PresetTables(catalog) if tables is None else tables
    return finish_preset(stage_preset(preset, tables), registry, catalog)
