"""Prediction: audio -> a whole preset's parameter vectors, with a trained checkpoint.

Stage: learn (inference). Input: mono audio ``(T,)`` float32 at the checkpoint's sample rate (see
``Predictor.sample_rate``), or log-mels ``(B, n_mels, frames)``. Output: :class:`Prediction` with
the *full* normalised vectors of the dataset's registry (``(C_full,)`` in [0, 1] and
``(K_full,)`` option indices): the model's columns predicted, every other column filled from the
training split (means / modes stored in the checkpoint), plus the categorical probabilities.

The features go through the same code as training: :func:`vitalmatch.features.log_mel`, then the
checkpoint's per-band normalisation. Inputs longer or shorter than the training clips are cropped
or zero-padded to the training length in samples first.

The synth never sees the checkpoint's parameter ranges. :meth:`Predictor.synth_registry` rebuilds
the registry from the live synth and requires the checkpoint's columns (names, kinds, option
counts) to match it; :func:`synth_vectors` turns a prediction into raw values with the
checkpoint's ranges and clamps them to the live synth's, so a crafted registry (say
``chorus_voices`` from 7 to 7, which segfaults the engine) cannot reach the engine unclamped.
:func:`predict_file` then applies and renders the preset in a worker process
(:mod:`vitalmatch.learn.render_worker`), where a crash is one error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
        self._synth_registry: ParamRegistry | None = None

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

    def synth_registry(self) -> ParamRegistry:
        """The live synth's registry for this checkpoint's columns (built once; ``ValueError``, one
        line, if the checkpoint's parameters do not match it: see :func:`check_layout`)."""
        if self._synth_registry is None:
            live = ParamRegistry.from_synth(wavetable_names=self.wavetables().names)
            check_layout(self.full_registry, live)
            self._synth_registry = live
        return self._synth_registry

    @torch.no_grad()
    def predict_mels(self, mels: torch.Tensor) -> list[Prediction]:
        """Predictions for un-normalised log-mels ``(B, n_mels, frames)`` (an ast / mert
        checkpoint: waveforms ``(B, L)`` at ``self.model.input_rate``)."""
        if self.model.input_rate is not None:  # issue 20: pretrained encoders take the waveform
            x = mels.to(self.device).float()
            out = self.model(x)
        else:
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
        return self.predict_mels(self._network_input(samples, sample_rate))[0]

    def _network_input(self, samples: np.ndarray, sample_rate: int | None) -> torch.Tensor:
        """What :meth:`predict_mels` takes for one clip: log-mels ``(1, n_mels, frames)``, or for
        ast / mert the waveform ``(1, L)`` at the encoder's rate."""
        a = np.asarray(samples, dtype=np.float32).reshape(-1)
        if sample_rate is not None and sample_rate != self.sample_rate:
            import soxr

            a = soxr.resample(a, sample_rate, self.sample_rate).astype(np.float32)
        x = np.zeros(self.input_samples, dtype=np.float32)
        a = a[: self.input_samples]
        x[: len(a)] = a
        if self.model.input_rate is not None:  # issue 20: ast / mert, resampled as in training
            from vitalmatch.learn.encoders import resample

            return torch.from_numpy(resample(x[None], self.sample_rate, self.model.input_rate))
        return log_mel(x, self.features)[None]

    def predict_candidates(
        self, samples: np.ndarray, sample_rate: int | None = None, k: int = 8, seed: int = 0
    ) -> list[Prediction]:
        """Up to ``k`` different predictions for one mono clip ``(T,)`` (as :meth:`predict_audio`),
        the starts a search can choose from.

        The first is :meth:`predict_audio`'s (deterministic). The others are Monte-Carlo dropout
        passes (Gal & Ghahramani 2016: the network's dropout layers on, BatchNorm and the rest in
        eval mode) whose categoricals are drawn from their predicted probabilities (temperature 1)
        instead of taking the argmax. The draws are seeded by ``seed`` (the global torch and numpy
        random states are left as they were), so the same clip, ``k`` and ``seed`` give the same
        set. An exact repeat of an earlier candidate is drawn again, at most ``2 * k`` passes in
        all, so fewer than ``k`` come back only when the network is that certain (or has no
        dropout and no uncertain categorical).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        x = self._network_input(samples, sample_rate)  # once: only the network's passes differ
        first = self.predict_mels(x)[0]
        out = [first]
        if k == 1:
            return out
        dropouts = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
        rng = np.random.default_rng(seed)
        seen = {_key(first)}
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(seed)
                for m in dropouts:
                    m.train()
                for _ in range(2 * k):
                    p = self.predict_mels(x)[0]
                    for j, s in zip(self._ki, self.registry.categorical, strict=True):
                        probs = np.asarray(p.probabilities[s.name], np.float64)
                        p.categorical[j] = int(rng.choice(len(probs), p=probs / probs.sum()))
                    if _key(p) not in seen:
                        seen.add(_key(p))
                        out.append(p)
                        if len(out) == k:
                            break
        finally:
            for m in dropouts:
                m.eval()
        return out


def _key(p: Prediction) -> bytes:
    """A prediction's vectors as bytes (to spot exact repeats)."""
    return np.asarray(p.continuous, np.float32).tobytes() + np.asarray(p.categorical, np.int32).tobytes()


def check_layout(checkpoint_registry: ParamRegistry, live: ParamRegistry) -> None:
    """Require a checkpoint's full registry to have the live synth's columns: the same names in the
    same order, kind by kind, and the same option count for every categorical.

    Ranges may differ (:func:`synth_vectors` clamps to the live ones). Raises ``ValueError`` (one
    line) naming the first difference.
    """
    problem = None
    for kind in ("continuous", "categorical"):
        mine, theirs = getattr(checkpoint_registry, kind), getattr(live, kind)
        for j, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            if a.name != b.name:
                problem = f"{kind} column {j} is {a.name!r} in the checkpoint, {b.name!r} here"
                break
            if kind == "categorical" and a.n_options != b.n_options:
                problem = f"{a.name} has {a.n_options} options in the checkpoint, {b.n_options} here"
                break
        if problem is None and len(mine) != len(theirs):
            problem = f"the checkpoint has {len(mine)} {kind} parameters, this synth {len(theirs)}"
        if problem:
            break
    if problem:
        version = f" (vita {live.vita_version})" if live.vita_version else ""
        raise ValueError(f"the checkpoint's parameters do not match this synth's{version}: {problem}")


def synth_vectors(
    checkpoint_registry: ParamRegistry,
    live: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Vectors of ``checkpoint_registry`` -> the same preset as vectors of the live synth's registry.

    Where a continuous parameter's range in the checkpoint differs from the live one, its value goes
    to a raw engine value with the checkpoint's range and is clamped (and rounded, for integer
    controls) to the live control's [min, max]; elsewhere the value is kept (the engine clamps it
    to the live range, which is the same). Option indices are kept, clipped to the live option
    count. Call :func:`check_layout` first.

    Args:
        checkpoint_registry: the registry the vectors refer to (a checkpoint's full registry).
        live: :meth:`ParamRegistry.from_synth` of the synth that will play them.
        continuous, categorical: ``(C,)`` in [0, 1] and ``(K,)`` option indices.

    Returns:
        ``(continuous, categorical, differ)``: ``(C,)`` float32 in [0, 1] and ``(K,)`` int32 of
        ``live``, and the names of the continuous parameters whose range in the checkpoint differs
        from the live one (their values may have been clamped).
    """
    raw = checkpoint_registry.to_raw(continuous, categorical)
    cont = np.array(continuous, dtype=np.float32).reshape(-1)  # a copy; exact where the ranges agree
    differ = []
    for j, (s, theirs) in enumerate(zip(live.continuous, checkpoint_registry.continuous, strict=True)):
        if (s.min, s.max) != (theirs.min, theirs.max):
            cont[j] = s.to_unit(raw[s.name])  # clamped and rounded to the live control
            differ.append(s.name)
    k = np.asarray(categorical).reshape(-1)
    cat = np.array(
        [int(np.clip(int(k[j]), 0, s.n_options - 1)) for j, s in enumerate(live.categorical)], dtype=np.int32
    )
    return cont, cat, differ


@dataclass
class FileMatch:
    """A user's file turned into a preset (:func:`predict_file`).

    Attributes:
        preset: the Vital preset dict, as the synth wrote it.
        prediction: the model's vectors (the checkpoint's registry).
        prepared: the loaded audio and its estimates (note, note length).
        render: settings that play the preset like the input (its note and note length).
        audio: ``(2, T)`` float32 render of the preset at the input's note.
        clamped: continuous parameters whose range in the checkpoint differs from the live synth's;
            their values were clamped to the live range.
    """

    preset: dict
    prediction: Prediction
    prepared: object
    render: object
    audio: np.ndarray
    clamped: list[str] = field(default_factory=list)


def predict_file(
    path, predictor: Predictor, *, name: str | None = None, author: str = "vitalmatch"
) -> FileMatch:
    """Audio file -> preset: load, trim, detect pitch and note length, predict, then apply the
    preset and render it at the input's note in a synth worker process (see the module docstring).

    Raises:
        ValueError: the checkpoint's parameters do not match the live synth's.
        vitalmatch.audio.AudioError: the file is missing, not audio, silent or too short.
        vitalmatch.synth.render.RenderError: the synth refused, crashed on or hung on the preset.
    """
    from pathlib import Path

    from vitalmatch.audio import prepare
    from vitalmatch.learn.render_worker import PresetWorker
    from vitalmatch.synth.render import RenderConfig

    settings = predictor.render_settings
    live = predictor.synth_registry()
    tables = [e.table for e in predictor.wavetables()]
    # The worker starts now; loading the audio, the pitch estimate and the network hide its start-up.
    with PresetWorker(live, tables, predictor.sample_rate) as worker:
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
        stem = Path(path).stem
        pitch = (
            f"note {prepared.midi_note} (default: no pitch found)"
            if prepared.midi_is_default
            else f"note {prepared.midi_note} ({prepared.pitch.hz:.1f} Hz)"
        )
        comments = f"Predicted by vitalmatch from {Path(path).name}: {pitch}, held {note_s:.2f} s."
        cont, cat, differ = synth_vectors(predictor.full_registry, live, pred.continuous, pred.categorical)
        preset, audio = worker.render(
            render, cont, cat, prepared.midi_note, name=name or stem, author=author, comments=comments
        )
    return FileMatch(preset, pred, prepared, render, audio, differ)
