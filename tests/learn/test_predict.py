"""Prediction with a trained checkpoint: full vectors, same features as training, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitalmatch.data.storage import DatasetReader
from vitalmatch.learn.predict import Predictor
from vitalmatch.learn.train import TrainConfig, fit
from vitalmatch.synth.export import preset_dict
from vitalmatch.synth.render import RenderConfig, RenderEngine


@pytest.fixture(scope="module")
def run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "run"
    fit(
        TrainConfig(
            data=str(tiny_dataset),
            out=str(out),
            epochs=1,
            batch_size=4,
            n_mels=64,
            n_fft=1024,
            hop_length=256,
            progress=False,
            logger="none",
            threads=1,
        )
    )
    return out / "last.pt"


def test_prediction_fills_a_whole_preset(run, tiny_dataset):
    p = Predictor(run)
    with DatasetReader(tiny_dataset) as r:
        audio = r.audio(0).mean(axis=0)
        full = r.attrs["continuous_names"]
    assert p.sample_rate == 22050 and p.input_samples <= len(audio)
    pred = p.predict_audio(audio)
    assert pred.continuous.shape == (len(full),) and pred.categorical.shape == (129,)
    assert pred.continuous.min() >= 0 and pred.continuous.max() <= 1
    # Predicted columns come from the network; the others from the training split.
    ci = [list(full).index(n) for n in p.registry.continuous_names]
    assert not np.allclose(pred.continuous[ci], p._fill_c[ci])
    other = [i for i in range(len(full)) if i not in set(ci)]
    np.testing.assert_array_equal(pred.continuous[other], p._fill_c[other])
    for name, probs in pred.probabilities.items():
        assert probs.shape == (p.registry[name].n_options,) and abs(float(probs.sum()) - 1) < 1e-5
    # Longer and shorter inputs are cropped / padded to the training length.
    assert p.predict_audio(np.concatenate([audio, audio])).continuous.shape == pred.continuous.shape
    assert p.predict_audio(audio[:1000]).continuous.shape == pred.continuous.shape
    # Audio at another rate is resampled to the model's first (an unresampled 2x clip would be
    # heard an octave down, at half speed).
    import soxr

    doubled = soxr.resample(audio, p.sample_rate, 2 * p.sample_rate).astype(np.float32)
    right = np.abs(p.predict_audio(doubled, 2 * p.sample_rate).continuous - pred.continuous).max()
    wrong = np.abs(p.predict_audio(doubled).continuous - pred.continuous).max()
    assert right < 0.01 and wrong > 10 * right
    # Batched log-mels give the same answer as one clip.
    from vitalmatch.features import log_mel

    x = np.zeros(p.input_samples, dtype=np.float32)
    x[:] = audio[: p.input_samples]
    again = p.predict_mels(torch.stack([log_mel(x, p.features)] * 2))
    np.testing.assert_allclose(again[1].continuous, pred.continuous, atol=1e-5)


def test_prediction_exports_a_loadable_preset(run):
    p = Predictor(run)
    catalog = p.wavetables()
    pred = p.predict_audio(np.sin(np.arange(30000) * 0.05).astype(np.float32) * 0.3)
    cfg = RenderConfig(sample_rate=p.sample_rate, notes=(60,), note_duration_s=0.3, render_duration_s=0.5)
    engine = RenderEngine(p.full_registry, [e.table for e in catalog], cfg)
    preset = preset_dict(engine, pred.continuous, pred.categorical, name="predicted")
    engine.load_preset_dict(preset)
    audio = engine.render_note(60)
    assert np.isfinite(audio).all() and audio.shape == (2, cfg.n_samples)


def test_predict_cli(run, tmp_path, capsys):
    import soundfile as sf
    import vita

    from tests.processes import cli_in_process, run_cli
    from vitalmatch.synth.export import read_vital

    s = vita.Synth()
    s.set_sample_rate(48000.0)
    s.get_controls()["osc_1_random_phase"].set(0.0)
    sf.write(tmp_path / "in.wav", s.render(55, 0.7, 0.4, 1.0).T, 48000)
    r = run_cli(
        "predict",
        str(tmp_path / "in.wav"),
        "-o",
        str(tmp_path / "out.vital"),
        "--checkpoint",
        str(run),
        "--wav",
    )
    assert r.returncode == 0, r.stderr
    assert "MIDI 55" in r.stdout and "note length 0.40 s" in r.stdout
    preset = read_vital(tmp_path / "out.vital")
    assert preset["preset_name"] == "in" and "note 55" in preset["comments"]
    audio, rate = sf.read(tmp_path / "out.wav")
    assert rate == 22050 and audio.shape[1] == 2 and np.isfinite(audio).all()
    # The preset loads in a fresh synth.
    fresh = vita.Synth()
    assert fresh.load_json((tmp_path / "out.vital").read_text())
    # Bad input: one line, exit status 1, nothing written (the same main(), in this process).

    def _cli(*args):
        return cli_in_process(capsys, *args)

    r = _cli("predict", str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.vital"), "--checkpoint", str(run))
    assert r.returncode != 0 and "exists; use --overwrite" in r.stderr
    (tmp_path / "text.wav").write_text("hello, not audio")
    r = _cli("predict", str(tmp_path / "text.wav"), "-o", str(tmp_path / "t.vital"), "--checkpoint", str(run))
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert not (tmp_path / "t.vital").exists()
    sf.write(tmp_path / "silent.wav", np.zeros(48000, dtype=np.float32), 48000)
    r = _cli(
        "predict", str(tmp_path / "silent.wav"), "-o", str(tmp_path / "t.vital"), "--checkpoint", str(run)
    )
    assert r.returncode == 1 and "silent" in r.stderr
    r = _cli(
        "predict",
        str(tmp_path / "in.wav"),
        "-o",
        str(tmp_path / "t.vital"),
        "--checkpoint",
        str(tmp_path / "in.wav"),
    )
    assert r.returncode == 1 and "not a readable checkpoint" in r.stderr
