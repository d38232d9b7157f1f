"""Training: fit a :class:`~vitalmatch.learn.model.ParamNet` to a vitalmatch dataset.

Stage: learn. Input: a dataset file or sharded directory (``vitalmatch generate``) and a
:class:`TrainConfig`. Output: a run folder with ``last.pt`` (periodic, for ``--resume``),
``best.pt`` (lowest validation loss; a run shorter than one epoch is validated once at its end, so
it has one too), ``metrics.jsonl`` (one strict JSON record per log event, always written; NaN and
infinite values are ``null``), ``config.json`` and TensorBoard event files (or a Weights & Biases
run).

The loop: AdamW; linear warm-up then cosine decay of the learning rate (computed from the step,
so resuming needs no scheduler object); gradient clipping; gradient accumulation; bf16 autocast
on CUDA only (it is 8-20x slower on CPUs); channels-last tensors; validation after each epoch
with MAE per parameter group and categorical accuracy; early stopping on the validation loss.
:func:`train_step` is one optimiser step and returns its named losses; :func:`fit` is the loop.

Exact resume: the order of examples in epoch ``e`` is a permutation seeded by ``(seed, e)`` and
every random draw of optimiser step ``s`` (augmentation, dropout) comes from generators seeded by
``(seed, s, rank)``, so a run stopped at any step and resumed from its checkpoint continues
exactly as the uninterrupted run would have. The run is the one in ``--out``, wherever that folder
now lies; the dataset may be named by another path (or moved) when it holds the same data
(:mod:`vitalmatch.learn.resume`).

Data: a dataset file or a sharded directory. A split whose log-mels fit the memory budget
(``--memory-gb``) is preloaded (:func:`~vitalmatch.learn.data.load_split`); a larger one is
streamed from the dataset each epoch (:class:`~vitalmatch.learn.data.StreamingSplit`: chunk-aligned
blocks in a seeded order, shuffled in windows, read by DataLoader workers), also exactly resumable
(the resumed epoch skips the rows already used). The two orders differ, so a run keeps its mode
(``--stream on|off`` pins it; ``auto`` decides from the split's size and the budget).

Pretrained encoders (``--arch ast|mert``, :mod:`vitalmatch.learn.encoders`): the splits hold
mono waveforms resampled to the encoder's rate (16 / 24 kHz) instead of log-mels, augmented with
gain and noise on the samples; the encoder's transformers config goes into ``model_config``
(``encoder``), from ``--pretrained`` (a ``save_pretrained`` folder or a hub id, weights loaded
into the trunk), ``--encoder-config`` (a config.json over the defaults) or the defaults.

Several GPUs: start with ``torchrun --nproc_per_node N -m vitalmatch train ...``; each process
takes every N-th example of the epoch's permutation, gradients are averaged by
DistributedDataParallel (NCCL on GPUs, gloo on CPUs), validation sums are all-reduced, and only
rank 0 writes files (:mod:`vitalmatch.learn.distributed`).

The pieces: :mod:`~vitalmatch.learn.payload` (what a checkpoint holds),
:mod:`~vitalmatch.learn.resume` (checks before continuing a run), :mod:`~vitalmatch.learn.inputs`
(augmentation, input layout, autocast), :mod:`~vitalmatch.learn.validate` (validation metrics),
:mod:`~vitalmatch.learn.logger` (metrics.jsonl, TensorBoard, W&B).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vitalmatch.features import FeatureConfig
from vitalmatch.interrupts import signals_caught
from vitalmatch.learn import checkpoint, distributed
from vitalmatch.learn import resume as resuming
from vitalmatch.learn.config import TrainConfig, TrainingInterrupted
from vitalmatch.learn.data import (
    SplitData,
    StreamingSplit,
    learnable_registry,
    load_split,
    open_reader,
    plan_splits,
)
from vitalmatch.learn.inputs import as_input, augment, autocast
from vitalmatch.learn.logger import Logger
from vitalmatch.learn.losses import parameter_loss
from vitalmatch.learn.model import ENCODER_ARCHS, ParamNet, load_imagenet_weights
from vitalmatch.learn.payload import Bundle, TrainState, bundle_from, make_bundle, training_payload
from vitalmatch.learn.validate import TERMS, evaluate_split, mean_baseline


# ------------------------------------------------------------------------------------ schedule
def lr_at(step: int, config: TrainConfig, total: int) -> float:
    """Learning rate at optimiser step ``step`` of ``total``: linear warm-up, then cosine decay to 0."""
    warm = min(config.warmup_steps, max(total - 1, 0))
    if warm and step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _seed_for(config: TrainConfig, step: int, rank: int) -> int:
    """The seed of every random draw of optimiser step ``step`` in process ``rank``."""
    return (config.seed * 1_000_003 + step * 1009 + rank) % (2**63 - 1)


def _epoch_order(config: TrainConfig, epoch: int, n: int) -> torch.Tensor:
    """The order of the ``n`` training examples in epoch ``epoch`` (a seeded permutation)."""
    g = torch.Generator().manual_seed((config.seed * 7_919 + epoch) % (2**63 - 1))
    return torch.randperm(n, generator=g)


# ------------------------------------------------------------------------------------ the run
@dataclass
class _Run:
    """One session of a run, as :func:`_setup` builds it: what :func:`train_step` and the loop use."""

    config: TrainConfig
    out: Path
    ddp: distributed.Dist
    device: torch.device
    train: SplitData | StreamingSplit  # streamed where it does not fit (TrainConfig.stream)
    val: SplitData | StreamingSplit
    bundle: Bundle
    model: ParamNet
    net: torch.nn.Module  # ``model``, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    state: TrainState
    total: int  # optimiser steps of the whole run (the schedule's length)
    steps_per_epoch: int
    logger: Logger
    show: bool  # progress bar and per-epoch lines (rank 0 only)
    session_steps: int = 0
    started: float = 0.0  # time.perf_counter() at the session's first step

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def per_step(self) -> int:
        """Examples per optimiser step, over all processes."""
        return self.config.batch_size * self.config.accum_steps * self.ddp.world

    @property
    def validated(self) -> torch.nn.Module:
        """The module validation runs (the bare model under DDP: only this process's share)."""
        return self.net if self.ddp.world == 1 else self.model


def train_step(run: _Run, order: torch.Tensor | Iterator[dict[str, torch.Tensor]]) -> dict[str, float]:
    """One optimiser step at ``run.state.step`` on this process's rows of the epoch ``order``: the
    epoch's permutation of a preloaded split, or the iterator of this process's micro-batches of a
    streamed one (:meth:`StreamingSplit.epoch_batches`, positioned at this step).

    ``config.accum_steps`` micro-batches of ``config.batch_size`` are augmented, run forward and
    backward (gradients synchronised at the last one), then clipped and applied. Returns the
    named losses of :func:`~vitalmatch.learn.losses.parameter_loss` averaged over the
    micro-batches (``"loss"`` is the weighted sum ``continuous_weight * continuous_mse +
    categorical_weight * categorical_ce`` of the config's loss weights), with the step's ``"lr"``
    and the gradient norm before clipping (``"grad_norm"``, 0 without clipping).
    ``ValueError`` if the loss is not finite. Does not advance ``run.state``.
    """
    config, state, ddp, device = run.config, run.state, run.ddp, run.device
    seed = _seed_for(config, state.step, ddp.rank)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    lr = lr_at(state.step, config, run.total)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    weights = run.bundle.weights.to(device)
    micro = config.batch_size
    acc = torch.zeros(len(TERMS), device=device)
    base = state.step_in_epoch * run.per_step
    for a in range(config.accum_steps):
        if isinstance(order, torch.Tensor):
            lo = base + (a * ddp.world + ddp.rank) * micro
            part = run.train.batch(order[lo : lo + micro])
        else:
            part = next(order)
        batch = {k: v.to(device, non_blocking=True) for k, v in part.items()}
        x = augment(batch, run.bundle, config, g)
        sync = a == config.accum_steps - 1 or ddp.world == 1
        with contextlib.nullcontext() if sync else run.net.no_sync():
            with autocast(config, device):
                outputs = run.net(as_input(x, config))
            terms = parameter_loss(outputs, batch, weights, config.loss())
            (terms["loss"] / config.accum_steps).backward()
        acc += torch.stack([terms[k].detach().float() for k in TERMS]) / config.accum_steps
    losses = dict(zip(TERMS, acc.tolist(), strict=True))
    if not math.isfinite(losses["loss"]):
        raise ValueError(f"the loss became {losses['loss']} at step {state.step}; lower --lr")
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, config.grad_clip) if config.grad_clip > 0 else None
    run.optimizer.step()
    return {**losses, "lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else 0.0}


def fit(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> TrainState:
    """Train (or continue training) as ``config`` says; returns the final state.

    Raises:
        ValueError: bad settings, a missing or foreign dataset, a run folder that already holds a
            run (without ``resume``/``overwrite``), a checkpoint that does not match the dataset.
        TrainingInterrupted: Ctrl-C / SIGTERM, ``--stop-after``, ``--time-budget-min`` (after
            saving ``last.pt``).
    """
    config.check()
    run = _setup(config, resume=resume, overwrite=overwrite)
    state = run.state
    try:
        with _stop_requests(run.ddp) as stop:
            run.started = time.perf_counter()
            while state.step < run.total and state.epoch < config.epochs and not state.done:
                _train_epoch(run, stop)
                if state.step_in_epoch >= run.steps_per_epoch:
                    _end_epoch(run)
            if state.epoch == 0 and state.best_step < 0 and state.step > 0:
                # Shorter than one epoch (--max-steps): no validation ran, so validate once here and
                # write best.pt like an epoch end would (the epoch count stays).
                _validate(run)
            _finish(run)
    finally:
        run.logger.close()
        distributed.shutdown(run.ddp)
    return state


# ------------------------------------------------------------------------------------ loop helpers
def _train_epoch(run: _Run, stop: dict) -> None:
    """Optimiser steps until the epoch (or the run) ends; logs every 10th step, checkpoints every
    ``checkpoint_every``; :class:`TrainingInterrupted` (after a checkpoint) when asked to stop."""
    config, state = run.config, run.state
    order: torch.Tensor | Iterator[dict[str, torch.Tensor]]
    if isinstance(run.train, StreamingSplit):
        order = run.train.epoch_batches(
            config.seed,
            state.epoch,
            rank=run.ddp.rank,
            world=run.ddp.world,
            batch_size=config.batch_size,
            skip_batches=state.step_in_epoch * config.accum_steps,
            max_batches=(run.steps_per_epoch - state.step_in_epoch) * config.accum_steps,
        )
    else:
        order = _epoch_order(config, state.epoch, len(run.train))
    bar = _progress_bar(run)
    try:
        while state.step_in_epoch < run.steps_per_epoch and state.step < run.total:
            t0 = time.perf_counter()
            logs = train_step(run, order)
            state.step += 1
            state.step_in_epoch += 1
            run.session_steps += 1
            rate = run.per_step / max(time.perf_counter() - t0, 1e-9)
            if run.ddp.main and (state.step % 10 == 0 or state.step == 1):
                run.logger.log("train", state.step, {**logs, "samples_per_s": rate, "epoch": state.epoch})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", samples_s=f"{rate:.0f}", refresh=False
                )
            if state.step % config.checkpoint_every == 0:
                _save(run, run.last)
            why = _stop_reason(run, stop)
            if distributed.any_process(why is not None, run.ddp, run.device):
                _save(run, run.last)
                raise TrainingInterrupted(
                    f"stopped at step {state.step}/{run.total} ({why or 'interrupted'}); "
                    f"checkpoint {run.last}; continue with --resume"
                )
    finally:
        if bar is not None:
            bar.close()
        close = getattr(order, "close", None)
        if close is not None:  # a streamed epoch cut short: end its loader workers now
            close()


def _end_epoch(run: _Run) -> None:
    """Validate at an epoch's end; early stop after ``patience`` epochs without a better loss."""
    config, state, baseline = run.config, run.state, run.bundle.baseline
    state.epoch += 1
    state.step_in_epoch = 0
    metrics, improved = _validate(run)
    if not improved:
        state.bad_epochs += 1
    if run.show:
        print(
            f"epoch {state.epoch}: val loss {metrics['loss']:.4f}, MAE {metrics['mae']:.4f} "
            f"(mean baseline {baseline.get('mae', float('nan')):.4f}), "
            f"accuracy {metrics['accuracy']:.3f} (baseline {baseline.get('accuracy', float('nan')):.3f})"
        )
    if config.patience and state.bad_epochs >= config.patience:
        state.done = True
        state.stop_reason = f"early stop: no better val loss for {config.patience} epochs"
    _save(run, run.last)


def _validate(run: _Run) -> tuple[dict[str, Any], bool]:
    """Validation metrics and whether they beat the best so far (then saved as ``best.pt``)."""
    state = run.state
    metrics = evaluate_split(run.validated, run.val, run.bundle, run.config, run.device, run.ddp)
    improved = metrics["loss"] < state.best_val
    if improved:
        state.best_val, state.best_step, state.bad_epochs = metrics["loss"], state.step, 0
    if run.ddp.main:
        run.logger.log("val", state.step, {**metrics, "epoch": state.epoch, "best": improved})
    if improved:
        _save(run, run.out / "best.pt")
    return metrics, improved


def _finish(run: _Run) -> None:
    """Mark the run done, write ``last.pt``, log the end and check that the replicas agree."""
    state = run.state
    if not state.done:
        state.done = True
        state.stop_reason = state.stop_reason or "finished"
    _save(run, run.last)
    if run.ddp.main:
        end = {"reason": state.stop_reason, "best_val": state.best_val, "best_step": state.best_step}
        run.logger.log("end", state.step, {**end, "param_checksum": distributed.checksum(run.model)})
    distributed.check_replicas(run.model, run.ddp, run.device)


def _save(run: _Run, path: Path) -> None:
    """Checkpoint the run to ``path`` (rank 0 only)."""
    if not run.ddp.main:
        return
    schedule = {
        "kind": "warmup_cosine",
        "total_steps": run.total,
        "lr": lr_at(run.state.step, run.config, run.total),
    }
    checkpoint.save(
        path, training_payload(run.bundle, run.model, run.optimizer, run.config, run.state, schedule)
    )


def _progress_bar(run: _Run):
    """A tqdm bar over the current epoch's steps, or None without ``progress``."""
    if not run.show:
        return None
    from tqdm import tqdm

    return tqdm(
        total=run.steps_per_epoch,
        initial=run.state.step_in_epoch,
        desc=f"epoch {run.state.epoch + 1}/{run.config.epochs}",
        unit="step",
        leave=False,
    )


@contextlib.contextmanager
def _stop_requests(ddp: distributed.Dist):
    """``{"signal": None}``, set to the signal number on SIGINT or SIGTERM while inside; the loop
    checks it after each step (then checkpoints and stops). Handlers go in the main process of the
    run only (:func:`vitalmatch.interrupts.signals_caught`: main thread only)."""
    stop: dict[str, Any] = {"signal": None}
    signals = (signal.SIGINT, signal.SIGTERM) if ddp.main or ddp.world == 1 else ()
    with signals_caught(signals, lambda signum: stop.update(signal=signum)):
        yield stop


def _stop_reason(run: _Run, stop: dict) -> str | None:
    """Why this session should end now (a signal, ``--stop-after``, ``--time-budget-min``), or None."""
    config = run.config
    if stop["signal"] is not None:
        return "interrupted"
    if config.stop_after and run.session_steps >= config.stop_after:
        return f"--stop-after {config.stop_after}"
    if config.time_budget_min and time.perf_counter() - run.started >= 60 * config.time_budget_min:
        return f"--time-budget-min {config.time_budget_min:g}"
    return None


# ------------------------------------------------------------------------------------ set-up
def _setup(config: TrainConfig, *, resume: bool, overwrite: bool) -> _Run:
    """Everything a session needs: checks, process group, data, bundle, model, optimiser, logger.

    The order matters for exact resume: the global seed is set before the data is loaded and the
    model is built, as in every session of the run.
    """
    out = Path(config.out)
    last = out / "last.pt"
    ckpt = saved = resumed = None
    if resume:
        ckpt, saved, resumed = resuming.open_run(config, last)
    elif last.exists() and not overwrite:
        raise ValueError(f"{out} already holds a training run; use --resume to continue it or --overwrite")
    if not Path(config.data).exists():
        raise ValueError(f"dataset {config.data} does not exist")
    encoder_values: dict[str, Any] = {}
    pretrained = None
    input_rate = ENCODER_ARCHS.get(config.arch)  # None: log-mels; else the encoder's waveforms
    if input_rate is not None and ckpt is None:
        encoder_values, pretrained = _encoder_start(config)
    elif config.pretrained and ckpt is None:
        pretrained = resuming.load_pretrained(config.pretrained)

    ddp, device = distributed.init(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    with open_reader(config.data) as reader:
        features = FeatureConfig(
            sample_rate=reader.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
        )
        reg = checkpoint.registry(ckpt) if ckpt is not None else learnable_registry(reader)
        if len(reader.split_indices("train")) == 0 or len(reader.split_indices("val")) == 0:
            raise ValueError(f"{config.data} needs rows in both the train and the val split")
        identity = resuming.check_data(reader, ckpt, saved, config, last) if ckpt is not None else ""
    show = config.progress and ddp.main
    # Log-mels are cached in the run folder (one file per rank: no two processes write one file).
    cache = out / "cache" / f"rank{ddp.rank}"
    if not resume and cache.exists():
        shutil.rmtree(cache)  # a new run (--overwrite): drop the previous run's caches
    limits = {"train": config.max_train_rows or None, "val": config.max_val_rows or None}
    # Preload a split (into memory or the run folder's memory-mapped cache) when its log-mels fit
    # the budget, else stream it from the dataset each epoch (learn.data.StreamingSplit).
    streamed = plan_splits(config.data, limits, features, config.stream, config.memory_gb)
    splits: dict[str, SplitData | StreamingSplit] = {}
    for split, rows in limits.items():
        if streamed[split]:
            splits[split] = StreamingSplit(
                config.data,
                split,
                reg,
                features,
                max_rows=rows,
                shuffle_rows=config.shuffle_rows,
                workers=config.loader_workers,
                input_rate=input_rate,
            )
        else:
            splits[split] = load_split(
                config.data,
                split,
                reg,
                features,
                max_rows=rows,
                progress=show,
                cache_dir=cache,
                input_rate=input_rate,
            )
    train, val = splits["train"], splits["val"]
    if ckpt is not None:
        bundle = bundle_from(ckpt)
        bundle.data_identity = identity  # checked above; older checkpoints lack it
        if bundle.input_frames != train.frames:
            raise ValueError(f"{config.data} has clips of another length than the run in {out}")
    else:
        bundle = make_bundle(config, train, reg, features)
        bundle.baseline = mean_baseline(train.targets(), val.targets(), reg)
        if input_rate is not None:
            # The encoder normalises its own input: neutral log-mel statistics (the checkpoint
            # format keeps them), and the encoder's config so that the checkpoint rebuilds it.
            bundle.norm_mean = torch.zeros(features.n_mels)
            bundle.norm_std = torch.ones(features.n_mels)
            bundle.model_config.encoder = encoder_values

    model, optimizer, params = _model_and_optimizer(config, bundle, pretrained, device)
    state = TrainState()
    if ckpt is not None:
        _restore(model, optimizer, ckpt, last)
        state = resumed
        state.done = False
    net: torch.nn.Module = model
    if ddp.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    per_step = config.batch_size * config.accum_steps * ddp.world
    steps_per_epoch = len(train) // per_step
    if steps_per_epoch == 0:
        raise ValueError(
            f"the training split has {len(train)} examples, fewer than one step needs "
            f"({config.batch_size} x {config.accum_steps} accumulation x {ddp.world} processes)"
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
    run = _Run(
        config=config,
        out=out,
        ddp=ddp,
        device=device,
        train=train,
        val=val,
        bundle=bundle,
        model=model,
        net=net,
        optimizer=optimizer,
        params=params,
        state=state,
        total=total,
        steps_per_epoch=steps_per_epoch,
        logger=Logger(out, config, ddp.main),
        show=show,
    )
    if ddp.main and not resume:
        _log_start(run)
    return run


def _model_and_optimizer(
    config: TrainConfig, bundle: Bundle, pretrained: dict[str, torch.Tensor] | None, device: torch.device
) -> tuple[ParamNet, torch.optim.Optimizer, list[torch.nn.Parameter]]:
    """The network on ``device`` (from ``pretrained`` weights where given), AdamW over its trained
    parameters (no weight decay on biases and norms), and those parameters."""
    model = ParamNet(bundle.model_config)
    if pretrained is not None and model.encoder is not None:
        model.encoder.load_backbone(pretrained)
        model.apply_freeze()
    elif pretrained is not None:
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
    return model, optimizer, params


def _encoder_start(config: TrainConfig) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """A new ast / mert run's encoder: ``(config dict, pretrained state dict or None)`` from
    ``--pretrained``, else ``--encoder-config`` over the defaults, else the defaults."""
    from vitalmatch.learn import encoders

    if config.pretrained:
        return encoders.load_pretrained(config.arch, config.pretrained)
    values = encoders.read_config_file(config.encoder_config) if config.encoder_config else {}
    return encoders.config_dict(encoders.encoder_config(config.arch, values)), None


def _restore(model: ParamNet, optimizer: torch.optim.Optimizer, ckpt: dict[str, Any], last: Path) -> None:
    """Load the weights and the optimiser state of a checkpoint (``ValueError`` if they do not fit)."""
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{last}: the weights do not fit the model ({first[:160]})") from None
    try:
        optimizer.load_state_dict(ckpt["train"]["optimizer"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{last}: the optimiser state does not fit the model ({e})") from None


def _log_start(run: _Run) -> None:
    """The ``start`` record of a new run (and a warning where the loss weights are uniform)."""
    bundle, reg = run.bundle, run.bundle.registry
    if not bundle.weights_found:
        print("warning: the dataset has no importance weights; continuous parameters are weighted uniformly")
    run.logger.log(
        "start",
        0,
        {
            "train_examples": len(run.train),
            "val_examples": len(run.val),
            "continuous": len(reg.continuous),
            "categorical": len(reg.categorical),
            "world_size": run.ddp.world,
            "streamed": [k for k in ("train", "val") if isinstance(getattr(run, k), StreamingSplit)],
            "device": str(run.device),
            "importance_weights": bundle.weights_found,
            "baseline": bundle.baseline,
            "parameters": sum(p.numel() for p in run.model.parameters()),
        },
    )
