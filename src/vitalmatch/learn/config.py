"""Training settings: the typed config of the training stage, without torch.

Stage: learn (configuration). :class:`TrainConfig` is what ``vitalmatch train`` builds from its
flags and an optional flat TOML file; it lives apart from :mod:`vitalmatch.learn.train` so that the
command line can list the options without importing torch. Its ``--config`` file is read by
:func:`vitalmatch.config.load_config_file`, as every stage's is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrainConfig:
    """Everything that defines a training run (``vitalmatch train --help`` lists the same fields).

    Attributes:
        data: dataset written by ``vitalmatch generate``: a file (.h5) or a sharded directory.
        out: run folder (checkpoints, metrics, TensorBoard logs).
        arch: network: slim10 (CPU default), slim18 or resnet18 (GPUs; ImageNet weights fit), or a
            pretrained audio encoder: ast (16 kHz fbank) or mert (24 kHz waveform).
        dropout: dropout before the heads.
        freeze: trunk stages not trained: 0 none, 1 stem, 2 also layer1, ... 5 the whole trunk;
            ast/mert: the first N transformer layers and the patch/feature embedding.
        pretrained: resnet18: an ImageNet state dict (torchvision layout, local file); ast/mert: a
            folder saved with save_pretrained (config.json + model.safetensors) or a hub id (online).
        encoder_config: ast/mert without --pretrained: a config.json whose values override the
            default encoder config (AST-base / MERT-v1-95M sizes).
        epochs: passes over the training split (sets the learning-rate schedule).
        max_steps: stop after this many optimiser steps in all (0 = no limit; sets the schedule).
        batch_size: examples per micro-batch per process.
        accum_steps: micro-batches accumulated per optimiser step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay (not on biases and norms).
        warmup_steps: steps of linear warm-up before the cosine decay.
        grad_clip: clip the gradient norm to this (0 = off).
        continuous_weight: weight of the continuous (MSE) term.
        categorical_weight: weight of the categorical (cross-entropy) term.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        mask: no loss on parameters that cannot affect a sample's audio.
        n_mels: log-mel bands (the sample rate is the dataset's).
        n_fft: FFT size of the log-mels.
        hop_length: hop of the log-mels in samples.
        spec_augment: SpecAugment time and frequency masking.
        freq_masks: frequency masks per example.
        max_freq: widest frequency mask in bands.
        time_masks: time masks per example.
        max_time: longest time mask in frames.
        gain_db: random gain in [-gain_db, +gain_db] dB (0 = off).
        noise_db_min: quietest white-noise floor in dBFS RMS.
        noise_db_max: loudest white-noise floor in dBFS RMS.
        noise_prob: share of examples that get a noise floor (0 = off).
        patience: epochs without a better validation loss before stopping (0 = never).
        checkpoint_every: steps between writes of last.pt (it is also written each epoch).
        max_train_rows: use only the first rows of the training split (0 = all).
        max_val_rows: use only the first rows of the validation split (0 = all).
        stream: auto (stream a split whose log-mels do not fit in memory_gb, preload the others), on
            (stream every split from the dataset) or off (preload every split).
        memory_gb: budget in GB for preloaded log-mels of the train and val splits (0 = half of this
            machine's RAM); see stream.
        shuffle_rows: streamed splits: rows read and shuffled together (a window); each process
            holds about 2 x loader_workers + 2 windows of log-mels.
        loader_workers: streamed splits: DataLoader worker processes reading the dataset per
            training process (0 = read in the training process).
        seed: every random choice of the run derives from it.
        device: auto (CUDA when available), cpu, cuda or cuda:N.
        amp: auto (bf16 autocast on CUDA only; it is 8-20x slower on CPUs), bf16 or off.
        channels_last: channels-last memory format for the convolutions.
        logger: tensorboard, wandb (needs the wandb package) or none (metrics.jsonl always).
        threads: torch CPU threads per process (0 = torch's default; 1 is often faster on a
            CPU shared with other jobs).
        progress: show a progress bar.
        stop_after: end this session after so many steps with a checkpoint, keeping the
            schedule (continue with --resume); 0 = no limit.
        time_budget_min: likewise after so many minutes; 0 = no limit.
    """

    data: str = ""
    out: str = ""
    arch: str = "slim10"
    dropout: float = 0.1
    freeze: int = 0
    pretrained: str = ""
    encoder_config: str = ""
    epochs: int = 30
    max_steps: int = 0
    batch_size: int = 32
    accum_steps: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    continuous_weight: float = 1.0
    categorical_weight: float = 0.1
    label_smoothing: float = 0.1
    mask: bool = True
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512
    spec_augment: bool = True
    freq_masks: int = 2
    max_freq: int = 12
    time_masks: int = 2
    max_time: int = 16
    gain_db: float = 6.0
    noise_db_min: float = -80.0
    noise_db_max: float = -50.0
    noise_prob: float = 0.5
    patience: int = 5
    checkpoint_every: int = 500
    max_train_rows: int = 0
    max_val_rows: int = 0
    stream: str = "auto"
    memory_gb: float = 0.0
    shuffle_rows: int = 2048
    loader_workers: int = 2
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    logger: str = "tensorboard"
    threads: int = 0
    progress: bool = True
    stop_after: int = 0
    time_budget_min: float = 0.0

    def check(self) -> None:
        """Raise ``ValueError`` (one line) for the first invalid field."""
        if not self.data:
            raise ValueError("--data is required")
        if not self.out:
            raise ValueError("--out is required")
        positive = (
            "epochs",
            "batch_size",
            "accum_steps",
            "n_mels",
            "n_fft",
            "hop_length",
            "checkpoint_every",
            "shuffle_rows",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "threads",
            "max_steps",
            "warmup_steps",
            "patience",
            "max_train_rows",
            "max_val_rows",
            "stop_after",
            "loader_workers",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.noise_prob <= 1:
            raise ValueError(f"noise_prob must be in [0, 1], got {self.noise_prob}")
        if self.stream not in ("auto", "on", "off"):
            raise ValueError(f"stream must be auto, on or off, got {self.stream!r}")
        if not self.memory_gb >= 0:
            raise ValueError(f"memory_gb must be >= 0, got {self.memory_gb}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be auto, bf16 or off, got {self.amp!r}")
        if self.logger not in ("tensorboard", "wandb", "none"):
            raise ValueError(f"logger must be tensorboard, wandb or none, got {self.logger!r}")
        from vitalmatch.learn.model import ENCODER_ARCHS, ModelConfig

        ModelConfig(arch=self.arch, n_continuous=1, dropout=self.dropout, freeze=self.freeze).check()
        if self.encoder_config and self.arch not in ENCODER_ARCHS:
            raise ValueError(f"--encoder-config is for --arch {' or '.join(ENCODER_ARCHS)}, not {self.arch}")
        if self.encoder_config and self.pretrained:
            raise ValueError(
                "--encoder-config and --pretrained exclude each other (the folder has its config)"
            )

    def loss(self):
        """The :class:`~vitalmatch.learn.losses.LossConfig` of these settings."""
        from vitalmatch.learn.losses import LossConfig

        return LossConfig(self.continuous_weight, self.categorical_weight, self.label_smoothing, self.mask)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a flat dict (a TOML file's or a checkpoint's), type-checked per field
        (:func:`vitalmatch.config.from_dict`)."""
        from vitalmatch.config import from_dict

        return from_dict(cls, values, source=source)


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: the state was checkpointed; ``--resume`` continues."""
