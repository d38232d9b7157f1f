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

    def predict_audio(self, samples: np.ndarray, sample_rate: int | None = None) -> Prediction:
        """Prediction for one mono clip ``(T,)`` (cropped / padded) at ``sample_rate`` Hz, resampled
        to :attr:`sample_rate` first where they differ (None: already at :attr:`sample_rate`)."""
        a = np.asarray(samples, dtype=np.float32).reshape(-1)
        if sample_rate is not None and sample_rate != self.sample_rate:
            import soxr

            a = soxr.resample(a, sample_rate, self.sample_rate).astype(np.float32)
        x = np.zeros(self.input_samples, dtype=np.float32)
        a = a[: self.input_samples]
        x[: len(a)] = a
        mels = log_mel(x, self.features)
        return self.predict_mels(mels[None])[0]


@dataclass
class FileMatch:
    """A user's file turned into a preset (:func:`predict_file`).

    Attributes:
        preset: the Vital preset dict, as the synth wrote it.
        prediction: the model's vectors.
        prepared: the loaded audio and its estimates (note, note length).
        render: settings that play the preset like the input (its note and note length).
    """

    preset: dict
    prediction: Prediction
    prepared: object
    render: object


def predict_file(
    path, predictor: Predictor, *, name: str | None = None, author: str = "vitalmatch"
) -> tuple[FileMatch, object]:
    """Audio file -> preset: load, trim, detect pitch and note length, predict, apply in the synth.

    Returns:
        ``(match, engine)``: the result and the :class:`~vitalmatch.synth.render.RenderEngine`
        holding the preset (render it with ``engine.render_note(match.prepared.midi_note)``).

    Raises:
        vitalmatch.audio.AudioError: the file is missing, not audio, silent or too short.
    """
    from pathlib import Path

    from vitalmatch.audio import prepare
    from vitalmatch.synth.export import preset_dict
    from vitalmatch.synth.render import RenderConfig, RenderEngine

    settings = predictor.render_settings
    prepared = prepare(path, predictor.sample_rate, predictor.input_samples)
    pred = predictor.predict_audio(prepared.samples)
    clip_s = (len(prepared.clip.samples) - prepared.offset_samples) / prepared.sample_rate
    render_s = float(min(max(clip_s, float(settings.get("render_duration_s", 2.0))), 20.0))
    note_s = float(min(max(prepared.note_length_s, 0.05), render_s))
    render = RenderConfig(
        sample_rate=predictor.sample_rate,
        notes=(prepared.midi_note,),
        velocity=float(settings.get("velocity", 0.7)),
        note_duration_s=note_s,
        render_duration_s=render_s,
    )
    engine = RenderEngine(predictor.full_registry, [e.table for e in predictor.wavetables()], render)
    stem = Path(path).stem
    pitch = (
        f"note {prepared.midi_note} (default: no pitch found)"
        if prepared.midi_is_default
        else f"note {prepared.midi_note} ({prepared.pitch.hz:.1f} Hz)"
    )
    comments = f"Predicted by vitalmatch from {Path(path).name}: {pitch}, held {note_s:.2f} s."
    preset = preset_dict(
        engine, pred.continuous, pred.categorical, name=name or stem, author=author, comments=comments
    )
    return FileMatch(preset, pred, prepared, render), engine
