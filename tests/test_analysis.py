"""Sound analysis on synthetic signals of known structure: each detector finds what was put in,
at the rate and depth put in, and nothing on a plain static tone."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from vitalmatch.analysis import Findings, analyse

SR, NOTE, NOTE_S, F0 = 44100, 60, 1.0, 261.6256
T = np.arange(int(2.0 * SR)) / SR


def gate(x: np.ndarray, release_s: float = 0.005) -> np.ndarray:
    """Hold to note-off, then an exponential fade with time constant ``release_s``."""
    return x * np.where(T < NOTE_S, 1.0, np.exp(-(T - NOTE_S) / release_s))


def saw(phase: np.ndarray | None = None) -> np.ndarray:
    """Band-limited sawtooth of F0 (or of a given phase track), peak ~0.5."""
    phase = 2 * np.pi * F0 * T if phase is None else phase
    return 0.3 * sum(np.sin(k * phase) / k for k in range(1, 40))


def sine() -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * F0 * T)


def _found(f: Findings) -> dict[str, float]:
    return {k: v for k, v in f.__dict__.items() if v}


@pytest.mark.parametrize("signal", [sine, saw])
def test_static_tone_shows_nothing(signal):
    f = analyse(gate(signal()).astype(np.float32), SR, NOTE_S, NOTE)
    assert f.tremolo_hz == f.vibrato_hz == f.sweep_octaves == f.tail_s == 0.0, _found(f)
    assert f.noise_ratio < 0.01 and f.width == 0.0 and f.attack_s < 0.02


def test_tremolo_rate_and_depth():
    m = 0.3  # 1 + m sin: (max - min) / max = 2m / (1 + m)
    f = analyse(gate(saw() * (1 + m * np.sin(2 * np.pi * 5.0 * T))), SR, NOTE_S, NOTE)
    assert f.tremolo_hz == pytest.approx(5.0, abs=0.2)
    assert f.tremolo_depth == pytest.approx(2 * m / (1 + m), rel=0.25)
    assert f.vibrato_hz == 0.0


@pytest.mark.parametrize("note", [NOTE, None])
def test_vibrato_rate_and_depth(note):
    cents = 30.0
    phase = 2 * np.pi * np.cumsum(F0 * 2 ** (cents / 1200 * np.sin(2 * np.pi * 6.0 * T))) / SR
    f = analyse(gate(saw(phase)), SR, NOTE_S, note)
    assert f.vibrato_hz == pytest.approx(6.0, abs=0.25)
    assert f.vibrato_cents == pytest.approx(cents, rel=0.25)
    assert f.tremolo_hz == 0.0


@pytest.mark.parametrize("tau", [0.05, 0.12])
def test_tail_length_and_decay(tau):
    f = analyse(gate(saw(), release_s=tau), SR, NOTE_S, NOTE)
    # -60 dB of the peak is ln(1000) time constants after note-off
    assert f.tail_s == pytest.approx(np.log(1000) * tau, rel=0.3)
    assert f.decay_s == pytest.approx(tau, rel=0.3)
    assert f.tail_db < 0


def test_noise_ratio_grows_with_the_noise_share():
    rng = np.random.default_rng(0)
    tone = saw() / np.std(saw())
    ratios = []
    for share in (0.0, 0.1, 0.3, 0.6):
        x = np.sqrt(1 - share) * tone + np.sqrt(share) * rng.standard_normal(len(T))
        ratios.append(analyse(gate(0.1 * x), SR, NOTE_S, NOTE).noise_ratio)
    assert ratios[0] < 0.01 and np.all(np.diff(ratios) > 0.05), ratios
    assert ratios[2] == pytest.approx(0.3, abs=0.1)


def test_width_of_decorrelated_channels_exceeds_mono():
    x = gate(saw())
    mono = analyse(np.stack([x, x]), SR, NOTE_S, NOTE).width
    detuned = gate(saw(2 * np.pi * F0 * 1.004 * T))
    wide = analyse(np.stack([x, detuned]), SR, NOTE_S, NOTE).width
    assert mono == 0.0 and wide > 0.3


def _swept(start_hz: float, end_hz: float, seconds: float = 0.4) -> np.ndarray:
    """The saw through a 2-pole low-pass whose cutoff moves exponentially over ``seconds``."""
    x, out, block, zi = saw(), np.zeros_like(T), 256, np.zeros((1, 2))
    for i in range(0, len(x), block):
        a = min(i / SR / seconds, 1.0)
        sos = butter(2, start_hz * (end_hz / start_hz) ** a / (SR / 2), output="sos")
        out[i : i + block], zi = sosfilt(sos, x[i : i + block], zi=zi)
    return gate(out)


def test_opening_and_closing_sweeps_have_their_sign():
    opening = analyse(_swept(300.0, 5000.0), SR, NOTE_S, NOTE)
    closing = analyse(_swept(5000.0, 300.0), SR, NOTE_S, NOTE)
    assert opening.sweep_octaves > 0.5 and closing.sweep_octaves < -0.5
    assert 0.2 < opening.sweep_s < 0.6 and 0.2 < closing.sweep_s < 0.6
    # a sweep is not a periodic movement
    assert opening.tremolo_hz == closing.tremolo_hz == closing.vibrato_hz == 0.0


def test_silent_and_malformed_input():
    assert analyse(np.zeros(SR), SR, 0.5) == Findings()
    with pytest.raises(ValueError, match="shape"):
        analyse(np.zeros((3, SR)), SR, 0.5)


def test_fast_enough():
    x = np.stack([gate(saw()), gate(saw())]).astype(np.float32)
    analyse(x, SR, NOTE_S, NOTE)  # first call: imports
    t0 = time.perf_counter()
    analyse(x, SR, NOTE_S, NOTE)
    assert time.perf_counter() - t0 < 0.3
