"""Matching end to end: the real CLI, the real synth, a built-in starting set rendered on first use."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from tests.pace import slowdown
from tests.processes import default_sigint
from tests.sounds import START_SET, render_vital, write_audible_wavs
from vitalmatch.synth.export import read_vital


@pytest.fixture(scope="session")
def sounds(tmp_path_factory, registry, catalog):
    """Two synthetic target sounds (random Tier-1 presets at MIDI 57, 1.2 s) as WAV files."""
    folder = tmp_path_factory.mktemp("sounds")
    return write_audible_wavs(
        registry, catalog, folder, ["sound0.wav", "sound1.wav"], seed=11, note_s=0.6, render_s=1.2
    )


def _run(args, cache, **kw):
    env = {**os.environ, "VITALMATCH_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "vitalmatch", "match", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kw,
    )


def test_match_without_checkpoint_end_to_end(match_cache, sounds, tmp_path):
    out = tmp_path / "match.vital"
    r = _run(
        [sounds[0], "-o", out, "--budget-s", "6", "--start-set", START_SET, "--wav", "--no-progress"],
        match_cache,
    )
    assert r.returncode == 0, r.stderr
    m = re.search(r"init ([\d.]+), before refinement ([\d.]+), after ([\d.]+)", r.stdout)
    assert m, r.stdout
    init, before, after = map(float, m.groups())
    assert after <= before and after <= init
    assert after < 0.9 * init  # a 6-second search gets measurably closer than the init preset
    assert re.search(r"search: \d+ renders in [\d.]+ s", r.stdout)
    preset = read_vital(out)
    assert preset["preset_name"] == "sound0" and "sound0.wav" in preset["comments"]
    audio = render_vital(preset)  # the file loads in a fresh synth and sounds
    assert np.abs(audio).max() > 1e-3
    wav, sr = sf.read(out.with_suffix(".wav"))
    assert sr == 44100 and wav.shape[1] == 2


def test_batch_folder_with_a_bad_file(match_cache, sounds, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.wav").write_bytes(sounds[1].read_bytes())
    (folder / "broken.wav").write_text("not audio at all")
    out = tmp_path / "out"
    r = _run([folder, "-o", out, "--max-evals", "30", "--start-set", START_SET, "--no-progress"], match_cache)
    assert r.returncode == 1
    assert "1 of 2 inputs failed" in r.stderr and "broken.wav" in r.stderr
    assert (out / "good.vital").is_file() and not (out / "broken.vital").exists()
    rows = (out / "summary.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:5] == ["input", "note", "init", "start", "final"]
    assert {row.split("\t")[0] for row in rows[1:]} == {"good.wav", "broken.wav"}
    good = next(row.split("\t") for row in rows[1:] if row.startswith("good.wav"))
    assert float(good[4]) <= float(good[3])


def test_ctrl_c_writes_the_best_preset_so_far(match_cache, sounds, tmp_path):
    out = tmp_path / "interrupted.vital"
    env = {**os.environ, "VITALMATCH_CACHE": str(match_cache), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vitalmatch",
            "match",
            str(sounds[0]),
            "-o",
            str(out),
            "--budget-s",
            "120",
            "--start-set",
            str(START_SET),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    # wait until the search runs (the progress bar reports evaluations), then press "Ctrl-C"
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline and "evals" not in seen:
        seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    assert "evals" in seen, seen
    os.killpg(proc.pid, signal.SIGINT)  # the whole group, as a terminal does
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: wrote the best preset found so far" in stderr
    assert np.abs(render_vital(read_vital(out))).max() > 1e-3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.wav", "does not exist"),
        (lambda d: (d / "x.wav").write_text("nope") and d / "x.wav", "x.wav"),
    ],
)
def test_bad_input_gives_one_line(match_cache, tmp_path, make, message):
    path = make(tmp_path)
    r = _run([path, "-o", tmp_path / "o.vital", "--start-set", START_SET, "--no-progress"], match_cache)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and message in line
    assert not (tmp_path / "o.vital").exists()


def test_matcher_with_a_checkpoint_uses_the_prediction_unless_given_a_start(
    match_cache, sounds, tiny_eval_checkpoint, monkeypatch
):
    """With a checkpoint the prediction is a candidate; ``match_audio(start=...)`` searches from the
    given preset instead (on a sound made by it, the start is already at the floor) and consults
    neither the starting set nor the network."""
    from vitalmatch.match import MatchConfig, Matcher
    from vitalmatch.refine import final_task

    monkeypatch.setenv("VITALMATCH_CACHE", str(match_cache))
    pace = slowdown()
    with Matcher(MatchConfig(budget_s=5, start_set_size=START_SET), tiny_eval_checkpoint) as matcher:
        result = matcher.match_file(sounds[1])
        far = np.argmax([np.abs(c - matcher._init_vectors[0]).sum() for c in matcher.starts.continuous])
        given = matcher._from_start_set(int(far))
        (res,) = matcher.pool.map(final_task, [(*given, 57, 0.6, 1.2, 44100)])
        from_given = matcher.match_audio(res.value[0].mean(axis=0), 57, 0.6, start=given)
    assert "prediction" in result.candidates and np.isfinite(result.candidates["prediction"])
    assert len(result.candidates) == 1 + 6 + 1  # init, nearest starting presets, prediction
    assert result.distance <= result.distance_start and result.distance <= result.distance_init
    assert result.seconds < 5 + 10 * pace  # the budget plus analysis and the final renders
    assert result.render.shape == (2, int(np.float32(result.render_s) * 44100))

    assert set(from_given.candidates) == {"init", "given"}
    assert from_given.start == "given"
    assert from_given.distance_start < 0.05 * from_given.distance_init
    assert from_given.distance <= from_given.distance_start
