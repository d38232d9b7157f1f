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
    assert len(result.candidates) - len(at_note) == 1 + 6 + 1  # init, nearest starting presets, prediction
    assert 1 <= len(at_note) <= 8  # octaves, and semitones when the detector is unsure
    assert result.distance <= result.distance_start and result.distance <= result.distance_init
    assert result.seconds < 5 + 10 * pace  # the budget plus analysis and the final renders
    assert result.render.shape == (2, int(np.float32(result.render_s) * 44100))

    assert set(from_given.candidates) == {"init", "given"}
    assert from_given.start == "given"
    assert from_given.distance_start < 0.05 * from_given.distance_init
    assert from_given.distance <= from_given.distance_start
