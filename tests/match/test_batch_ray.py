"""``vitalmatch match FOLDER/ --backend ray``: each sound's whole match runs in a Ray worker (a
private Ray started on this machine), the driver writes the presets and ``summary.tsv`` as the
local path does, and a sound that is not audio fails alone."""

from __future__ import annotations

import numpy as np
import pytest

from tests.processes import cli_in_process
from tests.sounds import START_SET, render_vital
from vitalmatch.synth.export import read_vital

pytest.importorskip("ray")

pytestmark = pytest.mark.timeout(400)


def test_folder_on_ray_writes_every_preset(match_cache, sounds, tmp_path, monkeypatch, capsys):
    # the driver's $VITALMATCH_CACHE (the starting set) reaches the Ray workers
    monkeypatch.setenv("VITALMATCH_CACHE", str(match_cache))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    folder = tmp_path / "in"
    folder.mkdir()
    for s in sounds:
        (folder / s.name).write_bytes(s.read_bytes())
    (folder / "broken.wav").write_text("not audio at all")
    out = tmp_path / "out"
    args = ["match", folder, "-o", out, "--backend", "ray", "--workers", "1", "--budget-s", "2"]
    r = cli_in_process(capsys, *args, "--start-set", START_SET, "--no-progress")
    assert r.returncode == 1  # the broken file, alone
    assert "1 of 3 inputs failed" in r.stderr and "broken.wav" in r.stderr
    assert not (out / "broken.vital").exists()
    rows = {row.split("\t")[0]: row.split("\t") for row in (out / "summary.tsv").read_text().splitlines()[1:]}
    assert set(rows) == {"sound0.wav", "sound1.wav", "broken.wav"}
    for s in sounds:
        preset = read_vital(out / f"{s.stem}.vital")
        assert preset["preset_name"] == s.stem and s.name in preset["comments"]
        assert np.abs(render_vital(preset)).max() > 1e-3  # a real preset that sounds
        init, start, final = (float(x) for x in rows[s.name][2:5])
        assert final <= start and final <= init
