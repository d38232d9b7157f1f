"""Prediction: audio -> a whole preset's parameter vectors, with a trained checkpoint.

Stage: learn (inference). Input: mono audio ``(T,)`` float32 at the checkpoint's sample rate (see
``Predictor.sample_rate``), or log-mels ``(B, n_mels, frames)``. Output: :class:`Prediction` with
the *full* normalised vectors of the dataset's registry (``(C_full,)`` in [0, 1] and
``(K_full,)`` option indices): the model's columns predicted, every other column filled from the
training split (means / modes stored in the checkpoint), plus the categorical probabilities.

The features go through the same code as training: :func:`vitalmatch.features.log_mel`, then the
checkpoint's per-band normalisation. Inputs longer or shorter than the training clips are cropped
or zero-padded to the training length in samples first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vitalmatch.features import log_mel
from vitalmatch.learn import checkpoint
from vitalmatch.learn.augment import normalise
from vitalmatch.learn.data import column_index
from vitalmatch.synth.params import ParamRegistry


@dataclass
class Prediction:
    """One example's prediction.

    Attributes:
        continuous: ``(C_full,)`` float32 in [0, 1], the dataset registry's column order.
        categorical: ``(K_full,)`` int32 option indices (argmax for predicted columns).
        probabilities: ``{name: (n_options,) float32}`` for each predicted categorical.
    """

    continuous: np.ndarray
    categorical: np.ndarray
    probabilities: dict[str, np.ndarray]


class Predictor:
    """A trained network and what it needs around it (state: the network).

    Args:
        path: checkpoint file (``best.pt`` or ``last.pt`` of a training run).
        device: torch device for the network.
    """

    def __init__(self, path, device: str | torch.device = "cpu") -> None:
        ckpt = checkpoint.load(path)
        self.device = torch.device(device)
        self.model = checkpoint.build_model(ckpt).to(self.device).eval()
        self.registry: ParamRegistry = checkpoint.registry(ckpt)
        self.full_registry = ParamRegistry.from_json(ckpt["full_registry_json"])
        self.features = checkpoint.features(ckpt)
        self.input_frames = int(ckpt["input_frames"])
        self.render_settings = dict(ckpt.get("render_settings", {}))
        self._ckpt = ckpt
        self._mean = ckpt["norm_mean"].to(self.device)
        self._std = ckpt["norm_std"].to(self.device)
        self._fill_c = ckpt["fill_continuous"].numpy().astype(np.float32)
        self._fill_k = ckpt["fill_categorical"].numpy().astype(np.int32)
        self._ci, self._ki = column_index(self.full_registry, self.registry)

    @property
    def sample_rate(self) -> int:
        """Hz the audio must be at."""
        return self.features.sample_rate

    @property
    def input_samples(self) -> int:
        """Samples of audio the network was trained on (``(frames - 1) * hop``)."""
        return (self.input_frames - 1) * self.features.hop_length

    def wavetables(self):
        """The wavetable catalog the ``osc_N_wavetable`` predictions index."""
        return checkpoint.wavetables(self._ckpt)

    @torch.no_grad()
    def predict_mels(self, mels: torch.Tensor) -> list[Prediction]:
        """Predictions for un-normalised log-mels ``(B, n_mels, frames)``."""
        x = normalise(mels.to(self.device).float(), self._mean, self._std)
        out = self.model(x.unsqueeze(1))
        cont = out["continuous"].float().cpu().numpy()
        probs = [torch.softmax(lk.float(), dim=1).cpu().numpy() for lk in out["categorical"]]
        result = []
        for b in range(x.shape[0]):
            c = self._fill_c.copy()
            k = self._fill_k.copy()
            c[self._ci] = cont[b]
            k[self._ki] = [int(p[b].argmax()) for p in probs]
            result.append(
                Prediction(
                    c,
                    k,
                    {s.name: p[b] for s, p in zip(self.registry.categorical, probs, strict=True)},
                )
            )
        return result

    def predict_audio(self, samples: np.ndarray) -> Prediction:
        """Prediction for one mono clip ``(T,)`` at :attr:`sample_rate` (cropped / padded)."""
        x = np.zeros(self.input_samples, dtype=np.float32)
        a = np.asarray(samples, dtype=np.float32).reshape(-1)[: self.input_samples]
        x[: len(a)] = a
        mels = log_mel(x, self.features)
        return self.predict_mels(mels[None])[0]
