"""The network: shapes, ranges, frozen stages, ImageNet weight loading."""

from __future__ import annotations

import pytest
import torch

from vitalmatch.learn.model import ARCHS, ModelConfig, ParamNet, load_imagenet_weights

SIZES = [2, 8, 28, 14]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_shapes_and_ranges(arch):
    model = ParamNet(ModelConfig(arch=arch, n_continuous=7, categorical_sizes=SIZES)).eval()
    x = torch.randn(3, 1, 64, 44) * 5
    out = model(x)
    assert out["continuous"].shape == (3, 7)
    assert out["continuous"].min() >= 0 and out["continuous"].max() <= 1
    assert [tuple(t.shape) for t in out["categorical"]] == [(3, k) for k in SIZES]
    # Any clip length: the trunk pools over time.
    assert model(torch.randn(2, 1, 64, 173))["continuous"].shape == (2, 7)


def test_channels_last_gives_the_same_output():
    model = ParamNet(ModelConfig(n_continuous=5, categorical_sizes=[3])).eval()
    x = torch.randn(2, 1, 32, 40)
    a = model(x)["continuous"]
    b = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))[
        "continuous"
    ]
    torch.testing.assert_close(a, b)


def test_freeze_stops_gradients_and_batchnorm_updates():
    model = ParamNet(ModelConfig(n_continuous=4, categorical_sizes=[3], freeze=2)).train()
    before = model.bn1.running_mean.clone()
    out = model(torch.randn(4, 1, 32, 40))
    (out["continuous"].sum() + out["categorical"][0].sum()).backward()
    assert model.conv1.weight.grad is None and model.layer1[0].conv1.weight.grad is None
    assert model.layer2[0].conv1.weight.grad is not None
    assert torch.equal(model.bn1.running_mean, before)  # frozen BatchNorm stays in eval mode


def test_load_imagenet_weights_averages_rgb():
    model = ParamNet(ModelConfig(arch="resnet18", n_continuous=3, categorical_sizes=[2]))
    state = {k: torch.randn_like(v.float()) for k, v in model.state_dict().items() if "head" not in k}
    state["conv1.weight"] = torch.randn(64, 3, 7, 7)
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    copied = load_imagenet_weights(model, state)
    assert "conv1.weight" in copied and not any(k.startswith("fc") for k in copied)
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"].mean(1, keepdim=True))
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    slim = ParamNet(ModelConfig(arch="slim10", n_continuous=3, categorical_sizes=[2]))
    with pytest.raises(ValueError, match="fit arch 'resnet18' only"):
        load_imagenet_weights(slim, state)
    with pytest.raises(ValueError, match="lack"):
        load_imagenet_weights(model, {"conv1.weight": state["conv1.weight"]})


def test_bad_configs():
    with pytest.raises(ValueError, match="unknown arch"):
        ParamNet(ModelConfig(arch="vgg", n_continuous=1))
    with pytest.raises(ValueError, match="predicts nothing"):
        ParamNet(ModelConfig())
