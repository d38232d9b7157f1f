"""Search workers: the synth in each pool process, and the tasks the search sends it.

Stage: refine (evaluation). Input: candidate presets (full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry`: ``(C,)`` float32 in [0, 1], ``(K,)`` int32, and
optionally their :class:`~vitalmatch.synth.render.PresetExtras`: modulations, LFO shapes, sample,
custom wavetable files) and a
:class:`~vitalmatch.search.loss.SearchTarget`, sent to a
:class:`~vitalmatch.synth.pool.WorkerPool` started with :func:`init_worker`. Output: per candidate
its search loss and the output gain (dB) it was measured at (:func:`evaluate_batch`), or a
full-quality render and preset JSON (:func:`final_task`).

Speed. A worker keeps one ``vita.Synth`` (``RenderConfig.reproducible=False``) and moves from one
candidate to the next with :meth:`~vitalmatch.synth.render.RenderEngine.update` (only the controls
and modulation amounts that differ are set; a full ``load_json`` only when a wavetable, a load-only
control or the modulation structure changes),
renders at the search rate (44.1 kHz by default: Vital sounds different at 22.05 kHz) for the
target's length, and computes the loss in numpy + scipy.fft on one thread
(:mod:`~vitalmatch.search.spectra`) against target features it caches. Nothing on a worker's path
imports torch (or librosa): their imports were ~3 s of a worker's ~5.5 s start. A candidate that
crashes the synth, times out or returns NaN comes back as NaN; the search gives it a penalty worse
than anything seen, not the run.
"""

from __future__ import annotations

import math
import os

import numpy as np

from vitalmatch.search.loss import (
    LEVEL_MIN_DB,
    OUTPUT_LIMIT,
    SILENCE_PENALTY,
    SILENT_PEAK,
    SearchTarget,
    best_gain,
    search_features,
    search_loss,
)
from vitalmatch.synth.params import ParamRegistry, volume_db
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.render import PresetExtras


class _Searcher:
    """A worker's synth: keeps the last candidate's state and changes only what differs."""

    def __init__(self, registry: ParamRegistry, tables: list[dict], sample_rate: int) -> None:
        from vitalmatch.synth.render import RenderConfig, RenderEngine

        self.registry = registry
        self.tables = tables
        self.engine = RenderEngine(
            registry,
            tables,
            RenderConfig(sample_rate=sample_rate, notes=(60,), reproducible=False, settle_duration_s=0.5),
        )
        self.volume_col = registry.locate("volume")[1]
        self.target_key: tuple | None = None
        self.target_feats: list | None = None
        self.full_engines: dict = {}

    def evaluate(
        self, cont: np.ndarray, cat: np.ndarray, target: SearchTarget, extras: PresetExtras | None = None
    ) -> tuple[float, float]:
        """``(search loss, output gain in dB it was measured at)``: 0 dB, or with
        ``target.match_level`` the best gain the candidate's ``volume`` can still reach."""
        key = (target.key, target.objective)
        if self.target_key != key:
            self.target_feats = search_features(
                target.audio, target.sample_rate, target.objective, target.peak
            )
            self.target_key = key
        self.engine.update(cont, cat, extras)
        audio = self.engine.render_note(int(target.note), float(target.note_s), float(target.render_s))
        if not np.isfinite(audio).all():
            raise ValueError("the render holds NaN or Inf")
        # no flush here: render_note flushes before each note (one flush per evaluation, not two:
        # a flush costs ~11% of a 2 s render, benchmarks/search_speed.py)
        mono = audio.mean(axis=0)[: len(target.audio)]
        feats = search_features(mono, target.sample_rate, target.objective, target.peak)
        weight = target.envelope_weight if target.objective == "coarse" else 0.0  # fine: the metric alone
        peak = float(np.abs(audio).max())
        if not target.match_level:
            loss = search_loss(feats, self.target_feats, weight)
            return loss + (SILENCE_PENALTY if peak < SILENT_PEAK else 0.0), 0.0
        volume = self.registry["volume"]
        now_db = volume_db(volume.from_unit(float(cont[self.volume_col])))
        hi = volume_db(volume.max) - now_db
        if peak > 0:  # stay below vita's output clamp (+-2.1), where the gain stops being exact
            hi = min(hi, 20.0 * math.log10(OUTPUT_LIMIT / peak))
        gain, loss = best_gain(
            feats, self.target_feats, weight, min(0.0, LEVEL_MIN_DB - now_db), max(0.0, hi)
        )
        if peak * 10.0 ** (gain / 20.0) < SILENT_PEAK:  # silent at the level it would be returned at
            loss += SILENCE_PENALTY
        return loss, gain

    def final(self, cont, cat, note: int, note_s: float, render_s: float, sample_rate: int, extras=None):
        """Full-quality render (fresh synth, ``(2, T)``) and the preset JSON text the synth writes."""
        from vitalmatch.synth.render import RenderConfig, RenderEngine

        config = RenderConfig(
            sample_rate=sample_rate, notes=(note,), note_duration_s=note_s, render_duration_s=render_s
        )
        engine = self.full_engines.get(config)
        if engine is None:
            engine = self.full_engines[config] = RenderEngine(self.registry, self.tables, config)
        engine.load(cont, cat, extras)
        audio = engine.render_note(note)
        if not np.isfinite(audio).all():
            raise ValueError("the render holds NaN or Inf")
        return audio, engine.to_json()


_SEARCHER: _Searcher | None = None
#: Test hook: ``"N"`` makes every N-th evaluation of a worker crash the synth for real
#: (:meth:`~vitalmatch.synth.render.RenderEngine.crash`), to check that a search survives crashes.
CRASH_EVERY_ENV = "VITALMATCH_TEST_CRASH_EVERY"
_TASKS_DONE = 0
_CRASH_EVERY = 0


def init_worker(registry_json: str, tables: list[dict], sample_rate: int) -> None:
    """Pool initializer: one synth per worker process (the loss runs on one thread, without torch)."""
    global _SEARCHER, _CRASH_EVERY
    _CRASH_EVERY = int(os.environ.get(CRASH_EVERY_ENV) or 0)
    _SEARCHER = _Searcher(ParamRegistry.from_json(registry_json), tables, sample_rate)


def evaluate_task(task: tuple) -> tuple[float, float]:
    """Pool task ``(continuous, categorical, extras or None, SearchTarget)`` -> ``(search loss,
    gain dB)``."""
    global _TASKS_DONE
    assert _SEARCHER is not None, "the pool was not started with vitalmatch.search.init_worker"
    _TASKS_DONE += 1
    if _CRASH_EVERY and _TASKS_DONE % _CRASH_EVERY == 0:
        _SEARCHER.engine.crash()
    cont, cat, extras, target = task
    return _SEARCHER.evaluate(np.asarray(cont, np.float32), np.asarray(cat, np.int32), target, extras)


def final_task(task: tuple):
    """Pool task ``(continuous, categorical, note, note_s, render_s, sample_rate[, extras])`` ->
    ``((2, T) float32 audio, preset JSON text)`` from a fresh, full-quality synth."""
    assert _SEARCHER is not None, "the pool was not started with vitalmatch.search.init_worker"
    cont, cat, note, note_s, render_s, sample_rate = task[:6]
    extras = task[6] if len(task) > 6 else None
    return _SEARCHER.final(
        np.asarray(cont, np.float32), np.asarray(cat, np.int32), note, note_s, render_s, sample_rate, extras
    )


def evaluate_batch(
    pool: WorkerPool, candidates: list[tuple], target: SearchTarget
) -> tuple[np.ndarray, np.ndarray, int]:
    """Search losses ``(n,)`` of candidates ``(continuous, categorical)`` or ``(continuous,
    categorical, extras)`` evaluated in parallel (parent side of :func:`evaluate_task`); failed ones
    are NaN.

    Returns:
        ``(losses, gains_db, failures)``: ``gains_db`` ``(n,)`` is the output gain each loss was
        measured at (0 without ``target.match_level``; apply it with
        :meth:`~vitalmatch.synth.params.ParamRegistry.with_output_gain`).
    """
    losses = np.full(len(candidates), np.nan)
    gains = np.zeros(len(candidates))
    tasks = ((c[0], c[1], c[2] if len(c) > 2 else None, target) for c in candidates)
    for result in pool.map_unordered(evaluate_task, tasks):
        if result.ok and math.isfinite(result.value[0]):
            losses[result.index], gains[result.index] = result.value
    return losses, gains, int(np.isnan(losses).sum())
