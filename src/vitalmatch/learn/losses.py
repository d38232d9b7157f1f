"""Losses: predictions vs target parameters, masked by what can affect the audio.

Stage: learn. Input: the model's outputs (``"continuous"`` ``(B, C)`` in [0, 1], ``"categorical"``
a list of K ``(B, n_k)`` logits) and a batch with targets ``continuous`` ``(B, C)``,
``categorical`` ``(B, K)`` and masks ``cont_mask`` ``(B, C)``, ``cat_mask`` ``(B, K)``
(:mod:`vitalmatch.synth.activity`). Output: a flat dict of named scalar tensors; ``"loss"`` is the
weighted sum ``w_cont * continuous + w_cat * categorical``.

* continuous: importance-weighted MSE, ``sum(w_c m_bc (p_bc - t_bc)^2) / sum(w_c m_bc)``: each
  parameter weighs ``w_c`` (mean 1), masked entries weigh nothing;
* categorical: cross-entropy with label smoothing, averaged over the unmasked (example, head)
  pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossConfig:
    """Loss settings.

    Attributes:
        continuous_weight, categorical_weight: weights of the two terms in ``"loss"``.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        mask: apply the activity masks (False: every parameter counts in every example).
    """

    continuous_weight: float = 1.0
    categorical_weight: float = 0.1
    label_smoothing: float = 0.1
    mask: bool = True


def parameter_loss(
    outputs: dict,
    batch: dict[str, torch.Tensor],
    weights: torch.Tensor,
    config: LossConfig = LossConfig(),
) -> dict[str, torch.Tensor]:
    """Named loss terms (see the module docstring). ``weights`` is ``(C,)``."""
    pred = outputs["continuous"].float()
    target = batch["continuous"]
    zero = pred.new_zeros(())
    if pred.shape[1]:
        m = batch["cont_mask"].float() if config.mask else torch.ones_like(pred)
        w = weights.view(1, -1) * m
        cont = ((pred - target).square() * w).sum() / w.sum().clamp_min(1e-8)
    else:
        cont = zero
    logits = outputs["categorical"]
    if logits:
        terms, counts = [], []
        for k, lk in enumerate(logits):
            ce = F.cross_entropy(
                lk.float(),
                batch["categorical"][:, k],
                reduction="none",
                label_smoothing=config.label_smoothing,
            )
            m = batch["cat_mask"][:, k].float() if config.mask else torch.ones_like(ce)
            terms.append((ce * m).sum())
            counts.append(m.sum())
        cat = torch.stack(terms).sum() / torch.stack(counts).sum().clamp_min(1.0)
    else:
        cat = zero
    loss = config.continuous_weight * cont + config.categorical_weight * cat
    return {"loss": loss, "continuous_mse": cont.detach(), "categorical_ce": cat.detach()}
