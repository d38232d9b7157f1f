"""Checkpoints: one file holds everything needed to resume training or to predict.

Stage: learn (persistence). A checkpoint is a dict of tensors and plain Python values written by
``torch.save`` and read with ``torch.load(weights_only=True)``, so loading one never runs code.
Keys:

========================  ===================================================================
``format``, ``version``   ``"vitalmatch-checkpoint"``, 1
``model_config``          :class:`~vitalmatch.learn.model.ModelConfig` as a dict
``model``                 the model's state dict
``registry_json``         the predicted columns (:class:`~vitalmatch.synth.params.ParamRegistry`)
``features``              :class:`~vitalmatch.features.FeatureConfig` as a dict
``norm_mean/norm_std``    ``(n_mels,)`` per-band log-mel statistics of the training split
``fill_continuous``       ``(C_full,)`` / ``(K_full,)`` values for the dataset's columns that the
``fill_categorical``      model does not predict (the training split's means / modes)
``full_registry_json``    the dataset's full registry (the order of the fill vectors)
``input_frames``          frames of the training clips (inputs are cropped / padded to it)
``wavetables_json``       the dataset's wavetable catalog (what ``osc_N_wavetable`` indexes)
``render_settings``       how the dataset was rendered (sample rate, durations, notes, tier)
``baseline``              validation metrics of the predict-the-mean baseline
``train``                 the training state: config, optimiser, schedule, step, epoch, ...
========================  ===================================================================

Writes are atomic (temporary file, fsync, rename): a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vitalmatch.features import FeatureConfig
from vitalmatch.learn.model import ModelConfig, ParamNet
from vitalmatch.synth.params import ParamRegistry

FORMAT = "vitalmatch-checkpoint"
VERSION = 1
REQUIRED = (
    "model_config",
    "model",
    "registry_json",
    "features",
    "norm_mean",
    "norm_std",
    "fill_continuous",
    "fill_categorical",
    "full_registry_json",
    "input_frames",
)


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format and version) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; ``ValueError`` (one line) if it is missing, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - the weights-only unpickler raises anything on garbage
        what = e.strerror if isinstance(e, OSError) and e.strerror else "not a torch checkpoint file"
        raise ValueError(f"{path} is not a readable checkpoint ({what})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a vitalmatch checkpoint")
    if ckpt.get("version") != VERSION:
        raise ValueError(
            f"{path} has checkpoint version {ckpt.get('version')}, this vitalmatch reads {VERSION}"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"{path} is incomplete: it lacks {', '.join(missing)}")
    return ckpt


def build_model(ckpt: dict[str, Any]) -> ParamNet:
    """The network of a checkpoint with its weights loaded (``ValueError`` if they do not fit)."""
    try:
        model = ParamNet(ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(
            f"the checkpoint's weights do not fit its model configuration ({first[:160]})"
        ) from None
    return model


def registry(ckpt: dict[str, Any]) -> ParamRegistry:
    """The predicted columns, in the model's output order."""
    return ParamRegistry.from_json(ckpt["registry_json"])


def features(ckpt: dict[str, Any]) -> FeatureConfig:
    return FeatureConfig(**ckpt["features"])


def wavetables(ckpt: dict[str, Any]):
    """The wavetable catalog of the training data (``WavetableCatalog``); ``ValueError`` if the
    checkpoint has none."""
    import json

    from vitalmatch.synth.wavetables import WavetableCatalog

    text = ckpt.get("wavetables_json") or ""
    if not text:
        raise ValueError("the checkpoint holds no wavetable catalog (trained on a dataset without one)")
    return WavetableCatalog.from_json_data(json.loads(text))
