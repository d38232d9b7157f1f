"""Training data: a dataset split as in-memory tensors of log-mels, targets and loss masks.

Stage: learn (loading). Input: a dataset file of :mod:`vitalmatch.data.writer`. Output: a
:class:`SplitData` with

* ``mels`` ``(N, n_mels, frames)`` float16 log-mels (not yet normalised): read from the file when
  it stores them with the same feature settings, else computed from the audio with
  :func:`vitalmatch.features.log_mel` (the function prediction uses too);
* ``continuous`` ``(N, C)`` float32 in [0, 1] and ``categorical`` ``(N, K)`` int64 targets for the
  *learnable* columns only (see :func:`learnable_registry`);
* ``cont_mask`` ``(N, C)`` and ``cat_mask`` ``(N, K)`` booleans from
  :func:`vitalmatch.synth.activity.activity_masks`: no loss where a parameter cannot affect the
  sample's audio.

Holding the split in memory (float16: 44 kB per 2-s clip at the defaults, so 1.3 GB for 30,000
clips) makes batches free to assemble, so the model step is never waiting on HDF5 and gzip. With a
``cache_dir`` the log-mels go to a memory-mapped ``.npy`` file there instead: a resumed run reuses
it at once, and splits larger than RAM are paged in by the OS.

A split whose log-mels do not fit in the memory budget is *streamed* instead
(:class:`StreamingSplit`, chosen by :func:`plan_splits`): nothing is copied up front; each epoch
reads the split from the dataset (a file or a sharded directory) in chunk-aligned row blocks,
in DataLoader worker processes (each with its own reader), and yields the same batch dicts from
the same features (stored log-mels when they match, else :func:`vitalmatch.features.log_mel` of
the audio). Both kinds of split answer the same questions (:meth:`SplitData.batches`,
``epoch_batches``, ``frames``, ``head_mels``, ``targets``), so the loop, validation and the
bundle do not care which one they hold.

Encoder archs (``--arch ast|mert``, :mod:`vitalmatch.learn.encoders`) take waveforms, not
log-mels: with ``input_rate`` set, both kinds of split hold ``wave`` ``(N, L)`` float16 mono audio
resampled to that rate (:func:`vitalmatch.learn.encoders.resample`, soxr) in place of ``mels``, and
batches carry ``"wave"`` instead of ``"mels"``. ``frames`` still counts the clip in log-mel
frames (what a checkpoint's ``input_frames`` means) and ``head_mels`` gives neutral statistics.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import AUDIO
from vitalmatch.features import FeatureConfig, log_mel
from vitalmatch.synth.activity import activity_masks
from vitalmatch.synth.params import ParamRegistry

_BLOCK = 512  # rows read (or featurised) at a time


@dataclass
class SplitData:
    """One split in memory (shapes in the module docstring); ``mels`` is a float16 numpy array,
    possibly memory-mapped (for an encoder arch: the ``(N, L)`` waveforms, batched as ``key``
    ``"wave"``, and ``clip_frames`` the clip's length in log-mel frames)."""

    mels: np.ndarray
    continuous: torch.Tensor
    categorical: torch.Tensor
    cont_mask: torch.Tensor
    cat_mask: torch.Tensor
    midi_note: torch.Tensor
    key: str = "mels"
    clip_frames: int = 0

    def __len__(self) -> int:
        return self.mels.shape[0]

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Items ``rows`` as a batch dict (mels, or waves, as float32)."""
        idx = np.asarray(rows, dtype=np.int64)
        return {
            self.key: torch.from_numpy(np.asarray(self.mels[idx], dtype=np.float32)),
            "continuous": self.continuous[rows],
            "categorical": self.categorical[rows],
            "cont_mask": self.cont_mask[rows],
            "cat_mask": self.cat_mask[rows],
        }

    # The questions a streamed split answers too (StreamingSplit):
    @property
    def frames(self) -> int:
        """Log-mel frames per example."""
        return self.clip_frames or int(self.mels.shape[-1])

    def head_mels(self, n: int) -> np.ndarray:
        """The first ``n`` examples' log-mels ``(n, n_mels, frames)`` (for the band statistics;
        a split of waveforms has none: zeros, whose statistics the caller replaces)."""
        if self.key != "mels":
            return np.zeros((1, 1, 2), dtype=np.float16)
        return np.asarray(self.mels[:n])

    def targets(self) -> SplitData:
        """The split's targets and masks (for the mean baseline): all of them, in memory."""
        return self

    def batches(
        self, rank: int = 0, world: int = 1, batch_size: int = 128
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batch dicts of every ``world``-th example from ``rank`` on, in order (validation)."""
        rows = torch.arange(rank, len(self), world)
        for start in range(0, len(rows), batch_size):
            yield self.batch(rows[start : start + batch_size])


def dataset_registry(reader: DatasetReader) -> ParamRegistry:
    """The full registry stored in a dataset (the column order of its parameter arrays)."""
    text = reader.attrs.get("registry_json")
    if not text:
        raise ValueError(f"{reader.path} has no parameter registry (not a vitalmatch dataset?)")
    return ParamRegistry.from_json(text)


def dataset_identity(reader: DatasetReader) -> str:
    """What a dataset holds, as a sha256 hex digest: its attributes (registry, render and sampling
    settings, catalog hashes, ...) and, row by row, the preset hash, MIDI note and split.

    The same file has the same identity wherever it lies and whatever path names it (a copy too);
    ``train --resume`` compares it when the data is given by another path than the run's.
    """
    h = hashlib.sha256()
    attrs = json.dumps(
        reader.attrs, sort_keys=True, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x)
    )
    h.update(attrs.encode())
    h.update(f"rows={len(reader)}".encode())
    for name in ("preset_hash", "midi_note", "split"):
        h.update(name.encode())
        h.update(np.ascontiguousarray(reader.metadata(name)).tobytes())
    return h.hexdigest()


def learnable_registry(reader: DatasetReader, max_rows: int = 20000) -> ParamRegistry:
    """The columns a model should predict: parameters of the dataset's tier that vary in it.

    Parameters outside the tier stay at init values and pinned ones (``osc_N_random_phase``)
    are constant: predicting them teaches nothing. The result is a :class:`ParamRegistry` whose
    column order is the model's output order.
    """
    full = dataset_registry(reader)
    tier = int(reader.attrs.get("tier", full.tier))
    n = min(len(reader), max_rows)
    if n == 0:
        raise ValueError(f"{reader.path} has no rows")
    cont = reader.continuous(slice(0, n))
    cat = reader.categorical(slice(0, n))
    keep_c = [s for j, s in enumerate(full.continuous) if s.tier <= tier and np.ptp(cont[:, j]) > 0]
    keep_k = [s for j, s in enumerate(full.categorical) if s.tier <= tier and np.ptp(cat[:, j]) > 0]
    return ParamRegistry(tuple(keep_c), tuple(keep_k), tier, full.vita_version)


def column_index(full: ParamRegistry, sub: ParamRegistry) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``sub``'s columns in ``full``'s vectors: ``(C_sub,)``, ``(K_sub,)`` int64."""
    try:
        c = np.array([full.locate(s.name)[1] for s in sub.continuous], dtype=np.int64)
        k = np.array([full.locate(s.name)[1] for s in sub.categorical], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"the dataset lacks a parameter the model predicts: {e.args[0]}") from None
    return c, k


def training_means(reader: DatasetReader, max_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The training split's average preset over every column of the dataset's registry: mean
    continuous values ``(C,)`` float32 and most frequent options ``(K,)`` int32 (of the first
    ``max_rows`` training rows; the init preset's values when the split is empty)."""
    rows = reader.split_indices("train")[:max_rows]
    if len(rows) == 0:
        return dataset_registry(reader).defaults()
    cats = reader.categorical(rows)
    modes = np.array([np.bincount(cats[:, j]).argmax() for j in range(cats.shape[1])], dtype=np.int32)
    return reader.continuous(rows).mean(axis=0).astype(np.float32), modes


def stored_mels_match(reader: DatasetReader, features: FeatureConfig) -> bool:
    """True if the file's stored log-mels were computed with ``features``."""
    if not reader.has_log_mel:
        return False
    return features == FeatureConfig(sample_rate=reader.sample_rate)


def check_features(reader: DatasetReader, features: FeatureConfig) -> None:
    if features.sample_rate != reader.sample_rate:
        raise ValueError(
            f"{reader.path} is rendered at {reader.sample_rate} Hz but the features expect "
            f"{features.sample_rate} Hz"
        )


def load_split(
    path: str | Path,
    split: str,
    registry: ParamRegistry,
    features: FeatureConfig,
    *,
    max_rows: int | None = None,
    progress: bool = False,
    cache_dir: str | Path | None = None,
    input_rate: int | None = None,
) -> SplitData:
    """Read one split of a dataset into memory (see the module docstring).

    Args:
        path: dataset file or sharded directory.
        split: "train", "val" or "test".
        registry: the learnable columns (from :func:`learnable_registry` or a checkpoint).
        features: log-mel settings; stored mels are used when they were made with these.
        max_rows: keep only the first rows of the split (for quick runs).
        progress: show a progress bar while reading / featurising.
        cache_dir: keep the log-mels in a memory-mapped file here (reused when the dataset file,
            split, row limit and feature settings are the same).
        input_rate: hold mono waveforms resampled to this rate (Hz) instead of log-mels (for the
            encoder archs; see the module docstring).
    """
    with open_reader(path) as reader:
        check_features(reader, features)
        full = dataset_registry(reader)
        ci, ki = column_index(full, registry)
        rows = reader.split_indices(split)
        if max_rows is not None:
            rows = rows[:max_rows]
        n = len(rows)
        frames = features.n_frames(reader.audio_length)
        shape = (n, features.n_mels, frames)
        if input_rate is not None:
            shape = (n, _wave_length(reader.audio_length, reader.sample_rate, input_rate))
        cache = (
            _cache_path(cache_dir, path, split, max_rows, features, input_rate)
            if cache_dir is not None
            else None
        )
        have_mels = False
        if cache is not None and cache.exists():
            mels = np.load(cache, mmap_mode="r")
            have_mels = mels.shape == shape and mels.dtype == np.float16
        if not have_mels:
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
                mels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
            else:
                mels = np.empty(shape, dtype=np.float16)
        cont = np.empty((n, len(ci)), dtype=np.float32)
        cat = np.empty((n, len(ki)), dtype=np.int64)
        cmask = np.empty((n, len(ci)), dtype=bool)
        kmask = np.empty((n, len(ki)), dtype=bool)
        notes = np.empty(n, dtype=np.int64)
        use_stored = stored_mels_match(reader, features) and input_rate is None
        bar = None
        if progress:
            from tqdm import tqdm

            what = "reading" if have_mels or use_stored else "computing log-mels"
            if input_rate is not None and not have_mels:
                what = f"resampling to {input_rate} Hz"
            bar = tqdm(total=n, desc=f"{split}: {what}", unit="clip", leave=False)
        for start in range(0, n, _BLOCK):
            sel = rows[start : start + _BLOCK]
            stop = start + len(sel)
            c_full, k_full = reader.continuous(sel), reader.categorical(sel)
            m_c, m_k = activity_masks(full, c_full, k_full)
            cont[start:stop], cat[start:stop] = c_full[:, ci], k_full[:, ki]
            cmask[start:stop], kmask[start:stop] = m_c[:, ci], m_k[:, ki]
            notes[start:stop] = reader.metadata("midi_note", sel)
            if not have_mels:
                if input_rate is not None:
                    block = _waves(reader.audio(sel), reader.sample_rate, input_rate, shape[1])
                elif use_stored:
                    block = reader.log_mel(sel)
                else:
                    block = log_mel(reader.audio(sel), features).numpy()
                mels[start:stop] = block.astype(np.float16)
            if bar is not None:
                bar.update(len(sel))
        if bar is not None:
            bar.close()
    if cache is not None and not have_mels:
        mels.flush()
        del mels
        os.replace(tmp, cache)
        mels = np.load(cache, mmap_mode="r")
    return SplitData(
        mels,
        torch.from_numpy(cont),
        torch.from_numpy(cat),
        torch.from_numpy(cmask),
        torch.from_numpy(kmask),
        torch.from_numpy(notes),
        key="mels" if input_rate is None else "wave",
        clip_frames=frames if input_rate is not None else 0,
    )


def _wave_length(samples: int, rate_in: int, rate_out: int) -> int:
    """Samples of a ``samples``-long clip at ``rate_in`` once resampled to ``rate_out`` (soxr's)."""
    return -(-samples * rate_out // rate_in)


def _waves(audio: np.ndarray, rate_in: int, rate_out: int, length: int) -> np.ndarray:
    """``(B, channels, T)`` audio -> ``(B, length)`` float32 mono at ``rate_out`` (cut / padded to
    ``length``, so every block has the split's shape)."""
    from vitalmatch.learn.encoders import resample

    w = resample(audio, rate_in, rate_out)
    out = np.zeros((w.shape[0], length), dtype=np.float32)
    out[:, : min(length, w.shape[1])] = w[:, :length]
    return out


def _cache_path(cache_dir, path, split: str, max_rows, features: FeatureConfig, input_rate=None) -> Path:
    """Cache file name: a hash of the dataset's identity (path, size, mtime of the file or of every
    file in a sharded directory) and the request."""
    files = sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]
    stamps = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    request = [str(Path(path).resolve()), stamps, split, max_rows, asdict(features)]
    if input_rate is not None:
        request.append({"wave_rate": input_rate})
    key = json.dumps(request, sort_keys=True)
    kind = "mels" if input_rate is None else f"wave{input_rate}"
    return Path(cache_dir) / f"{kind}-{split}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def importance_weights(path: str | Path, registry: ParamRegistry) -> tuple[np.ndarray, bool]:
    """Per-parameter loss weights for the continuous columns of ``registry``.

    Read from the dataset's ``importance_weights`` attribute (JSON ``{name: weight}``) when
    present; else uniform (the caller warns).

    Returns:
        ``((C,) float32 weights with mean 1, found)``.
    """
    with open_reader(path) as reader:
        text = reader.attrs.get("importance_weights")
    if not text:
        return np.ones(len(registry.continuous), dtype=np.float32), False
    table = json.loads(text) if isinstance(text, str) else dict(text)
    w = np.array([float(table.get(s.name, 1.0)) for s in registry.continuous], dtype=np.float32)
    w = np.clip(w, 0, None)
    return (w / w.mean() if w.mean() > 0 else np.ones_like(w)), True


# ------------------------------------------------------------------------------------ streaming
#: File rows per read block of a streamed split, rounded up to whole HDF5 chunks of the audio (a
#: block is one contiguous hyperslab: every chunk it touches is decompressed once).
BLOCK_ROWS = 256


def open_reader(path: str | os.PathLike) -> DatasetReader:
    """A reader of ``path``: a dataset file or a sharded dataset directory (``ValueError``, one
    line, for anything else)."""
    return DatasetReader(path)


def feature_bytes(n_rows: int, features: FeatureConfig, audio_length: int) -> int:
    """Bytes of ``n_rows`` preloaded float16 log-mels ``(n_mels, frames)`` of clips of ``audio_length``
    samples: what preloading a split costs in memory (or in the run folder's cache)."""
    return int(n_rows) * features.n_mels * features.n_frames(audio_length) * 2


def memory_budget(memory_gb: float) -> int:
    """The preloading budget in bytes: ``memory_gb`` GB, or half of this machine's RAM for 0."""
    if memory_gb > 0:
        return int(memory_gb * 1e9)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 8 GB of RAM
        return 4 * 10**9


def plan_splits(
    path: str | os.PathLike,
    splits: dict[str, int | None],
    features: FeatureConfig,
    mode: str,
    memory_gb: float,
) -> dict[str, bool]:
    """Which splits to stream: ``{split: True to stream}`` for ``{split: max_rows}``.

    ``mode`` "on" streams all, "off" preloads all; "auto" preloads the splits, in the order given,
    while their log-mels (:func:`feature_bytes`) fit in what is left of :func:`memory_budget`, and
    streams a split that does not fit.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"stream must be auto, on or off, got {mode!r}")
    with open_reader(path) as reader:
        sizes = {}
        for split, max_rows in splits.items():
            n = len(reader.split_indices(split))
            sizes[split] = feature_bytes(min(n, max_rows) if max_rows else n, features, reader.audio_length)
    if mode != "auto":
        return dict.fromkeys(splits, mode == "on")
    left, plan = memory_budget(memory_gb), {}
    for split, size in sizes.items():
        plan[split] = size > left
        if not plan[split]:
            left -= size
    return plan


class StreamingSplit:
    """One split read from the dataset as it is used, never held whole (see the module docstring).

    The split's rows (sorted file rows, the first ``max_rows`` of them) are cut into *blocks*: runs
    of rows in one chunk-aligned range of :data:`BLOCK_ROWS` file rows (of one shard). Each epoch,
    for ``world`` processes:

    1. the blocks are put in a random order seeded by ``(seed, epoch)`` and their rows laid end to
       end; process ``rank`` takes the ``rank``-th of ``world`` equal contiguous shares;
    2. its share is cut into *windows* of ``shuffle_rows`` rows; window ``j`` is read (a few
       contiguous hyperslabs), featurised and shuffled (seed ``(seed, epoch, rank, j)``) by
       DataLoader worker ``j % workers``, each worker with its own reader (opened in the worker:
       no HDF5 handle crosses a fork);
    3. the training process takes the windows in order ``j = 0, 1, ...`` (the DataLoader hands
       them round-robin, so the order does not depend on ``workers``) and cuts micro-batches.

    The stream of an epoch is therefore a function of ``(seed, epoch, rank, world, shuffle_rows,
    micro-batch)`` alone, and resuming in the middle of an epoch skips the rows already used
    without reading them. Memory: about ``2 * workers + 2`` windows of float16 log-mels at once.

    Args:
        path: the dataset (a file or a sharded directory).
        split: "train", "val" or "test".
        registry: the learnable columns.
        features: log-mel settings (stored log-mels are read when they were made with these).
        max_rows: keep only the first rows of the split.
        shuffle_rows: rows per window (shuffled together).
        workers: DataLoader worker processes (0: read in this process).
        block_rows: file rows per block, rounded up to whole audio chunks.
        input_rate: yield ``"wave"`` mono waveforms at this rate (Hz) instead of log-mels
            (encoder archs).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str,
        registry: ParamRegistry,
        features: FeatureConfig,
        *,
        max_rows: int | None = None,
        shuffle_rows: int = 2048,
        workers: int = 2,
        block_rows: int = BLOCK_ROWS,
        input_rate: int | None = None,
    ) -> None:
        if shuffle_rows < 1 or workers < 0:
            raise ValueError(f"shuffle_rows must be >= 1 and workers >= 0, got {shuffle_rows}, {workers}")
        self.path, self.split, self.features = Path(path), split, features
        self.shuffle_rows, self.workers = int(shuffle_rows), int(workers)
        with open_reader(path) as reader:
            check_features(reader, features)
            self.full = dataset_registry(reader)
            self.ci, self.ki = column_index(full=self.full, sub=registry)
            rows = reader.split_indices(split)
            self.rows = rows[:max_rows] if max_rows is not None else rows
            self._frames = features.n_frames(reader.audio_length)
            self.use_stored = stored_mels_match(reader, features) and input_rate is None
            self.input_rate, self.rate_in = input_rate, reader.sample_rate
            self.key = "mels" if input_rate is None else "wave"
            if input_rate is not None:
                self.wave_length = _wave_length(reader.audio_length, reader.sample_rate, input_rate)
            starts, chunk = _layout(reader)
        block = chunk * max(1, -(-block_rows // chunk))
        self._starts = starts
        self._block = block
        key = self._block_key(self.rows)
        #: ``(B + 1,)`` positions in ``rows`` where each block begins (and the end)
        self.bounds = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [len(self.rows)]]).astype(
            np.int64
        )
        if len(self.rows) == 0:
            self.bounds = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def frames(self) -> int:
        """Log-mel frames per example."""
        return self._frames

    def _block_key(self, rows: np.ndarray) -> np.ndarray:
        """One int per row, equal for rows of the same block (shard, chunk-aligned range)."""
        shard = np.searchsorted(self._starts, rows, side="right") - 1
        local = rows - self._starts[shard]
        return shard.astype(np.int64) * (1 << 40) + local // self._block

    # -- the epoch's stream -------------------------------------------------------------------
    def epoch_rows(self, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
        """The file rows of process ``rank``'s windows in epoch ``epoch``, in stream order
        (steps 1 and 2 of the class docstring)."""
        g = np.random.default_rng([seed, epoch])
        n_blocks = len(self.bounds) - 1
        order = g.permutation(n_blocks)
        laid = (
            np.concatenate([self.rows[self.bounds[b] : self.bounds[b + 1]] for b in order])
            if n_blocks
            else self.rows
        )
        n = len(laid)
        share = laid[rank * n // world : (rank + 1) * n // world]
        windows = []
        for j, lo in enumerate(range(0, len(share), self.shuffle_rows)):
            w = share[lo : lo + self.shuffle_rows]
            windows.append(w[np.random.default_rng([seed, epoch, rank, j]).permutation(len(w))])
        return windows

    def epoch_batches(
        self,
        seed: int,
        epoch: int,
        *,
        rank: int = 0,
        world: int = 1,
        batch_size: int,
        skip_batches: int = 0,
        max_batches: int | None = None,
        drop_last: bool = True,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Process ``rank``'s micro-batches of epoch ``epoch``: batch dicts as
        :meth:`SplitData.batch` gives them, plus ``"row"`` ``(B,)`` int64 file rows.

        ``skip_batches`` leaves out the first ones (a resumed epoch; their windows are not read),
        ``max_batches`` stops early, ``drop_last`` leaves out a last, shorter batch.
        """
        return self._stream(
            self.epoch_rows(seed, epoch, rank, world), batch_size, skip_batches, max_batches, drop_last
        )

    def batches(
        self, rank: int = 0, world: int = 1, batch_size: int = 128
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batch dicts of process ``rank``'s share of the split (its ``rank``-th of ``world``
        contiguous shares, in file order; for validation, where every example counts once)."""
        n = len(self.rows)
        share = self.rows[rank * n // world : (rank + 1) * n // world]
        windows = [share[lo : lo + self.shuffle_rows] for lo in range(0, len(share), self.shuffle_rows)]
        return self._stream(windows, batch_size, 0, None, drop_last=False)

    def _stream(
        self, windows: list[np.ndarray], batch_size: int, skip: int, limit: int | None, drop_last: bool
    ) -> Iterator[dict[str, torch.Tensor]]:
        drop = skip * batch_size  # rows already used: whole windows are not even read
        while windows and len(windows[0]) <= drop:
            drop -= len(windows[0])
            windows = windows[1:]
        if windows and drop:
            windows = [windows[0][drop:], *windows[1:]]
        return _rebatch(self._loader(windows), batch_size, limit, drop_last)

    def _loader(self, windows: list[np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
        """The windows, read and featurised, in order (by DataLoader workers where there are)."""
        source = _Windows(self, windows)
        if self.workers == 0 or len(windows) <= 1:
            yield from (_as_tensors(w) for w in source)
            return
        loader = torch.utils.data.DataLoader(
            source,
            batch_size=None,
            num_workers=min(self.workers, len(windows)),
            worker_init_fn=_worker_init,
            prefetch_factor=2,
            # Its own generator: the DataLoader draws worker seeds from it, not from torch's global
            # one, which seeds the training step's dropout (exact resume).
            generator=torch.Generator().manual_seed(0),
        )
        it = iter(loader)
        try:
            yield from it
        finally:
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:  # end the workers now, not when the iterator is collected
                shutdown()

    # -- small reads (bundle, baseline) -------------------------------------------------------
    def head_mels(self, n: int) -> np.ndarray:
        """The first ``n`` examples' float16 log-mels ``(n, n_mels, frames)`` (band statistics;
        zeros for a split of waveforms, as :meth:`SplitData.head_mels`)."""
        if self.input_rate is not None:
            return np.zeros((1, 1, 2), dtype=np.float16)
        with open_reader(self.path) as reader:
            return self.read(reader, self.rows[:n])["mels"]

    def targets(self, max_rows: int = 65536) -> SplitData:
        """Targets and masks of the first ``max_rows`` examples as a :class:`SplitData` without
        log-mels (``mels`` ``(n, 0, 0)``): the mean baseline of a streamed split is estimated
        from them."""
        with open_reader(self.path) as reader:
            t = self.read(reader, self.rows[:max_rows], mels=False)
        return SplitData(
            np.zeros((len(t["row"]), 0, 0), dtype=np.float16),
            *(
                torch.from_numpy(t[k])
                for k in ("continuous", "categorical", "cont_mask", "cat_mask", "midi_note")
            ),
        )

    def read(self, reader: DatasetReader, rows: np.ndarray, *, mels: bool = True) -> dict[str, np.ndarray]:
        """Rows ``rows`` (any order) of the split as numpy arrays: ``mels`` float16 (unless not
        asked for), targets, masks, ``midi_note`` and ``row``; each block's rows are read as one
        contiguous slice of the file."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return _empty(self, mels)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        key = self._block_key(srt)
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [len(srt)]])
        parts = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            sel = srt[a:b]
            lo, hi = int(sel[0]), int(sel[-1]) + 1
            take = sel - lo
            c_full = reader.continuous(slice(lo, hi))[take]
            k_full = reader.categorical(slice(lo, hi))[take]
            m_c, m_k = activity_masks(self.full, c_full, k_full)
            part = {
                "continuous": c_full[:, self.ci].astype(np.float32),
                "categorical": k_full[:, self.ki].astype(np.int64),
                "cont_mask": m_c[:, self.ci],
                "cat_mask": m_k[:, self.ki],
                "midi_note": reader.metadata("midi_note", slice(lo, hi))[take].astype(np.int64),
                "row": sel,
            }
            if mels and self.input_rate is not None:
                block = _waves(
                    reader.audio(slice(lo, hi))[take], self.rate_in, self.input_rate, self.wave_length
                )
                part["wave"] = block.astype(np.float16)
            elif mels:
                if self.use_stored:
                    block = reader.log_mel(slice(lo, hi))[take]
                else:
                    block = log_mel(reader.audio(slice(lo, hi))[take], self.features).numpy()
                part["mels"] = block.astype(np.float16)
            parts.append(part)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return {k: np.concatenate([p[k] for p in parts])[inverse] for k in parts[0]}


class _Windows(torch.utils.data.IterableDataset):
    """The windows of one stream; DataLoader worker ``i`` of ``n`` reads windows ``i, i + n, ...``
    with its own reader, so the DataLoader's round-robin hands them back in order."""

    def __init__(self, split: StreamingSplit, windows: list[np.ndarray]) -> None:
        self.split, self.windows = split, windows

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        first, step = (info.id, info.num_workers) if info is not None else (0, 1)
        with open_reader(self.split.path) as reader:
            for j in range(first, len(self.windows), step):
                yield self.split.read(reader, self.windows[j])


def _worker_init(_: int) -> None:
    # One thread per loader worker: the workers and the training step share the cores.
    torch.set_num_threads(1)


def _layout(reader: DatasetReader) -> tuple[np.ndarray, int]:
    """``(shard start rows, audio chunk rows)`` of an open dataset: ``[0]`` and the file's chunk
    rows for one file; for a sharded directory the shards' first rows (from its ``shards`` list)
    and the first shard's chunk rows (every shard of a run is written with the same storage)."""
    shards = getattr(reader, "shards", None)
    if not shards:
        return np.zeros(1, dtype=np.int64), _chunk_rows(reader)
    starts = np.concatenate([[0], np.cumsum([s.rows for s in shards])[:-1]]).astype(np.int64)
    with DatasetReader(Path(reader.path) / shards[0].file) as first:
        return starts, _chunk_rows(first)


def _chunk_rows(reader: DatasetReader) -> int:
    chunks = reader.h5[AUDIO].chunks
    return int(chunks[0]) if chunks else 1  # contiguous storage: any block is one read


def _empty(split: StreamingSplit, mels: bool) -> dict[str, np.ndarray]:
    c, k = len(split.ci), len(split.ki)
    out = {
        "continuous": np.zeros((0, c), np.float32),
        "categorical": np.zeros((0, k), np.int64),
        "cont_mask": np.zeros((0, c), bool),
        "cat_mask": np.zeros((0, k), bool),
        "midi_note": np.zeros(0, np.int64),
        "row": np.zeros(0, np.int64),
    }
    if mels and split.input_rate is not None:
        out["wave"] = np.zeros((0, split.wave_length), np.float16)
    elif mels:
        out["mels"] = np.zeros((0, split.features.n_mels, split.frames), np.float16)
    return out


def _as_tensors(window: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in window.items()}


_BATCH_KEYS = ("continuous", "categorical", "cont_mask", "cat_mask", "row")


def _rebatch(
    windows: Iterator[dict[str, torch.Tensor]], batch_size: int, limit: int | None, drop_last: bool
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``batch_size`` cut from consecutive windows (a batch may span two), mels as float32."""
    carry: dict[str, torch.Tensor] | None = None
    done = 0
    try:
        for w in windows:
            if limit is not None and done >= limit:
                return
            keys = (*(k for k in ("mels", "wave") if k in w), *_BATCH_KEYS)
            w = {k: w[k] for k in keys}
            pool = w if carry is None else {k: torch.cat([carry[k], w[k]]) for k in keys}
            n, start = len(pool["row"]), 0
            while n - start >= batch_size and (limit is None or done < limit):
                yield _finish({k: v[start : start + batch_size] for k, v in pool.items()})
                start += batch_size
                done += 1
            carry = {k: v[start:] for k, v in pool.items()}
        if carry is not None and len(carry["row"]) and not drop_last and (limit is None or done < limit):
            yield _finish(carry)
    finally:
        close = getattr(windows, "close", None)
        if close is not None:
            close()


def _finish(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for k in ("mels", "wave"):
        if k in batch:
            batch[k] = batch[k].float()
    return batch
