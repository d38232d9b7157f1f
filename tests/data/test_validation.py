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


@pytest.mark.parametrize(
    "silence_db, clip_peak",
    [
        (-601.0, 1e-30),  # issue 15: no render can pass; the run used to go on forever
        (-250.0, 1.0),  # below the sane range
        (float("-inf"), 1.0),
        (float("nan"), 1.0),
        (0.0, 1.0),  # 0 dBFS: every usable render would be "silent"
        (-0.5, 0.5),  # clip_peak below the silence threshold's peak (0.944)
        (-60.0, float("inf")),
        (-60.0, float("nan")),
        (-60.0, 1e30),  # above the sane range (pcm16 full scale is max(1, clip_peak))
        (-60.0, 0.0),
    ],
)
def test_absurd_thresholds_are_refused(silence_db, clip_peak):
    with pytest.raises(ValueError) as err:
        ValidationConfig(silence_peak_db=silence_db, clip_peak=clip_peak)
    assert len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize(
    "silence_db, clip_peak", [(-200.0, 1.0), (-0.01, 1.0), (-60.0, 10.0), (-200.0, 1e-9), (-60, 2)]
)
def test_thresholds_at_the_documented_bounds_are_accepted(silence_db, clip_peak):
    config = ValidationConfig(silence_peak_db=silence_db, clip_peak=clip_peak)
    config.check()
