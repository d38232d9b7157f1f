"""Validation: how well the network predicts the parameters of a held-out split.

Stage: learn (validation). Input: a model, a :class:`~vitalmatch.learn.data.SplitData` and the
run's :class:`~vitalmatch.learn.payload.Bundle`. Output: a dict of metrics: the loss terms (as in
training, without augmentation), MAE of the continuous parameters (overall, per module, per
parameter; in unit [0, 1] values) and accuracy of the categorical ones (overall, per parameter).
MAE and accuracy count only the examples where a parameter is active
(:mod:`vitalmatch.synth.activity`); a parameter active nowhere has NaN. :func:`mean_baseline` gives
the same metrics for predicting the training mean / most frequent option, for comparison.

With several processes each takes every N-th example and the sums are all-reduced, so every
process returns the metrics of the whole split.
"""

from __future__ import annotations

from typing import Any

import torch

from vitalmatch.learn import distributed
from vitalmatch.learn.config import TrainConfig
from vitalmatch.learn.data import SplitData, StreamingSplit
from vitalmatch.learn.inputs import as_input, autocast, prepare
from vitalmatch.learn.losses import parameter_loss
from vitalmatch.learn.payload import Bundle
from vitalmatch.synth.params import ParamRegistry

#: The loss terms of :func:`~vitalmatch.learn.losses.parameter_loss`, in the order of the sums.
TERMS = ("loss", "continuous_mse", "categorical_ce")


def _groups(registry: ParamRegistry) -> dict[str, list[int]]:
    """Continuous columns by synth module (``osc_1``, ``filter_1``, ...)."""
    groups: dict[str, list[int]] = {}
    for j, s in enumerate(registry.continuous):
        groups.setdefault(s.module, []).append(j)
    return groups


@torch.no_grad()
def evaluate_split(
    model: torch.nn.Module,
    data: SplitData | StreamingSplit,
    bundle: Bundle,
    config: TrainConfig,
    device: torch.device,
    ddp: distributed.Dist,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Validation metrics of ``model`` on ``data`` (this process's share, all-reduced).

    Returns ``{"loss", "continuous_mse", "categorical_ce", "mae", "mae_group": {module: MAE},
    "mae_param": {name: MAE}, "accuracy", "accuracy_param": {name: acc}, "examples"}``. The model
    is in eval mode while it runs and in train mode afterwards.
    """
    model.eval()
    reg = bundle.registry
    c, k = len(reg.continuous), len(reg.categorical)
    sums = torch.zeros(4 + 2 * c + 2 * k, dtype=torch.float64)  # loss*n, mse*n, ce*n, n | |e|, cnt | hit, cnt
    weights = bundle.weights.to(device)
    for part in data.batches(ddp.rank, ddp.world, batch_size):  # preloaded or streamed (learn.data)
        batch = {key: v.to(device) for key, v in part.items()}
        x = prepare(batch, bundle)  # normalised log-mels, or an encoder arch's waveforms
        with autocast(config, device):
            out = model(as_input(x, config))
        terms = parameter_loss(out, batch, weights, config.loss())
        n = len(batch["continuous"])
        for i, name in enumerate(TERMS):
            sums[i] += float(terms[name]) * n
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
    sums = distributed.sum_all(sums, ddp, device)
    model.train()
    return _summarise(sums, reg)


def _summarise(sums: torch.Tensor, reg: ParamRegistry) -> dict[str, Any]:
    """Metrics from the sums of :func:`evaluate_split` (layout in its comment)."""
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
    (categorical) for every example, on ``val`` with the same masks (no loss terms)."""
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
    for key in TERMS:
        out.pop(key)
    return out
