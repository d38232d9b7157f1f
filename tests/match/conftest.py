"""Fixtures of the match tests: two synthetic target sounds (the starting set is the session's
``match_cache``, in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.sounds import write_audible_wavs


@pytest.fixture(scope="session")
def sounds(tmp_path_factory, registry, catalog):
    """Two synthetic target sounds (random Tier-1 presets at MIDI 57, 1.2 s) as WAV files."""
    folder = tmp_path_factory.mktemp("sounds")
    return write_audible_wavs(
        registry, catalog, folder, ["sound0.wav", "sound1.wav"], seed=11, note_s=0.6, render_s=1.2
    )
