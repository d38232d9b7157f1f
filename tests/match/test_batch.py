"""The match command end to end (:mod:`vitalmatch.match.batch` under the real CLI): one file or a
folder of them, the real synth, the session's built-in starting set."""

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

from tests.match.common import run_match as _run
from tests.processes import default_sigint
from tests.sounds import START_SET, render_vital
from tests.vital_app import assert_app_loads
from vitalmatch.outputs import render_wav_path
from vitalmatch.synth.export import read_vital


def test_match_without_checkpoint_end_to_end(match_cache, sounds, tmp_path, capsys):
    """``match sound0.wav -o sound0.vital --wav --overwrite``: the preset, and its render beside it
    as ``sound0.match.wav``, never over the input (which used to be overwritten by the render; one
    run, one Matcher start-up, checks both)."""
    src = tmp_path / "sound0.wav"
    src.write_bytes(sounds[0].read_bytes())
    input_bytes = src.read_bytes()
    out = tmp_path / "sound0.vital"
    args = ["-o", out, "--budget-s", "6", "--start-set", START_SET, "--wav", "--overwrite", "--no-progress"]
    r = _run([src, *args], match_cache, capsys)
    assert r.returncode == 0, r.stderr
    assert src.read_bytes() == input_bytes  # the render never replaces the input
    assert render_wav_path(out) == tmp_path / "sound0.match.wav"
    assert f"wrote {tmp_path / 'sound0.match.wav'}" in r.stdout
    m = re.search(r"magnitude mels\): init ([\d.]+), start ([\d.]+), after ([\d.]+)", r.stdout)
    assert m, r.stdout
    init, before, after = map(float, m.groups())
    assert after <= before and after <= init
    assert after < 0.9 * init  # a 6-second search gets measurably closer than the init preset
    assert re.search(r"search: \d+ renders in [\d.]+ s", r.stdout)
    preset = read_vital(out)
    assert preset["preset_name"] == "sound0" and "sound0.wav" in preset["comments"]
    audio = render_vital(preset)  # the file loads in a fresh synth and sounds
    assert np.abs(audio).max() > 1e-3
    assert_app_loads(out)  # the Vital app's own checks (version stamp, strict JSON)
    wav, sr = sf.read(render_wav_path(out))
    assert sr == 44100 and wav.shape[1] == 2


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
def test_bad_input_gives_one_line(match_cache, tmp_path, make, message, capsys):
    path = make(tmp_path)
    r = _run(
        [path, "-o", tmp_path / "o.vital", "--start-set", START_SET, "--no-progress"], match_cache, capsys
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and message in line
    assert not (tmp_path / "o.vital").exists()


def test_an_output_that_is_the_input_is_refused(match_cache, sounds, tmp_path, capsys):
    """An output that is the input, by any spelling, is refused before any work, even with
    ``--overwrite`` (that the render of a normal run never replaces its input is checked by
    :func:`test_match_without_checkpoint_end_to_end`)."""
    before = sounds[0].read_bytes()
    named = tmp_path / "x.match.wav"
    named.write_bytes(before)
    r = _run(
        [named, "-o", tmp_path / "sub" / ".." / "x.vital", "--wav", "--overwrite", "--no-progress"],
        match_cache,
        capsys,
    )
    assert r.returncode == 1 and "is the input" in r.stderr.strip().splitlines()[-1]
    assert named.read_bytes() == before and not (tmp_path / "x.vital").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget-s", "inf"], "--budget-s must be a number of seconds in (0, 86400]"),
        (["--budget-s", "nan"], "--budget-s must be a number of seconds"),
        (["--start-set", "100000"], "--start-set must be in 0..10000, got 100000"),
    ],
)
def test_absurd_options_are_refused_at_once(match_cache, sounds, tmp_path, args, message, capsys):
    r = _run([sounds[0], "-o", tmp_path / "o.vital", *args, "--no-progress"], match_cache, capsys)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {message}")


def test_an_unwritable_output_is_refused_before_the_search(match_cache, sounds, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    r = _run(
        [sounds[0], "-o", tmp_path / "file" / "o.vital", "--start-set", START_SET, "--no-progress"],
        match_cache,
        capsys,
    )
    assert r.returncode == 1 and "search:" not in r.stdout
    assert r.stderr.strip() == f"error: cannot write into {tmp_path / 'file'}: it is a file, not a folder"


def test_the_built_in_example_is_the_main_job(match_cache, tmp_path, capsys):
    """``vitalmatch match --example pad -o pad.vital``: the README's first command, no audio needed."""
    out = tmp_path / "pad.vital"
    r = _run(
        ["--example", "pad", "-o", out, "--max-evals", "4", "--start-set", START_SET, "--no-progress"],
        match_cache,
        capsys,
    )
    assert r.returncode == 0, r.stderr
    assert "MIDI 57" in r.stdout and f"wrote {out}" in r.stdout  # the pad example plays A3 (220 Hz)
    assert read_vital(out)["preset_name"] == "pad"
    assert_app_loads(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--example", "kazoo"], "no example sound 'kazoo'; choose from pluck, pad, bass"),
        ([], "give one sound: an INPUT file or folder, or --example NAME"),
        (["some.wav", "--example", "pad"], "give one sound: an INPUT file or folder, or --example NAME"),
    ],
)
def test_example_choice_errors(match_cache, tmp_path, args, message, capsys):
    r = _run([*args, "-o", tmp_path / "o.vital", "--no-progress"], match_cache, capsys)
    assert r.returncode == 1 and r.stderr.strip() == f"error: {message}"
