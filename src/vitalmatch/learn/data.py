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
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vitalmatch.data.reader import DatasetReader
from vitalmatch.features import FeatureConfig, log_mel
from vitalmatch.synth.activity import activity_masks
from vitalmatch.synth.params import ParamRegistry

_BLOCK = 512  # rows read (or featurised) at a time


@dataclass
class SplitData:
    """One split in memory (shapes in the module docstring); ``mels`` is a float16 numpy array,
    possibly memory-mapped."""

    mels: np.ndarray
    continuous: torch.Tensor
    categorical: torch.Tensor
    cont_mask: torch.Tensor
    cat_mask: torch.Tensor
    midi_note: torch.Tensor

    def __len__(self) -> int:
        return self.mels.shape[0]

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Items ``rows`` as a batch dict (mels as float32)."""
        idx = np.asarray(rows, dtype=np.int64)
        return {
            "mels": torch.from_numpy(np.asarray(self.mels[idx], dtype=np.float32)),
            "continuous": self.continuous[rows],
            "categorical": self.categorical[rows],
            "cont_mask": self.cont_mask[rows],
            "cat_mask": self.cat_mask[rows],
        }


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
) -> SplitData:
    """Read one split of a dataset into memory (see the module docstring).

    Args:
        path: dataset file.
        split: "train", "val" or "test".
        registry: the learnable columns (from :func:`learnable_registry` or a checkpoint).
        features: log-mel settings; stored mels are used when they were made with these.
        max_rows: keep only the first rows of the split (for quick runs).
        progress: show a progress bar while reading / featurising.
        cache_dir: keep the log-mels in a memory-mapped file here (reused when the dataset file,
            split, row limit and feature settings are the same).
    """
    with DatasetReader(path) as reader:
        check_features(reader, features)
        full = dataset_registry(reader)
        ci, ki = column_index(full, registry)
        rows = reader.split_indices(split)
        if max_rows is not None:
            rows = rows[:max_rows]
        n = len(rows)
        frames = features.n_frames(reader.audio_length)
        shape = (n, features.n_mels, frames)
        cache = _cache_path(cache_dir, path, split, max_rows, features) if cache_dir is not None else None
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
        use_stored = stored_mels_match(reader, features)
        bar = None
        if progress:
            from tqdm import tqdm

            what = "reading" if have_mels or use_stored else "computing log-mels"
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
                block = reader.log_mel(sel) if use_stored else log_mel(reader.audio(sel), features).numpy()
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
    )


def _cache_path(cache_dir, path, split: str, max_rows, features: FeatureConfig) -> Path:
    """Cache file name: a hash of the dataset file's identity (path, size, mtime) and the request."""
    st = Path(path).stat()
    key = json.dumps(
        [str(Path(path).resolve()), st.st_size, st.st_mtime_ns, split, max_rows, asdict(features)],
        sort_keys=True,
    )
    return Path(cache_dir) / f"mels-{split}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def importance_weights(path: str | Path, registry: ParamRegistry) -> tuple[np.ndarray, bool]:
    """Per-parameter loss weights for the continuous columns of ``registry``.

    Read from the dataset's ``importance_weights`` attribute (JSON ``{name: weight}``) when
    present; else uniform (the caller warns).

    Returns:
        ``((C,) float32 weights with mean 1, found)``.
    """
    with DatasetReader(path) as reader:
        text = reader.attrs.get("importance_weights")
    if not text:
        return np.ones(len(registry.continuous), dtype=np.float32), False
    table = json.loads(text) if isinstance(text, str) else dict(text)
    w = np.array([float(table.get(s.name, 1.0)) for s in registry.continuous], dtype=np.float32)
    w = np.clip(w, 0, None)
    return (w / w.mean() if w.mean() > 0 else np.ones_like(w)), True
