"""The dataset file's schema: its layout and version, and how columns and attributes are stored.

Stage: data (storage). Input: a :class:`StorageConfig`, the widths of the parameter columns and
the caller's root attributes. Output: the empty layout of a new dataset file
(:func:`build_layout`), plus the checks and conversions that the writer
(:mod:`vitalmatch.data.writer`) and the reader (:mod:`vitalmatch.data.reader`) share. Nothing
here knows how a commit survives a crash; that is :mod:`vitalmatch.data.journal`.

Layout (schema ``SCHEMA_VERSION``; N rows, each one render of one preset at one MIDI note)::

    audio/waveforms       (N, channels, T)  int16 ("pcm16") | float16 | float32, chunks of
                          ``chunk_rows`` rows, gzip + shuffle; attrs format, channels,
                          sample_rate, full_scale (pcm16: int16 32767 <-> full_scale)
    features/log_mel      (N, n_mels, frames) float16, only when ``mel_shape`` was given
    params/continuous     (N, C) float32 in [0, 1]
    params/categorical    (N, K) int32
    params/modulation     (N,) vlen float32: per row the k connections of the preset's
                          modulation matrix, flattened (k x 7: slot, source index, destination
                          index, amount, bipolar, power, stereo; vitalmatch.synth.modulation
                          .encode); empty without modulation. The dense (4, 32, 428) view is
                          built on reading, never stored (schema 1.1.0 on)
    params/lfo_shape      (N, 8) int16: per LFO an index into blob ``lfo_shapes`` (JSON list of
                          Vital LFO dicts; 0 = the init preset's triangle) (1.1.0 on)
    params/sample         (N,) int32: index into blob ``samples`` (JSON list of Vital sample
                          dicts; 0 = the init preset's white noise) (1.1.0 on)
    metadata/midi_note    (N,) int16          metadata/source       (N,) S16
    metadata/tier         (N,) int8           metadata/preset_hash  (N,) S64 (hex sha256)
    metadata/preset_name  (N,) S80 (utf-8)    metadata/split        (N,) S5 train|val|test
    metadata/preset_index (N,) int64 (position of the preset in the sampling stream)
    metadata/preset_file  (N,) S200 (utf-8): the ``.vital`` file an ingested preset came from,
                          empty for sampled presets (1.1.0 on)
    blobs/<name>          (nbytes,) uint8, see :meth:`DatasetWriter.write_blob`
    vitalmatch/progress_json  (nbytes,) uint8: the caller's progress dict of the last commit
                          (a dataset, rewritten in place: a string attribute would leak
                          heap space at every commit); attrs n_rows, sequence (commits so
                          far), json_attrs (which root attrs hold JSON-encoded dicts)
    root attrs            schema_version and the ``attrs`` given at creation; a dict value
                          ``key: {...}`` is stored as the JSON string ``key_json`` and read
                          back as ``key: {...}``

Before the HDF5 data, a 512-byte user block carries the file id that ties a commit journal to
its file (see :mod:`vitalmatch.data.journal`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

#: 1.1.0 added the modulation, LFO-shape, sample and preset-file columns (:data:`ADDED_IN_1_1`);
#: 1.0.0 files (Tier 1, round 1) still read and resume: they hold no modulation.
SCHEMA_VERSION = "1.1.0"
SUPPORTED_SCHEMA_VERSIONS = frozenset({"1.0.0", SCHEMA_VERSION})

AUDIO_FORMATS = ("pcm16", "float16", "float32")
CHANNELS = {"stereo": 2, "mono": 1}
SPLITS = ("train", "val", "test")
PCM16_MAX = 32767
FLOAT16_MAX = float(np.finfo(np.float16).max)

AUDIO = "audio/waveforms"
LOG_MEL = "features/log_mel"
CONTINUOUS = "params/continuous"
CATEGORICAL = "params/categorical"
MODULATION = "params/modulation"
LFO_SHAPE = "params/lfo_shape"
SAMPLE = "params/sample"
PRESET_FILE = "metadata/preset_file"
#: Columns a 1.0.0 file lacks (readers give their empty values there).
ADDED_IN_1_1 = (MODULATION, LFO_SHAPE, SAMPLE, PRESET_FILE)
#: Values per stored modulation connection, and LFOs per preset.
MODULATION_WIDTH = 7
NUM_LFOS = 8
PRESET_FILE_BYTES = 200
BOOK = "vitalmatch"
BLOBS = "blobs"

#: Metadata columns under ``metadata/``: name -> stored dtype.
METADATA_COLUMNS: dict[str, str] = {
    "midi_note": "int16",
    "source": "S16",
    "tier": "int8",
    "preset_hash": "S64",
    "preset_name": "S80",
    "split": "S5",
    "preset_index": "int64",
}
STRING_COLUMNS = frozenset(k for k, v in METADATA_COLUMNS.items() if v.startswith("S"))
MAX_PROGRESS_BYTES = 16 << 20


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class StorageConfig:
    """How audio is stored; the other columns have fixed types (see the module docstring).

    Attributes:
        audio_format: "pcm16" (int16, 32767 <-> ``full_scale``), "float16" or "float32".
        channels: "stereo" keeps L and R; "mono" stores their mean.
        compression_level: gzip level 0-9 for every column; 0 = no compression.
        shuffle: byte-shuffle filter before gzip (helps int16/float data compress).
        chunk_rows: rows per HDF5 chunk of audio and log-mel (the unit of compression and of
            reading: reading one row decompresses its whole chunk).
        full_scale: amplitude stored as int16 32767 in pcm16; larger values are clipped.
    """

    audio_format: str = "pcm16"
    channels: str = "stereo"
    compression_level: int = 4
    shuffle: bool = True
    chunk_rows: int = 16
    full_scale: float = 1.0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(
                f"audio_format must be one of {', '.join(AUDIO_FORMATS)}, got {self.audio_format!r}"
            )
        if self.channels not in CHANNELS:
            raise ValueError(f"channels must be 'stereo' or 'mono', got {self.channels!r}")
        if not is_int(self.compression_level) or not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be an integer 0-9, got {self.compression_level!r}")
        if not is_int(self.chunk_rows) or self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be an integer >= 1, got {self.chunk_rows!r}")
        fs = self.full_scale
        if isinstance(fs, bool) or not isinstance(fs, int | float) or not math.isfinite(fs) or fs <= 0:
            raise ValueError(f"full_scale must be a positive finite number, got {fs!r}")


def is_int(x: Any) -> bool:
    """Whether ``x`` is a Python or numpy integer (bools are not)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


# --------------------------------------------------------------------------------------------
# Columns


@dataclass(frozen=True)
class Column:
    """One dataset of the layout: HDF5 path, shape after the row axis, stored dtype, rows per chunk."""

    name: str
    tail: tuple[int, ...]
    dtype: np.dtype
    chunk_rows: int


def layout_columns(
    audio_length: int,
    n_continuous: int,
    n_categorical: int,
    storage: StorageConfig,
    mel_shape: tuple[int, int] | None,
) -> list[Column]:
    """Every dataset of the layout. Audio and log-mel chunk by ``storage.chunk_rows`` rows; the
    small columns by up to 8192 rows (about 1 MiB), so that their chunk index stays short."""
    audio_dtype = {"pcm16": np.int16, "float16": np.float16, "float32": np.float32}[storage.audio_format]
    cols = [
        Column(AUDIO, (CHANNELS[storage.channels], audio_length), np.dtype(audio_dtype), storage.chunk_rows)
    ]
    if mel_shape is not None:
        cols.append(Column(LOG_MEL, tuple(mel_shape), np.dtype(np.float16), storage.chunk_rows))
    small = (
        [
            (CONTINUOUS, (n_continuous,), np.dtype(np.float32)),
            (CATEGORICAL, (n_categorical,), np.dtype(np.int32)),
            (MODULATION, (), h5py.vlen_dtype(np.float32)),
            (LFO_SHAPE, (NUM_LFOS,), np.dtype(np.int16)),
            (SAMPLE, (), np.dtype(np.int32)),
        ]
        + [(f"metadata/{k}", (), np.dtype(v)) for k, v in METADATA_COLUMNS.items()]
        + [(PRESET_FILE, (), np.dtype(f"S{PRESET_FILE_BYTES}"))]
    )
    for name, tail, dtype in small:
        row_bytes = max(1, dtype.itemsize * math.prod(tail))
        rows = 2 ** int(math.log2(max(1, (1 << 20) // row_bytes)))  # chunks of about 1 MiB at most
        cols.append(Column(name, tail, dtype, max(storage.chunk_rows, min(rows, 8192))))
    return cols


def build_layout(
    f: h5py.File,
    columns: list[Column],
    storage: StorageConfig,
    sample_rate: int,
    attrs: dict,
    json_keys: list[str],
) -> None:
    """Create the empty layout of the module docstring in a new file (0 rows, progress ``{}``).

    ``attrs`` and ``json_keys`` are the output of :func:`encode_attrs`; ``sample_rate`` in Hz.
    """
    for col in columns:
        kw: dict[str, Any] = {}
        if all(col.tail):
            kw["chunks"] = (col.chunk_rows, *col.tail)
            if storage.compression_level:
                kw.update(compression="gzip", compression_opts=storage.compression_level)
            kw["shuffle"] = storage.shuffle
        else:  # a zero-width column (e.g. no categorical parameters)
            kw["chunks"] = True
        f.create_dataset(col.name, shape=(0, *col.tail), maxshape=(None, *col.tail), dtype=col.dtype, **kw)
    a = f[AUDIO].attrs
    a["format"] = storage.audio_format
    a["channels"] = storage.channels
    a["sample_rate"] = np.int64(sample_rate)
    a["full_scale"] = np.float64(storage.full_scale)
    f.attrs["schema_version"] = SCHEMA_VERSION
    for k, v in attrs.items():
        f.attrs[k] = v
    book = f.create_group(BOOK)
    book.attrs["n_rows"] = np.int64(0)
    book.attrs["sequence"] = np.int64(0)
    book.attrs["json_attrs"] = np.array(json_keys, dtype=h5py.string_dtype())
    book.create_dataset("progress_json", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(16384,))
    write_progress(book, "{}")


# --------------------------------------------------------------------------------------------
# Root attributes, the progress record and the schema check


def encode_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Check and convert the caller's attrs to HDF5 values; returns (values, JSON-encoded keys)."""
    if not isinstance(attrs, Mapping):
        raise ValueError(f"attrs must be a dict, got {type(attrs).__name__}")
    out: dict[str, Any] = {}
    json_keys: list[str] = []
    for key, value in attrs.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"attribute names must be non-empty strings without '/', got {key!r}")
        if key == "schema_version":
            raise ValueError("attribute 'schema_version' is reserved")
        if isinstance(value, Mapping):
            stored = key + "_json"
            try:
                value = json.dumps(value, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise ValueError(f"attribute {key!r}: dict is not JSON-serialisable ({e})") from None
            json_keys.append(stored)
        else:
            stored = key
            value = _attr_value(key, value)
        if stored in out:
            raise ValueError(f"attributes {key!r} and {stored!r} collide (dicts are stored as '<key>_json')")
        out[stored] = value
    return out, json_keys


def _attr_value(key: str, value: Any) -> Any:
    """An attribute value as HDF5 stores it: scalars as they are, lists as typed 1-D arrays."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ValueError(f"attribute {key!r}: only 1-D arrays are supported")
        value = value.tolist()
    if isinstance(value, str | bool | int | float):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise ValueError(f"attribute {key!r}: integer out of int64 range")
        return value
    if isinstance(value, list | tuple):
        items = [v.item() if isinstance(v, np.generic) else v for v in value]
        if not items:
            return np.zeros(0, dtype=np.float64)
        if all(isinstance(v, str) for v in items):
            return np.array(items, dtype=h5py.string_dtype())
        if all(isinstance(v, bool) for v in items):
            return np.array(items, dtype=bool)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return np.array(items, dtype=np.int64)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
            return np.array(items, dtype=np.float64)
        raise ValueError(f"attribute {key!r}: a list must hold only strings, only bools or only numbers")
    raise ValueError(
        f"attribute {key!r}: unsupported type {type(value).__name__} "
        "(use str, int, float, bool, a list of those, or a dict)"
    )


def decode_attr(value: Any) -> Any:
    """Back to Python: bytes -> str, numpy scalars -> Python scalars, arrays -> lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [decode_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """Root attributes as given at creation; keys listed in ``json_attrs`` are parsed back to
    dicts under their name without ``_json`` (other ``*_json`` strings stay strings)."""
    json_keys = set(decode_attr(f[BOOK].attrs.get("json_attrs", np.zeros(0)))) if BOOK in f else set()
    out: dict[str, Any] = {}
    for key, value in f.attrs.items():
        value = decode_attr(value)
        if key in json_keys:
            out[key[: -len("_json")]] = json.loads(value)
        else:
            out[key] = value
    return out


def progress_json(progress: Any) -> str:
    """Check a commit's progress dict and return it as (sorted-key) JSON."""
    if not isinstance(progress, Mapping):
        raise TypeError(f"progress must be a dict, got {type(progress).__name__}")
    try:
        text = json.dumps(dict(progress), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"progress is not JSON-serialisable: {e}") from None
    if len(text.encode()) > MAX_PROGRESS_BYTES:
        raise ValueError(f"progress is {len(text)} bytes of JSON; keep it under {MAX_PROGRESS_BYTES}")
    return text


def check_schema(f: h5py.File, path: Path) -> None:
    """``ValueError`` unless ``f`` is a vitalmatch dataset of a schema version this code reads."""
    version = f.attrs.get("schema_version")
    if version is None or BOOK not in f or AUDIO not in f:
        raise ValueError(f"{path} is an HDF5 file but not a vitalmatch dataset")
    version = decode_attr(version)
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(
            f"{path} has schema version {version}; "
            f"this vitalmatch reads {', '.join(sorted(SUPPORTED_SCHEMA_VERSIONS))}"
        )


def write_progress(book: h5py.Group, text: str) -> None:
    """Store the commit's progress JSON as utf-8 bytes in ``vitalmatch/progress_json``."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    ds = book["progress_json"]
    ds.resize(len(data), axis=0)
    ds[:] = data


def read_progress(book: h5py.Group) -> dict:
    """The progress dict stored by :func:`write_progress`."""
    return json.loads(book["progress_json"][()].tobytes().decode("utf-8"))


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (HDF5's run over many), for one-line errors."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
