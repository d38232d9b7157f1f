"""The real CLI in a subprocess: params, inspect (with WAV export), discover-wt, help of every stage
(the flags' defaults and --config files: tests/test_config.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from vitalmatch.cli import cli
from vitalmatch.data.generate import GenerateConfig, generate
from vitalmatch.data.reader import DatasetReader
from vitalmatch.synth.render import RenderConfig


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vitalmatch", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_stage():
    r = _cli("--help")
    assert r.returncode == 0
    stages = ("params", "discover-wt", "generate", "inspect", "train", "predict", "evaluate", "match")
    assert set(stages) | {"tutorial", "demo"} <= set(cli.commands)
    for stage in cli.commands:
        assert stage in r.stdout


@pytest.mark.parametrize("stage", sorted(cli.commands))
def test_every_stage_has_help(stage):
    """``vitalmatch STAGE --help`` of every command in the group exits 0 and shows its usage."""
    result = CliRunner().invoke(cli, [stage, "--help"], prog_name="vitalmatch")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: vitalmatch {stage} ") and "--help" in result.output


def test_params_tier1_lists_registry():
    r = _cli("params", "--tier", "1")
    assert r.returncode == 0, r.stderr
    assert (
        "osc_1_wavetable" in r.stdout and "filter_1_cutoff" in r.stdout and "lfo_1_frequency" not in r.stdout
    )
    assert "tier 1: 84 parameters (62 continuous, 22 categorical)" in r.stdout
    assert "full registry 451 (322 continuous, 129 categorical" in r.stdout
    data = json.loads(_cli("params", "--tier", "2", "--json").stdout)
    assert data["tier"] == 2 and len(data["continuous"]) == 322


def test_params_bad_tier():
    r = _cli("params", "--tier", "9")
    assert r.returncode == 1 and r.stderr.strip() == "error: tier must be 1, 2 or 3, got 9"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "d.h5"
    render = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=0.2, render_duration_s=0.4)
    generate(
        GenerateConfig(output=path, n_presets=6, render=render, workers=1, progress=False, store_mels=True)
    )
    return path


def test_inspect_and_export(dataset, tmp_path):
    r = _cli("inspect", str(dataset), "--export-wav", str(tmp_path / "wav"), "-k", "3")
    assert r.returncode == 0, r.stderr
    assert "tier 1" in r.stdout and "rows 6 from 6 presets" in r.stdout and "filter_1_cutoff" in r.stdout
    wavs = sorted((tmp_path / "wav").glob("*.wav"))
    assert len(wavs) == 3
    with DatasetReader(dataset) as ds:
        audio, sr = sf.read(wavs[0], always_2d=True)
        assert sr == 22050 and audio.shape[0] == ds.audio(0).shape[-1]
        np.testing.assert_allclose(audio.T[0], ds.audio(0)[0], atol=2 / 32767)
        mel = ds.log_mel(0)
        assert mel.shape == (128, 1 + 8820 // 512) and np.isfinite(mel).all()
    report = json.loads(_cli("inspect", str(dataset), "--json").stdout)
    assert report["rows"] == 6 and report["coverage"]["osc_1_wavetable"]["options_seen"] >= 2


def test_inspect_bad_files(tmp_path):
    missing = _cli("inspect", str(tmp_path / "nope.h5"))
    assert (
        missing.returncode == 1 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
    )
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    r = _cli("inspect", str(junk))
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_discover_wt(presets_dir, tmp_path):
    out = tmp_path / "catalog.json"
    r = _cli("discover-wt", str(presets_dir), "-o", str(out), "--no-install-dirs")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert len(data["entries"]) > 40
    again = _cli("discover-wt", str(presets_dir), "-o", str(out))
    assert again.returncode == 1 and "--overwrite" in again.stderr
    missing = _cli("discover-wt", str(tmp_path / "nothing"), "-o", str(tmp_path / "c2.json"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
