"""Model files: a checkpoint's weights and what prediction needs as safetensors (no pickle), read
back into the same checked dict; top-K candidates from the network."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests.processes import cli_in_process, run_cli
from vitalmatch.learn import checkpoint
from vitalmatch.learn.predict import Predictor


@pytest.fixture(scope="module")
def model_file(tiny_eval_checkpoint, tmp_path_factory):
    """``vitalmatch export-model`` of the tiny training run (float32)."""
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    checkpoint.save_model(path, checkpoint.load(tiny_eval_checkpoint))
    return path


@pytest.fixture(scope="module")
def clip():
    """1 s of a decaying 220 Hz tone with a little noise at 22.05 kHz (the tiny model's rate)."""
    sr = 22050
    t = np.arange(sr) / sr
    rng = np.random.default_rng(0)
    x = 0.4 * np.sin(2 * np.pi * 220 * t) * np.exp(-2 * t) + 0.01 * rng.standard_normal(sr)
    return x.astype(np.float32), sr


def _rewrite(src, dst, *, tensors=None, meta=None):
    """Copy model file ``src`` to ``dst`` with ``tensors(dict)`` / ``meta(dict)`` edits in place,
    as a crafted file would be written."""
    with safe_open(str(src), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not iterable
        m = dict(f.metadata())
    if tensors:
        tensors(t)
    if meta:
        meta(m)
    save_file(t, dst, metadata=m)
    return dst


def test_export_round_trip_gives_identical_predictions(tiny_eval_checkpoint, tmp_path, clip, capsys):
    """``export-model`` writes weights only: the file reloads into the checkpoint's entries (no
    training state, a card added) and predicts exactly what the checkpoint predicts."""
    out = tmp_path / "m.safetensors"
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"data": "tiny eval set", "metrics": {"val_mae": 0.2}}))
    run = cli_in_process(capsys, "export-model", tiny_eval_checkpoint, "-o", out, "--card", card)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout
    with open(out, "rb") as f:
        assert f.read(2) != b"PK"  # not a torch zip (pickle inside)
    ck, mf = checkpoint.load(tiny_eval_checkpoint), checkpoint.load(out)
    assert "train" in ck and "train" not in mf
    assert mf["format"] == checkpoint.MODEL_FORMAT
    assert mf["card"]["data"] == "tiny eval set" and mf["card"]["steps"] == ck["train"]["state"]["step"]
    for key in ("model_config", "registry_json", "full_registry_json", "features", "input_frames"):
        assert mf[key] == ck[key], key
    # the catalog travels as an xz-compressed tensor, not as header text, and comes back equal
    with safe_open(str(out), framework="pt") as f:
        assert "wavetables_json" not in (f.metadata() or {}) and "wavetables_json.xz" in set(f.keys())
    assert mf["wavetables_json"] == ck["wavetables_json"]
    for key in checkpoint.MODEL_TENSORS:
        assert torch.equal(mf[key], ck[key]), key
    assert mf["model"].keys() == ck["model"].keys()
    assert all(torch.equal(mf["model"][k], ck["model"][k]) for k in ck["model"])
    a = Predictor(tiny_eval_checkpoint).predict_audio(*clip)
    b = Predictor(out).predict_audio(*clip)
    np.testing.assert_array_equal(a.continuous, b.continuous)
    np.testing.assert_array_equal(a.categorical, b.categorical)
    # detected by content: the same file named .pt is a model file too; it cannot be resumed
    renamed = tmp_path / "model.pt"
    renamed.write_bytes(out.read_bytes())
    loaded = checkpoint.load(renamed)
    with pytest.raises(ValueError, match="is a model file .* cannot be resumed"):
        checkpoint.check_resumable(loaded, renamed)
    again = cli_in_process(capsys, "export-model", tiny_eval_checkpoint, "-o", out)
    assert again.returncode == 1 and "exists" in again.stderr  # no silent overwrite


def test_half_halves_the_weights_and_predictions_stay_close(tiny_eval_checkpoint, model_file, tmp_path, clip):
    """``--half`` stores the float32 weights as float16: their bytes halve (the metadata, mostly the
    wavetable catalog, stays) and the predictions move by less than 1e-2."""
    half = checkpoint.save_model(
        tmp_path / "half.safetensors", checkpoint.load(tiny_eval_checkpoint), half=True
    )

    def weight_bytes(path):
        with safe_open(str(path), framework="pt") as f:
            tensors = [f.get_tensor(k) for k in f.keys() if k.startswith("model.")]  # noqa: SIM118
        return sum(t.numel() * t.element_size() for t in tensors)

    full_w, half_w = weight_bytes(model_file), weight_bytes(half)
    assert 0.49 < half_w / full_w < 0.51
    saved = os.path.getsize(model_file) - os.path.getsize(half)
    assert saved >= 0.49 * full_w
    a = Predictor(model_file).predict_audio(*clip)
    b = Predictor(half).predict_audio(*clip)
    assert float(np.abs(a.continuous - b.continuous).max()) < 1e-2
    for name, p in a.probabilities.items():
        assert float(np.abs(p - b.probabilities[name]).max()) < 1e-2, name


def test_bad_model_files_are_one_line_through_predict(model_file, tmp_path, clip, capsys):
    """No pickle is ever read from a ``.safetensors`` file, and a corrupt, truncated or foreign file
    is one error line and exit status 1 (a real process, then in-process for the rest)."""
    wav = tmp_path / "tone.wav"
    sf.write(wav, clip[0], clip[1])
    pickled = tmp_path / "pickled.safetensors"
    torch.save(checkpoint.load(model_file), pickled)  # a valid checkpoint's content, as a pickle
    r = run_cli("predict", wav, "-o", tmp_path / "p.vital", "--checkpoint", pickled)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: {pickled} is not a safetensors model file (a .safetensors file is never unpickled)"
    ]

    data = model_file.read_bytes()
    rng = np.random.default_rng(1)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, foreign, metadata={"format": "pt"})
    cases = {
        "random.safetensors": (rng.bytes(4096), "is not a safetensors model file"),
        "random.pt": (rng.bytes(4096), "is not a readable checkpoint"),
        "truncated.safetensors": (
            data[: len(data) // 2],
            "is not a readable model file (corrupt or truncated",
        ),
        "header-only.safetensors": (data[:20], "is not a readable model file"),
        "empty.safetensors": (b"", "is not a safetensors model file"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    cases["foreign.safetensors"] = (
        None,
        "is not a vitalmatch model (a safetensors file without its metadata)",
    )
    _rewrite(model_file, tmp_path / "badjson.safetensors", meta=lambda m: m.update(features="{oops"))
    cases["badjson.safetensors"] = (None, "is not a valid model file: features is not JSON")
    _rewrite(model_file, tmp_path / "shape.safetensors", tensors=lambda t: t.update(norm_mean=torch.ones(3)))
    cases["shape.safetensors"] = (None, "is not a valid checkpoint: norm_mean has shape (3,)")
    _rewrite(model_file, tmp_path / "extra.safetensors", tensors=lambda t: t.update(payload=torch.ones(3)))
    cases["extra.safetensors"] = (None, "unexpected tensor 'payload'")
    _rewrite(
        model_file,
        tmp_path / "xz.safetensors",
        tensors=lambda t: t.update({"wavetables_json.xz": t["wavetables_json.xz"][:100].clone()}),
    )
    cases["xz.safetensors"] = (None, "wavetables_json is not compressed JSON")
    _rewrite(model_file, tmp_path / "v9.safetensors", meta=lambda m: m.update(version="9"))
    cases["v9.safetensors"] = (None, "has model file version 9")
    _rewrite(model_file, tmp_path / "cfg.safetensors", meta=lambda m: m.update(model_config='{"arch": 3}'))
    cases["cfg.safetensors"] = (None, "model_config has a field of the wrong type")
    for name, (_, why) in cases.items():
        run = cli_in_process(
            capsys, "predict", wav, "-o", tmp_path / "p.vital", "--checkpoint", tmp_path / name
        )
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 1 and len(lines) == 1, (name, run.stderr)
        assert lines[0].startswith(f"error: {tmp_path / name} ") and why in lines[0], (name, lines[0])
    assert not (tmp_path / "p.vital").exists()


def test_predict_candidates_are_distinct_seeded_and_start_with_the_plain_prediction(model_file, clip):
    """Top-K: the deterministic prediction first, then k-1 MC-dropout draws with sampled
    categoricals, all different; the same seed gives the same set, another seed another, and the
    global random state is left alone."""
    predictor = Predictor(model_file)
    plain = predictor.predict_audio(*clip)
    state = torch.random.get_rng_state()
    cands = predictor.predict_candidates(*clip, k=6, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert len(cands) == 6
    np.testing.assert_array_equal(cands[0].continuous, plain.continuous)
    np.testing.assert_array_equal(cands[0].categorical, plain.categorical)
    keys = {c.continuous.tobytes() + c.categorical.tobytes() for c in cands}
    assert len(keys) == 6
    for c in cands:
        assert c.continuous.shape == plain.continuous.shape and c.categorical.shape == plain.categorical.shape
        assert c.continuous.min() >= 0 and c.continuous.max() <= 1
    same = predictor.predict_candidates(*clip, k=6, seed=3)
    assert all(np.array_equal(a.continuous, b.continuous) for a, b in zip(cands, same, strict=True))
    assert all(np.array_equal(a.categorical, b.categorical) for a, b in zip(cands, same, strict=True))
    other = predictor.predict_candidates(*clip, k=6, seed=4)
    assert not np.array_equal(other[1].continuous, cands[1].continuous)
    assert not predictor.model.training and not any(m.training for m in predictor.model.modules())
    assert len(predictor.predict_candidates(*clip, k=1)) == 1
    with pytest.raises(ValueError, match="k must be >= 1"):
        predictor.predict_candidates(*clip, k=0)


def test_train_writes_a_model_file_beside_best_pt(tiny_eval_dataset, tmp_path, capsys):
    """``vitalmatch train`` ends by writing ``model.safetensors`` from ``best.pt``."""
    from tests.conftest import TINY_TRAINING

    cfg = tmp_path / "tiny.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in TINY_TRAINING.items()))
    run = cli_in_process(
        capsys,
        "train",
        "--config",
        cfg,
        "--data",
        tiny_eval_dataset,
        "--out",
        tmp_path / "run",
        "--max-steps",
        "2",
    )
    assert run.returncode == 0, run.stderr
    model = tmp_path / "run" / "model.safetensors"
    assert f"model file: {model}" in run.stdout
    mf, best = checkpoint.load(model), checkpoint.load(tmp_path / "run" / "best.pt")
    assert all(torch.equal(mf["model"][k], best["model"][k]) for k in best["model"])
