"""The built-in starting set: built on first use, announced, then cached."""

from __future__ import annotations

import re


def test_a_first_start_set_build_is_announced_with_its_time(tmp_path, monkeypatch):
    """Even without progress bars: a large --start-set used to start an hours-long build silently.
    (The library announces through ``notify``; the CLI passes one that prints to stderr.)"""
    from vitalmatch.match import ensure_start_set

    monkeypatch.setenv("VITALMATCH_CACHE", str(tmp_path))
    said: list[str] = []
    starts = ensure_start_set(3, workers=1, progress=False, notify=said.append)
    err = "\n".join(said)
    for tier in (1, 2, 3):  # the whole synth: a third of the set per sampling tier
        assert re.search(
            rf"building the built-in starting set, Tier {tier} \(1 presets x 5 notes, once; about \d+ min "
            r"on 1 workers\)",
            err,
        ), err
    assert len(starts) >= 3 and len(starts.extras) == len(starts)
    names = set(starts.names)
    assert any("t1" in n for n in names) and any("t3" in n for n in names), names
    said.clear()
    ensure_start_set(3, workers=1, progress=False, notify=said.append)  # cached: nothing to say
    assert "building" not in "\n".join(said)
