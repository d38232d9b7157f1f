"""What a training checkpoint holds, and how it is built from a dataset and restored from a file.

Stage: learn (run state). Input: the dataset and the training split (for a new run) or a loaded
checkpoint dict (for ``--resume``). Output: a :class:`Bundle` (what the run derives once from the
dataset: columns, features, normalisation, loss weights, fill values, catalog, render settings)
and the payload dict that :func:`vitalmatch.learn.checkpoint.save` writes: the bundle's entries,
the model's weights and ``train`` (config, optimiser, schedule, :class:`TrainState`). The keys and
their types are listed in :mod:`vitalmatch.learn.checkpoint`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from vitalmatch.features import FeatureConfig
from vitalmatch.learn import checkpoint
from vitalmatch.learn.augment import band_stats
from vitalmatch.learn.config import TrainConfig
from vitalmatch.learn.data import (
    SplitData,
    StreamingSplit,
    dataset_identity,
    dataset_registry,
    importance_weights,
    open_reader,
    training_means,
)
from vitalmatch.learn.model import ModelConfig
from vitalmatch.synth.params import ParamRegistry


@dataclass
class TrainState:
    """Everything that changes during training; a checkpoint is this state (plus the bundle).

    Attributes:
        step: optimiser steps taken in all.
        epoch: epochs finished (validated).
        step_in_epoch: optimiser steps taken in the current epoch.
        best_val, best_step: the lowest validation loss so far and the step it was reached at
            (``inf`` and -1 before the first validation).
        bad_epochs: epochs in a row without a better validation loss (for early stopping).
        done, stop_reason: the run is over, and why ("finished", "early stop: ...").
    """

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_val: float = math.inf
    best_step: int = -1
    bad_epochs: int = 0
    done: bool = False
    stop_reason: str = ""


@dataclass
class Bundle:
    """What a run derives once from the dataset and never changes (saved in every checkpoint).

    Attributes:
        registry: the predicted (learnable) columns, in the model's output order.
        full_registry: every column of the dataset (the order of the fill vectors).
        features: the log-mel settings.
        norm_mean, norm_std: ``(n_mels,)`` per-band statistics of the training split, in dB.
        weights, weights_found: ``(C,)`` loss weights of the continuous columns (mean 1), and
            whether the dataset had importance weights (else they are uniform).
        fill_continuous, fill_categorical: ``(C_full,)`` / ``(K_full,)`` values for the columns the
            model does not predict (the training split's means / modes).
        input_frames: log-mel frames of the training clips.
        model_config: the network's settings.
        baseline: validation metrics of the predict-the-mean baseline.
        wavetables_json: the dataset's wavetable catalog (JSON text, "" if it has none).
        render_settings: how the dataset was rendered (sample rate, durations, notes, tier).
        data_identity: the dataset's content identity (:func:`~vitalmatch.learn.data.dataset_identity`).
    """

    registry: ParamRegistry
    full_registry: ParamRegistry
    features: FeatureConfig
    norm_mean: torch.Tensor
    norm_std: torch.Tensor
    weights: torch.Tensor
    weights_found: bool
    fill_continuous: np.ndarray
    fill_categorical: np.ndarray
    input_frames: int
    model_config: ModelConfig
    baseline: dict[str, Any] = field(default_factory=dict)
    wavetables_json: str = ""
    render_settings: dict[str, Any] = field(default_factory=dict)
    data_identity: str = ""


#: The dataset attributes a checkpoint keeps: enough to render a prediction like the training data.
RENDER_SETTINGS = ("sample_rate", "render_duration_s", "note_duration_s", "velocity", "notes", "tier")


def _plain(x: Any) -> Any:
    """JSON fallback for numpy scalars and arrays in HDF5 attributes."""
    return x.tolist() if hasattr(x, "tolist") else str(x)


def make_bundle(
    config: TrainConfig, train: SplitData | StreamingSplit, reg: ParamRegistry, features: FeatureConfig
) -> Bundle:
    """The bundle of a new run on ``config.data`` predicting ``reg`` (the baseline is left empty)."""
    with open_reader(config.data) as reader:
        full = dataset_registry(reader)
        fill_c, fill_k = training_means(reader)
        # The catalog the wavetable choices index, and how the dataset was rendered: a checkpoint
        # alone is enough to turn a prediction into a preset and render it like the training data.
        try:
            tables = reader.blob("wavetables").decode()
        except (KeyError, ValueError):
            tables = ""
        render_settings = {k: reader.attrs[k] for k in RENDER_SETTINGS if k in reader.attrs}
        render_settings = json.loads(json.dumps(render_settings, default=_plain))
        identity = dataset_identity(reader)
    weights, found = importance_weights(config.data, reg)
    mean, std = band_stats(train.head_mels(4096))
    return Bundle(
        registry=reg,
        full_registry=full,
        features=features,
        norm_mean=mean,
        norm_std=std,
        weights=torch.from_numpy(weights),
        weights_found=found,
        fill_continuous=fill_c.astype(np.float32),
        fill_categorical=fill_k,
        input_frames=train.frames,
        wavetables_json=tables,
        render_settings=render_settings,
        data_identity=identity,
        model_config=ModelConfig(
            arch=config.arch,
            n_continuous=len(reg.continuous),
            categorical_sizes=[s.n_options for s in reg.categorical],
            dropout=config.dropout,
            freeze=config.freeze,
        ),
    )


def bundle_payload(bundle: Bundle) -> dict[str, Any]:
    """The checkpoint entries of ``bundle`` (tensors on the CPU, the rest plain Python)."""
    return {
        "model_config": asdict(bundle.model_config),
        "registry_json": bundle.registry.to_json(),
        "full_registry_json": bundle.full_registry.to_json(),
        "features": asdict(bundle.features),
        "norm_mean": bundle.norm_mean.cpu(),
        "norm_std": bundle.norm_std.cpu(),
        "weights": bundle.weights.cpu(),
        "weights_found": bundle.weights_found,
        "fill_continuous": torch.from_numpy(np.asarray(bundle.fill_continuous, dtype=np.float32)),
        "fill_categorical": torch.from_numpy(np.asarray(bundle.fill_categorical, dtype=np.int64)),
        "input_frames": bundle.input_frames,
        "baseline": bundle.baseline,
        "wavetables_json": bundle.wavetables_json,
        "render_settings": bundle.render_settings,
        "data_identity": bundle.data_identity,
    }


def bundle_from(ckpt: dict[str, Any]) -> Bundle:
    """The bundle saved in a checkpoint dict (from :func:`vitalmatch.learn.checkpoint.load`)."""
    return Bundle(
        registry=checkpoint.registry(ckpt),
        full_registry=ParamRegistry.from_json(ckpt["full_registry_json"]),
        features=checkpoint.features(ckpt),
        norm_mean=ckpt["norm_mean"],
        norm_std=ckpt["norm_std"],
        weights=ckpt["weights"],
        weights_found=bool(ckpt.get("weights_found", False)),
        fill_continuous=ckpt["fill_continuous"].numpy(),
        fill_categorical=ckpt["fill_categorical"].numpy(),
        input_frames=int(ckpt["input_frames"]),
        model_config=ModelConfig(**ckpt["model_config"]),
        baseline=dict(ckpt.get("baseline", {})),
        wavetables_json=str(ckpt.get("wavetables_json", "")),
        render_settings=dict(ckpt.get("render_settings", {})),
        data_identity=str(ckpt.get("data_identity", "")),
    )


def training_payload(
    bundle: Bundle,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    state: TrainState,
    schedule: dict[str, Any],
) -> dict[str, Any]:
    """Everything a checkpoint of the run holds: the bundle, the weights (on the CPU) and the
    training state; ``schedule`` describes the learning-rate schedule (kind, total steps, lr)."""
    return {
        **bundle_payload(bundle),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train": {
            "config": asdict(config),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule,
            "state": asdict(state),
        },
    }
