"""Training: fit a :class:`~vitalmatch.learn.model.ParamNet` to a vitalmatch dataset.

Stage: learn. Input: a dataset file (``vitalmatch generate``) and a :class:`TrainConfig`. Output:
a run folder with ``last.pt`` (periodic, for ``--resume``), ``best.pt`` (lowest validation loss;
a run shorter than one epoch is validated once at its end, so it has one too), ``metrics.jsonl``
(one strict JSON record per log event, always written; NaN and infinite values are ``null``),
``config.json`` and TensorBoard event files (or a Weights & Biases run).

The loop: AdamW; linear warm-up then cosine decay of the learning rate (computed from the step,
so resuming needs no scheduler object); gradient clipping; gradient accumulation; bf16 autocast
on CUDA only (it is 8-20x slower on CPUs); channels-last tensors; validation after each epoch
with MAE per parameter group and categorical accuracy; early stopping on the validation loss.

Exact resume: the order of examples in epoch ``e`` is a permutation seeded by ``(seed, e)`` and
every random draw of optimiser step ``s`` (augmentation, dropout) comes from generators seeded by
``(seed, s, rank)``, so a run stopped at any step and resumed from its checkpoint continues
exactly as the uninterrupted run would have. The run is the one in ``--out``, wherever that folder
now lies; the dataset may be named by another path (or moved) when it holds the same data
(:func:`~vitalmatch.learn.data.dataset_identity`).

Several GPUs: start with ``torchrun --nproc_per_node N -m vitalmatch train ...``; each process
takes every N-th example of the epoch's permutation, gradients are averaged by
DistributedDataParallel (NCCL on GPUs, gloo on CPUs), validation sums are all-reduced, and only
rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import filecmp
import json
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from vitalmatch.data.storage import DatasetReader
from vitalmatch.features import FeatureConfig
from vitalmatch.learn import checkpoint
from vitalmatch.learn.augment import band_stats, db_uniform, gain_and_noise, normalise, spec_augment
from vitalmatch.learn.config import TrainConfig, TrainingInterrupted, load_config_file  # noqa: F401
from vitalmatch.learn.data import (
    SplitData,
    dataset_identity,
    dataset_registry,
    importance_weights,
    learnable_registry,
    load_split,
    training_means,
)
from vitalmatch.learn.losses import parameter_loss
from vitalmatch.learn.model import ModelConfig, ParamNet, load_imagenet_weights
from vitalmatch.synth.params import ParamRegistry


# ------------------------------------------------------------------------------------ state
@dataclass
class TrainState:
    """Everything that changes during training; a checkpoint is this state (plus the bundle)."""

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
    """What a run derives once from the dataset and never changes (saved in every checkpoint)."""

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


_TERMS = ("loss", "continuous_mse", "categorical_ce")


def lr_at(step: int, config: TrainConfig, total: int) -> float:
    """Learning rate at optimiser step ``step``: linear warm-up, then cosine decay to 0."""
    warm = min(config.warmup_steps, max(total - 1, 0))
    if warm and step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _seed_for(config: TrainConfig, step: int, rank: int) -> int:
    return (config.seed * 1_000_003 + step * 1009 + rank) % (2**63 - 1)


def _epoch_order(config: TrainConfig, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((config.seed * 7_919 + epoch) % (2**63 - 1))
    return torch.randperm(n, generator=g)


# ------------------------------------------------------------------------------------ distributed
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_pref: str) -> tuple[_Dist, torch.device]:
    """Process group from torchrun's environment (``WORLD_SIZE`` > 1), and this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_pref == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_pref)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda was asked for, but torch sees no CUDA GPU")
        if device.type == "cuda" and world > 1:
            device = torch.device(f"cuda:{local}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"this process wants {device} but torch sees {torch.cuda.device_count()} GPU(s); start at "
            "most that many processes per machine (torchrun --nproc_per_node) or train on --device cpu"
        )
    if world <= 1:
        return _Dist(), device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local), device


# ------------------------------------------------------------------------------------ logging
class _Logger:
    """metrics.jsonl always; TensorBoard or W&B on top (rank 0 only)."""

    def __init__(self, out: Path, config: TrainConfig, enabled: bool) -> None:
        self.enabled = enabled
        self.tb = self.wandb = None
        if not enabled:
            return
        self.path = out / "metrics.jsonl"
        if config.logger == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                print("warning: tensorboard is not installed; metrics go to metrics.jsonl only")
        elif config.logger == "wandb":
            try:
                import wandb
            except ImportError:
                raise ValueError("--logger wandb needs the wandb package (pip install wandb)") from None
            self.wandb = wandb.init(
                project="vitalmatch", name=out.name, config=asdict(config), dir=str(out), resume="allow"
            )

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": time.time(), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(_json_safe(record), allow_nan=False) + "\n")
        scalars = {
            k: v for k, v in _flatten(values).items() if isinstance(v, int | float) and math.isfinite(v)
        }
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{kind}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"{kind}/{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _json_safe(x: Any) -> Any:
    """``x`` with every NaN or infinite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------------ evaluation
def _groups(registry: ParamRegistry) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for j, s in enumerate(registry.continuous):
        groups.setdefault(s.module, []).append(j)
    return groups


@torch.no_grad()
def evaluate_split(
    model: torch.nn.Module,
    data: SplitData,
    bundle: Bundle,
    config: TrainConfig,
    device: torch.device,
    ddp: _Dist,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Validation metrics of ``model`` on ``data`` (this process's share, all-reduced).

    Returns ``{"loss", "continuous_mse", "categorical_ce", "mae", "mae_group": {module: MAE},
    "accuracy", "accuracy_param": {name: acc}}``; MAE and accuracy count only the examples where a
    parameter is active (:mod:`vitalmatch.synth.activity`).
    """
    model.eval()
    reg = bundle.registry
    c, k = len(reg.continuous), len(reg.categorical)
    sums = torch.zeros(4 + 2 * c + 2 * k, dtype=torch.float64)  # loss*n, mse*n, ce*n, n | |e|, cnt | hit, cnt
    rows = torch.arange(ddp.rank, len(data), ddp.world)
    weights = bundle.weights.to(device)
    for start in range(0, len(rows), batch_size):
        sel = rows[start : start + batch_size]
        batch = {key: v.to(device) for key, v in data.batch(sel).items()}
        x = normalise(batch["mels"], bundle.norm_mean.to(device), bundle.norm_std.to(device))
        with _autocast(config, device):
            out = model(_as_input(x, config))
        terms = parameter_loss(out, batch, weights, config.loss())
        n = len(sel)
        sums[0] += float(terms["loss"]) * n
        sums[1] += float(terms["continuous_mse"]) * n
        sums[2] += float(terms["categorical_ce"]) * n
        sums[3] += n
        if c:
            err = (out["continuous"].float() - batch["continuous"]).abs() * batch["cont_mask"]
            sums[4 : 4 + c] += err.sum(0).double().cpu()
            sums[4 + c : 4 + 2 * c] += batch["cont_mask"].sum(0).double().cpu()
        base = 4 + 2 * c
        for j, logits in enumerate(out["categorical"]):
            m = batch["cat_mask"][:, j]
            hit = (logits.argmax(1) == batch["categorical"][:, j]) & m
            sums[base + j] += float(hit.sum())
            sums[base + k + j] += float(m.sum())
    if ddp.world > 1:
        sums = sums.to(device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    model.train()
    return _summarise(sums, reg)


def _summarise(sums: torch.Tensor, reg: ParamRegistry) -> dict[str, Any]:
    c, k = len(reg.continuous), len(reg.categorical)
    n = max(float(sums[3]), 1.0)
    err, cnt = sums[4 : 4 + c], sums[4 + c : 4 + 2 * c]
    hit, tot = sums[4 + 2 * c : 4 + 2 * c + k], sums[4 + 2 * c + k :]
    mae_group = {}
    for g, cols in _groups(reg).items():
        e, m = float(err[cols].sum()), float(cnt[cols].sum())
        mae_group[g] = e / m if m else float("nan")
    return {
        "loss": float(sums[0]) / n,
        "continuous_mse": float(sums[1]) / n,
        "categorical_ce": float(sums[2]) / n,
        "mae": float(err.sum() / cnt.sum().clamp_min(1)) if c else float("nan"),
        "mae_group": mae_group,
        "mae_param": {
            s.name: float(err[j] / cnt[j]) if cnt[j] else float("nan") for j, s in enumerate(reg.continuous)
        },
        "accuracy": float(hit.sum() / tot.sum().clamp_min(1)) if k else float("nan"),
        "accuracy_param": {
            s.name: float(hit[j] / tot[j]) if tot[j] else float("nan") for j, s in enumerate(reg.categorical)
        },
        "examples": int(sums[3]),
    }


def mean_baseline(train: SplitData, val: SplitData, reg: ParamRegistry) -> dict[str, Any]:
    """Metrics of predicting the training mean (continuous) and the most frequent option
    (categorical) for every example, on ``val`` with the same masks."""
    c, k = len(reg.continuous), len(reg.categorical)
    sums = torch.zeros(4 + 2 * c + 2 * k, dtype=torch.float64)
    sums[3] = len(val)
    if c:
        m = train.cont_mask.float()
        mean = (train.continuous * m).sum(0) / m.sum(0).clamp_min(1)
        err = (val.continuous - mean).abs() * val.cont_mask
        sums[4 : 4 + c] = err.sum(0).double()
        sums[4 + c : 4 + 2 * c] = val.cont_mask.sum(0).double()
    for j, spec in enumerate(reg.categorical):
        counts = torch.bincount(train.categorical[:, j][train.cat_mask[:, j]], minlength=spec.n_options)
        mode = int(counts.argmax())
        m = val.cat_mask[:, j]
        sums[4 + 2 * c + j] = float(((val.categorical[:, j] == mode) & m).sum())
        sums[4 + 2 * c + k + j] = float(m.sum())
    out = _summarise(sums, reg)
    for key in ("loss", "continuous_mse", "categorical_ce"):
        out.pop(key)
    return out


# ------------------------------------------------------------------------------------ helpers
def _autocast(config: TrainConfig, device: torch.device):
    use = config.amp == "bf16" or (config.amp == "auto" and device.type == "cuda")
    if use and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if use:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _as_input(x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    x = x.unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last) if config.channels_last else x


def _augment(
    batch: dict[str, torch.Tensor], bundle: Bundle, config: TrainConfig, g: torch.Generator
) -> torch.Tensor:
    """Augmented, normalised log-mels ``(B, n_mels, frames)`` for a training micro-batch."""
    mels = batch["mels"]
    b = mels.shape[0]
    device = mels.device
    if config.gain_db > 0 or config.noise_prob > 0:
        gain = db_uniform(b, -config.gain_db, config.gain_db, g) if config.gain_db > 0 else torch.zeros(b)
        noise = None
        if config.noise_prob > 0:
            level = db_uniform(b, config.noise_db_min, config.noise_db_max, g)
            use = torch.rand(b, generator=g) < config.noise_prob
            noise = torch.where(use, level, torch.full_like(level, -300.0)).to(device)
        mels = gain_and_noise(mels, gain.to(device), noise, bundle.features)
    x = normalise(mels, bundle.norm_mean.to(device), bundle.norm_std.to(device))
    if config.spec_augment:
        x = spec_augment(
            x,
            g,
            freq_masks=config.freq_masks,
            max_freq=config.max_freq,
            time_masks=config.time_masks,
            max_time=config.max_time,
        )
    return x


def _bundle_payload(bundle: Bundle) -> dict[str, Any]:
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


def _bundle_from(ckpt: dict[str, Any]) -> Bundle:
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


def _plain(x: Any) -> Any:
    """JSON fallback for numpy scalars and arrays in HDF5 attributes."""
    return x.tolist() if hasattr(x, "tolist") else str(x)


def _make_bundle(
    config: TrainConfig, train: SplitData, reg: ParamRegistry, features: FeatureConfig
) -> Bundle:
    with DatasetReader(config.data) as reader:
        full = dataset_registry(reader)
        fill_c, fill_k = training_means(reader)
        # The catalog the wavetable choices index, and how the dataset was rendered: a checkpoint
        # alone is enough to turn a prediction into a preset and render it like the training data.
        try:
            tables = reader.blob("wavetables").decode()
        except (KeyError, ValueError):
            tables = ""
        render_settings = {
            k: reader.attrs[k]
            for k in ("sample_rate", "render_duration_s", "note_duration_s", "velocity", "notes", "tier")
            if k in reader.attrs
        }
        render_settings = json.loads(json.dumps(render_settings, default=_plain))
        identity = dataset_identity(reader)
    weights, found = importance_weights(config.data, reg)
    mean, std = band_stats(train.mels)
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
        input_frames=int(train.mels.shape[-1]),
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


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (or, where one is missing, resolve to the same path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _same_pretrained(saved: str, given: str) -> bool:
    """Whether ``--pretrained`` on resume names the run's weights: both unset, or files with the
    same content. A run's file that no longer exists where it was (the folder moved) is not
    compared: resuming never reads it (the weights come from ``last.pt``)."""
    if not saved or not given:
        return saved == given
    a, b = Path(saved), Path(given)
    if a.is_file() and b.is_file():
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    return True


def _load_pretrained(path: str) -> dict[str, torch.Tensor]:
    """The state dict in ``--pretrained`` ``path`` (a ``{"state_dict": ...}`` wrapper is unwrapped);
    ``ValueError`` (one line) if it is missing, unreadable or not a dict of named tensors."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--pretrained {path} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the weights-only unpickler raises anything on garbage
        what = e.strerror if isinstance(e, OSError) and e.strerror else "not a torch file"
        raise ValueError(f"--pretrained {path} is not a readable state dict ({what})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"--pretrained {path} is not a state dict (it holds a {type(state).__name__})")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"--pretrained {path} is not a state dict (not every entry is a named tensor)")
    return state


def _resumed_state(ckpt: dict[str, Any], last: Path) -> TrainState:
    """The :class:`TrainState` in a checkpoint, type-checked field by field (``ValueError``)."""
    defaults = TrainState()
    values = {}
    for k, v in ckpt["train"]["state"].items():
        if k not in {f.name for f in dataclasses.fields(TrainState)}:
            raise ValueError(f"{last} cannot be resumed: train.state has an unknown field {str(k)[:40]!r}")
        kind = type(getattr(defaults, k))
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise ValueError(
                f"{last} cannot be resumed: train.state.{k} must be {kind.__name__}, got {v!r:.40}"
            )
        values[k] = v
    return TrainState(**values)


# ------------------------------------------------------------------------------------ the loop
def fit(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> TrainState:
    """Train (or continue training) as ``config`` says; returns the final state.

    Raises:
        ValueError: bad settings, a missing or foreign dataset, a run folder that already holds a
            run (without ``resume``/``overwrite``), a checkpoint that does not match the dataset.
        TrainingInterrupted: Ctrl-C / SIGTERM (after saving ``last.pt``).
    """
    config.check()
    out = Path(config.out)
    last = out / "last.pt"
    ckpt = None
    saved = None
    if resume:
        ckpt = checkpoint.load(last)
        checkpoint.check_resumable(ckpt, last)
        resumed = _resumed_state(ckpt, last)
        saved = TrainConfig.from_dict(ckpt["train"]["config"], source=str(last))
        # Session-only settings may change on resume; everything else must match.
        session = {
            "progress",
            "logger",
            "threads",
            "stop_after",
            "time_budget_min",
            "device",
            "epochs",
            "patience",
        }
        # Paths are compared as files, not as strings: the run is the one in --out wherever that
        # folder now lies, and the data is checked below (by path, else by content).
        paths = {"data", "out", "pretrained"}
        diff = [
            f.name
            for f in dataclasses.fields(TrainConfig)
            if f.name not in session | paths and getattr(saved, f.name) != getattr(config, f.name)
        ]
        if not _same_pretrained(saved.pretrained, config.pretrained):
            diff.append("pretrained")
        if diff:
            raise ValueError(f"--resume with other settings than {last} ({', '.join(sorted(diff))} differ)")
    elif last.exists() and not overwrite:
        raise ValueError(f"{out} already holds a training run; use --resume to continue it or --overwrite")
    if not Path(config.data).is_file():
        raise ValueError(f"dataset {config.data} does not exist")
    pretrained = _load_pretrained(config.pretrained) if config.pretrained and ckpt is None else None

    ddp, device = _init_distributed(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    with DatasetReader(config.data) as reader:
        features = FeatureConfig(
            sample_rate=reader.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
        )
        reg = checkpoint.registry(ckpt) if ckpt is not None else learnable_registry(reader)
        if len(reader.split_indices("train")) == 0 or len(reader.split_indices("val")) == 0:
            raise ValueError(f"{config.data} needs rows in both the train and the val split")
        if ckpt is not None and dataset_registry(reader).to_json() != ckpt["full_registry_json"]:
            raise ValueError(f"{config.data} has other parameters than the dataset {last} was trained on")
        identity = dataset_identity(reader) if ckpt is not None else ""
        moved = ckpt is not None and not _same_file(saved.data, config.data)
        if moved and identity != ckpt.get("data_identity"):
            raise ValueError(
                f"--resume with other data than {last} was trained on: {config.data} is not "
                f"the dataset {saved.data}"
            )
    show = config.progress and ddp.main
    # Log-mels are cached in the run folder (one file per rank: no two processes write one file).
    cache = out / "cache" / f"rank{ddp.rank}"
    if not resume and cache.exists():
        shutil.rmtree(cache)  # a new run (--overwrite): drop the previous run's caches
    train = load_split(
        config.data,
        "train",
        reg,
        features,
        max_rows=config.max_train_rows or None,
        progress=show,
        cache_dir=cache,
    )
    val = load_split(
        config.data,
        "val",
        reg,
        features,
        max_rows=config.max_val_rows or None,
        progress=show,
        cache_dir=cache,
    )
    if ckpt is not None:
        bundle = _bundle_from(ckpt)
        bundle.data_identity = identity  # checked above; older checkpoints lack it
        if bundle.input_frames != train.mels.shape[-1]:
            raise ValueError(f"{config.data} has clips of another length than the run in {out}")
    else:
        bundle = _make_bundle(config, train, reg, features)
        bundle.baseline = mean_baseline(train, val, reg)

    model = ParamNet(bundle.model_config)
    if pretrained is not None:
        load_imagenet_weights(model, pretrained)
        model.apply_freeze()
    model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    state = TrainState()
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ValueError(f"{last}: the weights do not fit the model ({first[:160]})") from None
        try:
            optimizer.load_state_dict(ckpt["train"]["optimizer"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{last}: the optimiser state does not fit the model ({e})") from None
        state = resumed
        state.done = False
    net: torch.nn.Module = model
    if ddp.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    micro = config.batch_size
    per_step = micro * config.accum_steps * ddp.world
    steps_per_epoch = len(train) // per_step
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split has {len(train)} examples, fewer than one step needs "
            f"({micro} x {config.accum_steps} accumulation x {ddp.world} processes)"
        )
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)

    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            for name in ("metrics.jsonl", "best.pt"):
                (out / name).unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    logger = _Logger(out, config, ddp.main)
    if ddp.main and not resume and not bundle.weights_found:
        print("warning: the dataset has no importance weights; continuous parameters are weighted uniformly")
    if ddp.main and not resume:
        logger.log(
            "start",
            0,
            {
                "train_examples": len(train),
                "val_examples": len(val),
                "continuous": len(reg.continuous),
                "categorical": len(reg.categorical),
                "world_size": ddp.world,
                "device": str(device),
                "importance_weights": bundle.weights_found,
                "baseline": bundle.baseline,
                "parameters": sum(p.numel() for p in model.parameters()),
            },
        )

    def save(path: Path) -> None:
        if not ddp.main:
            return
        checkpoint.save(
            path,
            {
                **_bundle_payload(bundle),
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "train": {
                    "config": asdict(config),
                    "optimizer": optimizer.state_dict(),
                    "schedule": {
                        "kind": "warmup_cosine",
                        "total_steps": total,
                        "lr": lr_at(state.step, config, total),
                    },
                    "state": asdict(state),
                },
            },
        )

    stop = {"signal": None}

    def on_signal(signum, frame):  # noqa: ARG001
        stop["signal"] = signum

    old_handlers = {}
    if ddp.main or ddp.world == 1:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                old_handlers[sig] = signal.signal(sig, on_signal)
    weights = bundle.weights.to(device)
    session_steps = 0
    t_start = time.perf_counter()
    bar = None
    try:
        while state.step < total and state.epoch < config.epochs and not state.done:
            order = _epoch_order(config, state.epoch, len(train))
            if show:
                from tqdm import tqdm

                bar = tqdm(
                    total=steps_per_epoch,
                    initial=state.step_in_epoch,
                    desc=f"epoch {state.epoch + 1}/{config.epochs}",
                    unit="step",
                    leave=False,
                )
            while state.step_in_epoch < steps_per_epoch and state.step < total:
                t0 = time.perf_counter()
                seed = _seed_for(config, state.step, ddp.rank)
                g = torch.Generator().manual_seed(seed)
                torch.manual_seed(seed)
                lr = lr_at(state.step, config, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                acc = torch.zeros(3, device=device)
                base = state.step_in_epoch * per_step
                for a in range(config.accum_steps):
                    lo = base + (a * ddp.world + ddp.rank) * micro
                    rows = order[lo : lo + micro]
                    batch = {k: v.to(device, non_blocking=True) for k, v in train.batch(rows).items()}
                    x = _augment(batch, bundle, config, g)
                    sync = a == config.accum_steps - 1 or ddp.world == 1
                    ctx = contextlib.nullcontext() if sync else net.no_sync()
                    with ctx:
                        with _autocast(config, device):
                            out_ = net(_as_input(x, config))
                        terms = parameter_loss(out_, batch, weights, config.loss())
                        (terms["loss"] / config.accum_steps).backward()
                    acc += torch.stack([terms[k_].detach().float() for k_ in _TERMS]) / config.accum_steps
                logs = dict(zip(_TERMS, acc.tolist(), strict=True))
                if not math.isfinite(logs["loss"]):
                    raise ValueError(f"the loss became {logs['loss']} at step {state.step}; lower --lr")
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip) if config.grad_clip > 0 else None
                )
                optimizer.step()
                state.step += 1
                state.step_in_epoch += 1
                session_steps += 1
                rate = per_step / max(time.perf_counter() - t0, 1e-9)
                if ddp.main and (state.step % 10 == 0 or state.step == 1):
                    logger.log(
                        "train",
                        state.step,
                        {
                            **logs,
                            "lr": lr,
                            "grad_norm": float(grad_norm) if grad_norm is not None else 0.0,
                            "samples_per_s": rate,
                            "epoch": state.epoch,
                        },
                    )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{logs['loss']:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.0f}", refresh=False
                    )
                if state.step % config.checkpoint_every == 0:
                    save(last)
                if _should_stop(config, stop, session_steps, t_start, ddp, device):
                    save(last)
                    raise TrainingInterrupted(
                        f"stopped at step {state.step}/{total} ({_why(config, stop, session_steps)}); "
                        f"checkpoint {last}; continue with --resume"
                    )
            if bar is not None:
                bar.close()
                bar = None
            if state.step_in_epoch >= steps_per_epoch:
                metrics = evaluate_split(net if ddp.world == 1 else model, val, bundle, config, device, ddp)
                state.epoch += 1
                state.step_in_epoch = 0
                improved = metrics["loss"] < state.best_val
                if improved:
                    state.best_val, state.best_step, state.bad_epochs = metrics["loss"], state.step, 0
                else:
                    state.bad_epochs += 1
                if ddp.main:
                    logger.log("val", state.step, {**metrics, "epoch": state.epoch, "best": improved})
                    if show:
                        print(
                            f"epoch {state.epoch}: val loss {metrics['loss']:.4f}, MAE {metrics['mae']:.4f} "
                            f"(mean baseline {bundle.baseline.get('mae', float('nan')):.4f}), "
                            f"accuracy {metrics['accuracy']:.3f} "
                            f"(baseline {bundle.baseline.get('accuracy', float('nan')):.3f})"
                        )
                if config.patience and state.bad_epochs >= config.patience:
                    state.done, state.stop_reason = (
                        True,
                        f"early stop: no better val loss for {config.patience} epochs",
                    )
                if improved:
                    save(out / "best.pt")
                save(last)
        if state.epoch == 0 and state.best_step < 0 and state.step > 0:
            # Shorter than one epoch (--max-steps): no validation ran, so validate once here and
            # write best.pt like an epoch end would (the epoch count stays).
            metrics = evaluate_split(net if ddp.world == 1 else model, val, bundle, config, device, ddp)
            improved = metrics["loss"] < state.best_val
            if improved:
                state.best_val, state.best_step = metrics["loss"], state.step
            if ddp.main:
                logger.log("val", state.step, {**metrics, "epoch": state.epoch, "best": improved})
            if improved:
                save(out / "best.pt")
        if not state.done:
            state.done = True
            state.stop_reason = state.stop_reason or "finished"
        save(last)
        if ddp.main:
            logger.log(
                "end",
                state.step,
                {
                    "reason": state.stop_reason,
                    "best_val": state.best_val,
                    "best_step": state.best_step,
                    "param_checksum": _checksum(model),
                },
            )
        if ddp.world > 1:
            _check_replicas(model, device)
    finally:
        if bar is not None:
            bar.close()
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
        logger.close()
        if ddp.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return state


def _should_stop(
    config: TrainConfig, stop: dict, session_steps: int, t_start: float, ddp: _Dist, device
) -> bool:
    flag = stop["signal"] is not None
    flag = flag or (config.stop_after and session_steps >= config.stop_after)
    flag = flag or (config.time_budget_min and time.perf_counter() - t_start >= 60 * config.time_budget_min)
    if ddp.world > 1:  # every process stops at the same step
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t)
        flag = bool(t.item() > 0)
    return bool(flag)


def _why(config: TrainConfig, stop: dict, session_steps: int) -> str:
    if stop["signal"] is not None:
        return "interrupted"
    if config.stop_after and session_steps >= config.stop_after:
        return f"--stop-after {config.stop_after}"
    return f"--time-budget-min {config.time_budget_min:g}"


def _checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def _check_replicas(model: torch.nn.Module, device: torch.device) -> None:
    """All processes must end with the same weights (DDP keeps them in step)."""
    mine = torch.tensor([_checksum(model)], dtype=torch.float64, device=device)
    all_ = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(all_, mine)
    values = [float(t) for t in all_]
    if max(values) - min(values) > 1e-6 * max(1.0, abs(values[0])):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums {values}")
