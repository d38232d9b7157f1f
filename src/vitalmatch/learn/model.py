"""Model: log-mel spectrogram -> synth parameters (continuous values and categorical logits).

Stage: learn (the network only; losses, optimiser and loop live in :mod:`vitalmatch.learn.train`).
Input: normalised log-mels ``(B, 1, n_mels, frames)`` float32. Output: a dict with
``"continuous"`` ``(B, C)`` in [0, 1] (sigmoid) and ``"categorical"``, a list of K tensors
``(B, n_options_k)`` of logits.

The trunk is a ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition") adapted to
one input channel, written here because torchvision does not import with the CPU build of torch
this project installs. Its module names follow torchvision's ResNet (``conv1``, ``bn1``,
``layer1.0.conv1`` ... ``layer4``), so an ImageNet ResNet-18 state dict in torchvision's layout
loads with :func:`load_imagenet_weights` (the RGB ``conv1`` filters are averaged into one
channel; the ImageNet ``fc`` is dropped). Nothing is downloaded.

Presets (``ModelConfig.arch``):

=========  ===================  ==============  ==========================================
arch       blocks per stage     widths          use
=========  ===================  ==============  ==========================================
resnet18   2, 2, 2, 2           64 .. 512       GPUs; ImageNet weights can be loaded
slim18     2, 2, 2, 2           32 .. 256       mid-size
slim10     1, 1, 1, 1           32 .. 256       the CPU default (about 6x faster to train)
ast        transformer          768 (AST-base)  pretrained AST on its own 16 kHz fbank
mert       transformer          768 (MERT-95M)  pretrained MERT on 24 kHz waveforms
=========  ===================  ==============  ==========================================

The encoder archs (:data:`ENCODER_ARCHS`, built in :mod:`vitalmatch.learn.encoders`) take mono
waveforms ``(B, L)`` at the encoder's rate instead of log-mels (:attr:`ParamNet.input_rate`); their
transformers config is ``ModelConfig.encoder``, so a checkpoint rebuilds them without a download.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": ((2, 2, 2, 2), (64, 128, 256, 512)),
    "slim18": ((2, 2, 2, 2), (32, 64, 128, 256)),
    "slim10": ((1, 1, 1, 1), (32, 64, 128, 256)),
}

#: Pretrained-encoder archs (transformers trunks) and the sample rate (Hz) each takes; the names
#: are those of :data:`vitalmatch.learn.encoders.RATES`, repeated so this module imports nothing
#: of transformers until such a model is built.
ENCODER_ARCHS: dict[str, int] = {"ast": 16000, "mert": 24000}


@dataclass
class ModelConfig:
    """Network shape.

    Attributes:
        arch: "resnet18", "slim18", "slim10", "ast" or "mert" (see the module docstring).
        n_continuous: C, continuous parameters predicted.
        categorical_sizes: option count of each of the K categorical parameters.
        dropout: dropout before the heads.
        freeze: trunk stages whose weights are not trained, in order from the input:
            0 = none, 1 = ``conv1``/``bn1``, 2 = also ``layer1``, ... 5 = the whole trunk. For
            ast / mert: the first N transformer layers and the patch / feature embedding (0 = none).
        encoder: ast / mert: the transformers config as a dict (``ASTConfig`` / ``HubertConfig``
            values; missing keys take the AST-base / MERT-v1-95M defaults). Unused by the ResNets.
    """

    arch: str = "slim10"
    n_continuous: int = 0
    categorical_sizes: list[int] = field(default_factory=list)
    dropout: float = 0.1
    freeze: int = 0
    encoder: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.arch not in ARCHS and self.arch not in ENCODER_ARCHS:
            raise ValueError(
                f"unknown arch {self.arch!r}; choose one of {', '.join([*ARCHS, *ENCODER_ARCHS])}"
            )
        if not isinstance(self.encoder, dict):
            raise ValueError("encoder must be a dict of transformers config values")
        if self.n_continuous < 0 or any(k < 2 for k in self.categorical_sizes):
            raise ValueError("n_continuous must be >= 0 and every categorical needs >= 2 options")
        if self.n_continuous == 0 and not self.categorical_sizes:
            raise ValueError("the model predicts nothing: no continuous and no categorical parameters")
        layers = self.encoder.get("num_hidden_layers", 12) if self.arch in ENCODER_ARCHS else 5
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"encoder num_hidden_layers must be an integer >= 1, got {layers!r}")
        if not 0 <= self.freeze <= layers:
            raise ValueError(f"freeze must be 0..{layers} for arch {self.arch}, got {self.freeze}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (torchvision's ``BasicBlock`` layout)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ParamNet(nn.Module):
    """ResNet (or pretrained-encoder) trunk + one regression head (all continuous parameters) + one
    linear head per categorical parameter (their option counts differ).

    The ResNets take normalised log-mels ``(B, 1, n_mels, frames)``; ast / mert take mono waveforms
    ``(B, L)`` at :attr:`input_rate` Hz (the trunk is ``self.encoder``, an
    :mod:`~vitalmatch.learn.encoders` trunk).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.check()
        self.config = config
        self.encoder = None
        if config.arch in ENCODER_ARCHS:
            self._init_encoder(config)
            return
        blocks, widths = ARCHS[config.arch]
        self.conv1 = nn.Conv2d(1, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = widths[0]
        for i, (n, c) in enumerate(zip(blocks, widths, strict=True)):
            layers = [BasicBlock(c_in if j == 0 else c, c, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            c_in = c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.features = c_in
        self.continuous_head = nn.Linear(c_in, config.n_continuous) if config.n_continuous else None
        self.categorical_heads = nn.ModuleList(nn.Linear(c_in, k) for k in config.categorical_sizes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.apply_freeze()

    def _init_encoder(self, config: ModelConfig) -> None:
        from vitalmatch.learn.encoders import build_trunk

        self.encoder = build_trunk(config.arch, config.encoder)
        self.dropout = nn.Dropout(config.dropout)
        self.features = c_in = self.encoder.features
        self.continuous_head = nn.Linear(c_in, config.n_continuous) if config.n_continuous else None
        self.categorical_heads = nn.ModuleList(nn.Linear(c_in, k) for k in config.categorical_sizes)
        self.apply_freeze()

    @property
    def input_rate(self) -> int | None:
        """Sample rate (Hz) of the waveforms an encoder arch takes; None for the ResNets (log-mels)."""
        return ENCODER_ARCHS.get(self.config.arch)

    def trunk_stages(self) -> list[list[nn.Module]]:
        """The trunk's stages from the input: stem, layer1 .. layer4 (ast / mert: the frozen
        embedding and layers, one stage)."""
        if self.encoder is not None:
            return [self.encoder.frozen_modules(self.config.freeze)]
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def apply_freeze(self) -> None:
        """Stop gradients to the first ``config.freeze`` stages (their BatchNorms stay in eval
        mode through :meth:`train`; an encoder's frozen layers run without dropout)."""
        if self.encoder is not None:
            self.encoder.freeze(self.config.freeze)
            return
        for i, stage in enumerate(self.trunk_stages()):
            for m in stage:
                for p in m.parameters():
                    p.requires_grad_(i >= self.config.freeze)

    def train(self, mode: bool = True) -> ParamNet:
        super().train(mode)
        if self.encoder is not None:
            for m in self.trunk_stages()[0]:
                m.eval()
            return self
        for stage in self.trunk_stages()[: self.config.freeze]:
            for m in stage:
                m.eval()  # frozen BatchNorm statistics are not updated either
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, n_mels, frames)`` (ast / mert: ``(B, L)`` waveforms) -> ``(B, features)``
        pooled trunk features."""
        if self.encoder is not None:
            return self.encoder(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """``(B, 1, n_mels, frames)`` normalised log-mels (ast / mert: ``(B, L)`` waveforms at
        :attr:`input_rate`) -> predictions (see the module docstring)."""
        h = self.dropout(self.embed(x))
        cont = (
            torch.sigmoid(self.continuous_head(h))
            if self.continuous_head is not None
            else h.new_zeros(h.shape[0], 0)
        )
        return {"continuous": cont, "categorical": [head(h) for head in self.categorical_heads]}


def load_imagenet_weights(model: ParamNet, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy an ImageNet ResNet state dict (torchvision layout) into ``model``'s trunk.

    ``conv1.weight`` ``(64, 3, 7, 7)`` is averaged over its RGB axis; ``fc.*`` is skipped. Only
    the ``resnet18`` arch has matching shapes.

    Returns:
        The names of the tensors copied.

    Raises:
        ValueError: a tensor the trunk needs is missing or has another shape (one line).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    trunk = [k for k in own if not k.startswith(("continuous_head", "categorical_heads"))]
    copied = []
    for k in trunk:
        if k not in state:
            if k.endswith("num_batches_tracked"):
                continue
            raise ValueError(f"pretrained weights lack {k!r} (expected torchvision's ResNet-18 layout)")
        v = state[k]
        if k == "conv1.weight" and v.ndim == 4 and v.shape[1] == 3:
            v = v.mean(dim=1, keepdim=True)
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(
                f"pretrained tensor {k!r} has shape {tuple(v.shape)}, the model needs {tuple(own[k].shape)} "
                f"(ImageNet weights fit arch 'resnet18' only)"
            )
        own[k] = v.to(own[k].dtype)
        copied.append(k)
    model.load_state_dict(own)
    return copied
