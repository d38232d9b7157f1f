"""Evaluation end to end: a tiny dataset, a tiny model, two real presets, every baseline; and the
metrics of one render, with and without level matching."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.processes import cli_in_process, run_cli
from tests.vital_app import assert_app_loads
from vitalmatch.data.reader import DatasetReader
from vitalmatch.evaluate import (
    CLAP_METRIC,
    CLAP_NOT_GIVEN,
    METRICS,
    EvaluateConfig,
    _level,
    distances,
    evaluate,
)
from vitalmatch.metrics import magnitude_mel_l1, multiscale_mel_l1


def _not_json(name: str):
    raise ValueError(f"results.json holds {name}, which is not JSON")


def test_evaluate_end_to_end(tiny_eval_dataset, tiny_eval_checkpoint, presets_dir, tmp_path, capsys):
    out = tmp_path / "report"
    two = tmp_path / "two"
    two.mkdir()
    for f in sorted(presets_dir.rglob("*.vital"))[:2]:
        (two / f.name).write_bytes(f.read_bytes())
    (two / "broken.vital").write_text("{not json")
    (two / "deep.vital").write_text("[" * 200_000 + "]" * 200_000)  # listed with its reason, not fatal
    r = subprocess.run(
        [
            sys.executable, "-m", "vitalmatch", "evaluate", "--data", str(tiny_eval_dataset),
            "--checkpoint", str(tiny_eval_checkpoint), "--presets", str(two), "-o", str(out),
            "--max-test", "4", "--images", "1", "--no-progress",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| model |" in r.stdout and f"wrote {out / 'report.md'}" in r.stdout
    report = json.loads((out / "results.json").read_text(), parse_constant=_not_json)  # strict JSON
    syn, real = report["sets"]["synthetic"], report["sets"]["presets"]
    with DatasetReader(tiny_eval_dataset) as r:
        n_test = min(4, len(r.split_indices("test")))
    assert (
        n_test >= 2
        and syn["targets"] == n_test
        and set(syn["methods"]) == {"model", "nn", "mean", "random", "init", "oracle"}
    )
    assert "oracle" not in real["methods"]
    assert real["targets"] == 4 and len(real["targets_failed"]) == 2  # the broken files, with reasons
    errors = {f["name"]: f["error"] for f in real["targets_failed"]}
    assert "not a Vital preset (not JSON" in errors["broken.vital"]
    assert "nested too deeply" in errors["deep.vital"]
    for s in (syn, real):
        for m, e in s["methods"].items():
            assert e["failed"] == 0, m
            assert np.isfinite(e["mel_l1"]["median"]) and e["mel_l1"]["median"] > 0
            assert 0 <= e["envelope_cos"]["median"] <= 1
            assert e["mel_l1"]["low"] <= e["mel_l1"]["median"] <= e["mel_l1"]["high"]
            magnitude = e["magnitude_mel_l1"]
            assert (
                np.isfinite(magnitude["median"])
                and magnitude["low"] <= magnitude["median"] <= magnitude["high"]
            )
    # Nearest neighbour searches the training split, so it is a real (non-zero) distance, and
    # parameter diagnostics exist for every method on synthetic targets.
    assert set(syn["parameters"]) == set(syn["methods"])
    assert all(0 <= p["accuracy"] <= 1 for p in syn["parameters"].values())
    files = {p.name for p in out.iterdir()}
    assert {"report.md", "results.json", "synthetic_00.png", "presets_00.png"} <= files
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["examples"]) == n_test * 6 + 2 * 5  # no oracle for real presets
    md = (out / "report.md").read_text()
    assert "| model |" in md and "Real presets" in md and "Synthetic test split" in md
    assert "| method | mel L1 (power) | magnitude mel L1 | MR-STFT |" in md
    # Each method's preset for the shown targets, in a form the Vital app loads.
    assert len(report["presets"]) == 6 + 5 and "presets/synthetic_00_model.vital" in md
    for rel in report["presets"]:
        assert_app_loads(out / rel)
    # A second run does not replace the report without --overwrite, and says so before any work.
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    r = cli_in_process(
        capsys, "evaluate", "--data", tiny_eval_dataset, "-o", out, "--max-test", "1", "--no-progress"
    )
    assert (
        r.returncode == 1
        and r.stderr.strip() == f"error: {out / 'report.md'} exists; use --overwrite to replace it"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_known_case_the_oracle_matches_and_init_does_not(tiny_eval_dataset, tmp_path):
    """Re-rendering a target's own parameters reproduces it (up to its 16-bit storage); the init
    preset is far from these random sounds, in both mel metrics."""
    report = evaluate(
        EvaluateConfig(
            out=tmp_path / "r",
            data=tiny_eval_dataset,
            methods=("oracle", "init"),
            max_test=3,
            images=0,
            progress=False,
        )
    )
    e = report["sets"]["synthetic"]["methods"]
    assert e["oracle"]["mel_l1"]["median"] < 0.05 and e["oracle"]["envelope_cos"]["median"] > 0.999
    assert e["init"]["mel_l1"]["median"] > 10 * e["oracle"]["mel_l1"]["median"]
    assert e["init"]["magnitude_mel_l1"]["median"] > 10 * e["oracle"]["magnitude_mel_l1"]["median"]
    assert report["sets"]["synthetic"]["parameters"]["oracle"]["mae"] == 0.0
    # Without --clap the CLAP column is there, empty, and the report says why.
    assert report["clap"] == {"computed": False, "reason": CLAP_NOT_GIVEN}
    assert e["oracle"][CLAP_METRIC] is None and e["init"][CLAP_METRIC] is None
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"CLAP cos: {CLAP_NOT_GIVEN}." in md and "| envelope cos | CLAP cos | failed renders |" in md


def test_distances_level_match_spares_magnitude_mel_l1():
    """Level matching changes the other metrics of a quieter copy, never magnitude_mel_l1, which
    sees the signals as rendered (divided by the target's peak: a wrong level is a distance)."""
    sr = 22050
    t = np.arange(sr // 2) / sr
    target = (0.4 * np.sin(2 * np.pi * 261.6 * t) * np.exp(-3 * t)).astype(np.float32)
    quiet = (0.25 * target + 1e-3 * np.sin(2 * np.pi * 523.2 * t)).astype(np.float32)
    matched = distances(quiet, target, sr, level_match=True)
    raw = distances(quiet, target, sr, level_match=False)
    assert list(matched) == list(METRICS) and "magnitude_mel_l1" in METRICS and "mel_l1" in METRICS
    assert matched["magnitude_mel_l1"] == raw["magnitude_mel_l1"] == magnitude_mel_l1(quiet, target, sr)
    assert matched["magnitude_mel_l1"] > 0.3  # ln 4 on the loud bins, less near the floor
    assert matched["mel_l1"] < raw["mel_l1"] / 2  # the -12 dB level is matched away
    assert matched["mel_l1"] == multiscale_mel_l1(_level(quiet), _level(target), sr)


def test_evaluate_cli_errors(tiny_eval_dataset, tmp_path, capsys):
    r = run_cli("evaluate", "--data", tmp_path / "none.h5", "-o", tmp_path / "o")
    assert r.returncode == 1 and r.stderr.strip() == f"error: dataset {tmp_path / 'none.h5'} does not exist"

    def cli(*args):  # the same main(), in this process
        return cli_in_process(capsys, "evaluate", *args)

    r = cli("--data", str(tiny_eval_dataset), "-o", str(tmp_path / "o"), "--methods", "model")
    assert r.returncode == 1 and "needs --checkpoint" in r.stderr
    r = cli("--data", str(tiny_eval_dataset), "-o", str(tmp_path / "o"), "--methods", "telepathy")
    assert r.returncode == 1 and "unknown method" in r.stderr
    # An output that cannot be written is refused before any render, not after the evaluation.
    (tmp_path / "file").write_text("x")
    r = cli("--data", str(tiny_eval_dataset), "-o", str(tmp_path / "file" / "report"), "--no-progress")
    assert r.returncode == 1 and r.stderr.startswith(
        f"error: cannot create folder {tmp_path / 'file' / 'report'}"
    )
    r = cli("--data", str(tiny_eval_dataset), "-o", str(tmp_path / "file"), "--no-progress")
    assert (
        r.returncode == 1
        and r.stderr.strip() == f"error: cannot write into {tmp_path / 'file'}: it is a file, not a folder"
    )
