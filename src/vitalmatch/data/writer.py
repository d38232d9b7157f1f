"""The dataset writer: appends accepted renders to a dataset file and commits them durably.

Stage: data (storage). Input: batches of accepted renders from the dataset generator
(:mod:`vitalmatch.data.generate`), i.e. stereo float32 audio ``(B, 2, T)`` in
[-full_scale, full_scale], unit-range parameter vectors and per-row metadata. Output: one HDF5
file per dataset in the layout of :mod:`vitalmatch.data.schema`, one row per render of one
preset at one MIDI note, read back by :class:`vitalmatch.data.reader.DatasetReader`.

Every commit survives a kill at any instant, and :meth:`DatasetWriter.resume` continues from
the last one: HDF5 writes through the page-overlay journal of :mod:`vitalmatch.data.journal`.
Rows are buffered in memory up to the end of the current audio chunk, so HDF5 writes every
chunk whole (no decompress-merge-recompress); a commit also writes the partial last chunk.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vitalmatch.data.journal import (
    USERBLOCK,
    JournaledFile,
    fsync_dir,
    journal_path,
    lock_for_writing,
    looks_like_hdf5,
    read_file_id,
    recover,
    refuse_if_being_written,
    write_file_id,
    write_journal,
)
from vitalmatch.data.schema import (
    ADDED_IN_1_1,
    AUDIO,
    BLOBS,
    BOOK,
    CATEGORICAL,
    CONTINUOUS,
    FLOAT16_MAX,
    LFO_SHAPE,
    LOG_MEL,
    METADATA_COLUMNS,
    MODULATION,
    MODULATION_WIDTH,
    NUM_LFOS,
    PCM16_MAX,
    PRESET_FILE,
    PRESET_FILE_BYTES,
    SAMPLE,
    SPLITS,
    StorageConfig,
    build_layout,
    check_schema,
    decode_attr,
    encode_attrs,
    first_line,
    is_int,
    layout_columns,
    progress_json,
    read_attrs,
    read_progress,
    write_progress,
)
from vitalmatch.interrupts import sigint_deferred


class DatasetWriter:
    """Appends renders to a dataset file and commits them durably (see :mod:`vitalmatch.data.journal`).

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
            if not is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if mel_shape is not None:
            if len(tuple(mel_shape)) != 2 or not all(is_int(x) and x >= 1 for x in mel_shape):
                raise ValueError(
                    f"mel_shape must be (n_mels, frames) of positive integers, got {mel_shape!r}"
                )
            mel_shape = (int(mel_shape[0]), int(mel_shape[1]))
        root_attrs, json_keys = encode_attrs(attrs)
        columns = layout_columns(int(audio_length), int(n_continuous), int(n_categorical), storage, mel_shape)

        parent = path.absolute().parent
        if path.is_dir():
            raise IsADirectoryError(f"cannot create dataset {path}: it is a directory")
        if path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{path} already exists; pass --overwrite to replace it or --resume to continue it"
                )
            refuse_if_being_written(path)
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
                jf = JournaledFile(fd, 0, writable=True)
                with h5py.File(jf, "w", userblock_size=USERBLOCK) as f:
                    build_layout(f, columns, storage, int(sample_rate), root_attrs, json_keys)
                write_file_id(fd, file_id)
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
        fsync_dir(parent)
        with contextlib.suppress(FileNotFoundError):  # a stale journal of the replaced file
            os.unlink(journal_path(path))
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
            lock_for_writing(fd, path)
            file_id = read_file_id(fd)
            if file_id is None:
                what = (
                    "an HDF5 file but not a vitalmatch dataset" if looks_like_hdf5(fd) else "not an HDF5 file"
                )
                raise ValueError(f"cannot resume {path}: it is {what}")
            recover(fd, path, file_id)
            jf = JournaledFile(fd, os.fstat(fd).st_size, writable=True)
            # From here until close, a journal records the committed size, so a crash can always
            # cut off what HDF5 wrote after it.
            write_journal(journal_path(path), file_id, jf.base, {})
            try:
                h5 = h5py.File(jf, "r+")
            except OSError as e:
                raise ValueError(f"cannot resume {path}: HDF5 cannot open it ({first_line(e)})") from None
            self = object.__new__(cls)
            self._init(path, fd, file_id, jf, h5)
        except BaseException:
            os.close(fd)  # also releases the lock
            raise
        return self, dict(self._progress)

    def _init(self, path: Path, fd: int, file_id: bytes, jf: JournaledFile, h5: h5py.File) -> None:
        self.path = path
        self._fd, self._file_id, self._jf, self._h5 = fd, file_id, jf, h5
        self._closed, self._broken = True, False  # until set up: __del__ must not touch the fd
        try:
            check_schema(h5, path)
        except ValueError:
            h5.close()
            raise
        book = h5[BOOK]
        self._committed = int(book.attrs["n_rows"])
        self._sequence = int(book.attrs["sequence"])
        self._progress = read_progress(book)
        self._attrs = read_attrs(h5)
        self._ds = {name: h5[name] for name in [AUDIO, LOG_MEL, CONTINUOUS, CATEGORICAL] if name in h5}
        self._ds.update({f"metadata/{k}": h5[f"metadata/{k}"] for k in METADATA_COLUMNS})
        self._ds.update({name: h5[name] for name in ADDED_IN_1_1 if name in h5})
        #: False for a schema-1.0.0 file (no modulation, LFO, sample or preset-file columns)
        self.has_modulation = MODULATION in self._ds
        a = self._ds[AUDIO]
        self.audio_format = decode_attr(a.attrs["format"])
        self.channels = decode_attr(a.attrs["channels"])
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
        modulation=None,
        lfo_shape=None,
        sample=None,
        preset_file=None,
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
            modulation: B arrays of shape ``(k_b, 7)`` (encoded connections,
                :func:`vitalmatch.synth.modulation.encode`); None = no modulation.
            lfo_shape: ``(B, 8)`` integers, indices into the file's LFO-shape table; None = zeros.
            sample: B integers, indices into the file's sample table; None = zeros.
            preset_file: B strings (the source ``.vital`` file); cut to 200 utf-8 bytes.
                A schema-1.0.0 file being resumed has none of these four columns: they must
                then be None or empty.

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
            modulation=modulation,
            lfo_shape=lfo_shape,
            sample=sample,
            preset_file=preset_file,
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
        text = progress_json(progress)
        with self._guard():
            n = self.n_rows
            if len(self._buffer[AUDIO]):
                self._write(self._flushed, self._buffer)
            book = self._h5[BOOK]
            book.attrs["n_rows"] = np.int64(n)
            book.attrs["sequence"] = np.int64(self._sequence + 1)
            write_progress(book, text)
            self._h5.flush()
            self._jf.checkpoint(journal_path(self.path), self._file_id)
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

    def set_attr(self, name: str, value: Any) -> None:
        """Set or replace the root attribute ``name``, for results computed after generation
        (e.g. ``compute-weights``' importance weights); durable at the next :meth:`commit`.

        ``value``: what :meth:`create`'s ``attrs`` take except dicts (store JSON as a string).
        The write goes through the journal like rows do, so committed rows are never touched.
        """
        self._check_usable()
        if isinstance(value, Mapping):
            raise ValueError(f"attribute {name!r}: store a dict as a JSON string")
        encoded, _ = encode_attrs({name: value})
        json_keys = set(decode_attr(self._h5[BOOK].attrs.get("json_attrs", np.zeros(0))))
        if name in json_keys or name + "_json" in json_keys:
            raise ValueError(f"attribute {name!r} collides with a JSON-encoded attribute")
        with self._guard():
            self._h5.attrs[name] = encoded[name]
            self._attrs[name] = decode_attr(self._h5.attrs[name])

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
            with sigint_deferred():
                self._h5.close()
                self._jf.checkpoint(journal_path(self.path), self._file_id, final=True)
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
                f"{self.path}: an earlier write failed; "
                "close this writer and resume to continue from the last commit"
            )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Any failure while HDF5 writes leaves its in-memory state unknown: stop using it.

        Ctrl-C is held until the block has finished (and raised after it), so that it never
        breaks the writer halfway through an HDF5 call.
        """
        with sigint_deferred():
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
            if name == MODULATION:
                # h5py reads an object array of equal-length arrays as 2-D (it cannot broadcast
                # (B, 0) into vlen rows): write the variable-length rows one at a time
                for i, value in enumerate(rows[name]):
                    ds[start + i] = value
            else:
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
        extra = self._convert_extras(
            b, cols["modulation"], cols["lfo_shape"], cols["sample"], cols["preset_file"]
        )
        if self.has_modulation:
            out.update(extra)
        elif (
            any(len(m) for m in extra[MODULATION])
            or extra[LFO_SHAPE].any()
            or extra[SAMPLE].any()
            or any(extra[PRESET_FILE])
        ):
            raise ValueError(
                "this dataset has schema 1.0.0, which stores no modulation, LFO shapes, samples or "
                "preset files; write a new dataset"
            )
        return out

    def _convert_extras(self, b: int, modulation, lfo_shape, sample, preset_file) -> dict[str, np.ndarray]:
        """The four schema-1.1.0 columns of one :meth:`append` call, checked and converted."""
        mods = np.empty(b, dtype=object)
        if modulation is None:
            modulation = [()] * b
        if len(modulation) != b:
            raise ValueError(f"modulation must hold {b} arrays, got {len(modulation)}")
        for i, m in enumerate(modulation):
            arr = np.asarray(m, dtype=np.float64)
            if arr.size == 0:
                arr = arr.reshape(0, MODULATION_WIDTH)
            if arr.ndim != 2 or arr.shape[1] != MODULATION_WIDTH:
                raise ValueError(f"modulation rows must have shape (k, {MODULATION_WIDTH}), got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError("modulation values must be finite")
            mods[i] = arr.astype(np.float32).ravel()
        lfo = np.zeros((b, NUM_LFOS), dtype=np.int16) if lfo_shape is None else np.asarray(lfo_shape)
        lfo = _matrix(lfo, "lfo_shape", b, NUM_LFOS, "iu")
        if lfo.size and (lfo.min() < 0 or lfo.max() > np.iinfo(np.int16).max):
            raise ValueError("lfo_shape values must be table indices in 0..32767")
        smp = np.zeros(b, dtype=np.int32)
        if sample is not None:
            smp = _ints(sample, "sample", b, 0, 2**31 - 1, np.int32)
        files = [""] * b if preset_file is None else preset_file
        return {
            MODULATION: mods,
            LFO_SHAPE: lfo.astype(np.int16),
            SAMPLE: smp,
            PRESET_FILE: _strings(files, "preset_file", b, PRESET_FILE_BYTES, truncate=True),
        }


# --------------------------------------------------------------------------------------------
# Checks and conversions of the appended columns


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


def _one_line(e: OSError, message: str) -> OSError:
    """The same kind of ``OSError`` with our one-line message (and the errno kept)."""
    new = type(e)(message)
    new.errno = e.errno
    return new
