"""``vitalmatch match FOLDER``: one run over a folder (one Matcher start-up) checked by several
tests: a file that is not audio fails alone, inputs that share a stem get distinct presets, and
float files far above full scale are matched."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from tests.match.common import run_match_captured
from tests.sounds import START_SET
from tests.vital_app import assert_app_loads
from vitalmatch.synth.export import read_vital


def _hot_tone(peak: float) -> tuple[np.ndarray, int]:
    """A decaying 220 Hz tone (stereo, 1 s) scaled to ``peak``, far above full scale."""
    sr = 44100
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 220 * t) * np.exp(-3 * t)
    return np.stack([tone, tone], 1) * peak, sr


HOT_PEAKS = (1e20, 3e38)


@pytest.fixture(scope="module")
def folder_run(match_cache, sounds, tmp_path_factory):
    """One ``match FOLDER`` run (one Matcher start-up) shared by the folder tests below: a good
    sound, a file that is not audio, two inputs that share the stem ``a`` and a third with the
    same sound, and float files far above full scale. Returns ``(CliRun, out folder)``."""
    tmp = tmp_path_factory.mktemp("folder")
    folder = tmp / "in"
    folder.mkdir()
    (folder / "good.wav").write_bytes(sounds[1].read_bytes())
    (folder / "broken.wav").write_text("not audio at all")
    audio, sr = sf.read(sounds[0])
    sf.write(folder / "a.wav", audio, sr)
    sf.write(folder / "a.flac", audio[::-1], sr)  # another sound under the same stem
    sf.write(folder / "b.wav", audio, sr)
    for peak in HOT_PEAKS:
        sf.write(folder / f"hot{peak:g}.wav", *_hot_tone(peak), subtype="FLOAT")
    out = tmp / "out"
    # 4 evaluations a sound: these tests check what each input gets (a preset, a row, an error),
    # not how far a search goes (that is test_batch.py's end-to-end run); 12 cost ~2 s more a sound
    args = [folder, "-o", out, "--max-evals", "4", "--start-set", START_SET, "--no-progress"]
    return run_match_captured(args, match_cache), out


def _summary(out) -> dict[str, list[str]]:
    rows = (out / "summary.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:5] == ["input", "note", "init", "start", "final"]
    return {row.split("\t")[0]: row.split("\t") for row in rows[1:]}


def test_batch_folder_with_a_bad_file(folder_run):
    r, out = folder_run
    assert r.returncode == 1
    assert "1 of 7 inputs failed" in r.stderr and "broken.wav" in r.stderr
    assert (out / "good.vital").is_file() and not (out / "broken.vital").exists()
    rows = _summary(out)
    assert set(rows) == {"good.wav", "broken.wav", "a.wav", "a.flac", "b.wav", "hot1e+20.wav", "hot3e+38.wav"}
    assert rows["broken.wav"][6].startswith("error:")
    for name, row in rows.items():
        if name != "broken.wav":
            assert float(row[4]) <= float(row[3]), row  # final <= start


def test_folder_inputs_that_share_a_name_get_distinct_presets(folder_run):
    r, out = folder_run
    vitals = sorted(p.name for p in out.glob("*.vital"))
    assert vitals == [
        "a.flac.vital",
        "a.wav.vital",
        "b.vital",
        "good.vital",
        "hot1e+20.vital",
        "hot3e+38.vital",
    ]
    assert "wrote 6 presets" in r.stdout
    names = {p.name: read_vital(p)["preset_name"] for p in out.glob("*.vital")}
    assert {k: names[k] for k in ("a.wav.vital", "a.flac.vital", "b.vital")} == {
        "a.wav.vital": "a.wav",
        "a.flac.vital": "a.flac",
        "b.vital": "b",
    }


def test_a_float_file_far_above_full_scale_is_matched(folder_run):
    """Peaks of 1e20 made every loss non-finite; 3e38 (near float32's limit) read as 0 ms long."""
    _, out = folder_run
    rows = _summary(out)
    for peak in HOT_PEAKS:
        vital = out / f"hot{peak:g}.vital"
        comments = read_vital(vital)["comments"]
        assert re.search(r"note 57 \(2[12]\d\.\d Hz\)", comments), comments  # 220 Hz detected
        assert all(np.isfinite(float(x)) for x in rows[f"hot{peak:g}.wav"][2:5]), rows
        assert_app_loads(vital)
