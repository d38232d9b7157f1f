"""The dataset reader: numpy access to the committed rows of a dataset file.

Stage: data (loading). Input: a dataset file of :mod:`vitalmatch.data.writer`, in the layout of
:mod:`vitalmatch.data.schema`, also one whose writer was killed or is still writing. Output:
float32 audio ``(channels, T)`` per row in [-full_scale, full_scale], unit-range continuous
parameters, categorical option indices, the modulation matrix (sparse ``(k, 7)`` connections per
row, or the dense ``(4, 32, 428)`` view built on reading), LFO-shape and sample indices, optional
log-mels, metadata columns, the progress dict and the root attributes, as numpy arrays (the
torch view is :mod:`vitalmatch.data.torch_dataset`). Schema-1.0.0 files read as rows without
modulation.

A killed file is read at its last commit through the journal's page overlay
(:mod:`vitalmatch.data.journal`); the reader never writes, so it does not repair the file (the
next :meth:`DatasetWriter.resume` does).

A directory of shard files (``generate -o DIR/``, :mod:`vitalmatch.data.shards`) opens as one
dataset: ``DatasetReader(DIR)`` returns a :class:`ShardedReader` with the same interface.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vitalmatch.data.journal import (
    JournaledFile,
    journal_path,
    journal_stamp,
    looks_like_hdf5,
    read_file_id,
    read_journal,
)
from vitalmatch.data.schema import (
    AUDIO,
    BLOBS,
    BOOK,
    CATEGORICAL,
    CONTINUOUS,
    LFO_SHAPE,
    LOG_MEL,
    METADATA_COLUMNS,
    MODULATION,
    MODULATION_WIDTH,
    NUM_LFOS,
    PCM16_MAX,
    PRESET_FILE,
    SAMPLE,
    SPLITS,
    STRING_COLUMNS,
    check_schema,
    decode_attr,
    first_line,
    read_attrs,
    read_progress,
)


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

    def __new__(cls, path: str | os.PathLike) -> DatasetReader:
        """A directory is a sharded dataset: ``DatasetReader(DIR)`` gives a :class:`ShardedReader`."""
        if cls is DatasetReader and Path(path).is_dir():
            return super().__new__(ShardedReader)
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike) -> None:
        """Open ``path``; ``ValueError`` (one line) if it is missing or not a readable dataset."""
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._fd: int | None = None
        self._tables: tuple[list, list] | None = None
        if not self.path.exists():
            raise ValueError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a directory, not a dataset file")
        last_error: Exception | None = None
        for _ in range(50):
            stamp = journal_stamp(self.path)
            try:
                self._open(stamp)
                if journal_stamp(self.path) == stamp:
                    return
            except ValueError:
                if journal_stamp(self.path) == stamp:
                    self._close_handles()
                    raise
                last_error = None
            except Exception as e:  # torn by a concurrent commit, or really damaged: check which
                if journal_stamp(self.path) == stamp:
                    self._close_handles()
                    raise ValueError(f"{self.path}: cannot read the dataset ({first_line(e)})") from None
                last_error = e
            self._close_handles()
            time.sleep(0.01)
        raise ValueError(f"{self.path}: the file kept changing while opening it ({last_error})")

    def _open(self, stamp) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise ValueError(f"{self.path}: cannot open ({e.strerror})") from None
        file_id = read_file_id(self._fd)
        journal = read_journal(journal_path(self.path)) if stamp is not None and file_id else None
        if journal is not None and journal[0] == file_id:
            fobj = JournaledFile(self._fd, journal[1], journal[2], writable=False)
            self._h5 = h5py.File(fobj, "r")
        else:
            if not looks_like_hdf5(self._fd):
                raise ValueError(f"{self.path} is not an HDF5 file")
            os.close(self._fd)
            self._fd = None
            try:
                self._h5 = h5py.File(self.path, "r", locking=False)
            except OSError as e:
                raise ValueError(f"{self.path}: HDF5 cannot open it ({first_line(e)})") from None
        self._stamp = stamp
        f = self._h5
        check_schema(f, self.path)
        self._n = int(f[BOOK].attrs["n_rows"])
        self._progress = read_progress(f[BOOK])
        self.attrs: dict[str, Any] = read_attrs(f)
        a = f[AUDIO]
        self.audio_format: str = decode_attr(a.attrs["format"])
        self.channels: str = decode_attr(a.attrs["channels"])
        self.sample_rate: int = int(a.attrs["sample_rate"])
        self.full_scale: float = float(a.attrs["full_scale"])
        self.audio_length: int = int(a.shape[2])
        self.has_log_mel: bool = LOG_MEL in f
        #: False for schema 1.0.0 (no modulation, LFO, sample, preset-file columns: empty values)
        self.has_modulation: bool = MODULATION in f
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
        return self._read(self.h5[CONTINUOUS], idx)

    def categorical(self, idx) -> np.ndarray:
        """int32 option indices, ``(K,)`` or ``(B, K)``."""
        return self._read(self.h5[CATEGORICAL], idx)

    def modulation(self, idx) -> np.ndarray | list[np.ndarray]:
        """Encoded modulation connections: ``(k, 7)`` float32 for an int, a list of them otherwise.

        Columns: slot, source index, destination index, amount, bipolar, power, stereo
        (:mod:`vitalmatch.synth.modulation`); ``(0, 7)`` for a row without modulation.
        """
        one = isinstance(idx, int | np.integer) and not isinstance(idx, bool)
        if not self.has_modulation:
            n = len(self._rows(idx))
            empty = [np.zeros((0, MODULATION_WIDTH), dtype=np.float32) for _ in range(n)]
            return empty[0] if one else empty
        col = self._read(self.h5[MODULATION], idx)
        if one:
            return np.asarray(col, dtype=np.float32).reshape(-1, MODULATION_WIDTH)
        return [np.asarray(r, dtype=np.float32).reshape(-1, MODULATION_WIDTH) for r in col]

    def modulation_dense(self, idx) -> np.ndarray:
        """The dense modulation matrix, ``(4, S, D)`` for an int or ``(B, 4, S, D)`` otherwise.

        Channels amount, bipolar, power, stereo; S = 32 sources and D = 428 destinations in the
        order of the file's ``modulation_sources`` / ``modulation_destinations`` attributes
        (vita's lists when the file does not name them). Built here, never stored.
        """
        from vitalmatch.synth.modulation import dense

        shape = self.modulation_shape
        rows = self.modulation(idx)
        if isinstance(rows, np.ndarray):
            return dense(rows, *shape)
        out = np.zeros((len(rows), 4, *shape), dtype=np.float32)
        for i, r in enumerate(rows):
            out[i] = dense(r, *shape)
        return out

    @property
    def modulation_shape(self) -> tuple[int, int]:
        """``(sources, destinations)`` of the dense view."""
        src, dst = self.attrs.get("modulation_sources"), self.attrs.get("modulation_destinations")
        named = isinstance(src, list | tuple | np.ndarray) and isinstance(dst, list | tuple | np.ndarray)
        if named and len(src) and len(dst):  # type: ignore[arg-type]
            return len(src), len(dst)  # type: ignore[arg-type]
        from vitalmatch.synth.modulation import destinations, sources

        return len(sources()), len(destinations())

    def lfo_shape(self, idx) -> np.ndarray:
        """int16 indices into the ``lfo_shapes`` blob, ``(8,)`` or ``(B, 8)``; zeros in 1.0.0 files."""
        if not self.has_modulation:
            rows = self._rows(idx)
            z = np.zeros((len(rows), NUM_LFOS), dtype=np.int16)
            return z[0] if isinstance(idx, int | np.integer) and not isinstance(idx, bool) else z
        return self._read(self.h5[LFO_SHAPE], idx)

    def sample_index(self, idx) -> np.ndarray:
        """int32 index into the ``samples`` blob, scalar or ``(B,)``; zeros in 1.0.0 files."""
        if not self.has_modulation:
            rows = self._rows(idx)
            z = np.zeros(len(rows), dtype=np.int32)
            return z[0] if isinstance(idx, int | np.integer) and not isinstance(idx, bool) else z
        return self._read(self.h5[SAMPLE], idx)

    def preset_file(self, idx=None) -> np.ndarray:
        """The source ``.vital`` file of each row (str; empty for sampled presets and 1.0.0 files)."""
        if not self.has_modulation:
            return np.full(len(self._rows(slice(None) if idx is None else idx)), "", dtype=str)
        col = self._read(self.h5[PRESET_FILE], slice(None) if idx is None else idx)
        return np.char.decode(col, "utf-8")

    def preset_extras(self, idx: int):
        """The :class:`~vitalmatch.synth.render.PresetExtras` row ``idx`` was rendered with: its
        modulations, LFO shapes and sample, resolved through the file's ``lfo_shapes`` and
        ``samples`` tables. With the row's continuous and categorical vectors and the file's
        wavetable catalog, ``RenderEngine.render`` reproduces the stored audio."""
        if not self.has_modulation:
            none = np.zeros((0, MODULATION_WIDTH), np.float32)
            return extras_of(none, np.zeros(NUM_LFOS), 0, [None], [None])
        i = int(idx)
        rows = np.asarray(self.modulation(i), dtype=np.float32)
        lfo, sample = self.lfo_shape(i), int(self.sample_index(i))
        if not lfo.any() and sample == 0:  # nothing to look up (files written without the tables too)
            return extras_of(rows, lfo, 0, [None], [None])
        if self._tables is None:
            try:
                self._tables = (json.loads(self.blob("lfo_shapes")), json.loads(self.blob("samples")))
            except KeyError:
                raise ValueError(
                    f"{self.path}: row {i} names LFO shapes or a sample, but the file has no "
                    "lfo_shapes/samples tables"
                ) from None
        return extras_of(rows, lfo, sample, *self._tables)

    def _rows(self, idx) -> np.ndarray:
        """The row numbers ``idx`` selects (for columns a 1.0.0 file lacks)."""
        return np.atleast_1d(np.arange(self._n)[idx])

    def log_mel(self, idx) -> np.ndarray:
        """float32 log-mel spectrogram(s), ``(n_mels, frames)`` or ``(B, n_mels, frames)``."""
        if not self.has_log_mel:
            raise ValueError(f"{self.path} stores no log-mels (it was generated without them)")
        return self._read(self.h5[LOG_MEL], idx).astype(np.float32)

    def metadata(self, name: str, idx=None) -> np.ndarray:
        """Metadata column ``name``: all ``(N,)`` rows, or the rows ``idx`` selects.

        Text columns (source, preset_hash, preset_name, split) come back as numpy str arrays.
        """
        if name not in METADATA_COLUMNS:
            raise KeyError(f"no metadata column {name!r}; columns: {', '.join(METADATA_COLUMNS)}")
        col = self._read(self.h5[f"metadata/{name}"], slice(None) if idx is None else idx)
        if name in STRING_COLUMNS:
            return np.char.decode(col, "utf-8")
        return col

    def split_indices(self, split: str) -> np.ndarray:
        """Sorted int64 row numbers of one split ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        column = self._read(self.h5["metadata/split"], slice(None))
        return np.flatnonzero(column == split.encode()).astype(np.int64)

    def progress(self) -> dict:
        """The progress dict of the last commit (``{}`` right after creation)."""
        return dict(self._progress)

    def blob(self, name: str) -> bytes:
        """Bytes stored with :meth:`DatasetWriter.write_blob`; ``KeyError`` if absent."""
        key = f"{BLOBS}/{name}"
        if key not in self.h5:
            raise KeyError(f"{self.path} has no blob {name!r}")
        return self._guarded(lambda: self.h5[key][()]).tobytes()

    def storage_size(self, name: str) -> int:
        """Stored (compressed) bytes of dataset ``name`` (e.g. ``"audio/waveforms"``), from HDF5."""
        ds = self._audio if name == AUDIO else self.h5[name]
        return int(ds.id.get_storage_size())

    @property
    def h5(self) -> h5py.File:
        """The open HDF5 file; ValueError once the reader is closed."""
        if self._h5 is None:
            raise ValueError(f"{self.path}: the reader is closed")
        return self._h5

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
        return self._stamp is not None and journal_stamp(self.path) != self._stamp

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


def extras_of(modulation: np.ndarray, lfo_shape: np.ndarray, sample: int, lfo_table, sample_table):
    """The :class:`~vitalmatch.synth.render.PresetExtras` a stored row describes: its decoded
    connections, the LFO shapes its indices name in ``lfo_table`` (index 0, the init shape, is
    left as it is) and its sample (``sample_table[sample]``; None, at index 0, keeps the init
    preset's white noise)."""
    from vitalmatch.synth.modulation import decode
    from vitalmatch.synth.render import PresetExtras

    lfos = tuple(None if int(i) == 0 else lfo_table[int(i)] for i in np.asarray(lfo_shape).ravel())
    return PresetExtras(
        tuple(decode(modulation)), lfos, None if int(sample) == 0 else sample_table[int(sample)]
    )


def dataset_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of a dataset: the file, or the shard files of a directory."""
    p = Path(path)
    if p.is_dir():
        from vitalmatch.data.shards import shard_files

        return sum(f.stat().st_size for f in shard_files(p))
    return p.stat().st_size


def audio_bytes_per_row(path: str | os.PathLike) -> float:
    """Stored (compressed) bytes of ``audio/waveforms`` per row, from HDF5's storage size.

    Raises ``ValueError`` for a file with no rows. A directory of shards: summed over them.
    """
    with DatasetReader(path) as ds:
        n = len(ds)
        if n == 0:
            raise ValueError(f"{path} has no rows")
        return ds.storage_size(AUDIO) / n


_VIRTUAL_NAMES = itertools.count()


class ShardedReader(DatasetReader):
    """A directory of shard files (:mod:`vitalmatch.data.shards`) read as one dataset.

    ``DatasetReader(DIR)`` returns one, so every reader of datasets takes a directory. It has the
    file reader's public interface; global row ``r`` is row ``r - start[s]`` of shard ``s``, with
    the shards in block order. Opening checks the directory as ``vitalmatch index`` does (a
    current ``index.json`` is trusted, else every shard is scanned) and opens only the first shard.

    Fixed-shape columns (audio, parameters, metadata, log-mels, ...) are read through an HDF5
    virtual dataset over the shards, built in memory on a column's first use (``h5py.VirtualLayout``;
    nothing is written to the directory) and kept open. ``benchmarks/shards_open.py`` measured it
    against reading through one file reader per shard (docs/cluster.md): at 100 shards a random
    row took 3.2 ms on the first pass and 0.17 ms after, against 33 and 12 ms, and a random batch
    of 64 rows 50 ms against 3 s (each shard reader's open parses its attributes). HDF5 keeps
    every source file it touched open, so the soft limit on open files is raised to fit the
    shards; where it cannot be, and for what a virtual dataset cannot map (the variable-length
    modulation column, blobs, progress), shards are read by their own readers, at most
    :attr:`max_open` open at a time (least recently used closed first).
    """

    #: Shard readers kept open at once (the variable-length columns and the fallback path).
    max_open = 32

    def __init__(self, path: str | os.PathLike) -> None:
        from vitalmatch.data.shards import verified_shards

        self.path = Path(path)
        self._open_shards: OrderedDict[int, DatasetReader] = OrderedDict()
        self._closed = False
        self._h5 = None
        self._fd = None
        self._stamp = None  # complete shards have no writer: never stale
        self._tables = None
        self.shards = verified_shards(self.path)
        self._starts = np.concatenate([[0], np.cumsum([s.rows for s in self.shards])]).astype(np.int64)
        self._n = int(self._starts[-1])
        first = self._shard(0)
        self.attrs = {k: v for k, v in first.attrs.items() if k not in ("shard_block", "stream_start")}
        for name in (
            "audio_format",
            "channels",
            "sample_rate",
            "full_scale",
            "audio_length",
            "has_log_mel",
            "has_modulation",
        ):
            setattr(self, name, getattr(first, name))
        self._merged: dict | None = None  # merged on first use (it opens every shard)
        self._virtual = _open_files_allowed(len(self.shards) + 64)
        self._columns: dict[str, h5py.Dataset] = {}
        if self._virtual:
            # a name HDF5 has not open (it refuses to truncate an open one); nothing goes to disk
            name = f"vitalmatch-virtual-{os.getpid()}-{next(_VIRTUAL_NAMES)}.h5"
            # no HDF5 file locks: the sources are opened with this file's access properties, and
            # readers in several processes (DataLoader workers) would otherwise refuse each other
            self._h5 = h5py.File(name, "w", driver="core", backing_store=False, locking=False)

    # -- shards ---------------------------------------------------------------------------------

    def _column(self, name: str) -> h5py.Dataset | None:
        """Column ``name`` of every shard mapped into the in-memory virtual file (built once, and
        kept open: opening a virtual dataset resolves all its sources again); None when this
        reader reads through the shard readers instead."""
        if not self._virtual:
            return None
        if name in self._columns:
            return self._columns[name]
        f = self._h5
        if f is None:
            raise ValueError(f"{self.path}: the reader is closed")
        src = self._shard(0).h5[name]
        if src.dtype.kind == "O":  # variable length: a virtual dataset cannot map it
            return None
        tail = src.shape[1:]
        layout = h5py.VirtualLayout(shape=(self._n, *tail), dtype=src.dtype)
        for s, info in enumerate(self.shards):
            if info.rows:
                source = h5py.VirtualSource(str((self.path / info.file).resolve()), name, (info.rows, *tail))
                layout[int(self._starts[s]) : int(self._starts[s + 1])] = source
        self._columns[name] = f.create_virtual_dataset(name, layout)
        if name == AUDIO:
            self._audio = self._columns[name]
        return self._columns[name]

    def _shard(self, s: int) -> DatasetReader:
        if self._closed:
            raise ValueError(f"{self.path}: the reader is closed")
        reader = self._open_shards.get(s)
        if reader is None:
            reader = DatasetReader(self.path / self.shards[s].file)
            if len(reader) != self.shards[s].rows:
                reader.close()
                raise ValueError(
                    f"{reader.path} has {len(reader)} rows, the index says {self.shards[s].rows}; "
                    f"run vitalmatch index {self.path}/"
                )
            self._open_shards[s] = reader
            while len(self._open_shards) > self.max_open:
                _, old = self._open_shards.popitem(last=False)
                old.close()
        else:
            self._open_shards.move_to_end(s)
        return reader

    def _global_rows(self, idx) -> np.ndarray:
        """The global row numbers ``idx`` selects (the file reader's index rules)."""
        n = self._n
        if isinstance(idx, int | np.integer) and not isinstance(idx, bool):
            i = int(idx)
            if not -n <= i < n:
                raise IndexError(f"row {i} out of range for {n} rows")
            return np.array([i % n], dtype=np.int64)
        if isinstance(idx, slice):
            return np.arange(*idx.indices(n), dtype=np.int64)
        rows = np.asarray(idx)
        if rows.dtype == bool:
            if rows.shape != (n,):
                raise IndexError(f"a boolean mask must have shape ({n},), got {rows.shape}")
            return np.flatnonzero(rows).astype(np.int64)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise IndexError("index must be an int, a slice, a 1-D array of ints or a boolean mask")
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        return rows % n if n else rows

    def _gather(self, read, idx, *, as_list: bool = False):
        """``read(shard_reader, local_rows)`` over the shards that hold rows ``idx``, joined back
        in the order asked (an int gives one row without the batch axis)."""
        one = isinstance(idx, int | np.integer) and not isinstance(idx, bool)
        rows = self._global_rows(idx)
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        if one:
            s = int(shard_of[0])
            return read(self._shard(s), int(rows[0] - self._starts[s]))
        if rows.size == 0:
            return read(self._shard(0), np.zeros(0, dtype=np.int64))
        order, parts = [], []
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            local = rows[sel] - self._starts[s]
            if local.size > 1 and np.all(np.diff(local) == 1):  # one hyperslab
                part = read(self._shard(int(s)), slice(int(local[0]), int(local[-1]) + 1))
            else:
                part = read(self._shard(int(s)), local)
            order.append(sel)
            parts.append(part)
        where = np.argsort(np.concatenate(order), kind="stable")
        if as_list:
            flat = [x for p in parts for x in p]
            return [flat[i] for i in where]
        return np.concatenate(parts)[where]

    def _merged_progress(self) -> dict:
        """The shards' progress records summed (failed lists joined, up to 1000 entries)."""
        from vitalmatch.data.generate import MAX_FAILED_LISTED

        out: dict[str, Any] = {"shards": len(self.shards)}
        failed: list = []
        rejections: dict[str, int] = {}
        complete = True
        for s in range(len(self.shards)):
            p = self._shard(s).progress()
            for key in ("kept_presets", "kept_synthetic", "next_preset", "rows", "n_failed"):
                if key in p:
                    out[key] = out.get(key, 0) + int(p[key])
            for k, v in p.get("rejections", {}).items():
                rejections[k] = rejections.get(k, 0) + int(v)
            failed.extend(p.get("failed", [])[: max(0, MAX_FAILED_LISTED - len(failed))])
            complete = complete and bool(p.get("complete"))
        out.update(rejections=rejections, failed=failed, complete=complete)
        return out

    # -- the file reader's interface --------------------------------------------------------------
    # Each fixed-shape column goes through the virtual file (the file reader's own code) when it
    # maps, else through the shard readers.

    def __len__(self) -> int:
        return self._n

    def audio(self, idx) -> np.ndarray:
        if self._column(AUDIO) is not None:
            return super().audio(idx)  # reads self._audio, the virtual column
        return self._gather(lambda r, i: r.audio(i), idx)

    def continuous(self, idx) -> np.ndarray:
        col = self._column(CONTINUOUS)
        return self._gather(lambda r, i: r.continuous(i), idx) if col is None else self._read(col, idx)

    def categorical(self, idx) -> np.ndarray:
        col = self._column(CATEGORICAL)
        return self._gather(lambda r, i: r.categorical(i), idx) if col is None else self._read(col, idx)

    def modulation(self, idx) -> np.ndarray | list[np.ndarray]:
        one = isinstance(idx, int | np.integer) and not isinstance(idx, bool)
        return self._gather(lambda r, i: r.modulation(i), idx, as_list=not one)

    def lfo_shape(self, idx) -> np.ndarray:
        col = self._column(LFO_SHAPE) if self.has_modulation else None
        return self._gather(lambda r, i: r.lfo_shape(i), idx) if col is None else self._read(col, idx)

    def sample_index(self, idx) -> np.ndarray:
        col = self._column(SAMPLE) if self.has_modulation else None
        return self._gather(lambda r, i: r.sample_index(i), idx) if col is None else self._read(col, idx)

    def preset_file(self, idx=None) -> np.ndarray:
        idx = slice(None) if idx is None else idx
        col = self._column(PRESET_FILE) if self.has_modulation else None
        if col is None:
            return self._gather(lambda r, i: r.preset_file(i), idx)
        return np.char.decode(self._read(col, idx), "utf-8")

    def log_mel(self, idx) -> np.ndarray:
        if not self.has_log_mel:
            raise ValueError(f"{self.path} stores no log-mels (it was generated without them)")
        col = self._column(LOG_MEL)
        if col is None:
            return self._gather(lambda r, i: r.log_mel(i), idx)
        return self._read(col, idx).astype(np.float32)

    def metadata(self, name: str, idx=None) -> np.ndarray:
        if name not in METADATA_COLUMNS:
            raise KeyError(f"no metadata column {name!r}; columns: {', '.join(METADATA_COLUMNS)}")
        idx = slice(None) if idx is None else idx
        col = self._column(f"metadata/{name}")
        if col is None:
            return self._gather(lambda r, i: r.metadata(name, i), idx)
        out = self._read(col, idx)
        return np.char.decode(out, "utf-8") if name in STRING_COLUMNS else out

    def split_indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return np.flatnonzero(self.metadata("split") == split).astype(np.int64)

    def progress(self) -> dict:
        """The shards' progress records combined (counts summed; ``shards``: how many)."""
        if self._merged is None:
            self._merged = self._merged_progress()
        return dict(self._merged)

    def blob(self, name: str) -> bytes:
        """A blob of the first shard (every shard of a run stores the same tables)."""
        return self._shard(0).blob(name)

    def storage_size(self, name: str) -> int:
        """Stored bytes of dataset ``name`` summed over the shards."""
        return sum(self._shard(s).storage_size(name) for s in range(len(self.shards)))

    @property
    def h5(self) -> h5py.File:
        """The in-memory virtual file over the shards (only the columns mapped so far)."""
        if self._h5 is None:
            raise ValueError(f"{self.path} is a directory of shards read shard by shard: no HDF5 file")
        return self._h5

    def close(self) -> None:
        self._closed = True
        for reader in getattr(self, "_open_shards", {}).values():
            reader.close()
        if hasattr(self, "_open_shards"):
            self._open_shards.clear()
        if hasattr(self, "_columns"):
            self._columns.clear()
        self._close_handles()

    def __enter__(self) -> ShardedReader:
        return self

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _open_files_allowed(needed: int) -> bool:
    """Whether this process may hold ``needed`` more open files, raising the soft limit up to the
    hard one if that makes it fit (HDF5 keeps every source file of a virtual dataset open)."""
    try:
        import resource
    except ImportError:  # not a Unix: no such limit to check
        return True
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    want = in_use + needed
    if soft == resource.RLIM_INFINITY or soft >= want:
        return True
    if hard != resource.RLIM_INFINITY and hard < want:
        return False
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return False
    return True
