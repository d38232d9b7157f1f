"""Pretrained audio encoders as trunks of the network: AST and MERT (transformers' modules).

Stage: learn (the network's trunk for ``--arch ast`` / ``--arch mert``). Input: mono waveforms
``(B, L)`` float32 at the encoder's rate (:data:`RATES`: 16 kHz for AST, 24 kHz for MERT).
Output: pooled features ``(B, hidden_size)`` for the heads of
:class:`~vitalmatch.learn.model.ParamNet`.

* **AST** (Gong et al. 2021, "AST: Audio Spectrogram Transformer"): transformers' ``ASTModel``
  on its own frontend, :func:`ast_fbank`: a 128-bin Kaldi-style log-mel filterbank at 16 kHz
  (25 ms Hann window, 10 ms hop, 512-point FFT, DC removal and pre-emphasis per frame, mel
  filters triangular in Kaldi's mel scale from 20 Hz to 8 kHz), padded / cropped to the config's
  ``max_length`` frames and normalised with AudioSet's mean and std, as
  ``transformers.ASTFeatureExtractor`` computes it, but in torch (on the model's device, in the
  graph). The pooled output (mean of the CLS and distillation tokens) goes to the heads.
* **MERT** (Li et al. 2023, "MERT: Acoustic Music Understanding Model with Large-Scale
  Self-supervised Training"): a HuBERT-style encoder on 24 kHz waveforms, here transformers'
  ``HubertModel``. Each waveform is normalised to zero mean and unit variance (as MERT's
  ``Wav2Vec2FeatureExtractor`` does); a learned softmax-weighted sum of *all* hidden states (the
  projected features and every layer's output) is averaged over time.

MERT's own code (``modeling_MERT.py`` on the hub) needs ``trust_remote_code``; it subclasses
``HubertModel`` and keeps HuBERT's module names (``feature_extractor.conv_layers.N``,
``feature_projection.{layer_norm,projection}``, ``masked_spec_embed``,
``encoder.{pos_conv_embed.conv,layer_norm,layers.N}``), so a MERT folder loads onto
``HubertModel`` by name (:func:`map_mert_keys`: prefixes dropped, the old weight-norm names
``weight_g``/``weight_v`` renamed). Its variants with modules HuBERT lacks (``feature_extractor_cqt``,
``deepnorm``, ``attention_relax``) are refused with one line.

Pretrained weights (:func:`load_pretrained`) come from a local folder as ``save_pretrained``
writes it (``config.json`` + ``model.safetensors``; safetensors only, so loading never runs
code) or a hub id, which needs the network. Without them the encoder is built from its config
(:func:`encoder_config`: the real AST-base / MERT-v1-95M sizes unless overridden).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: The encoder archs and the sample rate (Hz) each takes.
RATES: dict[str, int] = {"ast": 16000, "mert": 24000}

#: AST-base (``MIT/ast-finetuned-audioset-10-10-0.4593``): 12 layers of 768, 16x16 patches at
#: stride 10, 1024 frames (10.24 s).
AST_DEFAULT: dict[str, Any] = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    patch_size=16,
    frequency_stride=10,
    time_stride=10,
    max_length=1024,
    num_mel_bins=128,
)

#: MERT-v1-95M: HuBERT-base sizes (12 layers of 768; 7 conv layers, 320x down-sampling: 75 frames
#: per second at 24 kHz).
MERT_DEFAULT: dict[str, Any] = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    feat_extract_norm="group",
    conv_dim=[512] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    conv_bias=False,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    do_stable_layer_norm=False,
    feat_proj_layer_norm=True,
    mask_time_prob=0.05,
    mask_time_length=5,
    layerdrop=0.0,
)

#: ASTFeatureExtractor's normalisation (AudioSet statistics): ``(fbank - mean) / (2 * std)``.
AST_MEAN, AST_STD = -4.2677393, 4.5689974
#: Its frontend: 25 ms window, 10 ms hop, 512-point FFT at 16 kHz, floor of the mel energies.
AST_WINDOW, AST_HOP, AST_FFT, AST_FLOOR = 400, 160, 512, 1.192092955078125e-07


# ------------------------------------------------------------------------------------ configs
def encoder_config(arch: str, values: dict[str, Any] | None = None):
    """The transformers config of ``arch``: ``values`` (a config dict, e.g. a ``config.json``'s)
    over the defaults (:data:`AST_DEFAULT` / :data:`MERT_DEFAULT`). ``ValueError`` (one line) for an
    unknown arch or a MERT variant HuBERT's modules cannot hold."""
    from transformers import ASTConfig, HubertConfig

    values = {k: v for k, v in (values or {}).items() if k not in ("architectures", "auto_map", "model_type")}
    if arch == "ast":
        return ASTConfig(**{**AST_DEFAULT, **values})
    if arch == "mert":
        if values.get("feature_extractor_cqt") or values.get("deepnorm"):
            raise ValueError("this MERT variant (CQT features or deepnorm) has modules HubertModel lacks")
        if float(values.get("attention_relax", -1.0)) > 0:
            raise ValueError(
                "this MERT variant (attention_relax > 0) changes attention; HubertModel cannot load it"
            )
        # HuBERT's own time masking in training draws from numpy's global random state, which
        # would break exact resume; vitalmatch's augmentation applies instead. ``masked_spec_embed``
        # is still built (mask_time_prob > 0), so MERT's weights load.
        return HubertConfig(**{**MERT_DEFAULT, **values, "apply_spec_augment": False})
    raise ValueError(f"unknown encoder arch {arch!r}; choose one of {', '.join(RATES)}")


def config_dict(config) -> dict[str, Any]:
    """A transformers config as plain JSON values (what ``ModelConfig.encoder`` and a checkpoint hold)."""
    return json.loads(config.to_json_string(use_diff=False))


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The dict in a ``config.json`` (``--encoder-config``); ``ValueError`` (one line) if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--encoder-config {path} does not exist")
    try:
        values = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--encoder-config {path} is not a JSON file ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--encoder-config {path} does not hold a JSON object")
    return values


# ------------------------------------------------------------------------------------ resampling
def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Mono waveforms at the encoder's rate: ``(..., channels, T)`` or ``(N, T)`` float32 at
    ``rate_in`` -> ``(N, L)`` float32 at ``rate_out`` (channels averaged, as the log-mels do).

    Resampling runs here, on numpy with soxr (its "HQ" quality), once per clip as the data is
    loaded (and in prediction), not in the network: the dataset's 44.1 kHz clips are stored at the
    encoder's lower rate (a 2 s clip at 16 kHz is 64 kB in float16), the training step spends no
    time on it, and training and prediction share this one function. ``L = ceil(T * rate_out /
    rate_in)`` (soxr's length).
    """
    import soxr

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 3:
        x = x.mean(axis=1)
    if x.ndim == 1:
        x = x[None]
    if rate_in == rate_out:
        return np.ascontiguousarray(x, dtype=np.float32)
    # soxr resamples (T, channels) arrays in one call: every clip of the block is one channel.
    y = soxr.resample(np.ascontiguousarray(x.T), rate_in, rate_out)
    return np.ascontiguousarray(np.asarray(y, dtype=np.float32).T.reshape(x.shape[0], -1))


# ------------------------------------------------------------------------------------ AST frontend
def kaldi_mel_filters(
    n_mels: int = 128, n_fft: int = AST_FFT, sample_rate: int = 16000, fmin: float = 20.0
) -> torch.Tensor:
    """Kaldi's mel filterbank ``(n_fft // 2 + 1, n_mels)`` float32: triangles in the mel scale
    ``1127 ln(1 + f / 700)`` with edges evenly spaced from ``fmin`` to Nyquist, unnormalised (as
    ``transformers.audio_utils.mel_filter_bank(..., mel_scale="kaldi",
    triangularize_in_mel_space=True)`` and torchaudio's ``kaldi.fbank`` build it)."""

    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    edges = np.linspace(mel(fmin), mel(sample_rate / 2), n_mels + 2)
    bins = mel(sample_rate / n_fft * np.arange(n_fft // 2 + 1))[:, None]
    left, centre, right = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rise = (bins - left) / (centre - left)
    fall = (right - bins) / (right - centre)
    return torch.from_numpy(np.maximum(0.0, np.minimum(rise, fall)).astype(np.float32))


def ast_fbank(
    wave: torch.Tensor, filters: torch.Tensor, max_length: int, *, normalise: bool = True
) -> torch.Tensor:
    """AST's input: ``(B, L)`` waveforms at 16 kHz -> ``(B, max_length, n_mels)`` float32.

    Frames of 400 samples every 160 (no centring: ``1 + (L - 400) // 160`` frames), each with its
    mean removed, pre-emphasised (``y[n] = x[n] - 0.97 x[n-1]``, ``y[0] = 0.03 x[0]``), multiplied
    by a symmetric 400-point Hann window and zero-padded to 512 for the FFT; power spectrum ->
    ``filters`` (:func:`kaldi_mel_filters`) -> ``log(max(energy, 1.19e-7))``. Frames beyond
    ``max_length`` are dropped, missing ones are zeros (before the normalisation, as
    ``ASTFeatureExtractor`` pads); then ``(x - mean) / (2 std)`` with AudioSet's statistics.
    Computed with ``torch.fft.rfft`` on explicit frames rather than ``torch.stft``, because the
    DC removal and pre-emphasis are per frame. Always float32 (outside autocast).
    """
    with torch.autocast(wave.device.type, enabled=False):
        x = wave.float()
        if x.shape[-1] < AST_WINDOW:
            x = nn.functional.pad(x, (0, AST_WINDOW - x.shape[-1]))
        frames = x.unfold(-1, AST_WINDOW, AST_HOP)  # (B, F, 400)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        frames = torch.cat([frames[..., :1] * (1 - 0.97), frames[..., 1:] - 0.97 * frames[..., :-1]], dim=-1)
        window = torch.hann_window(AST_WINDOW, periodic=False, dtype=torch.float64, device=x.device)
        frames = frames * window.float()
        power = torch.fft.rfft(frames, n=AST_FFT).abs().pow(2)  # (B, F, 257)
        fbank = torch.log((power @ filters.to(power.device)).clamp_min(AST_FLOOR))
        n = fbank.shape[1]
        if n >= max_length:
            fbank = fbank[:, :max_length]
        else:
            fbank = nn.functional.pad(fbank, (0, 0, 0, max_length - n))
        return (fbank - AST_MEAN) / (2 * AST_STD) if normalise else fbank


# ------------------------------------------------------------------------------------ trunks
class _Trunk(nn.Module):
    """What both trunks share: the transformers model in ``self.model``, freezing, ``features``."""

    arch: str
    model: nn.Module

    @property
    def features(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def stem(self) -> list[nn.Module]:
        raise NotImplementedError

    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def frozen_modules(self, n: int) -> list[nn.Module]:
        """The stem (patch / feature embedding) and the first ``n`` transformer layers; nothing for 0."""
        return [*self.stem(), *list(self.layers())[:n]] if n > 0 else []

    def freeze(self, n: int) -> None:
        """Stop gradients to :meth:`frozen_modules` ``(n)`` (the rest train)."""
        if not 0 <= n <= self.n_layers:
            raise ValueError(f"freeze must be 0..{self.n_layers} for this {self.arch} encoder, got {n}")
        for p in self.parameters():
            p.requires_grad_(True)
        for m in self.frozen_modules(n):
            for p in m.parameters():
                p.requires_grad_(False)

    def load_backbone(self, state: dict[str, torch.Tensor]) -> None:
        """Load a pretrained state dict (transformers' names, prefixes dropped) into ``self.model``.
        Every tensor the model has must be there with its shape; extra ones (a classifier, a
        pre-training head) are ignored. ``ValueError`` (one line) otherwise."""
        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(
                f"the pretrained weights lack {len(missing)} of the {self.arch} encoder's tensors, "
                f"e.g. {missing[0]!r}"
            )
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(
                    f"pretrained tensor {k!r} has shape {tuple(state[k].shape)}, "
                    f"the encoder needs {tuple(v.shape)}"
                )
        self.model.load_state_dict({k: state[k].to(v.dtype) for k, v in own.items()})


class _Stem(nn.Module):
    """A parameter wrapped as a module (HuBERT's ``masked_spec_embed``), so freezing treats it alike."""

    def __init__(self, p: nn.Parameter) -> None:
        super().__init__()
        self._p = [p]

    def parameters(self, recurse: bool = True):  # noqa: ARG002 - the wrapped parameter only
        return iter(self._p)


class ASTTrunk(_Trunk):
    """``ASTModel`` on :func:`ast_fbank`: ``(B, L)`` 16 kHz waveforms -> ``(B, hidden_size)``
    pooled output."""

    arch = "ast"

    def __init__(self, config) -> None:
        super().__init__()
        from transformers import ASTModel

        self.model = ASTModel(config)
        # Not in the state dict: rebuilt from the config, so pretrained weights load by name.
        self.register_buffer("mel_filters", kaldi_mel_filters(config.num_mel_bins), persistent=False)

    def stem(self) -> list[nn.Module]:
        return [self.model.embeddings]

    def layers(self) -> nn.ModuleList:
        return self.model.layers

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = ast_fbank(wave, self.mel_filters, int(self.model.config.max_length))
        return self.model(input_values=x.to(next(self.model.parameters()).dtype)).pooler_output


class MERTTrunk(_Trunk):
    """``HubertModel`` on normalised 24 kHz waveforms: ``(B, L)`` -> ``(B, hidden_size)``, the
    softmax(``layer_weights``)-weighted sum of all ``num_hidden_layers + 1`` hidden states, averaged
    over time."""

    arch = "mert"

    def __init__(self, config) -> None:
        super().__init__()
        from transformers import HubertModel

        self.model = HubertModel(config)
        self.layer_weights = nn.Parameter(torch.zeros(config.num_hidden_layers + 1))

    def stem(self) -> list[nn.Module]:
        m = self.model
        parts = [m.feature_extractor, m.feature_projection, m.encoder.pos_conv_embed, m.encoder.layer_norm]
        if getattr(m, "masked_spec_embed", None) is not None:
            parts.append(_Stem(m.masked_spec_embed))
        return parts

    def layers(self) -> nn.ModuleList:
        return self.model.encoder.layers

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = wave.float()
        # Wav2Vec2FeatureExtractor's zero_mean_unit_var_norm: per example, population variance.
        x = (x - x.mean(dim=-1, keepdim=True)) / torch.sqrt(
            x.var(dim=-1, keepdim=True, unbiased=False) + 1e-7
        )
        out = self.model(x, output_hidden_states=True)
        hidden = torch.stack(out.hidden_states, dim=0)  # (layers + 1, B, frames, hidden)
        w = torch.softmax(self.layer_weights.float(), dim=0).to(hidden.dtype)
        return (w.view(-1, 1, 1, 1) * hidden).sum(dim=0).mean(dim=1)


def build_trunk(arch: str, values: dict[str, Any] | None) -> _Trunk:
    """The trunk of ``arch`` built from config values (:func:`encoder_config`), random weights."""
    config = encoder_config(arch, values)
    return ASTTrunk(config) if arch == "ast" else MERTTrunk(config)


# ------------------------------------------------------------------------------------ pretrained
#: Prefixes the saved models put before the base model's names (classification wrappers, MERT's
#: ``base_model_prefix``, HuBERT's).
_PREFIXES = ("audio_spectrogram_transformer.", "mert_model.", "hubert.", "model.")


#: AST checkpoints saved before transformers 5 (the hub's ``MIT/ast-*``) name the layers in ViT's
#: layout; transformers 5's ``ASTModel`` uses these names instead.
_AST_LEGACY = (
    (re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.query\."), r"layers.\1.attention.q_proj."),
    (re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.key\."), r"layers.\1.attention.k_proj."),
    (re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.value\."), r"layers.\1.attention.v_proj."),
    (re.compile(r"^encoder\.layer\.(\d+)\.attention\.output\.dense\."), r"layers.\1.attention.o_proj."),
    (re.compile(r"^encoder\.layer\.(\d+)\.intermediate\.dense\."), r"layers.\1.mlp.fc1."),
    (re.compile(r"^encoder\.layer\.(\d+)\.output\.dense\."), r"layers.\1.mlp.fc2."),
    (re.compile(r"^encoder\.layer\.(\d+)\.layernorm_(before|after)\."), r"layers.\1.layernorm_\2."),
)


def map_ast_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An AST state dict (``ASTForAudioClassification``'s or ``ASTModel``'s, transformers 4 or 5
    names) -> transformers 5 ``ASTModel``'s names: the wrapper's prefix dropped, the ViT-style
    layer names (``encoder.layer.N.attention.attention.query``, ``intermediate.dense``, ...) renamed
    (``layers.N.attention.q_proj``, ``mlp.fc1``, ...). A classifier's tensors pass through (and
    are then ignored)."""
    out = {}
    for k, v in strip_prefixes(state).items():
        for pattern, repl in _AST_LEGACY:
            k = pattern.sub(repl, k)
        out[k] = v
    return out


def map_mert_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A MERT (or HuBERT) state dict -> ``HubertModel``'s names: a wrapper's prefix dropped and
    the positional convolution's weight norm renamed from the old ``weight_g``/``weight_v`` to
    ``parametrizations.weight.original0/1`` (what ``torch.nn.utils.parametrizations.weight_norm``
    names them)."""
    out = {}
    for k, v in strip_prefixes(state).items():
        k = k.replace("pos_conv_embed.conv.weight_g", "pos_conv_embed.conv.parametrizations.weight.original0")
        k = k.replace("pos_conv_embed.conv.weight_v", "pos_conv_embed.conv.parametrizations.weight.original1")
        out[k] = v
    return out


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a wrapper's prefix (:data:`_PREFIXES`) from every name that has it."""
    out = {}
    for k, v in state.items():
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
                break
        out[k] = v
    return out


def load_pretrained(arch: str, source: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``--pretrained`` for an encoder: ``(config dict, state dict with the model's names)``.

    ``source`` is a local folder with ``config.json`` and ``model.safetensors`` (as
    ``save_pretrained`` writes them), or a hub id (``MIT/ast-finetuned-audioset-10-10-0.4593``,
    ``m-a-p/MERT-v1-95M``), fetched with ``huggingface_hub`` (online only). ``ValueError`` (one
    line) for a missing folder, an unreachable hub, a folder without safetensors weights (a
    ``pytorch_model.bin`` is a pickle and is not read), or weights that do not load.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(source)
    if not folder.exists():
        looks_like_id = source.count("/") == 1 and not source.startswith((".", "/", "~"))
        if not looks_like_id:
            raise ValueError(
                f"--pretrained {source} does not exist (a folder saved with save_pretrained, or a hub id)"
            )
        folder = _download(source)
    if not folder.is_dir():
        raise ValueError(
            f"--pretrained {source} is a file; for --arch {arch} give a folder saved with save_pretrained"
        )
    if not (folder / "config.json").is_file():
        raise ValueError(f"--pretrained {source} has no config.json")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        extra = (
            " (pytorch_model.bin is a pickle and is not read; convert it to safetensors)"
            if (folder / "pytorch_model.bin").exists()
            else ""
        )
        raise ValueError(f"--pretrained {source} has no model.safetensors{extra}")
    try:
        values = json.loads((folder / "config.json").read_text())
        state = load_file(str(weights))
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise ValueError(f"--pretrained {source} is not readable ({str(e).splitlines()[0][:160]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"--pretrained {source}: config.json does not hold a JSON object")
    config = encoder_config(arch, values)
    state = map_mert_keys(state) if arch == "mert" else map_ast_keys(state)
    build_trunk(arch, config_dict(config)).load_backbone(state)  # fails here, before any data is read
    return config_dict(config), state


def _download(repo_id: str) -> Path:
    """The hub snapshot of ``repo_id`` (config and safetensors only); one line when offline."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id, allow_patterns=["config.json", "model.safetensors"])
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, no access: all one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"--pretrained {repo_id}: not a local folder and the hub id could not be fetched "
            f"(offline? {first[:120]})"
        ) from None
    return Path(path)


def n_frames_out(arch: str, config, samples: int) -> int:
    """Frames the encoder sees for ``samples`` input samples (for docs and benchmarks): AST's
    fbank frames (before padding to ``max_length``), MERT's conv-stack frames."""
    if arch == "ast":
        return 1 + max(samples - AST_WINDOW, 0) // AST_HOP
    n = samples
    for k, s in zip(config.conv_kernel, config.conv_stride, strict=True):
        n = math.floor((n - k) / s) + 1
    return n
