"""The built-in starting set: built on first use, announced, then cached."""

from __future__ import annotations

import re


def test_a_first_start_set_build_is_announced_with_its_time(tmp_path, monkeypatch):
    """Even without progress bars: a large --start-set used to start an hours-long build silently.
    (The library announces through ``notify``; the CLI passes one that prints to stderr.)"""
    from vitalmatch.match import ensure_start_set

    monkeypatch.setenv("VITALMATCH_CACHE", str(tmp_path))
    said: list[str] = []
    starts = ensure_start_set(2, workers=1, progress=False, notify=said.append)
    err = "\n".join(said)
    assert re.search(
        r"building the built-in starting set \(2 presets x 5 notes, once; about \d+ min on 1 workers\)", err
    )
    assert len(starts) >= 2
    said.clear()
    ensure_start_set(2, workers=1, progress=False, notify=said.append)  # cached: nothing to say
    assert "building" not in "\n".join(said)
