"""Refinement with the real synth in worker processes: recovery, budgets, crashes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.pace import slowdown
from vitalmatch.search import (
    CRASH_EVERY_ENV,
    ELITES,
    RefineConfig,
    SearchTarget,
    init_worker,
    refine,
    searchable_columns,
)
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.render import RenderConfig, RenderEngine

SR = 44100
NOTE = 57
PERTURBED = {"filter_1_cutoff": 0.25, "osc_1_level": -0.3, "env_1_decay": -0.25}


@pytest.fixture(scope="module")
def setup(registry, catalog):
    """A known preset (init with filter 1 on), its render, and a pool of search workers."""
    tables = [e.table for e in catalog]
    cont, cat = registry.defaults()
    cont, cat = cont.astype(np.float32), cat.astype(np.int32)
    cat[registry.locate("filter_1_on")[1]] = 1
    for name, u in (
        ("filter_1_cutoff", 0.45),
        ("filter_1_resonance", 0.5),
        ("env_1_decay", 0.5),
        ("env_1_sustain", 0.3),
    ):
        cont[registry.locate(name)[1]] = u
    for osc in (1, 2, 3):
        cont[registry.locate(f"osc_{osc}_random_phase")[1]] = 0.0
    engine = RenderEngine(
        registry,
        tables,
        RenderConfig(sample_rate=SR, notes=(NOTE,), note_duration_s=0.4, render_duration_s=0.6),
    )
    audio = engine.render(cont, cat)[0].mean(axis=0)
    target = SearchTarget("known", audio, SR, NOTE, 0.4)
    with WorkerPool(
        2, initializer=init_worker, initargs=(registry.to_json(), tables, SR), task_timeout_s=20
    ) as pool:
        yield pool, cont, cat, target


def _perturbed(registry, cont):
    c = cont.copy()
    for name, delta in PERTURBED.items():
        j = registry.locate(name)[1]
        c[j] = np.clip(c[j] + delta, 0, 1)
    return c


def test_the_search_sets_the_level_through_volume(registry, setup):
    """A start 9 dB too quiet: the first evaluation moves its volume back, CMA-ES leaves it alone."""
    pool, cont, cat, target = setup
    j = registry.locate("volume")[1]
    start = registry.with_output_gain(cont, -9.0)
    result = refine(pool, registry, (start, cat), target, RefineConfig(budget_s=600, max_evals=20, seed=1))
    assert result.start_loss < 0.05 and result.loss <= result.start_loss
    assert abs(float(result.continuous[j] - cont[j])) < 0.003
    assert j not in searchable_columns(registry, cont, cat, tier=1, exclude=frozenset({"volume"}))
    unmatched = dataclasses.replace(target, key="known, level as rendered", match_level=False)
    plain = refine(pool, registry, (start, cat), unmatched, RefineConfig(budget_s=600, max_evals=1))
    assert plain.start_loss > 0.5  # without level matching the same start is far (9 dB: ln 2.8 per loud bin)


def test_searchable_columns_follow_the_switches(registry, setup):
    _, cont, cat = setup[:3]
    cols = {registry.continuous[j].name for j in searchable_columns(registry, cont, cat, tier=1)}
    assert "filter_1_cutoff" in cols and "env_1_decay" in cols
    assert "osc_1_random_phase" not in cols  # frozen pin
    assert not any(n.startswith("osc_3") or n.startswith("lfo_") for n in cols)  # off / not tier 1
    off = cat.copy()
    off[registry.locate("filter_1_on")[1]] = 0
    cols_off = {registry.continuous[j].name for j in searchable_columns(registry, cont, off, tier=1)}
    assert "filter_1_cutoff" not in cols_off


def test_refinement_recovers_perturbed_parameters(registry, setup):
    pool, cont, cat, target = setup
    start = _perturbed(registry, cont)
    result = refine(pool, registry, (start, cat), target, RefineConfig(budget_s=900, max_evals=450, seed=1))
    assert result.start_loss > 0.5, "the perturbation must be audible for the test to mean anything"
    assert result.loss < 0.6 * result.start_loss, (
        result.start_loss,
        result.loss,
        result.stopped_by,
    )
    # the cutoff has no stand-in among the other parameters: it comes back (level and decay can be
    # traded against volume and the envelope's hold / curve, so only the sound is checked for them).
    # Search workers keep their synth's state between candidates, so a result depends a little on
    # which worker got which candidate: 0.062 was seen once, 0.098 in a CI run with two test
    # processes (the start is 0.25 off: within half of it is back).
    j = registry.locate("filter_1_cutoff")[1]
    assert abs(float(result.continuous[j] - cont[j])) < 0.125
    # the curve is monotone and ends at the reported loss
    bests = [b for _, _, b in result.curve]
    assert all(b2 <= b1 for b1, b2 in zip(bests, bests[1:], strict=False))
    assert bests[-1] == pytest.approx(result.loss)
    # the remembered best points: the result first, then runner-ups, none worse than the start
    losses = [loss for _, _, loss, _ in result.elites]
    assert 2 <= len(losses) <= ELITES and losses == sorted(losses) and losses[0] == result.loss
    assert np.array_equal(result.elites[0][0], result.continuous)
    # (points of the coarse phase are scored again on the metric when the search switches back)
    assert all(result.loss <= loss <= result.start_loss for loss in losses)


def test_budgets_are_respected(registry, setup):
    pool, cont, cat, target = setup
    start = _perturbed(registry, cont)
    by_evals = refine(pool, registry, (start, cat), target, RefineConfig(budget_s=600, max_evals=37))
    assert by_evals.evals <= 37 and by_evals.stopped_by == "evals"
    pace = slowdown()
    by_time = refine(pool, registry, (start, cat), target, RefineConfig(budget_s=2.0))
    assert by_time.stopped_by == "budget"
    assert by_time.seconds < 2.0 + 1.5 * pace  # at most one generation past the deadline
    assert by_time.loss <= by_time.start_loss


def test_a_crashing_candidate_does_not_stop_the_search(registry, catalog, setup, monkeypatch):
    _, cont, cat, target = setup
    # workers inherit it: every 10th render of a worker segfaults. Each crash costs a worker start
    # (spawn and synth, ~1.5-3 s), so 40 evaluations give 3-4 crashes, not the 6-7 of every
    # 6th; at least 3 whatever the split: the two live workers hold at most 9 renders each.
    monkeypatch.setenv(CRASH_EVERY_ENV, "10")
    tables = [e.table for e in catalog]
    with WorkerPool(
        2, initializer=init_worker, initargs=(registry.to_json(), tables, SR), task_timeout_s=20
    ) as pool:
        start = (_perturbed(registry, cont), cat)
        result = refine(pool, registry, start, target, RefineConfig(budget_s=600, max_evals=40))
    assert result.failures >= 2
    assert result.evals == 40 and result.stopped_by == "evals"
    assert result.loss < result.start_loss
