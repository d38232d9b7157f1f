"""CLAP audio embeddings (vitalmatch.clap) and the clap_similarity column of evaluate, on tiny
transformers CLAP models built from small configs and saved as a local folder (no download)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.processes import cli_in_process
from vitalmatch.clap import Clap, cosine
from vitalmatch.evaluate import CLAP_METRIC

#: Tiny audio and text towers: 16 mel bands in a 64-wide spectrogram image, hidden size 32.
TINY_AUDIO = dict(
    num_mel_bins=16,
    spec_size=64,
    window_size=4,
    patch_size=2,
    patch_stride=2,
    hidden_size=32,
    depths=[1, 1],
    num_attention_heads=[2, 2],
    patch_embeds_hidden_size=16,
    num_hidden_layers=2,
)
TINY_TEXT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
)
DIM = 16


def save_tiny_clap(folder, fused: bool = False, seed: int = 0):
    """A tiny ``ClapModel`` and its ``ClapFeatureExtractor`` (48 kHz, 1 s clips) saved in
    ``folder`` as ``save_pretrained`` writes them."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    audio = dict(TINY_AUDIO, projection_dim=DIM, enable_fusion=fused)
    if fused:
        audio["fusion_type"] = "aff_2d"
    config = ClapConfig(
        text_config=dict(TINY_TEXT, projection_dim=DIM), audio_config=audio, projection_dim=DIM
    )
    torch.manual_seed(seed)
    ClapModel(config).save_pretrained(folder)
    ClapFeatureExtractor(
        feature_size=16, sampling_rate=48000, max_length_s=1, fft_window_size=512,
        truncation="fusion" if fused else "rand_trunc",
    ).save_pretrained(folder)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    return save_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny")


@pytest.fixture(scope="module")
def clap(clap_dir):
    return Clap(clap_dir)


def tone(sr: int, f0: float = 220.0, seconds: float = 0.8) -> np.ndarray:
    """A decaying saw-like tone (19 harmonics), made at ``sr`` Hz from its formula."""
    t = np.arange(int(sr * seconds)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20))
    return (0.3 * np.exp(-3 * t) * x).astype(np.float32)


def noise(sr: int, seconds: float = 0.8) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.exp(-3 * t) * np.random.default_rng(1).standard_normal(t.size)).astype(np.float32)


def test_cosine():
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    b = np.array([[0.0, 2.0], [6.0, 8.0], [-1.0, -1.0]])
    np.testing.assert_allclose(cosine(a, b), [0.0, 1.0, -1.0], atol=1e-12)
    assert cosine(a[1], b[1]) == pytest.approx(1.0)
    assert np.isnan(cosine(np.zeros(2), np.ones(2)))
    with pytest.raises(ValueError, match="one shape"):
        cosine(a, b[:2])


def test_embeddings_unit_norm_and_a_sound_matches_itself(clap):
    a, b = tone(48000), noise(48000)
    e = clap.embed([a, b, a], 48000)
    assert e.shape == (3, DIM) and e.dtype == np.float32 and clap.dim == DIM
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
    assert cosine(e[0], e[2]) == pytest.approx(1.0, abs=1e-5)
    assert clap.similarity([a], [a], 48000)[0] == pytest.approx(1.0, abs=1e-5)
    # Different sounds: less alike than a sound with itself (a random tiny model: 0.991).
    assert cosine(e[0], e[1]) < 1 - 1e-4
    # A (T,) clip, a stereo (2, T) clip and a clip in another batch give the same embedding.
    np.testing.assert_allclose(clap.embed(a, 48000), e[:1], atol=1e-6)
    np.testing.assert_allclose(clap.embed([np.stack([a, a])], 48000), e[:1], atol=1e-6)


def test_audio_is_resampled_to_48k(clap):
    """The same tone made at 44.1 kHz embeds as when made at 48 kHz (measured 1 - cos = 4e-12);
    handed over as if it were 48 kHz audio (not resampled), it does not (6e-5)."""
    at48 = clap.embed(tone(48000), 48000)[0]
    at44 = clap.embed(tone(44100), 44100)[0]
    wrong = clap.embed(tone(44100), 48000)[0]
    assert 1 - cosine(at48, at44) < 1e-8
    assert 1 - cosine(at48, wrong) > 1e-6


def test_fused_model_embeddings_do_not_depend_on_the_batch(tmp_path):
    """A fused CLAP (four mels per clip): the extractor flags a random clip of each batch as
    "longer"; embed does not, so a clip embeds the same alone and in a batch."""
    fused = Clap(save_tiny_clap(tmp_path / "fused", fused=True))
    a, b = tone(48000), noise(48000)
    together = fused.embed([a, b, tone(48000, 330.0)], 48000)
    alone = np.concatenate([fused.embed(a, 48000), fused.embed(b, 48000)])
    np.testing.assert_allclose(together[:2], alone, atol=1e-5)
    long = np.tile(a, 3)  # longer than the 1 s clip: its first second
    np.testing.assert_allclose(fused.embed(long, 48000), fused.embed(long[:48000], 48000), atol=1e-6)


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


@pytest.mark.filterwarnings("ignore:At least one mel filter")  # the 64-band extractor
def test_bad_folders_are_one_line(clap_dir, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    with pytest.raises(ValueError) as e:
        Clap(tmp_path / "none")
    assert _one_line(e) == f"CLAP folder {tmp_path / 'none'} does not exist"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        Clap(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        Clap(tmp_path / "empty")
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(ValueError, match="holds a 'bert' model, not CLAP"):
        Clap(tmp_path / "bert")

    def copy(name):
        return shutil.copytree(clap_dir, tmp_path / name)

    pickled = copy("pickled")  # weights only as a pickle: never read
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ValueError) as e:
        Clap(pickled)
    assert "has no model.safetensors (CLAP weights load from safetensors only)" in _one_line(e)
    corrupt = copy("corrupt")
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as e:
        Clap(corrupt)
    assert "does not load: SafetensorError" in _one_line(e)
    partial = copy("partial")  # a real safetensors file without the audio projection
    weights = load_file(partial / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("audio_projection")},
        partial / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(ValueError) as e:
        Clap(partial)
    assert "the weights lack audio_projection" in _one_line(e)
    no_extractor = copy("no_extractor")
    (no_extractor / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match="has no preprocessor_config.json"):
        Clap(no_extractor)
    bands = copy("bands")
    pre = json.loads((bands / "preprocessor_config.json").read_text())
    (bands / "preprocessor_config.json").write_text(json.dumps({**pre, "feature_size": 64}))
    with pytest.raises(ValueError, match="the extractor makes 64 mel bands, the model takes 16"):
        Clap(bands)


def test_evaluate_cli_with_clap(tiny_eval_dataset, clap_dir, tmp_path, capsys):
    out = tmp_path / "report"
    r = cli_in_process(
        capsys, "evaluate", "--data", tiny_eval_dataset, "-o", out, "--methods", "oracle,init",
        "--max-test", "2", "--images", "0", "--no-progress", "--workers", "1", "--clap", clap_dir,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    assert report["clap"]["computed"] and report["clap"]["dim"] == DIM
    methods = report["sets"]["synthetic"]["methods"]
    for m in ("oracle", "init"):
        e = methods[m][CLAP_METRIC]
        assert np.isfinite(e["median"]) and -1 <= e["median"] <= 1 and e["low"] <= e["median"] <= e["high"]
    # The oracle re-renders the target (up to its 16-bit storage): as alike as CLAP can hear.
    assert methods["oracle"][CLAP_METRIC]["median"] > 0.9999
    assert methods["init"][CLAP_METRIC]["median"] < methods["oracle"][CLAP_METRIC]["median"]
    assert all(np.isfinite(x["metrics"][CLAP_METRIC]) for x in report["examples"])
    md = (out / "report.md").read_text()
    assert "| envelope cos | CLAP cos | failed renders |" in md and "CLAP cos: cosine similarity" in md
    assert "| CLAP cos |" in r.stdout


def test_evaluate_cli_bad_clap_folder(tiny_eval_dataset, clap_dir, tmp_path, capsys):
    def cli(folder):
        return cli_in_process(
            capsys, "evaluate", "--data", tiny_eval_dataset, "-o", tmp_path / "o", "--methods", "init",
            "--max-test", "1", "--images", "0", "--no-progress", "--clap", folder,
        )  # fmt: skip

    r = cli(tmp_path / "none")
    assert r.returncode == 1 and r.stderr.strip() == f"error: CLAP folder {tmp_path / 'none'} does not exist"
    broken = shutil.copytree(clap_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    r = cli(broken)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"error: CLAP folder {broken} does not load: SafetensorError")
    assert not (tmp_path / "o" / "results.json").exists()


def _match_quality():
    """benchmarks/match_quality.py as a module (it is a script, not part of the package)."""
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("match_quality", REPO / "benchmarks" / "match_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_match_quality_benchmark_scores_clap(clap):
    """The benchmark's scoring of a row: ``clap`` with --clap (NaN for a failed render), None without;
    the summary's median, and the table's note when it was not computed."""
    mq = _match_quality()
    target, other = tone(mq.SR), noise(mq.SR)
    same, different = mq._scores(target, target, clap), mq._scores(other, target, clap)
    assert same["clap"] == pytest.approx(1.0, abs=1e-5) and different["clap"] < same["clap"] - 1e-4
    assert np.isnan(mq._scores(None, target, clap)["clap"])
    assert mq._scores(other, target)["clap"] is None and mq._scores(None, target)["clap"] is None

    def row(clap_value):
        return {
            "set": "t1", "budget_s": 5.0, "ratio": 0.5, "old_ratio": 0.6, "mfcc": 10.0,
            "envelope_cosine": 0.9, "clap": clap_value, "init_clap": 0.5 if clap_value else None,
            "worse_than_start": False, "worse_than_init": False, "silent": False, "pitch": "exact",
            "detected_pitch": "exact", "evals_per_s": 9.0, "seconds": 5.0,
        }  # fmt: skip

    (s,) = mq.summarise([row(0.9), row(0.8), row(0.7)])
    assert s["clap"] == pytest.approx(0.8) and s["init_clap"] == 0.5
    assert "| 0.800 (0.500) |" in mq.table([s], "cosine of the CLAP audio embeddings")
    (s,) = mq.summarise([row(None), row(None)])
    assert np.isnan(s["clap"])
    text = mq.table([s])
    assert f"CLAP cos: {mq.CLAP_NOT_GIVEN}." in text and "| envelope cos | CLAP cos (init) |" in text
