"""The matcher as a library: a checkpoint's prediction as a candidate, a given start."""

from __future__ import annotations

import numpy as np

from tests.pace import slowdown
from tests.sounds import START_SET


def test_matcher_with_a_checkpoint_uses_the_prediction_unless_given_a_start(
    match_cache, sounds, tiny_eval_checkpoint, monkeypatch
):
    """With a checkpoint the prediction is a candidate; ``match_audio(start=...)`` searches from the
    given preset instead (on a sound made by it, the start is already at the floor) and consults
    neither the starting set nor the network."""
    from vitalmatch.match import MatchConfig, Matcher
    from vitalmatch.search import final_task

    monkeypatch.setenv("VITALMATCH_CACHE", str(match_cache))
    pace = slowdown()
    with Matcher(MatchConfig(budget_s=5, start_set_size=START_SET), tiny_eval_checkpoint) as matcher:
        result = matcher.match_file(sounds[1])
        far = np.argmax([np.abs(c - matcher._init_vectors[0]).sum() for c in matcher.starts.continuous])
        given = matcher._from_start_set(int(far))
        (res,) = matcher.pool.map(final_task, [(given[0], given[1], 57, 0.6, 1.2, 44100, given[2])])
        from_given = matcher.match_audio(res.value[0].mean(axis=0), 57, 0.6, start=given)
    assert "prediction" in result.candidates and np.isfinite(result.candidates["prediction"])
    at_note = [c for c in result.candidates if " at note " in c]  # the octaves of the best two
    predicted = [c for c in result.candidates if c.startswith("prediction") and " at note " not in c]
    # a 5-s budget scores what a share of it affords (plan_starts), the network's first
    neighbours = [c for c in result.candidates if c.startswith("start set") and " at note " not in c]
    assert 1 <= len(predicted) <= MatchConfig().model_candidates  # the network's top K (repeats dropped)
    assert len(neighbours) <= 6
    assert len(result.candidates) - len(at_note) == 1 + len(neighbours) + len(predicted)
    assert len(at_note) <= 8  # octaves, and semitones when the detector is unsure
    assert result.distance <= result.distance_start and result.distance <= result.distance_init
    assert result.seconds < 5 + 2 * pace  # the budget (final renders included) plus the analysis
    assert result.render.shape == (2, int(np.float32(result.render_s) * 44100))

    assert set(from_given.candidates) == {"init", "given"}
    assert from_given.start == "given"
    assert from_given.distance_start < 0.05 * from_given.distance_init
    assert from_given.distance <= from_given.distance_start


def test_a_silent_start_is_never_returned_even_where_the_metric_prefers_silence(match_cache, monkeypatch):
    """A 20-ms click in a 1.5-s clip is mostly floor, and so is silence: the metric ranks silence
    above the init preset there. The benchmark's djembe came back silent that way (its start was
    silent at full quality and was kept by default); the result must sound."""
    from vitalmatch.match import MatchConfig, Matcher
    from vitalmatch.metrics import magnitude_mel_l1
    from vitalmatch.search.loss import SILENT_PEAK

    monkeypatch.setenv("VITALMATCH_CACHE", str(match_cache))
    sr, n = 44100, int(0.02 * 44100)
    target = np.zeros(int(1.5 * sr), np.float32)
    rng = np.random.default_rng(0)
    target[:n] = rng.standard_normal(n).astype(np.float32) * 0.5 * np.exp(-np.arange(n) / (0.3 * n))
    config = MatchConfig(refine=False, start_set_size=0, pitch_search=False, structure=False, workers=1)
    with Matcher(config, None, progress=False) as matcher:
        cont, cat = (v.copy() for v in matcher._init_vectors)
        kind, col = matcher.registry.locate("osc_1_on")
        (cont if kind == "continuous" else cat)[col] = 0  # nothing sounds
        result = matcher.match_audio(target, 57, 0.02, start=(cont, cat))
    silence = magnitude_mel_l1(np.zeros_like(target), target, sr)
    assert silence < result.distance_init  # the premise: here the metric prefers silence
    assert result.distance_start == silence or abs(result.distance_start - silence) < 1e-3
    assert float(np.abs(result.render).max()) >= SILENT_PEAK and result.kept == "init"
