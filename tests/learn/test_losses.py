"""Loss terms: masking, importance weights, label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitalmatch.learn.losses import LossConfig, parameter_loss


def _batch(b=4, c=3, sizes=(2, 5)):
    g = torch.Generator().manual_seed(0)
    return {
        "continuous": torch.rand(b, c, generator=g),
        "categorical": torch.stack([torch.randint(0, k, (b,), generator=g) for k in sizes], 1),
        "cont_mask": torch.ones(b, c, dtype=torch.bool),
        "cat_mask": torch.ones(b, len(sizes), dtype=torch.bool),
    }


def _outputs(b=4, c=3, sizes=(2, 5), seed=1):
    g = torch.Generator().manual_seed(seed)
    return {
        "continuous": torch.rand(b, c, generator=g),
        "categorical": [torch.randn(b, k, generator=g) for k in sizes],
    }


def test_perfect_prediction_and_known_values():
    batch, out = _batch(), _outputs()
    perfect = {**out, "continuous": batch["continuous"].clone()}
    terms = parameter_loss(perfect, batch, torch.ones(3), LossConfig(label_smoothing=0.0))
    assert float(terms["continuous_mse"]) == 0.0
    ce = torch.stack(
        [
            F.cross_entropy(o, batch["categorical"][:, k], reduction="none")
            for k, o in enumerate(out["categorical"])
        ],
        1,
    )
    torch.testing.assert_close(terms["categorical_ce"], ce.mean())
    torch.testing.assert_close(terms["loss"], 0.1 * ce.mean())


def test_masked_entries_do_not_count():
    batch, out = _batch(), _outputs()
    batch["cont_mask"][0, 1] = False
    batch["cat_mask"][2, 0] = False
    base = parameter_loss(out, batch, torch.ones(3))
    wild = {"continuous": out["continuous"].clone(), "categorical": [o.clone() for o in out["categorical"]]}
    wild["continuous"][0, 1] = 1 - batch["continuous"][0, 1]
    wild["categorical"][0][2] = (
        torch.tensor([50.0, -50.0]) if batch["categorical"][2, 0] == 1 else torch.tensor([-50.0, 50.0])
    )
    again = parameter_loss(wild, batch, torch.ones(3))
    torch.testing.assert_close(base["loss"], again["loss"])
    # Without masking the same changes do count.
    nomask = LossConfig(mask=False)
    assert float(parameter_loss(wild, batch, torch.ones(3), nomask)["loss"]) > float(
        parameter_loss(out, batch, torch.ones(3), nomask)["loss"]
    )


def test_importance_weights_scale_per_parameter():
    batch, out = _batch(), _outputs()
    err = (out["continuous"] - batch["continuous"]).square().mean(0)
    w = torch.tensor([3.0, 0.0, 0.0])
    torch.testing.assert_close(parameter_loss(out, batch, w)["continuous_mse"], err[0])


def test_label_smoothing_raises_the_loss_of_confident_right_answers():
    batch = _batch()
    logits = [F.one_hot(batch["categorical"][:, k], n).float() * 20 for k, n in enumerate((2, 5))]
    out = {"continuous": batch["continuous"], "categorical": logits}
    sharp = parameter_loss(out, batch, torch.ones(3), LossConfig(label_smoothing=0.0))["categorical_ce"]
    smooth = parameter_loss(out, batch, torch.ones(3), LossConfig(label_smoothing=0.2))["categorical_ce"]
    assert float(sharp) < 1e-6 < float(smooth)
