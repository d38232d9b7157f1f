"""Prediction with a trained checkpoint: full vectors, same features as training, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.learn.test_checkpoint import WRONG_TYPES
from tests.vital_app import assert_app_loads
from vitalmatch.data.reader import DatasetReader
from vitalmatch.learn.predict import Predictor
from vitalmatch.outputs import render_wav_path
from vitalmatch.synth.export import preset_dict
from vitalmatch.synth.render import RenderConfig, RenderEngine


def test_prediction_fills_a_whole_preset(tiny_checkpoint, tiny_dataset):
    p = Predictor(tiny_checkpoint)
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


def test_prediction_exports_a_loadable_preset(tiny_checkpoint):
    p = Predictor(tiny_checkpoint)
    catalog = p.wavetables()
    pred = p.predict_audio(np.sin(np.arange(30000) * 0.05).astype(np.float32) * 0.3)
    cfg = RenderConfig(sample_rate=p.sample_rate, notes=(60,), note_duration_s=0.3, render_duration_s=0.5)
    engine = RenderEngine(p.full_registry, [e.table for e in catalog], cfg)
    preset = preset_dict(engine, pred.continuous, pred.categorical, name="predicted")
    engine.load_preset_dict(preset)
    audio = engine.render_note(60)
    assert np.isfinite(audio).all() and audio.shape == (2, cfg.n_samples)


def test_predict_cli(tiny_checkpoint, tmp_path, capsys):
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
        str(tiny_checkpoint),
        "--wav",
    )
    assert r.returncode == 0, r.stderr
    assert "MIDI 55" in r.stdout and "note length 0.40 s" in r.stdout
    preset = read_vital(tmp_path / "out.vital")
    assert preset["preset_name"] == "in" and "note 55" in preset["comments"]
    assert_app_loads(tmp_path / "out.vital")  # the Vital app's checks: version stamp, strict JSON
    audio, rate = sf.read(tmp_path / "out.match.wav")  # never out.wav: that may be the input
    assert rate == 22050 and audio.shape[1] == 2 and np.isfinite(audio).all()
    # The preset loads in a fresh synth.
    fresh = vita.Synth()
    assert fresh.load_json((tmp_path / "out.vital").read_text())
    # Bad input: one line, exit status 1, nothing written (the same main(), in this process).

    def _cli(*args):
        return cli_in_process(capsys, *args)

    r = _cli(
        "predict",
        str(tmp_path / "in.wav"),
        "-o",
        str(tmp_path / "out.vital"),
        "--checkpoint",
        str(tiny_checkpoint),
    )
    assert r.returncode != 0 and "exists; use --overwrite" in r.stderr
    (tmp_path / "text.wav").write_text("hello, not audio")
    r = _cli(
        "predict",
        str(tmp_path / "text.wav"),
        "-o",
        str(tmp_path / "t.vital"),
        "--checkpoint",
        str(tiny_checkpoint),
    )
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert not (tmp_path / "t.vital").exists()
    sf.write(tmp_path / "silent.wav", np.zeros(48000, dtype=np.float32), 48000)
    r = _cli(
        "predict",
        str(tmp_path / "silent.wav"),
        "-o",
        str(tmp_path / "t.vital"),
        "--checkpoint",
        str(tiny_checkpoint),
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


@pytest.fixture
def sound(tmp_path):
    """A 1 s, 220 Hz tone as a WAV file (what a user would predict from)."""
    import soundfile as sf

    t = np.arange(22050) / 22050
    path = tmp_path / "tone.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-2 * t)).astype(np.float32), 22050)
    return path


def _registry_entry(ckpt: dict, key: str, name: str) -> tuple[dict, dict]:
    """(the parsed registry JSON ``ckpt[key]``, the entry of parameter ``name``)."""
    import json

    data = json.loads(ckpt[key])
    entry = next(d for d in data["continuous"] + data["categorical"] if d["name"] == name)
    return data, entry


def test_predict_clamps_a_crafted_registry_to_the_live_synth(
    tiny_checkpoint, sound, tmp_path, edit_checkpoint, capsys
):
    """A registry whose ranges crash the engine (chorus_voices 7 with chorus on segfaults, vita-facts
    §4) is never trusted: the values are clamped to the live synth's ranges."""
    import json

    from tests.processes import cli_in_process, run_cli
    from vitalmatch.synth.export import read_vital

    def crash_ranges(ck):
        data, entry = _registry_entry(ck, "full_registry_json", "chorus_voices")
        entry.update(min=7.0, max=7.0, default=7.0)
        ck["full_registry_json"] = json.dumps(data)
        names = [d["name"] for d in data["categorical"]]
        ck["fill_categorical"][names.index("chorus_on")] = 1  # not predicted (Tier 1): the fill is used

    crafted = edit_checkpoint(tiny_checkpoint, crash_ranges)
    out = tmp_path / "crafted.vital"
    r = run_cli("predict", sound, "-o", out, "--checkpoint", crafted, "--wav")
    assert r.returncode not in (-11, 139), "the synth segfaulted in the predict process"
    assert r.returncode == 0, r.stderr
    settings = read_vital(out)["settings"]
    assert settings["chorus_on"] == 1 and settings["chorus_voices"] == 4  # the live maximum
    assert "chorus_voices" in r.stderr and "clamped" in r.stderr
    # Parameters the live synth does not have (or has with other options): one error line.

    def rename(ck):
        data, entry = _registry_entry(ck, "full_registry_json", "chorus_voices")
        entry["name"] = "chorus_voices_x"
        ck["full_registry_json"] = json.dumps(data)

    def more_options(ck):
        data, entry = _registry_entry(ck, "full_registry_json", "chorus_on")
        entry.update(max=2.0, options=["Off", "On", "Both"])
        ck["full_registry_json"] = json.dumps(data)

    for change in (rename, more_options):
        bad = edit_checkpoint(tiny_checkpoint, change, f"{change.__name__}.pt")
        r = cli_in_process(capsys, "predict", sound, "-o", tmp_path / "x.vital", "--checkpoint", bad)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith("error: ") and "do not match this synth" in r.stderr, r.stderr
        assert not (tmp_path / "x.vital").exists()


def test_predict_survives_a_synth_crash(tiny_checkpoint, sound, tmp_path, edit_checkpoint):
    """The render runs in a worker process: a segfault there is one error line, not exit 139.

    The crash comes from the checkpoint's wavetables: a component of an unknown type passes every
    structural check and crashes Vital's loader."""
    import json

    from tests.processes import run_cli
    from vitalmatch.synth.wavetables import wavetable_hash

    def bogus_tables(ck):
        catalog = json.loads(ck["wavetables_json"])
        for entry in catalog["entries"]:
            entry["table"]["groups"][0]["components"][0]["type"] = "Bogus"
            entry["hash"] = wavetable_hash(entry["table"])
        ck["wavetables_json"] = json.dumps(catalog)

    crafted = edit_checkpoint(tiny_checkpoint, bogus_tables)
    out = tmp_path / "crash.vital"
    r = run_cli("predict", sound, "-o", out, "--checkpoint", crafted, "--wav")
    assert r.returncode not in (-11, 139), "the synth segfaulted in the predict process"
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: ") and "SIGSEGV" in r.stderr, r.stderr
    assert not out.exists() and not render_wav_path(out).exists()


def test_predict_user_errors_are_one_line_and_exit_1(tiny_checkpoint, sound, tmp_path, capsys):
    from tests.processes import cli_in_process

    (tmp_path / "taken.vital").write_text("{}")
    cases = {
        "does not exist": (tmp_path / "missing.wav", tmp_path / "a.vital"),
        "is a folder": (tmp_path, tmp_path / "b.vital"),
        "exists; use --overwrite": (sound, tmp_path / "taken.vital"),
        "folder": (sound, tmp_path / "no" / "such" / "c.vital"),
    }
    for want, (src, out) in cases.items():
        r = cli_in_process(capsys, "predict", src, "-o", out, "--checkpoint", tiny_checkpoint)
        assert r.returncode == 1, (want, r.returncode, r.stderr)
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and want in r.stderr, r.stderr
        assert "Usage:" not in r.stderr + r.stdout
    assert (tmp_path / "taken.vital").read_text() == "{}"
    # The render would replace the input: refused, even with --overwrite.
    src = tmp_path / "x.match.wav"
    src.write_bytes(sound.read_bytes())
    r = cli_in_process(
        capsys,
        "predict",
        src,
        "-o",
        tmp_path / "x.vital",
        "--checkpoint",
        tiny_checkpoint,
        "--wav",
        "--overwrite",
    )
    assert r.returncode == 1 and "is the input" in r.stderr and src.read_bytes() == sound.read_bytes()


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_predict_rejects_checkpoint_entries_of_the_wrong_type(
    case, tiny_checkpoint, sound, tmp_path, edit_checkpoint, capsys
):
    """The entries :func:`tests.learn.test_checkpoint.test_load_rejects_entries_of_the_wrong_type`
    checks: through the CLI each is one error line."""
    from tests.processes import cli_in_process

    key, value = WRONG_TYPES[case]
    bad = edit_checkpoint(tiny_checkpoint, lambda ck: ck.update({key: value}))
    r = cli_in_process(capsys, "predict", sound, "-o", tmp_path / "x.vital", "--checkpoint", bad)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert key in r.stderr
