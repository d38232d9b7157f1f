"""Helpers shared by the storage tests (schema, writer, reader, journal): deterministic rows
and a dataset writer with small fixed shapes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from vitalmatch.data.schema import StorageConfig
from vitalmatch.data.writer import DatasetWriter

T = 256
C, K = 3, 2
MEL = (4, 3)


def rows(start: int, stop: int, *, scale: float = 1.0) -> dict:
    """Rows ``start..stop`` of a deterministic stream (each row seeded by its index)."""
    out = {k: [] for k in ("audio", "continuous", "categorical", "log_mel")}
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        t = np.arange(T) / 64
        base = np.sin(2 * np.pi * (1 + i % 5) * t) * rng.uniform(0.2, 0.9)
        audio = np.stack([base, np.roll(base, i % 7)]) + rng.normal(0, 0.01, (2, T))
        out["audio"].append((audio * scale).astype(np.float32))
        out["continuous"].append(rng.uniform(0, 1, C).astype(np.float32))
        out["categorical"].append(rng.integers(0, 5, K))
        out["log_mel"].append(rng.normal(-4, 2, MEL).astype(np.float32))
    n = stop - start
    idx = range(start, stop)
    return {
        "audio": np.array(out["audio"]).reshape(n, 2, T),
        "continuous": np.array(out["continuous"]).reshape(n, C),
        "categorical": np.array(out["categorical"], dtype=np.int64).reshape(n, K),
        "log_mel": np.array(out["log_mel"]).reshape(n, *MEL),
        "midi_note": [36 + i % 48 for i in idx],
        "source": ["synthetic" if i % 3 else "preset" for i in idx],
        "tier": [1 + i % 2 for i in idx],
        "preset_hash": [hashlib.sha256(str(i // 3).encode()).hexdigest() for i in idx],
        "preset_name": [f"Préset №{i // 3} " + "ü" * (i % 50) for i in idx],
        "split": [("train", "train", "val", "test")[(i // 3) % 4] for i in idx],
        "preset_index": [i // 3 for i in idx],
        # variable-length modulation (0-3 connections), so crash tests cover HDF5's heap writes
        "modulation": [
            np.array(
                [[k, (i + k) % 32, (7 * i + k) % 428, 0.1 * k - 0.2, k % 2, 0.0, 0.0] for k in range(i % 4)],
                dtype=np.float32,
            ).reshape(-1, 7)
            for i in idx
        ],
        "lfo_shape": [[(i + j) % 7 for j in range(8)] for i in idx],
        "sample": [i % 2 for i in idx],
        "preset_file": [f"bank/preset {i // 3}.vital" if i % 3 == 0 else "" for i in idx],
    }


def progress_at(n: int) -> dict:
    return {"next_preset": n // 3 + 1, "rows": n, "rejections": {"silent": n % 7, "clipped": n % 5}}


STORAGE = StorageConfig(chunk_rows=4)
ATTRS = {"seed": 7, "notes": [48, 60, 72], "names": ["a", "b"], "settings": {"tier": 1, "x": [1.5]}}


def create(path: Path, storage: StorageConfig = STORAGE, **kw) -> DatasetWriter:
    kw.setdefault("mel_shape", MEL)
    return DatasetWriter.create(
        path,
        audio_length=T,
        sample_rate=22050,
        n_continuous=C,
        n_categorical=K,
        storage=storage,
        attrs=kw.pop("attrs", ATTRS),
        **kw,
    )
