"""Audio validation thresholds on real renders and constructed signals."""

from __future__ import annotations

import numpy as np
import pytest
import vita

from vitalmatch.data.validation import ValidationConfig, check_audio


@pytest.fixture(scope="module")
def init_render():
    synth = vita.Synth()
    return synth.render(60, 0.7, 0.5, 1.0)


def test_init_preset_is_accepted(init_render):
    assert check_audio(init_render) is None


def test_silent_clipping_nonfinite(init_render):
    assert check_audio(np.zeros((2, 100), np.float32)) == "silent"
    assert check_audio(init_render * 1e-4) == "silent"
    assert check_audio(init_render * 10) == "clipping"
    bad = init_render.copy()
    bad[0, 10] = np.nan
    assert check_audio(bad) == "nonfinite"
    bad[0, 10] = np.inf
    assert check_audio(bad) == "nonfinite"


def test_thresholds_are_configurable(init_render):
    peak = float(np.abs(init_render).max())
    assert check_audio(init_render, ValidationConfig(clip_peak=peak * 0.9)) == "clipping"
    db = 20 * np.log10(peak)
    assert check_audio(init_render, ValidationConfig(silence_peak_db=db + 1)) == "silent"
    with pytest.raises(ValueError):
        ValidationConfig(clip_peak=0)
    with pytest.raises(ValueError):
        ValidationConfig(silence_peak_db=10.0, clip_peak=1.0)
