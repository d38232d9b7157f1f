"""Search loss: the metric (fine), its time-pooled stand-in (coarse), and the output gain that fits best."""

from __future__ import annotations

import numpy as np
import pytest

from vitalmatch.metrics import magnitude_mel_l1
from vitalmatch.search.loss import SearchTarget, best_gain, search_features, search_loss

SR = 44100


def test_search_loss_is_zero_for_identical_audio_and_grows_with_gain():
    t = np.linspace(0, 0.5, SR // 2, dtype=np.float32)
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    fx = search_features(x, SR)
    assert search_loss(fx, fx) == 0.0
    half = search_loss(search_features(0.5 * x, SR), fx, envelope_weight=0.0)
    quarter = search_loss(search_features(0.25 * x, SR), fx, envelope_weight=0.0)
    assert 0.1 < half < quarter  # loud bins shift by ln 2 per halving (quiet ones stay at the floor)
    assert search_loss(search_features(0.5 * x, SR), fx, envelope_weight=1.0) > half


def test_best_gain_finds_the_level_and_never_loses():
    t = np.linspace(0, 0.5, SR // 2, dtype=np.float32)
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-3 * t)).astype(np.float32)
    fx = search_features(x, SR)
    gain, loss = best_gain(search_features(0.5 * x, SR), fx)
    assert gain == pytest.approx(20 * np.log10(2), abs=0.1) and loss < 0.02
    assert search_loss(search_features(0.5 * x, SR), fx, gain_db=gain) == pytest.approx(loss)
    capped, capped_loss = best_gain(search_features(0.5 * x, SR), fx, hi_db=3.0)  # volume at its top
    assert 2.9 <= capped <= 3.0 and loss < capped_loss < search_loss(search_features(0.5 * x, SR), fx)
    other = search_features(np.sign(x) * 0.01, SR)  # another timbre: whatever the gain, not worse than 0 dB
    assert best_gain(other, fx)[1] <= search_loss(other, fx)
    assert best_gain(search_features(np.zeros_like(x), SR), fx)[0] == 0.0  # silence: nothing to scale


def _beating(detune_hz: float, seconds: float = 1.0) -> np.ndarray:
    """Two saw-like partial stacks ``detune_hz`` apart: the beating that unison detune makes."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(
        np.sin(2 * np.pi * k * 220 * t) / k + np.sin(2 * np.pi * k * (220 + detune_hz) * t) / k
        for k in range(1, 8)
    )
    return (0.1 * x).astype(np.float32)


def test_the_fine_objective_is_the_metric():
    """At 0 dB without the envelope term, the fine loss equals magnitude_mel_l1 (both divided by
    the target's peak)."""
    x, y = _beating(1.0), 0.7 * _beating(1.6)
    peak = float(np.abs(x).max())
    fine = search_loss(search_features(y, SR, "fine", peak), search_features(x, SR, "fine", peak), 0.0)
    assert fine == pytest.approx(magnitude_mel_l1(y, x, SR), rel=1e-4)
    unnormalised = search_loss(search_features(y, SR), search_features(x, SR), 0.0)
    assert unnormalised != pytest.approx(fine, rel=1e-3)  # the peak matters: the floor is absolute


def test_the_coarse_objective_is_smooth_along_unison_detune(registry, catalog):
    """Along Vital's unison detune the metric is a needle: 0 at the target, a plateau 0.5% away
    (the beating lands in other frames). The coarse objective (the metric plus clip-averaged
    spectra) falls towards the target from further out, and ranks the nearer detune closer."""
    from vitalmatch.synth.params import reproducibility_pins
    from vitalmatch.synth.render import RenderConfig, RenderEngine

    engine = RenderEngine(
        registry,
        [e.table for e in catalog],
        RenderConfig(notes=(60,), note_duration_s=1.0, render_duration_s=2.0),
    )
    cont, cat = registry.from_raw({**reproducibility_pins(), "osc_1_unison_voices": 4})
    j = registry.locate("osc_1_unison_detune")[1]
    detunes = float(cont[j]) + np.linspace(-0.05, 0.05, 11)

    def render(u: float) -> np.ndarray:
        c = cont.copy()
        c[j] = u
        return engine.render(c, cat)[0].mean(axis=0)

    target = render(float(cont[j]))
    peak = float(np.abs(target).max())
    renders = [render(u) for u in detunes]

    def curve(objective: str) -> np.ndarray:
        ft = search_features(target, SR, objective, peak)
        return np.array([search_loss(search_features(r, SR, objective, peak), ft, 0.0) for r in renders])

    fine, coarse = curve("fine"), curve("coarse")
    assert fine[5] == 0.0 and coarse[5] == 0.0  # the target's own detune (fork renders are exact)
    # a funnel: 1% of the range away, the coarse loss has come down further from its value 5% away
    for near, far in ((4, 0), (6, 10)):
        assert coarse[near] / coarse[far] < fine[near] / fine[far] - 0.05, (coarse, fine)
    assert coarse[0] > coarse[2] > coarse[4] and coarse[10] > coarse[8] > coarse[6]


def test_a_search_target_refuses_an_unknown_objective():
    with pytest.raises(ValueError, match="objective"):
        SearchTarget("k", np.zeros(100, np.float32), SR, 60, 0.5, objective="medium")
