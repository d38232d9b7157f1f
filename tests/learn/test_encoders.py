"""Pretrained audio encoders (AST, MERT) as trunks: frontend numerics, MERT's weight layout, and
training / checkpoints / prediction through the real ``vitalmatch train`` CLI on a tiny dataset.

Every encoder is built from a tiny transformers config (no download); "pretrained" folders are
written here with ``save_pretrained`` (config.json + model.safetensors).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from vitalmatch.cli import main  # noqa: E402
from vitalmatch.learn import checkpoint, encoders  # noqa: E402
from vitalmatch.learn.model import ModelConfig, ParamNet  # noqa: E402

#: 2 layers of 32: an AST over 48 fbank frames (0.5 s at 16 kHz: the tiny dataset's clips).
TINY_AST = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_length=48
)
#: 2 layers of 32 on 3 small conv layers (12000 samples at 24 kHz -> 149 frames).
TINY_MERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=[16, 16, 16],
    conv_kernel=[10, 4, 4],
    conv_stride=[5, 4, 4],
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
TINY = {"ast": TINY_AST, "mert": TINY_MERT}


def _train(args: list[str]) -> None:
    """``vitalmatch train ARGS`` in this process (the real CLI entry point)."""
    main(
        ["train", *args, "--epochs", "1", "--batch-size", "4", "--threads", "1", "--no-progress"]
        + [
            "--logger",
            "none",
            "--n-mels",
            "64",
            "--n-fft",
            "1024",
            "--hop-length",
            "256",
            "--warmup-steps",
            "1",
        ]
    )


def _records(out, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _folder(tmp_path, arch: str, seed: int = 0):
    """A "pretrained" folder: a tiny transformers model with random weights, ``save_pretrained``."""
    torch.manual_seed(seed)
    trunk = encoders.build_trunk(arch, TINY[arch])
    folder = tmp_path / f"pretrained-{arch}"
    trunk.model.save_pretrained(folder)
    return folder, trunk


def test_torch_fbank_agrees_with_ast_feature_extractor():
    """The in-graph frontend against transformers' ASTFeatureExtractor on a tone + overtone and on
    noise: measured max |difference| 4e-5 (values of order 1), asserted below 2e-4."""
    from transformers import ASTFeatureExtractor

    sr = 16000
    t = np.arange(int(0.7 * sr)) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    noise = (0.1 * np.random.default_rng(0).standard_normal(int(0.3 * sr))).astype(np.float32)
    fe = ASTFeatureExtractor(max_length=60)
    for x in (tone, noise):  # 68 frames cropped to 60; 28 frames padded to 60
        ref = fe(x, sampling_rate=sr, return_tensors="np")["input_values"][0]
        mine = encoders.ast_fbank(torch.from_numpy(x)[None], encoders.kaldi_mel_filters(), 60)[0].numpy()
        assert mine.shape == ref.shape == (60, 128)
        assert np.abs(mine - ref).max() < 2e-4


@pytest.mark.parametrize("arch", ["ast", "mert"])
def test_encoder_model_shapes_and_freeze_count(arch):
    config = ModelConfig(arch=arch, n_continuous=3, categorical_sizes=[4, 2], encoder=TINY[arch], freeze=1)
    model = ParamNet(config).eval()
    rate = model.input_rate
    out = model(torch.randn(2, rate // 2))
    assert out["continuous"].shape == (2, 3) and out["continuous"].min() >= 0 and out["continuous"].max() <= 1
    assert [o.shape for o in out["categorical"]] == [(2, 4), (2, 2)]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    layers = "encoder.model.layers." if arch == "ast" else "encoder.model.encoder.layers."
    assert any(n.startswith(layers + "0.") for n in frozen)
    assert not any(n.startswith(layers + "1.") or "head" in n for n in frozen)
    with pytest.raises(ValueError, match="freeze must be 0..2"):
        ParamNet(ModelConfig(arch=arch, n_continuous=3, encoder=TINY[arch], freeze=3))


def test_mert_layout_state_dict_loads_onto_hubert(tmp_path):
    """A folder in MERT's layout (``model_type: mert_model``, MERT's extra config keys, the
    ``mert_model.`` prefix and the old ``weight_g``/``weight_v`` names) loads onto HubertModel and
    gives the saved model's outputs exactly."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = encoders.build_trunk("mert", TINY_MERT).eval()
    state = {}
    for k, v in src.model.state_dict().items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        state["mert_model." + k] = v.contiguous()
    folder = tmp_path / "mert"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    values = {
        **encoders.config_dict(src.model.config),
        "model_type": "mert_model",
        "architectures": ["MERTModel"],
        "auto_map": {"AutoModel": "modeling_MERT.MERTModel"},
        "feature_extractor_cqt": False,
        "deepnorm": False,
        "attention_relax": -1.0,
        "sample_rate": 24000,
    }
    (folder / "config.json").write_text(json.dumps(values))
    config, loaded = encoders.load_pretrained("mert", str(folder))
    trunk = encoders.build_trunk("mert", config).eval()
    trunk.load_backbone(loaded)
    x = torch.randn(2, 12000)
    with torch.no_grad():
        assert torch.equal(trunk(x), src(x))
    (folder / "config.json").write_text(json.dumps({**values, "feature_extractor_cqt": True}))
    with pytest.raises(ValueError, match="CQT"):
        encoders.load_pretrained("mert", str(folder))


def test_ast_checkpoint_in_transformers_4_layout_loads(tmp_path):
    """An ``ASTForAudioClassification`` folder saved by transformers 4 (the hub's AST layout:
    ``audio_spectrogram_transformer.encoder.layer.N.attention.attention.query`` ..., a classifier)
    loads onto transformers 5's ASTModel with the same outputs."""
    import re

    from safetensors.torch import save_file

    torch.manual_seed(2)
    src = encoders.build_trunk("ast", TINY_AST).eval()
    legacy = {
        "attention.q_proj.": "attention.attention.query.",
        "attention.k_proj.": "attention.attention.key.",
        "attention.v_proj.": "attention.attention.value.",
        "attention.o_proj.": "attention.output.dense.",
        "mlp.fc1.": "intermediate.dense.",
        "mlp.fc2.": "output.dense.",
        "layernorm_before.": "layernorm_before.",
        "layernorm_after.": "layernorm_after.",
    }
    state = {"classifier.dense.weight": torch.zeros(5, 32)}
    for k, v in src.model.state_dict().items():
        m = re.match(r"layers\.(\d+)\.(.*)", k)
        if m:
            rest = m.group(2)
            for new, old in legacy.items():
                if rest.startswith(new):
                    rest = old + rest[len(new) :]
            k = f"encoder.layer.{m.group(1)}.{rest}"
        state["audio_spectrogram_transformer." + k] = v.contiguous()
    folder = tmp_path / "ast"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps({**encoders.config_dict(src.model.config), "model_type": "audio-spectrogram-transformer"})
    )
    config, loaded = encoders.load_pretrained("ast", str(folder))
    trunk = encoders.build_trunk("ast", config).eval()
    trunk.load_backbone(loaded)
    x = torch.randn(2, 8000)
    with torch.no_grad():
        assert torch.equal(trunk(x), src(x))


@pytest.fixture(scope="module")
def ast_run(tiny_dataset, tmp_path_factory):
    """One epoch (5 steps) of ``train --arch ast`` from a tiny ``--encoder-config``."""
    root = tmp_path_factory.mktemp("ast")
    (root / "ast.json").write_text(json.dumps(TINY_AST))
    out = root / "run"
    _train(["--data", str(tiny_dataset), "--out", str(out), "--arch", "ast", "--encoder-config",
            str(root / "ast.json"), "--lr", "3e-4"])  # fmt: skip
    return out


def test_ast_trains_through_the_cli_and_checkpoints_round_trip(ast_run, tmp_path):
    train = _records(ast_run, "train")
    assert train and all(math.isfinite(r["loss"]) for r in train)
    val = _records(ast_run, "val")[-1]
    assert math.isfinite(val["loss"]) and val["examples"] > 0
    ckpt = checkpoint.load(ast_run / "last.pt")
    assert ckpt["model_config"]["arch"] == "ast" and ckpt["model_config"]["encoder"]["hidden_size"] == 32
    a = checkpoint.build_model(ckpt).eval()
    checkpoint.save(tmp_path / "copy.pt", {k: v for k, v in ckpt.items() if k not in ("format", "version")})
    b = checkpoint.build_model(checkpoint.load(tmp_path / "copy.pt")).eval()
    x = torch.randn(3, 8000)
    with torch.no_grad():
        assert torch.equal(a(x)["continuous"], b(x)["continuous"])


def test_predictor_predicts_from_audio_with_an_ast_checkpoint(ast_run):
    from vitalmatch.data.reader import DatasetReader
    from vitalmatch.learn.predict import Predictor

    pred = Predictor(ast_run / "last.pt")
    data = checkpoint.load(ast_run / "last.pt")["train"]["config"]["data"]
    with DatasetReader(data) as reader:
        clip = reader.audio(int(reader.split_indices("val")[0])).mean(axis=0)
        rate = reader.sample_rate
    p = pred.predict_audio(clip, rate)
    assert p.continuous.shape == (len(pred.full_registry.continuous),)
    assert np.all((p.continuous >= 0) & (p.continuous <= 1))
    # The same as the network on the clip resampled to 16 kHz by the training data path's function.
    x = np.zeros(pred.input_samples, np.float32)
    x[: min(len(clip), len(x))] = clip[: len(x)]
    wave = torch.from_numpy(encoders.resample(x[None], rate, 16000))
    with torch.no_grad():
        direct = pred.model(wave)["continuous"][0].numpy()
    assert np.allclose(p.continuous[pred._ci], direct, atol=1e-6)
    assert p.probabilities and all(abs(v.sum() - 1) < 1e-5 for v in p.probabilities.values())


def test_pretrained_folder_loads_and_freeze_keeps_those_layers(tiny_dataset, tmp_path):
    """``--arch mert --pretrained DIR --freeze 1 --stream on``: the run starts from the folder's
    weights (outputs equal the saved model's) and after training the feature encoder and layer 0
    are still the folder's while layer 1 moved."""
    from vitalmatch.learn.config import TrainConfig
    from vitalmatch.learn.train import _setup

    folder, src = _folder(tmp_path, "mert")
    common = dict(data=str(tiny_dataset), arch="mert", pretrained=str(folder), threads=1, progress=False,
                  logger="none", n_mels=64, n_fft=1024, hop_length=256, batch_size=4)  # fmt: skip
    run = _setup(TrainConfig(out=str(tmp_path / "setup"), **common), resume=False, overwrite=False)
    x = torch.randn(2, 12000)
    src.eval()
    run.model.eval()
    with torch.no_grad():
        assert torch.equal(run.model.encoder(x), src(x))
    run.logger.close()

    out = tmp_path / "run"
    _train(["--data", str(tiny_dataset), "--out", str(out), "--arch", "mert", "--pretrained", str(folder),
            "--freeze", "1", "--stream", "on", "--loader-workers", "0", "--lr", "1e-3"])  # fmt: skip
    assert all(math.isfinite(r["loss"]) for r in _records(out, "train"))
    trained = checkpoint.load(out / "last.pt")["model"]
    saved = src.model.state_dict()
    for k, v in saved.items():
        if k.startswith(("feature_extractor.", "feature_projection.", "encoder.layers.0.")):
            assert torch.equal(trained["encoder.model." + k], v), k
    moved = [
        k
        for k in saved
        if k.startswith("encoder.layers.1.") and not torch.equal(trained["encoder.model." + k], saved[k])
    ]
    assert moved


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "vitalmatch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def _error_line(capsys, args: list[str]) -> str:
    """The CLI's stderr for ``args`` (run in this process), which must fail with exit status 1."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_missing_folder_and_offline_hub_id_are_one_line(tiny_dataset, tmp_path, capsys):
    base = ["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), "--arch", "ast"]
    assert "does not exist" in _error_line(capsys, [*base, "--pretrained", str(tmp_path / "nowhere")])
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text("{}")
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    assert "is a pickle and is not read" in _error_line(
        capsys, [*base, "--pretrained", str(tmp_path / "bin")]
    )
    # A hub id without the network: a fresh process, so that huggingface_hub sees HF_HUB_OFFLINE.
    r = _cli(*base, "--pretrained", "MIT/ast-finetuned-audioset-10-10-0.4593", env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "could not be fetched" in r.stderr
