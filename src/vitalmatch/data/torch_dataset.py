"""Torch view of a dataset file: one row per item, for training.

Stage: data (loading). Input: a dataset file written by :mod:`vitalmatch.data.writer`.
Output: items ``{"audio": (channels, T) float32, "continuous": (C,) float32,
"categorical": (K,) int64, "midi_note": () int64, ["log_mel": (n_mels, frames) float32],
["modulation": (4, 32, 428) float32 dense matrix, the Tier-3 target]}``.

Safe with ``DataLoader(num_workers >= 2)`` under fork and spawn: the HDF5 file is opened lazily
in the process that reads (the opening pid is recorded, and a handle inherited through fork is
never used), and pickling drops the handle.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import SPLITS

# Readers inherited through fork: kept referenced so that the child never closes (touches) the
# parent's HDF5 handle; they go away with the worker process.
_INHERITED: list[DatasetReader] = []


class VitalDataset(torch.utils.data.Dataset):
    """Rows of one split (or all rows) of a dataset file.

    Args:
        path: the ``.h5`` dataset.
        split: "train", "val", "test", or None for every row.
        audio: include ``"audio"`` (float32, pcm16 scaled back to full scale).
        log_mel: include ``"log_mel"``; the file must have been written with log-mels.
        modulation: include ``"modulation"``, the dense ``(4, 32, 428)`` matrix (amount, bipolar,
            power, stereo x sources x destinations) built from the row's sparse connections
            (zeros for rows without modulation and for schema-1.0.0 files).

    The rows are fixed at construction (the file's last commit at that time).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str | None = "train",
        *,
        audio: bool = True,
        log_mel: bool = False,
        modulation: bool = False,
    ):
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")
        self.path = Path(path)
        self.split = split
        self.audio = audio
        self.log_mel = log_mel
        self.modulation = modulation
        with DatasetReader(self.path) as reader:
            if log_mel and not reader.has_log_mel:
                raise ValueError(f"{self.path} stores no log-mels; use log_mel=False")
            self.indices = (
                np.arange(len(reader), dtype=np.int64) if split is None else reader.split_indices(split)
            )
        self._reader: DatasetReader | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self.indices)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for {n} items")
        row = int(self.indices[i])
        reader = self._open()
        item = {
            "continuous": torch.from_numpy(reader.continuous(row)),
            "categorical": torch.from_numpy(reader.categorical(row).astype(np.int64)),
            "midi_note": torch.tensor(int(reader.metadata("midi_note", row)), dtype=torch.int64),
        }
        if self.audio:
            item["audio"] = torch.from_numpy(reader.audio(row))
        if self.modulation:
            item["modulation"] = torch.from_numpy(reader.modulation_dense(row))
        if self.log_mel:
            item["log_mel"] = torch.from_numpy(reader.log_mel(row))
        return item

    def close(self) -> None:
        """Close this process's file handle (reopened on the next item)."""
        if self._reader is not None:
            if self._pid == os.getpid():
                self._reader.close()
            else:
                _INHERITED.append(self._reader)
        self._reader = self._pid = None

    def _open(self) -> DatasetReader:
        if self._reader is None or self._pid != os.getpid():
            if self._reader is not None:  # inherited through fork: the parent's, leave it alone
                _INHERITED.append(self._reader)
            self._reader = DatasetReader(self.path)
            self._pid = os.getpid()
        return self._reader

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"] = state["_pid"] = None
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
