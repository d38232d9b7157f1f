"""Nearest neighbours by sound: rows of audio indexed by coarse log-mels, queried by L1 distance.

Stage: feature lookup (shared by ``match``'s starting set, :class:`vitalmatch.match.StartSet`, and
``evaluate``'s ``nn`` baseline). Input: mono audio ``(B, T)`` to index, in batches, and a mono query
``(T,)``, both at ``FeatureConfig.sample_rate``. Output: the row numbers of the closest indexed
clips, closest first.

A clip's features are :func:`vitalmatch.features.pooled_log_mel` of the clip (optionally scaled to
a fixed RMS first, so that loudness does not decide the neighbour). The index holds only features:
what a row stands for (a preset's vectors, a name) stays with the caller.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from vitalmatch.features import FeatureConfig, pooled_log_mel


class NearestNeighbours:
    """Pooled log-mels of indexed clips (state: the ``(N, D)`` float32 feature matrix).

    Args:
        features: ``(N, D)`` features made by :meth:`embed` with the same settings (e.g. loaded
            from a cache file).
        config: log-mel settings of the clips and the queries.
        rms: scale every clip and query to this RMS before the log-mel (None: as given).
    """

    def __init__(
        self, features: np.ndarray | torch.Tensor, config: FeatureConfig, *, rms: float | None = None
    ) -> None:
        self.features = torch.as_tensor(features, dtype=torch.float32)
        self.config = config
        self.rms = rms

    @classmethod
    def build(
        cls, batches: Iterable[np.ndarray], config: FeatureConfig, *, rms: float | None = None
    ) -> NearestNeighbours:
        """Index clips given as batches of mono audio ``(B, T)`` (rows numbered in order)."""
        index = cls(torch.zeros(0, 0), config, rms=rms)  # embed() needs only the settings
        index.features = torch.cat([index.embed(batch) for batch in batches])
        return index

    def __len__(self) -> int:
        return len(self.features)

    def embed(self, audio: np.ndarray) -> torch.Tensor:
        """``(B, T)`` mono audio -> ``(B, D)`` float32 features (``D`` from the clip length: see
        :func:`~vitalmatch.features.pooled_log_mel`)."""
        x = np.asarray(audio, np.float32)
        if self.rms is not None:
            level = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True))
            x = (x * (self.rms / np.maximum(level, 1e-6))).astype(np.float32)
        return pooled_log_mel(x, self.config)

    def nearest(self, audio: np.ndarray, k: int = 1, *, among: np.ndarray | None = None) -> np.ndarray:
        """Rows of the ``k`` indexed clips closest to mono ``audio`` ``(T,)`` (as long as the
        indexed clips), closest first; ties keep row order.

        Args:
            among: ``(M,)`` rows to choose from (None: all).

        Returns:
            ``(min(k, M),)`` int64 row numbers.
        """
        rows = np.arange(len(self)) if among is None else np.asarray(among, np.int64)
        d = torch.cdist(self.embed(np.asarray(audio)[None]), self.features[torch.from_numpy(rows)], p=1)[0]
        return rows[torch.argsort(d, stable=True)[:k].numpy()]
