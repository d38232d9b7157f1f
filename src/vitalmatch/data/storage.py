"""HDF5 storage of synth renders: a crash-safe, resumable writer and a plain reader.

Stage: data (storage). Input: batches of accepted renders from the dataset generator, i.e.
stereo float32 audio ``(B, 2, T)`` in [-full_scale, full_scale], unit-range parameter vectors and
per-row metadata. Output: one HDF5 file per dataset, one row per render of one preset at one
MIDI note, read back by :class:`DatasetReader` (numpy) or ``vitalmatch.data.torch_dataset``.

Layout (schema ``SCHEMA_VERSION``; N rows)::

    audio/waveforms       (N, channels, T)  int16 ("pcm16") | float16 | float32, chunks of
                          ``chunk_rows`` rows, gzip + shuffle; attrs format, channels,
                          sample_rate, full_scale (pcm16: int16 32767 <-> full_scale)
    features/log_mel      (N, n_mels, frames) float16, only when ``mel_shape`` was given
    params/continuous     (N, C) float32 in [0, 1]
    params/categorical    (N, K) int32
    metadata/midi_note    (N,) int16          metadata/source       (N,) S16
    metadata/tier         (N,) int8           metadata/preset_hash  (N,) S64 (hex sha256)
    metadata/preset_name  (N,) S80 (utf-8)    metadata/split        (N,) S5 train|val|test
    metadata/preset_index (N,) int64 (position of the preset in the sampling stream)
    blobs/<name>          (nbytes,) uint8, see :meth:`DatasetWriter.write_blob`
    vitalmatch/progress_json  (nbytes,) uint8: the caller's progress dict of the last commit
                          (a dataset, rewritten in place: a string attribute would leak
                          heap space at every commit); attrs n_rows, sequence (commits so
                          far), json_attrs (which root attrs hold JSON-encoded dicts)
    root attrs            schema_version and the ``attrs`` given at creation; a dict value
                          ``key: {...}`` is stored as the JSON string ``key_json`` and read
                          back as ``key: {...}``

Crash safety. The generator may be killed (SIGKILL, OOM killer) at any instant. HDF5 itself
does not survive that: it rewrites B-tree nodes and object headers in place, frees the space
of rewritten chunks and reuses it, so a kill between two flushes can damage rows that were
already flushed (measured: 41 of 60 random kills of a plain flush-then-record-progress writer
left committed rows unreadable or wrong; with SWMR the data survived but all 60 files refused
to reopen for writing until ``h5clear``). So the writer never lets HDF5 touch the bytes of the
last commit. HDF5 writes through a Python file object (h5py's ``fileobj`` driver) that:

* writes bytes past the committed file size straight to the file (new chunks, new metadata);
* keeps writes that land inside the committed size in an in-memory overlay of 4 KiB pages
  (and serves them back to HDF5's reads), so the committed bytes on disk stay as they were.

A commit flushes HDF5, fsyncs, writes the overlay pages and the new file size to a redo journal
``FILE.h5.journal`` (tmp file + fsync + atomic rename: the commit point), then copies the pages
into the file. Recovery replays the journal (idempotent) and truncates the file to the recorded
size, which restores the exact bytes of the last commit: a kill before the rename leaves the
previous commit, a kill after it the new one, whatever HDF5 was doing at the time. The journal
holds only the pages HDF5 rewrote since the last commit (metadata plus the odd reused chunk),
never a copy of the file. A clean :meth:`DatasetWriter.close` leaves a plain HDF5 file and
removes the journal; the first 512 bytes (an HDF5 user block) carry a random file id so that
a journal is only ever applied to the file it was written for.

Rows are buffered in memory up to the end of the current audio chunk, so HDF5 writes every
chunk whole (no decompress-merge-recompress); a commit also writes the partial last chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import struct
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = "1.0.0"
SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})

AUDIO_FORMATS = ("pcm16", "float16", "float32")
CHANNELS = {"stereo": 2, "mono": 1}
SPLITS = ("train", "val", "test")
PCM16_MAX = 32767
FLOAT16_MAX = float(np.finfo(np.float16).max)

AUDIO = "audio/waveforms"
LOG_MEL = "features/log_mel"
CONTINUOUS = "params/continuous"
CATEGORICAL = "params/categorical"
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

_USERBLOCK = 512
_MAGIC = b"VITALMATCH-HDF5\x00"  # 16 bytes at offset 0, then a 16-byte file id
_PAGE = 4096
_JOURNAL_MAGIC = b"VMJRNL01"
_JOURNAL_HEAD = struct.Struct("<8s16sQQ")  # magic, file id, committed size, number of pages
_JOURNAL_PAGE = struct.Struct("<QI")  # offset, length
_MAX_PROGRESS_BYTES = 16 << 20
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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
        if not _is_int(self.compression_level) or not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be an integer 0-9, got {self.compression_level!r}")
        if not _is_int(self.chunk_rows) or self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be an integer >= 1, got {self.chunk_rows!r}")
        fs = self.full_scale
        if isinstance(fs, bool) or not isinstance(fs, int | float) or not math.isfinite(fs) or fs <= 0:
            raise ValueError(f"full_scale must be a positive finite number, got {fs!r}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


# --------------------------------------------------------------------------------------------
# The journaled file object behind the writer (and behind readers of an interrupted file)


class _JournaledFile:
    """File object for h5py's ``fileobj`` driver that never modifies the committed bytes.

    Bytes ``[0, base)`` are the last commit. HDF5's writes there go to ``pages`` (4 KiB pages,
    page ``p`` covering ``[p * 4096, min((p + 1) * 4096, base))``); writes past ``base`` go to the
    file. ``size`` is the logical end of file HDF5 sees. :meth:`checkpoint` turns the current
    state into the new commit. A read-only instance over a journal's pages shows a reader the
    committed state of a file whose writer was killed before its pages reached the file.
    """

    def __init__(self, fd: int, base: int, pages: dict[int, bytes] | None = None, *, writable: bool) -> None:
        self.fd = fd
        self.base = base
        self.size = base
        self.pages: dict[int, bytearray] = {p: bytearray(b) for p, b in (pages or {}).items()}
        self.writable = writable
        self._pos = 0

    # -- the file-object protocol used by h5py ------------------------------------------------

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        """Move the position; ``SEEK_END`` is relative to the logical size HDF5 has set."""
        if whence == os.SEEK_SET:
            self._pos = pos
        elif whence == os.SEEK_CUR:
            self._pos += pos
        else:
            self._pos = self.size + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        """Fill ``buf`` from the current position: overlay pages over the file, zeros past the end."""
        out = memoryview(buf).cast("B")
        self._read_at(self._pos, out)
        self._pos += len(out)
        return len(out)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = max(self.size - self._pos, 0)
        out = bytearray(n)
        self.readinto(out)
        return bytes(out)

    def write(self, data) -> int:
        """Write at the current position: below ``base`` into the overlay, above it to the file."""
        if not self.writable:
            raise OSError("dataset opened read-only")
        mv = memoryview(data).cast("B")
        n, pos = len(mv), self._pos
        if pos < self.base:
            k = min(n, self.base - pos)
            self._write_overlay(pos, mv[:k])
        if pos + n > self.base:
            start = max(pos, self.base)
            _pwrite_all(self.fd, mv[start - pos :], start)
        self.size = max(self.size, pos + n)
        self._pos = pos + n
        return n

    def truncate(self, size: int | None = None) -> int:
        """Set the logical size (HDF5 calls this with its end of allocation at every flush)."""
        if not self.writable:
            raise OSError("dataset opened read-only")
        size = self._pos if size is None else size
        self.size = size
        os.ftruncate(self.fd, max(size, self.base))  # the committed bytes stay until the commit
        return size

    def flush(self) -> None:
        """Nothing to do: durability is handled by :meth:`checkpoint`."""

    # -- overlay ------------------------------------------------------------------------------

    def _read_at(self, pos: int, out: memoryview) -> None:
        """Bytes ``[pos, pos + len(out))`` as HDF5 last wrote them."""
        n = len(out)
        got = 0
        while got < n:
            k = os.preadv(self.fd, [out[got:]], pos + got)
            if k == 0:
                break
            got += k
        if got < n:
            out[got:] = bytes(n - got)
        if self.size < pos + n:  # past the logical end of file: HDF5 expects zeros
            cut = max(self.size - pos, 0)
            out[cut:] = bytes(n - cut)
        if not self.pages or pos >= self.base:
            return
        end = min(pos + n, self.base)
        first, last = pos // _PAGE, (end - 1) // _PAGE
        if last - first + 1 <= len(self.pages):
            hits = ((p, self.pages.get(p)) for p in range(first, last + 1))
        else:
            hits = ((p, page) for p, page in self.pages.items() if first <= p <= last)
        for p, page in hits:
            if page is None:
                continue
            lo, hi = max(pos, p * _PAGE), min(end, p * _PAGE + len(page))
            if lo < hi:
                out[lo - pos : hi - pos] = page[lo - p * _PAGE : hi - p * _PAGE]

    def _write_overlay(self, pos: int, data: memoryview) -> None:
        """Copy ``data`` into overlay pages, loading each page from the file on first touch."""
        end = pos + len(data)
        for p in range(pos // _PAGE, (end - 1) // _PAGE + 1):
            page = self.pages.get(p)
            if page is None:
                start = p * _PAGE
                page = bytearray(os.pread(self.fd, min(_PAGE, self.base - start), start))
                self.pages[p] = page
            lo, hi = max(pos, p * _PAGE), min(end, p * _PAGE + len(page))
            page[lo - p * _PAGE : hi - p * _PAGE] = data[lo - pos : hi - pos]

    def checkpoint(self, journal: Path, file_id: bytes, *, final: bool = False) -> None:
        """Make the current bytes the new commit (see the module docstring for the order).

        ``final``: the HDF5 file was closed; remove the journal once its pages are in place.
        """
        os.fsync(self.fd)  # bytes past base are durable before the journal points at them
        _write_journal(journal, file_id, self.size, self.pages)  # <- the commit point
        _apply_pages(self.fd, self.pages, self.size)
        self.base, self.pages = self.size, {}
        if final:
            os.fsync(self.fd)
            os.unlink(journal)
            _fsync_dir(journal.parent)

    def discard(self) -> None:
        """Forget every write since the last commit (the file goes back to it)."""
        self.pages = {}
        self.size = self.base
        os.ftruncate(self.fd, self.base)


def _pwrite_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    """``pwrite`` all of ``data`` at ``offset`` (a write may be short, e.g. on a signal)."""
    mv = memoryview(data).cast("B")
    while len(mv):
        k = os.pwrite(fd, mv, offset)
        mv, offset = mv[k:], offset + k


def _apply_pages(fd: int, pages: Mapping[int, bytes], size: int) -> None:
    """Copy journal pages into the file and cut it to ``size``: the redo step, idempotent."""
    for p in sorted(pages):
        _pwrite_all(fd, pages[p], p * _PAGE)
    os.ftruncate(fd, size)


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (needed for power loss, not for kills)."""
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _journal_path(path: Path) -> Path:
    """``FILE.h5`` -> ``FILE.h5.journal``."""
    return path.with_name(path.name + ".journal")


def _write_journal(journal: Path, file_id: bytes, size: int, pages: Mapping[int, bytes]) -> None:
    """Write the redo journal atomically: tmp file, fsync, rename, fsync of the directory."""
    parts = [_JOURNAL_HEAD.pack(_JOURNAL_MAGIC, file_id, size, len(pages))]
    for p in sorted(pages):
        parts += [_JOURNAL_PAGE.pack(p * _PAGE, len(pages[p])), bytes(pages[p])]
    body = b"".join(parts)
    tmp = journal.with_name(journal.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _pwrite_all(fd, body + hashlib.sha256(body).digest(), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, journal)
    _fsync_dir(journal.parent)


def _read_journal(journal: Path) -> tuple[bytes, int, dict[int, bytes]] | None:
    """``(file id, committed size, pages)`` of a journal, or None if there is none."""
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return None
    body, digest = data[:-32], data[-32:]
    if len(data) < _JOURNAL_HEAD.size + 32 or hashlib.sha256(body).digest() != digest:
        raise ValueError(f"commit journal {journal} is damaged; the dataset cannot be recovered")
    magic, file_id, size, n_pages = _JOURNAL_HEAD.unpack_from(body)
    if magic != _JOURNAL_MAGIC:
        raise ValueError(f"{journal} is not a vitalmatch commit journal")
    pages, off = {}, _JOURNAL_HEAD.size
    for _ in range(n_pages):
        offset, length = _JOURNAL_PAGE.unpack_from(body, off)
        off += _JOURNAL_PAGE.size
        pages[offset // _PAGE] = body[off : off + length]
        off += length
    return file_id, size, pages


def _journal_stamp(path: Path) -> tuple[int, int, int] | None:
    """Identity of the current journal (changes at every commit); None when there is none."""
    try:
        st = os.stat(_journal_path(path))
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _read_file_id(fd: int) -> bytes | None:
    """The 16-byte id in a vitalmatch file's user block; None for any other file."""
    head = os.pread(fd, 32, 0)
    return head[16:32] if len(head) == 32 and head[:16] == _MAGIC else None


def _looks_like_hdf5(fd: int) -> bool:
    """Whether the file has an HDF5 superblock signature where HDF5 looks for one."""
    size = os.fstat(fd).st_size
    offset = 0
    while offset + 8 <= size:  # the superblock sits at 0, 512, 1024, 2048, ...
        if os.pread(fd, 8, offset) == _HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _recover(fd: int, path: Path, file_id: bytes) -> None:
    """Bring the file back to its last commit by replaying its journal (idempotent)."""
    journal = _journal_path(path)
    found = _read_journal(journal)
    if found is None:
        return
    jid, size, pages = found
    if jid != file_id:  # left over from a file that was since replaced by create(overwrite=True)
        os.unlink(journal)
        return
    _apply_pages(fd, pages, size)
    os.fsync(fd)


def _lock(fd: int, path: Path) -> None:
    """Take the exclusive writer lock (``flock``: released when the process dies).

    Children started with fork inherit it; the generator's worker pool uses spawn, which does not.
    """
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BlockingIOError(f"{path} is being written by another process") from None


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so it cannot land inside an HDF5 write callback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(*caught[0])
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


# --------------------------------------------------------------------------------------------
# Attributes


def _encode_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
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


def _decode_attr(value: Any) -> Any:
    """Back to Python: bytes -> str, numpy scalars -> Python scalars, arrays -> lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_decode_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_attrs(f: h5py.File) -> dict[str, Any]:
    """Root attributes as given at creation; keys listed in ``json_attrs`` are parsed back to
    dicts under their name without ``_json`` (other ``*_json`` strings stay strings)."""
    json_keys = set(_decode_attr(f[BOOK].attrs.get("json_attrs", np.zeros(0)))) if BOOK in f else set()
    out: dict[str, Any] = {}
    for key, value in f.attrs.items():
        value = _decode_attr(value)
        if key in json_keys:
            out[key[: -len("_json")]] = json.loads(value)
        else:
            out[key] = value
    return out


def _progress_json(progress: Any) -> str:
    """Check a commit's progress dict and return it as (sorted-key) JSON."""
    if not isinstance(progress, Mapping):
        raise TypeError(f"progress must be a dict, got {type(progress).__name__}")
    try:
        text = json.dumps(dict(progress), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"progress is not JSON-serialisable: {e}") from None
    if len(text.encode()) > _MAX_PROGRESS_BYTES:
        raise ValueError(f"progress is {len(text)} bytes of JSON; keep it under {_MAX_PROGRESS_BYTES}")
    return text


def _check_schema(f: h5py.File, path: Path) -> None:
    """``ValueError`` unless ``f`` is a vitalmatch dataset of a schema version this code reads."""
    version = f.attrs.get("schema_version")
    if version is None or BOOK not in f or AUDIO not in f:
        raise ValueError(f"{path} is an HDF5 file but not a vitalmatch dataset")
    version = _decode_attr(version)
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(
            f"{path} has schema version {version}; this vitalmatch reads {', '.join(sorted(SUPPORTED_SCHEMA_VERSIONS))}"
        )


# --------------------------------------------------------------------------------------------
# Writer


@dataclass(frozen=True)
class _Column:
    name: str
    tail: tuple[int, ...]
    dtype: np.dtype
    chunk_rows: int


def _columns(
    audio_length: int, n_continuous: int, n_categorical: int, storage: StorageConfig, mel_shape
) -> list[_Column]:
    """Every dataset of the layout. Audio and log-mel chunk by ``storage.chunk_rows`` rows; the
    small columns by up to 8192 rows (about 1 MiB), so that their chunk index stays short."""
    audio_dtype = {"pcm16": np.int16, "float16": np.float16, "float32": np.float32}[storage.audio_format]
    cols = [
        _Column(AUDIO, (CHANNELS[storage.channels], audio_length), np.dtype(audio_dtype), storage.chunk_rows)
    ]
    if mel_shape is not None:
        cols.append(_Column(LOG_MEL, tuple(mel_shape), np.dtype(np.float16), storage.chunk_rows))
    small = [
        (CONTINUOUS, (n_continuous,), np.dtype(np.float32)),
        (CATEGORICAL, (n_categorical,), np.dtype(np.int32)),
    ] + [(f"metadata/{k}", (), np.dtype(v)) for k, v in METADATA_COLUMNS.items()]
    for name, tail, dtype in small:
        row_bytes = max(1, dtype.itemsize * math.prod(tail))
        rows = 2 ** int(math.log2(max(1, (1 << 20) // row_bytes)))  # chunks of about 1 MiB at most
        cols.append(_Column(name, tail, dtype, max(storage.chunk_rows, min(rows, 8192))))
    return cols


class DatasetWriter:
    """Appends renders to a dataset file and commits them durably (see the module docstring).

    Open one with :meth:`create` or :meth:`resume`, then call :meth:`append` with batches of
    rows and :meth:`commit` every few hundred rows. After a crash at any instant,
    :meth:`resume` returns a writer at the last completed commit and that commit's progress
    dict; a resumed run that appends the same rows produces the same arrays as an
    uninterrupted one. Rows appended after the last commit are not stored: :meth:`close`
    discards them (with a ``RuntimeWarning``) and leaves the file at the last commit.
    One process at a time may write a file (an exclusive ``flock`` on it).
    """

    def __init__(self, *_a, **_k) -> None:
        raise TypeError("use DatasetWriter.create(...) or DatasetWriter.resume(...)")

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        audio_length: int,
        sample_rate: int,
        n_continuous: int,
        n_categorical: int,
        storage: StorageConfig,
        attrs: Mapping[str, Any],
        mel_shape: tuple[int, int] | None = None,
        overwrite: bool = False,
    ) -> DatasetWriter:
        """Create an empty dataset (0 committed rows, progress ``{}``) and open it for writing.

        Args:
            path: the ``.h5`` file to create.
            audio_length: samples per channel of every render, T.
            sample_rate: of the audio, Hz (stored as an attribute of ``audio/waveforms``).
            n_continuous, n_categorical: widths C and K of the parameter columns.
            storage: audio format, channels, compression, chunking.
            attrs: root attributes (str, int, float, bool, lists of those; dicts as JSON).
            mel_shape: ``(n_mels, frames)`` to store a float16 log-mel per row; None: no mels.
            overwrite: replace an existing file. The new file is built next to it and renamed
                over it only once complete, so a failure leaves the old file untouched.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false.
            OSError: the directory is missing, not a directory or not writable.
            ValueError: an invalid argument or attribute.
        """
        path = Path(path)
        if not isinstance(storage, StorageConfig):
            raise ValueError(f"storage must be a StorageConfig, got {type(storage).__name__}")
        storage.check()
        for name, value, low in (
            ("audio_length", audio_length, 1),
            ("sample_rate", sample_rate, 1),
            ("n_continuous", n_continuous, 0),
            ("n_categorical", n_categorical, 0),
        ):
            if not _is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if mel_shape is not None:
            if len(tuple(mel_shape)) != 2 or not all(_is_int(x) and x >= 1 for x in mel_shape):
                raise ValueError(
                    f"mel_shape must be (n_mels, frames) of positive integers, got {mel_shape!r}"
                )
            mel_shape = (int(mel_shape[0]), int(mel_shape[1]))
        root_attrs, json_keys = _encode_attrs(attrs)
        columns = _columns(int(audio_length), int(n_continuous), int(n_categorical), storage, mel_shape)

        parent = path.absolute().parent
        if path.is_dir():
            raise IsADirectoryError(f"cannot create dataset {path}: it is a directory")
        if path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{path} already exists; pass --overwrite to replace it or --resume to continue it"
                )
            _refuse_if_being_written(path)
        if not parent.exists():
            raise FileNotFoundError(f"cannot create dataset {path}: directory {parent} does not exist")
        if not parent.is_dir():
            raise NotADirectoryError(f"cannot create dataset {path}: {parent} is not a directory")

        file_id = os.urandom(16)
        tmp = parent / f".{path.name}.{os.getpid()}-{file_id.hex()[:8]}.creating"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise _one_line(e, f"cannot create dataset {path}: {e.strerror}") from None
        try:
            try:
                jf = _JournaledFile(fd, 0, writable=True)
                with h5py.File(jf, "w", userblock_size=_USERBLOCK) as f:
                    _build(f, columns, storage, int(sample_rate), root_attrs, json_keys)
                _pwrite_all(fd, _MAGIC + file_id + bytes(_USERBLOCK - 32), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise _one_line(e, f"cannot create dataset {path}: {e.strerror or e}") from None
            raise
        _fsync_dir(parent)
        with contextlib.suppress(FileNotFoundError):  # a stale journal of the replaced file
            os.unlink(_journal_path(path))
        writer, _ = cls._open(path)
        return writer

    @classmethod
    def resume(cls, path: str | os.PathLike) -> tuple[DatasetWriter, dict]:
        """Reopen a dataset for appending, repairing it after a crash.

        Returns:
            The writer, positioned after the last completed commit (rows appended after it
            are gone), and the progress dict given to that commit.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a vitalmatch dataset, or another schema version.
            BlockingIOError: another process is writing it.
        """
        return cls._open(Path(path))

    @classmethod
    def _open(cls, path: Path) -> tuple[DatasetWriter, dict]:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise FileNotFoundError(f"cannot resume {path}: no such file") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"cannot resume {path}: it is a directory") from None
        except OSError as e:
            raise _one_line(e, f"cannot open {path} for writing: {e.strerror}") from None
        try:
            _lock(fd, path)
            file_id = _read_file_id(fd)
            if file_id is None:
                what = (
                    "an HDF5 file but not a vitalmatch dataset"
                    if _looks_like_hdf5(fd)
                    else "not an HDF5 file"
                )
                raise ValueError(f"cannot resume {path}: it is {what}")
            _recover(fd, path, file_id)
            jf = _JournaledFile(fd, os.fstat(fd).st_size, writable=True)
            # From here until close, a journal records the committed size, so a crash can always
            # cut off what HDF5 wrote after it.
            _write_journal(_journal_path(path), file_id, jf.base, {})
            try:
                h5 = h5py.File(jf, "r+")
            except OSError as e:
                raise ValueError(f"cannot resume {path}: HDF5 cannot open it ({_first_line(e)})") from None
            self = object.__new__(cls)
            self._init(path, fd, file_id, jf, h5)
        except BaseException:
            os.close(fd)  # also releases the lock
            raise
        return self, dict(self._progress)

    def _init(self, path: Path, fd: int, file_id: bytes, jf: _JournaledFile, h5: h5py.File) -> None:
        self.path = path
        self._fd, self._file_id, self._jf, self._h5 = fd, file_id, jf, h5
        self._closed, self._broken = True, False  # until set up: __del__ must not touch the fd
        try:
            _check_schema(h5, path)
        except ValueError:
            h5.close()
            raise
        book = h5[BOOK]
        self._committed = int(book.attrs["n_rows"])
        self._sequence = int(book.attrs["sequence"])
        self._progress = _read_progress(book)
        self._attrs = _read_attrs(h5)
        self._ds = {name: h5[name] for name in [AUDIO, LOG_MEL, CONTINUOUS, CATEGORICAL] if name in h5}
        self._ds.update({f"metadata/{k}": h5[f"metadata/{k}"] for k in METADATA_COLUMNS})
        a = self._ds[AUDIO]
        self.audio_format = _decode_attr(a.attrs["format"])
        self.channels = _decode_attr(a.attrs["channels"])
        self.full_scale = float(a.attrs["full_scale"])
        self.sample_rate = int(a.attrs["sample_rate"])
        self.audio_length = int(a.shape[2])
        self.chunk_rows = int(a.chunks[0])
        self.mel_shape = tuple(self._ds[LOG_MEL].shape[1:]) if LOG_MEL in self._ds else None
        for name, ds in self._ds.items():
            if ds.shape[0] != self._committed:
                raise ValueError(
                    f"{path}: column {name} has {ds.shape[0]} rows, the commit says {self._committed}"
                )
        # rows of the last, partial audio chunk stay in memory so that the chunk is written whole
        self._flushed = self._committed - self._committed % self.chunk_rows
        self._buffer = {name: ds[self._flushed : self._committed] for name, ds in self._ds.items()}
        self._closed = False

    # -- state --------------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        """Rows committed plus rows appended since the last commit."""
        return self._flushed + len(self._buffer[AUDIO])

    @property
    def n_committed(self) -> int:
        """Rows of the last completed commit (what a crash now would keep)."""
        return self._committed

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes as given at creation (plus ``schema_version``)."""
        return dict(self._attrs)

    @property
    def progress(self) -> dict:
        """The progress dict of the last completed commit."""
        return dict(self._progress)

    # -- writing ------------------------------------------------------------------------------

    def append(
        self,
        *,
        audio,
        continuous,
        categorical,
        midi_note,
        source,
        tier,
        preset_hash,
        preset_name,
        split,
        preset_index,
        log_mel=None,
    ) -> None:
        """Add B rows (stored at the next :meth:`commit`; nothing is kept if a check fails).

        Args:
            audio: ``(B, 2, T)`` float stereo, finite; converted to the storage format.
            continuous: ``(B, C)`` floats in [0, 1].
            categorical: ``(B, K)`` non-negative integers (option indices).
            midi_note: B integers in 0..127.
            source: B strings of at most 16 utf-8 bytes, e.g. "synthetic", "preset".
            tier: B integers in -128..127.
            preset_hash: B hex sha256 digests (64 characters).
            preset_name: B strings; cut to 80 utf-8 bytes on a character boundary.
            split: B of "train", "val", "test".
            preset_index: B non-negative integers (position in the sampling stream).
            log_mel: ``(B, n_mels, frames)`` floats, required iff the file stores log-mels.

        Raises:
            ValueError: a shape, type or value does not fit (the message names the column).
        """
        self._check_usable()
        rows = self._convert(
            audio=audio,
            continuous=continuous,
            categorical=categorical,
            midi_note=midi_note,
            source=source,
            tier=tier,
            preset_hash=preset_hash,
            preset_name=preset_name,
            split=split,
            preset_index=preset_index,
            log_mel=log_mel,
        )
        if len(rows[AUDIO]) == 0:
            return
        with self._guard():
            self._buffer = {k: np.concatenate([self._buffer[k], rows[k]]) for k in self._buffer}
            n_full = len(self._buffer[AUDIO]) // self.chunk_rows * self.chunk_rows
            if n_full:
                self._write(self._flushed, {k: v[:n_full] for k, v in self._buffer.items()})
                self._flushed += n_full
                self._buffer = {k: v[n_full:] for k, v in self._buffer.items()}

    def commit(self, progress: dict) -> None:
        """Store every appended row and ``progress`` durably, as one atomic step.

        ``progress`` (a JSON-serialisable dict, e.g. ``{"next_preset": 120}``) is what
        :meth:`resume` returns after a crash. Cost: one HDF5 flush, three fsyncs and a journal
        of the few KiB HDF5 rewrote in place.
        """
        self._check_usable()
        text = _progress_json(progress)
        with self._guard():
            n = self.n_rows
            if len(self._buffer[AUDIO]):
                self._write(self._flushed, self._buffer)
            book = self._h5[BOOK]
            book.attrs["n_rows"] = np.int64(n)
            book.attrs["sequence"] = np.int64(self._sequence + 1)
            _write_progress(book, text)
            self._h5.flush()
            self._jf.checkpoint(_journal_path(self.path), self._file_id)
            self._committed, self._sequence = n, self._sequence + 1
            self._progress = json.loads(text)

    def write_blob(self, name: str, data: bytes) -> None:
        """Store ``data`` as ``blobs/<name>`` (uint8), replacing any earlier blob of that name.

        Like rows, a blob becomes durable at the next :meth:`commit`. For side data of a few
        MB at most (e.g. a wavetable catalog); read it back with :meth:`DatasetReader.blob`.
        """
        self._check_usable()
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"blob name must be a non-empty string without '/', got {name!r}")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"blob data must be bytes, got {type(data).__name__}")
        arr = np.frombuffer(bytes(data), dtype=np.uint8)
        with self._guard():
            group = self._h5.require_group(BLOBS)
            if name in group:
                del group[name]
            kw = {"compression": "gzip", "compression_opts": 4} if arr.size else {}
            group.create_dataset(name, data=arr, chunks=True if arr.size else None, **kw)

    def close(self) -> None:
        """Close the file, leaving the last commit as a plain HDF5 file and no journal.

        Rows appended after the last commit are discarded, with a ``RuntimeWarning``: the
        file always ends at a commit, so that closing cannot store a partial preset.
        """
        if self._closed:
            return
        self._closed = True
        lost = self.n_rows - self._committed
        if self._broken or lost:
            try:
                self._abandon()
            finally:
                os.close(self._fd)  # releases the lock
            if self._broken:  # leave the journal: the file reads, and resumes, at the last commit
                return
            warnings.warn(
                f"{self.path}: {lost} rows appended after the last commit were discarded",
                RuntimeWarning,
                stacklevel=2,
            )
            writer, _ = type(self)._open(self.path)  # the committed state, closed cleanly
            writer.close()
            return
        try:
            with _sigint_deferred():
                self._h5.close()
                self._jf.checkpoint(_journal_path(self.path), self._file_id, final=True)
        finally:
            os.close(self._fd)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # Never closed: keep the file at its last commit (what a crash would leave), unlock it.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._abandon()
        with contextlib.suppress(Exception):
            os.close(self._fd)

    # -- internals ----------------------------------------------------------------------------

    def _abandon(self) -> None:
        """Drop HDF5 without letting it touch the committed bytes; the file stays at the commit."""
        with contextlib.suppress(Exception):
            self._h5.close()  # its writes land in the overlay or past the commit: both discarded
        self._jf.discard()

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        if self._broken:
            raise RuntimeError(
                f"{self.path}: an earlier write failed; close this writer and resume to continue from the last commit"
            )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Any failure while HDF5 writes leaves its in-memory state unknown: stop using it.

        Ctrl-C is held until the block has finished (and raised after it), so that it never
        breaks the writer halfway through an HDF5 call.
        """
        with _sigint_deferred():
            try:
                yield
            except BaseException:
                self._broken = True
                raise

    def _write(self, start: int, rows: Mapping[str, np.ndarray]) -> None:
        """Write converted rows at ``start`` into every column (growing them as needed)."""
        stop = start + len(rows[AUDIO])
        for name, ds in self._ds.items():
            if ds.shape[0] != stop:
                ds.resize(stop, axis=0)
            ds[start:stop] = rows[name]

    def _convert(self, **cols: Any) -> dict[str, np.ndarray]:
        """Check one :meth:`append` call's columns and convert them to the stored dtypes."""
        audio = cols["audio"]
        audio = np.asarray(audio)
        if audio.dtype.kind != "f":
            raise ValueError(f"audio must be floating point, got dtype {audio.dtype}")
        if audio.ndim != 3 or audio.shape[1:] != (2, self.audio_length):
            raise ValueError(f"audio must have shape (B, 2, {self.audio_length}), got {audio.shape}")
        b = audio.shape[0]
        audio = audio.astype(np.float32, copy=False)
        if not np.isfinite(audio).all():
            raise ValueError("audio contains NaN or infinite samples")
        if self.channels == "mono":
            audio = audio.mean(axis=1, keepdims=True, dtype=np.float32)
        if self.audio_format == "pcm16":
            stored = np.rint(np.clip(audio / np.float32(self.full_scale), -1.0, 1.0) * PCM16_MAX).astype(
                np.int16
            )
        elif self.audio_format == "float16":
            if b and np.abs(audio).max() > FLOAT16_MAX:
                raise ValueError(f"audio exceeds the float16 range (|x| > {FLOAT16_MAX:g})")
            stored = audio.astype(np.float16)
        else:
            stored = np.array(audio, dtype=np.float32, copy=True)
        out = {AUDIO: stored}

        cont = _matrix(cols["continuous"], "continuous", b, self._ds[CONTINUOUS].shape[1], "f")
        if cont.size and (not np.isfinite(cont).all() or cont.min() < 0 or cont.max() > 1):
            raise ValueError("continuous values must lie in [0, 1]")
        out[CONTINUOUS] = cont.astype(np.float32)
        cat = _matrix(cols["categorical"], "categorical", b, self._ds[CATEGORICAL].shape[1], "iu")
        if cat.size and (cat.min() < 0 or cat.max() > np.iinfo(np.int32).max):
            raise ValueError("categorical values must be option indices in 0..2**31-1")
        out[CATEGORICAL] = cat.astype(np.int32)

        log_mel = cols["log_mel"]
        if self.mel_shape is None:
            if log_mel is not None:
                raise ValueError(
                    "this dataset stores no log-mels (create it with mel_shape); pass log_mel=None"
                )
        else:
            if log_mel is None:
                raise ValueError(
                    f"log_mel is required: this dataset stores (B, {self.mel_shape[0]}, {self.mel_shape[1]})"
                )
            mel = np.asarray(log_mel)
            if mel.dtype.kind not in "fiu" or mel.shape != (b, *self.mel_shape):
                raise ValueError(
                    f"log_mel must be floats of shape {(b, *self.mel_shape)}, got {mel.dtype} {mel.shape}"
                )
            if not np.isfinite(mel).all() or (mel.size and np.abs(mel).max() > FLOAT16_MAX):
                raise ValueError("log_mel must be finite and within the float16 range")
            out[LOG_MEL] = mel.astype(np.float16)

        out["metadata/midi_note"] = _ints(cols["midi_note"], "midi_note", b, 0, 127, np.int16)
        out["metadata/tier"] = _ints(cols["tier"], "tier", b, -128, 127, np.int8)
        out["metadata/preset_index"] = _ints(cols["preset_index"], "preset_index", b, 0, 2**63 - 1, np.int64)
        out["metadata/source"] = _strings(cols["source"], "source", b, 16)
        hashes = _strings(cols["preset_hash"], "preset_hash", b, 64)
        for h in hashes:
            if len(h) != 64 or any(c not in b"0123456789abcdefABCDEF" for c in h):
                raise ValueError(f"preset_hash must be 64 hex characters (sha256), got {h!r}")
        out["metadata/preset_hash"] = hashes
        out["metadata/preset_name"] = _strings(cols["preset_name"], "preset_name", b, 80, truncate=True)
        splits = _strings(cols["split"], "split", b, 5)
        bad = set(splits.tolist()) - {s.encode() for s in SPLITS}
        if bad:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {sorted(bad)[0].decode()!r}")
        out["metadata/split"] = splits
        return out


def _matrix(x: Any, name: str, b: int, width: int, kinds: str) -> np.ndarray:
    """``x`` as a ``(b, width)`` array of a dtype kind in ``kinds``, or ``ValueError``."""
    arr = np.asarray(x)
    if arr.shape != (b, width):
        raise ValueError(f"{name} must have shape ({b}, {width}), got {arr.shape}")
    if arr.size and arr.dtype.kind not in kinds:
        what = "floating point" if kinds == "f" else "integer"
        raise ValueError(f"{name} must be {what}, got dtype {arr.dtype}")
    return arr


def _ints(x: Any, name: str, b: int, low: int, high: int, dtype) -> np.ndarray:
    """``b`` integers in ``low..high`` as ``dtype``, or ``ValueError`` naming the column."""
    if isinstance(x, str | bytes) or np.ndim(x) != 1:
        raise ValueError(f"{name} must be a list or 1-D array of {b} integers")
    arr = np.asarray(x)
    if len(arr) != b:
        raise ValueError(f"{name} has {len(arr)} values for {b} rows")
    if b and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if b and (arr.min() < low or arr.max() > high):
        raise ValueError(f"{name} must lie in {low}..{high}")
    return arr.astype(dtype)


def _strings(x: Any, name: str, b: int, nbytes: int, *, truncate: bool = False) -> np.ndarray:
    """``b`` strings as utf-8 ``S{nbytes}``; too long: ``ValueError``, or with ``truncate``,
    cut to ``nbytes`` bytes without splitting a character."""
    if isinstance(x, str | bytes) or np.ndim(x) != 1:
        raise ValueError(f"{name} must be a list of {b} strings")
    items = list(x)
    if len(items) != b:
        raise ValueError(f"{name} has {len(items)} values for {b} rows")
    out = []
    for s in items:
        if isinstance(s, np.str_ | np.bytes_):
            s = s.item()
        if isinstance(s, bytes):
            try:
                s = s.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{name} values must be utf-8 text") from None
        if not isinstance(s, str):
            raise ValueError(f"{name} values must be strings, got {type(s).__name__}")
        raw = s.encode("utf-8")
        if len(raw) > nbytes:
            if not truncate:
                raise ValueError(f"{name} value {s!r} is longer than {nbytes} utf-8 bytes")
            raw = raw[:nbytes].decode("utf-8", errors="ignore").encode("utf-8")
        out.append(raw)
    return np.array(out, dtype=f"S{nbytes}")


def _build(
    f: h5py.File, columns, storage: StorageConfig, sample_rate: int, attrs: dict, json_keys: list
) -> None:
    """Create the empty layout of the module docstring in a new file (0 rows, progress ``{}``)."""
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
    _write_progress(book, "{}")


def _write_progress(book: h5py.Group, text: str) -> None:
    """Store the commit's progress JSON as utf-8 bytes in ``vitalmatch/progress_json``."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    ds = book["progress_json"]
    ds.resize(len(data), axis=0)
    ds[:] = data


def _read_progress(book: h5py.Group) -> dict:
    return json.loads(book["progress_json"][()].tobytes().decode("utf-8"))


def _refuse_if_being_written(path: Path) -> None:
    """``BlockingIOError`` if a writer (this or another process) holds ``path``'s lock."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BlockingIOError(f"cannot overwrite {path}: it is being written by another process") from None
    except OSError:
        pass
    finally:
        os.close(fd)


def _one_line(e: OSError, message: str) -> OSError:
    """The same kind of ``OSError`` with our one-line message (and the errno kept)."""
    new = type(e)(message)
    new.errno = e.errno
    return new


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------------------------
# Reader


class DatasetReader:
    """Numpy access to the committed rows of a dataset file (no torch).

    Index arguments (``idx``) are an int (one row, no batch axis), a slice, or a sequence /
    array of row numbers or a boolean mask (batch axis first, in the order given).

    A file whose writer was killed is read at its last commit, also before it is resumed.
    A reader may be opened while another process writes (``open``, read, ``close``): it sees
    the last commit, retrying if a commit lands while it opens. If a commit lands later, while
    it is still open, the next read raises ``ValueError`` (reopen to see the new rows), since
    the writer may have rewritten bytes that the reader's HDF5 caches point to.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        """Open ``path``; ``ValueError`` (one line) if it is missing or not a readable dataset."""
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._fd: int | None = None
        if not self.path.exists():
            raise ValueError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a directory, not a dataset file")
        last_error: Exception | None = None
        for _ in range(50):
            stamp = _journal_stamp(self.path)
            try:
                self._open(stamp)
                if _journal_stamp(self.path) == stamp:
                    return
            except ValueError:
                if _journal_stamp(self.path) == stamp:
                    self._close_handles()
                    raise
                last_error = None
            except Exception as e:  # torn by a concurrent commit, or really damaged: check which
                if _journal_stamp(self.path) == stamp:
                    self._close_handles()
                    raise ValueError(f"{self.path}: cannot read the dataset ({_first_line(e)})") from None
                last_error = e
            self._close_handles()
            time.sleep(0.01)
        raise ValueError(f"{self.path}: the file kept changing while opening it ({last_error})")

    def _open(self, stamp) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise ValueError(f"{self.path}: cannot open ({e.strerror})") from None
        file_id = _read_file_id(self._fd)
        journal = _read_journal(_journal_path(self.path)) if stamp is not None and file_id else None
        if journal is not None and journal[0] == file_id:
            fobj = _JournaledFile(self._fd, journal[1], journal[2], writable=False)
            self._h5 = h5py.File(fobj, "r")
        else:
            if not _looks_like_hdf5(self._fd):
                raise ValueError(f"{self.path} is not an HDF5 file")
            os.close(self._fd)
            self._fd = None
            try:
                self._h5 = h5py.File(self.path, "r", locking=False)
            except OSError as e:
                raise ValueError(f"{self.path}: HDF5 cannot open it ({_first_line(e)})") from None
        self._stamp = stamp
        f = self._h5
        _check_schema(f, self.path)
        self._n = int(f[BOOK].attrs["n_rows"])
        self._progress = _read_progress(f[BOOK])
        self.attrs: dict[str, Any] = _read_attrs(f)
        a = f[AUDIO]
        self.audio_format: str = _decode_attr(a.attrs["format"])
        self.channels: str = _decode_attr(a.attrs["channels"])
        self.sample_rate: int = int(a.attrs["sample_rate"])
        self.full_scale: float = float(a.attrs["full_scale"])
        self.audio_length: int = int(a.shape[2])
        self.has_log_mel: bool = LOG_MEL in f
        for name in [AUDIO, CONTINUOUS, CATEGORICAL] + [f"metadata/{k}" for k in METADATA_COLUMNS]:
            if name not in f or f[name].shape[0] < self._n:
                raise ValueError(f"{self.path}: column {name} is missing or shorter than {self._n} rows")
        self._audio = self._open_audio(f)

    def _open_audio(self, f: h5py.File) -> h5py.Dataset:
        """Open the audio with a chunk cache that holds two chunks (one row reads a chunk)."""
        ds = f[AUDIO]
        chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
        if chunk_bytes * 2 <= (1 << 20):
            return ds
        dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
        dapl.set_chunk_cache(521, min(2 * chunk_bytes, 1 << 30), 1.0)
        return h5py.Dataset(h5py.h5d.open(f.id, AUDIO.encode(), dapl=dapl))

    # -- access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    def audio(self, idx) -> np.ndarray:
        """float32 audio, ``(channels, T)`` for an int, ``(B, channels, T)`` otherwise; pcm16
        is scaled back to ``[-full_scale, full_scale]`` (quantisation step full_scale / 32767)."""
        x = self._read(self._audio, idx)
        if self.audio_format == "pcm16":
            return x.astype(np.float32) * np.float32(self.full_scale / PCM16_MAX)
        return x.astype(np.float32, copy=False)

    def continuous(self, idx) -> np.ndarray:
        """float32 unit-range parameters, ``(C,)`` or ``(B, C)``."""
        return self._read(self._h5[CONTINUOUS], idx)

    def categorical(self, idx) -> np.ndarray:
        """int32 option indices, ``(K,)`` or ``(B, K)``."""
        return self._read(self._h5[CATEGORICAL], idx)

    def log_mel(self, idx) -> np.ndarray:
        """float32 log-mel spectrogram(s), ``(n_mels, frames)`` or ``(B, n_mels, frames)``."""
        if not self.has_log_mel:
            raise ValueError(f"{self.path} stores no log-mels (it was generated without them)")
        return self._read(self._h5[LOG_MEL], idx).astype(np.float32)

    def metadata(self, name: str, idx=None) -> np.ndarray:
        """Metadata column ``name``: all ``(N,)`` rows, or the rows ``idx`` selects.

        Text columns (source, preset_hash, preset_name, split) come back as numpy str arrays.
        """
        if name not in METADATA_COLUMNS:
            raise KeyError(f"no metadata column {name!r}; columns: {', '.join(METADATA_COLUMNS)}")
        col = self._read(self._h5[f"metadata/{name}"], slice(None) if idx is None else idx)
        if name in STRING_COLUMNS:
            return np.char.decode(col, "utf-8")
        return col

    def split_indices(self, split: str) -> np.ndarray:
        """Sorted int64 row numbers of one split ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        column = self._read(self._h5["metadata/split"], slice(None))
        return np.flatnonzero(column == split.encode()).astype(np.int64)

    def progress(self) -> dict:
        """The progress dict of the last commit (``{}`` right after creation)."""
        return dict(self._progress)

    def blob(self, name: str) -> bytes:
        """Bytes stored with :meth:`DatasetWriter.write_blob`; ``KeyError`` if absent."""
        key = f"{BLOBS}/{name}"
        if key not in self._h5:
            raise KeyError(f"{self.path} has no blob {name!r}")
        return self._guarded(lambda: self._h5[key][()]).tobytes()

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._close_handles()

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._close_handles()

    # -- internals ----------------------------------------------------------------------------

    def _close_handles(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _stale(self) -> bool:
        """True when a writer has committed since this reader opened (see the class docstring)."""
        return self._stamp is not None and _journal_stamp(self.path) != self._stamp

    def _guarded(self, read):
        """Run ``read()``; its result counts only if no commit happened meanwhile (a seqlock).

        A commit landing during the read may make HDF5 fail (a torn chunk) or return wrong
        bytes; both are turned into the same ``ValueError`` asking to reopen.
        """
        try:
            out = read()
        except Exception:
            if self._stale():
                raise self._stale_error() from None
            raise
        if self._stale():
            raise self._stale_error()
        return out

    def _stale_error(self) -> ValueError:
        return ValueError(
            f"{self.path} was committed to by its writer while open; reopen it to read the new state"
        )

    def _read(self, ds: h5py.Dataset, idx) -> np.ndarray:
        """Rows ``idx`` of ``ds`` (first axis), limited to the committed rows."""
        return self._guarded(lambda: self._select(ds, idx))

    def _select(self, ds: h5py.Dataset, idx) -> np.ndarray:
        if self._h5 is None:
            raise ValueError(f"{self.path}: the reader is closed")
        n = self._n
        if isinstance(idx, int | np.integer) and not isinstance(idx, bool):
            i = int(idx)
            if not -n <= i < n:
                raise IndexError(f"row {i} out of range for {n} rows")
            out = ds[i % n]
        elif isinstance(idx, slice):
            start, stop, step = idx.indices(n)
            out = ds[start:stop] if step == 1 else self._take(ds, np.arange(start, stop, step))
        else:
            rows = np.asarray(idx)
            if rows.dtype == bool:
                if rows.shape != (n,):
                    raise IndexError(f"a boolean mask must have shape ({n},), got {rows.shape}")
                rows = np.flatnonzero(rows)
            elif rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
                raise IndexError("index must be an int, a slice, a 1-D array of ints or a boolean mask")
            rows = rows.astype(np.int64)
            if rows.size and (rows.min() < -n or rows.max() >= n):
                raise IndexError(f"row index out of range for {n} rows")
            out = self._take(ds, rows % n if n else rows)
        return out

    @staticmethod
    def _take(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
        """Rows in any order, with repeats; h5py wants increasing unique indices."""
        if rows.size == 0:
            return np.zeros((0, *ds.shape[1:]), dtype=ds.dtype)
        uniq, inverse = np.unique(rows, return_inverse=True)
        contiguous = uniq[-1] - uniq[0] + 1 == uniq.size  # one hyperslab instead of a point list
        block = ds[int(uniq[0]) : int(uniq[-1]) + 1] if contiguous else ds[uniq]
        return block[inverse.reshape(-1)]


def audio_bytes_per_row(path: str | os.PathLike) -> float:
    """Stored (compressed) bytes of ``audio/waveforms`` per row, from HDF5's storage size.

    Raises ``ValueError`` for a file with no rows.
    """
    with DatasetReader(path) as ds:
        n = len(ds)
        if n == 0:
            raise ValueError(f"{path} has no rows")
        return ds._audio.id.get_storage_size() / n
