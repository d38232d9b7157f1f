"""Refinement: search a preset's parameters with the synth in the loop (CMA-ES + a discrete pass).

Stage: refine. Input: a starting preset (full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry`: ``(C,)`` float32 in [0, 1], ``(K,)`` int32), a
:class:`SearchTarget` (mono audio ``(T,)`` float32 at the search rate, the MIDI note and note
length to play) and a :class:`~vitalmatch.synth.pool.WorkerPool` started with
:func:`init_worker`. Output: :class:`Refinement` -- the best vectors found, their search loss,
and the loss curve.

The search (:func:`refine`) runs in phases on one time and evaluation budget:

1. CMA-ES (Hansen 2016, https://arxiv.org/abs/1604.00772; the ``cma`` package) over the
   continuous parameters of the tier that can affect the sound with the current switches
   (:func:`vitalmatch.synth.activity.activity_masks`), from the start, sigma ``sigma0``, bounds
   [0, 1];
2. a discrete pass over categoricals: the runner-up options of the most uncertain network
   choices (with probabilities), or a few alternatives of each active categorical (without);
   one change is taken per round when it lowers the loss;
3. CMA-ES again from the best point, over the parameters active after the discrete pass.

Speed. Each evaluation is a task for the pool; a worker keeps one ``vita.Synth``
(``RenderConfig.reproducible=False``), sets only the controls that differ from its last
candidate through cached handles (a full ``load_json`` only when a wavetable changes), renders at
the search rate (44.1 kHz by default: Vital sounds different at 22.05 kHz) for the target's
length, and computes the loss with torch on one thread against target features it caches. A candidate that crashes the synth,
times out or returns NaN costs a penalty worse than anything seen, not the run.

Loss (:func:`search_loss`): the mean over three scales (~10 / 25 / 100 ms windows, as
:func:`vitalmatch.metrics.multiscale_mel_l1`) of the L1 distance of ``log(mel + 1e-5)``, plus
``envelope_weight`` times the L1 distance of ``log(mean square + 1e-5)`` over 10 ms frames (the
loudness contour, same natural-log power units).

Output level (``SearchTarget.match_level``, on by default). The log-mel distance is very
sensitive to level (on a synthetic target's true preset, a volume 3 dB off alone cost 0.35 and
one 6 dB off 0.68, as much as a wrong wavetable: ``benchmarks/match_sensitivity.py``), and
Vital's master ``volume`` is an exact gain on the output (:func:`vitalmatch.synth.params.volume_db`).
So each candidate is scored at the output gain that fits the target best (:func:`best_gain`,
within what its ``volume`` can still reach), the point kept carries that ``volume``, and CMA-ES
leaves ``volume`` out of its dimensions: the level is solved, not searched.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vitalmatch.synth.params import ParamRegistry, volume_db
from vitalmatch.synth.pool import WorkerPool

#: Controls that only take effect when a preset is loaded (vita-facts §2.2), besides wavetables.
LOAD_ONLY = frozenset({"oversampling"})
#: Parameters the search never changes (reproducibility pins of the sampler).
FROZEN = frozenset(
    [f"osc_{i}_random_phase" for i in (1, 2, 3)] + [f"osc_{i}_transpose_quantize" for i in (1, 2, 3)]
)
#: Pitch offsets: CMA-ES leaves them alone (a continuous search over transposition wanders between
#: octaves and harmonics: measured, a 24-dimensional search from a perturbed init preset ended at
#: 0.60 of the start loss with them after 900 renders, at 0.06 without); the discrete pass tries octaves instead.
PITCH = frozenset([f"osc_{i}_transpose" for i in (1, 2, 3)] + [f"osc_{i}_tune" for i in (1, 2, 3)])


# ------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class SearchTarget:
    """What a candidate is compared with, and how it is played.

    Attributes:
        key: identifies the target (workers cache its features by key).
        audio: ``(T,)`` float32 mono at ``sample_rate``; candidates render ``T`` samples.
        sample_rate: Hz of the search renders.
        note: MIDI note.
        note_s: seconds from note-on to note-off (may exceed the render: the note is held).
        envelope_weight: weight of the loudness-contour term of :func:`search_loss`.
        match_level: score each candidate at its best output gain (:func:`best_gain`) and move
            its ``volume`` there (see the module docstring).
    """

    key: str
    audio: np.ndarray
    sample_rate: int
    note: int
    note_s: float
    envelope_weight: float = 0.5
    match_level: bool = True

    @property
    def render_s(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass(frozen=True)
class RefineConfig:
    """Search settings.

    Attributes:
        tier: the tier whose continuous (and categorical) parameters may change.
        budget_s: wall-clock seconds for the whole search (checked between generations).
        max_evals: candidate evaluations at most (None: only the time budget).
        sigma0: CMA-ES initial step size in normalised units.
        popsize: CMA-ES population (None: the ``cma`` default, 4 + 3 ln n).
        first_phase: share of the budget for the first CMA-ES phase.
        discrete_share: share of the budget the discrete pass may use at most.
        top_k_categoricals: with network probabilities, how many of the most uncertain
            categoricals get their runner-up options tried (None: all active ones).
        alternatives: options tried per categorical (None: every option, a full sweep).
        task_timeout_s: a candidate render taking longer is killed and penalised.
        seed: CMA-ES and discrete-pass seed.
    """

    tier: int = 1
    budget_s: float = 30.0
    max_evals: int | None = None
    sigma0: float = 0.1
    popsize: int | None = None
    first_phase: float = 0.5
    discrete_share: float = 0.15
    top_k_categoricals: int | None = 4
    alternatives: int | None = 2
    task_timeout_s: float = 20.0
    seed: int = 0

    def check(self) -> None:
        if not self.budget_s > 0:
            raise ValueError(f"--budget-s must be > 0, got {self.budget_s}")
        if self.max_evals is not None and self.max_evals < 1:
            raise ValueError(f"max evaluations must be >= 1, got {self.max_evals}")
        if not 0 < self.sigma0 <= 0.5:
            raise ValueError(f"sigma0 must be in (0, 0.5], got {self.sigma0}")


@dataclass
class Refinement:
    """A search's outcome.

    Attributes:
        continuous, categorical: the best full vectors found (the start when nothing beat it).
        loss: their search loss; ``start_loss``: the start's.
        curve: ``(evaluations, seconds, best loss so far)`` after every generation / round.
        evals: candidates evaluated; ``failures``: of which crashed, timed out or gave NaN.
        seconds: wall-clock time of the search.
        stopped_by: ``"budget"``, ``"evals"``, ``"converged"`` or ``"interrupt"``.
        changes: categorical changes the discrete pass kept, as ``"name: old -> new"``.
        snapshots: ``{"evals:100": (continuous, categorical, loss, evals, seconds), "s:30": ...}``,
            the best point when the search passed each requested evaluation count / second.
        elites: the last ``ELITES`` best points as ``(continuous, categorical, loss)``, best
            first (the search loss is measured on a reused synth, so the runner-ups are worth a
            full-quality render too: see :meth:`vitalmatch.match.Matcher.match_audio`).
    """

    continuous: np.ndarray
    categorical: np.ndarray
    loss: float
    start_loss: float
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    evals: int = 0
    failures: int = 0
    seconds: float = 0.0
    stopped_by: str = "budget"
    changes: list[str] = field(default_factory=list)
    snapshots: dict[str, tuple[np.ndarray, np.ndarray, float, int, float]] = field(default_factory=dict)
    elites: list[tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)


#: Best points a search remembers for the final choice (see :attr:`Refinement.elites`).
ELITES = 4


# ------------------------------------------------------------------------------------ loss
_ENV_FRAME_S = 0.010
_LOG_FLOOR = 1e-5
#: Level matching: quietest output level (dB of ``volume``) a candidate is moved to, and the
#: peak its render may reach (vita clamps the output at +-2.1; below that the gain is exact).
LEVEL_MIN_DB = -40.0
OUTPUT_LIMIT = 2.0


def search_features(audio: np.ndarray, sample_rate: int) -> list:
    """Features :func:`search_loss` compares, as linear powers (audio units squared): three mel
    spectrograms ``(n_mels, frames)`` and the ``(frames,)`` mean square of 10 ms frames; torch
    tensors, float32."""
    import torch

    from vitalmatch.features import mel_power
    from vitalmatch.metrics import mel_scale_configs

    x = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1))
    feats = [mel_power(x, config) for config in mel_scale_configs(int(sample_rate))]
    frame = max(1, int(round(_ENV_FRAME_S * sample_rate)))
    n = (len(x) // frame) * frame
    feats.append(x[:n].reshape(-1, frame).square().mean(dim=1) if n else torch.zeros(1))
    return feats


def _logs(features: list, power_gain: float = 1.0) -> list:
    import torch

    return [torch.log(power_gain * f + _LOG_FLOOR) for f in features]


def _distance(log_candidate: list, log_target: list, envelope_weight: float) -> float:
    mel = sum(float((c - t).abs().mean()) for c, t in zip(log_candidate[:-1], log_target[:-1], strict=True))
    env = float((log_candidate[-1] - log_target[-1]).abs().mean())
    return mel / (len(log_candidate) - 1) + envelope_weight * env


def search_loss(candidate: list, target: list, envelope_weight: float = 0.5, gain_db: float = 0.0) -> float:
    """Multi-scale log-mel L1 + ``envelope_weight`` x log-loudness-contour L1 (natural-log power
    units) between two :func:`search_features` lists of the same length of audio, with the
    candidate made ``gain_db`` louder."""
    return _distance(_logs(candidate, 10.0 ** (gain_db / 10.0)), _logs(target), envelope_weight)


def best_gain(
    candidate: list,
    target: list,
    envelope_weight: float = 0.5,
    lo_db: float = -40.0,
    hi_db: float = 40.0,
    tol_db: float = 0.05,
) -> tuple[float, float]:
    """The output gain that brings ``candidate`` closest to ``target`` by :func:`search_loss`.

    A bounded Brent search (``scipy.optimize.minimize_scalar``, to ``tol_db``) over +-12 dB
    around the gain that equalises the two mean squares, within ``[lo_db, hi_db]``; 0 dB (no
    change) is kept when nothing beats it, so the loss returned is never above
    ``search_loss(candidate, target)``.

    Returns:
        ``(gain_db, loss)``.
    """
    from scipy.optimize import minimize_scalar

    log_t = _logs(target)

    def loss(db: float) -> float:
        return _distance(_logs(candidate, 10.0 ** (db / 10.0)), log_t, envelope_weight)

    best = (0.0, loss(0.0))
    c_ms, t_ms = float(candidate[-1].mean()), float(target[-1].mean())
    if not (c_ms > 0 and t_ms > 0):
        return best
    centre = 10.0 * math.log10(t_ms / c_ms)
    a, b = max(lo_db, centre - 12.0), min(hi_db, centre + 12.0)
    if not a < b:
        return best
    found = minimize_scalar(loss, bounds=(a, b), method="bounded", options={"xatol": tol_db})
    return (float(found.x), float(found.fun)) if found.fun < best[1] else best


# ------------------------------------------------------------------------------------ worker side
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
        self.handles = dict(self.engine._controls)
        # Columns whose change needs a full load (wavetables, load-only controls).
        self.reload_cat = [
            j
            for j, s in enumerate(registry.categorical)
            if s.name.endswith("_wavetable") or s.name in LOAD_ONLY
        ]
        self.reload_cont = [j for j, s in enumerate(registry.continuous) if s.name in LOAD_ONLY]
        self.volume_col = registry.locate("volume")[1]
        self.state: tuple[np.ndarray, np.ndarray, dict] | None = None
        self.target_key: str | None = None
        self.target_feats: list | None = None
        self.full_engines: dict = {}

    def apply(self, cont: np.ndarray, cat: np.ndarray) -> None:
        """Bring the synth to the candidate: a full load when a load-only value changed, else set
        the controls whose raw values differ."""
        raw = self.registry.to_raw(cont, cat)
        st = self.state
        if (
            st is None
            or not np.array_equal(st[1][self.reload_cat], cat[self.reload_cat])
            or not np.array_equal(st[0][self.reload_cont], cont[self.reload_cont])
        ):
            self.state = None
            self.engine.load(cont, cat)
        else:
            old = st[2]
            for name, handle in self.handles.items():
                if raw[name] != old[name]:
                    handle.set(raw[name])
            self.engine.synth.render(0, 0.0, 0.001, 0.05)  # let smoothed values arrive
        self.state = (cont.copy(), cat.copy(), raw)

    def evaluate(self, cont: np.ndarray, cat: np.ndarray, target: SearchTarget) -> tuple[float, float]:
        """``(search loss, output gain in dB it was measured at)``: 0 dB, or with
        ``target.match_level`` the best gain the candidate's ``volume`` can still reach."""
        if self.target_key != target.key:
            self.target_feats = search_features(target.audio, target.sample_rate)
            self.target_key = target.key
        self.apply(cont, cat)
        audio = self.engine.synth.render(int(target.note), 0.7, float(target.note_s), float(target.render_s))
        if not np.isfinite(audio).all():
            raise ValueError("the render holds NaN or Inf")
        self.engine.flush()  # end the voice here, so the next candidate starts clean
        mono = audio.mean(axis=0)[: len(target.audio)]
        feats = search_features(mono, target.sample_rate)
        if not target.match_level:
            return search_loss(feats, self.target_feats, target.envelope_weight), 0.0
        volume = self.registry["volume"]
        now_db = volume_db(volume.from_unit(float(cont[self.volume_col])))
        hi = volume_db(volume.max) - now_db
        peak = float(np.abs(audio).max())
        if peak > 0:  # stay below vita's output clamp (+-2.1), where the gain stops being exact
            hi = min(hi, 20.0 * math.log10(OUTPUT_LIMIT / peak))
        gain, loss = best_gain(
            feats, self.target_feats, target.envelope_weight, min(0.0, LEVEL_MIN_DB - now_db), max(0.0, hi)
        )
        return loss, gain

    def final(self, cont, cat, note: int, note_s: float, render_s: float, sample_rate: int):
        """Full-quality render (fresh synth, ``(2, T)``) and the preset JSON text the synth writes."""
        from vitalmatch.synth.render import RenderConfig, RenderEngine

        config = RenderConfig(
            sample_rate=sample_rate, notes=(note,), note_duration_s=note_s, render_duration_s=render_s
        )
        engine = self.full_engines.get(config)
        if engine is None:
            engine = self.full_engines[config] = RenderEngine(self.registry, self.tables, config)
        engine.load(cont, cat)
        audio = engine.render_note(note)
        if not np.isfinite(audio).all():
            raise ValueError("the render holds NaN or Inf")
        return audio, engine.to_json()


_SEARCHER: _Searcher | None = None
#: Test hook: ``"N"`` makes every N-th evaluation of a worker crash the synth for real
#: (an unclamped ``chorus_voices``, vita-facts §4), to check that a search survives crashes.
CRASH_EVERY_ENV = "VITALMATCH_TEST_CRASH_EVERY"
_TASKS_DONE = 0
_CRASH_EVERY = 0


def init_worker(registry_json: str, tables: list[dict], sample_rate: int) -> None:
    """Pool initializer: one synth per worker process, torch on one thread."""
    global _SEARCHER, _CRASH_EVERY
    import torch

    torch.set_num_threads(1)
    _CRASH_EVERY = int(os.environ.get(CRASH_EVERY_ENV) or 0)
    _SEARCHER = _Searcher(ParamRegistry.from_json(registry_json), tables, sample_rate)


def evaluate_task(task: tuple) -> tuple[float, float]:
    """Pool task ``(continuous, categorical, SearchTarget)`` -> ``(search loss, gain dB)``."""
    global _TASKS_DONE
    assert _SEARCHER is not None, "the pool was not started with refine.init_worker"
    _TASKS_DONE += 1
    if _CRASH_EVERY and _TASKS_DONE % _CRASH_EVERY == 0:
        handles = _SEARCHER.engine.synth.get_controls()
        handles["chorus_on"].set(1.0)
        handles["chorus_voices"].set(7.0)  # unclamped on purpose: SIGSEGV at render
        _SEARCHER.engine.synth.render(60, 0.7, 0.1, 0.2)
    cont, cat, target = task
    return _SEARCHER.evaluate(np.asarray(cont, np.float32), np.asarray(cat, np.int32), target)


def final_task(task: tuple):
    """Pool task ``(continuous, categorical, note, note_s, render_s, sample_rate)`` ->
    ``((2, T) float32 audio, preset JSON text)`` from a fresh, full-quality synth."""
    assert _SEARCHER is not None, "the pool was not started with refine.init_worker"
    cont, cat, note, note_s, render_s, sample_rate = task
    return _SEARCHER.final(
        np.asarray(cont, np.float32), np.asarray(cat, np.int32), note, note_s, render_s, sample_rate
    )


# ------------------------------------------------------------------------------------ parent side
class Budget:
    """Time and evaluation budget shared by the phases of a search."""

    def __init__(self, seconds: float, max_evals: int | None, start: float | None = None) -> None:
        self.t0 = time.perf_counter() if start is None else start
        self.deadline = self.t0 + seconds
        self.max_evals = max_evals
        self.evals = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def remaining_s(self) -> float:
        return self.deadline - time.perf_counter()

    def evals_left(self) -> int:
        return 1 << 30 if self.max_evals is None else max(0, self.max_evals - self.evals)

    def spent(self) -> str | None:
        if self.remaining_s <= 0:
            return "budget"
        if self.evals_left() <= 0:
            return "evals"
        return None


def evaluate_batch(
    pool: WorkerPool, candidates: list[tuple[np.ndarray, np.ndarray]], target: SearchTarget
) -> tuple[np.ndarray, np.ndarray, int]:
    """Search losses ``(n,)`` of candidates evaluated in parallel; failed ones are NaN.

    Returns:
        ``(losses, gains_db, failures)``: ``gains_db`` ``(n,)`` is the output gain each loss was
        measured at (0 without ``target.match_level``; apply it with
        :meth:`~vitalmatch.synth.params.ParamRegistry.with_output_gain`).
    """
    losses = np.full(len(candidates), np.nan)
    gains = np.zeros(len(candidates))
    for result in pool.map_unordered(evaluate_task, ((c, k, target) for c, k in candidates)):
        if result.ok and math.isfinite(result.value[0]):
            losses[result.index], gains[result.index] = result.value
    return losses, gains, int(np.isnan(losses).sum())


class _Search:
    """Bookkeeping of one :func:`refine` call (best point, curve, penalties)."""

    def __init__(self, pool, registry: ParamRegistry, target, budget: Budget, progress, marks=()) -> None:
        self.pool, self.registry, self.target = pool, registry, target
        self.budget, self.progress = budget, progress
        self.marks = list(marks)  # ("evals" | "s", threshold) not yet reached
        self.snapshots: dict = {}
        self.best: tuple[float, np.ndarray, np.ndarray] | None = None
        self.worst = 0.0
        self.failures = 0
        self.curve: list[tuple[int, float, float]] = []
        self.elites: list[tuple[float, np.ndarray, np.ndarray]] = []  # newest last

    def _remember(self) -> None:
        if self.best is not None and (not self.elites or self.elites[-1] is not self.best):
            self.elites = [*self.elites, self.best][-ELITES:]

    def snapshot(self, mark: tuple[str, float]) -> None:
        """Keep the best point as it is now under ``"kind:threshold"`` and retire the mark."""
        loss, cont, cat = self.best
        self.snapshots[f"{mark[0]}:{mark[1]:g}"] = (cont, cat, loss, self.budget.evals, self.budget.elapsed)
        self.marks.remove(mark)

    def run(self, candidates: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Evaluate, update the best, and return losses with failures replaced by a penalty."""
        losses, gains, failed = evaluate_batch(self.pool, candidates, self.target)
        self.budget.evals += len(candidates)
        self.failures += failed
        finite = losses[np.isfinite(losses)]
        if len(finite):
            self.worst = max(self.worst, float(finite.max()))
            j = int(np.nanargmin(losses))
            if self.best is None or losses[j] < self.best[0]:
                cont = self.registry.with_output_gain(candidates[j][0], gains[j])  # a copy
                self.best = (float(losses[j]), cont, candidates[j][1].copy())
                self._remember()
        losses = np.where(np.isfinite(losses), losses, self.worst + 1.0 + abs(self.worst))
        best = self.best[0] if self.best else math.inf
        for mark in list(self.marks):
            kind, threshold = mark
            value = self.budget.evals if kind == "evals" else self.budget.elapsed
            if value >= threshold and self.best is not None:
                self.snapshot(mark)
        self.curve.append((self.budget.evals, self.budget.elapsed, best))
        if self.progress is not None:
            self.progress(self.budget.evals, self.budget.elapsed, best)
        return losses


def searchable_columns(
    registry: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
    tier: int,
    exclude: frozenset[str] = frozenset(),
) -> np.ndarray:
    """Continuous columns CMA-ES moves: in the tier, not frozen nor in ``exclude``, active for
    these switches."""
    from vitalmatch.synth.activity import activity_masks

    active, _ = activity_masks(registry, continuous, categorical)
    cols = [
        j
        for j, s in enumerate(registry.continuous)
        if s.tier <= tier and s.name not in FROZEN | PITCH | LOAD_ONLY | exclude and active[j]
    ]
    return np.array(cols, dtype=int)


def _cma_phase(search: _Search, config: RefineConfig, deadline_s: float, seed: int) -> str | None:
    """CMA-ES from the current best over its active columns until ``deadline_s`` (budget
    seconds elapsed) or the budget ends. Returns why it stopped (None: reached ``deadline_s``)."""
    import cma

    _, cont0, cat0 = search.best
    reg = search.registry
    solved = frozenset({"volume"}) if search.target.match_level else frozenset()  # see best_gain
    cols = searchable_columns(reg, cont0, cat0, config.tier, solved)
    if len(cols) < 2:
        return "nothing to search"
    integer = [i for i, j in enumerate(cols) if reg.continuous[j].integer]
    opts = {
        "bounds": [0.0, 1.0],
        "seed": seed + 1,  # cma treats seed 0 as "random"
        "verbose": -9,
        "tolfun": 1e-4,
    }
    if config.popsize:
        opts["popsize"] = config.popsize
    if integer:
        opts["integer_variables"] = integer
    es = cma.CMAEvolutionStrategy(cont0[cols].astype(np.float64), config.sigma0, opts)
    while True:
        why = search.budget.spent()
        if why:
            return why
        if search.budget.elapsed >= deadline_s:
            return None
        if es.stop():
            return "converged"
        n = min(es.popsize, search.budget.evals_left())
        xs = es.ask()
        candidates = []
        for x in xs[:n]:
            c = cont0.copy()
            c[cols] = np.clip(x, 0.0, 1.0)
            candidates.append((c, cat0))
        losses = search.run(candidates)
        if n == es.popsize:
            es.tell(xs, losses.tolist())


def _discrete_candidates(
    registry: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
    config: RefineConfig,
    probabilities: dict[str, np.ndarray] | None,
    rng: np.random.Generator,
) -> list[tuple[str, str, int, float]]:
    """Single changes ``(kind, name, column, new value)`` to try on the current best: ``kind`` is
    ``"categorical"`` (an option index) or ``"continuous"`` (a unit value: octave transposes and
    zero tune of the oscillators that sound)."""
    from vitalmatch.synth.activity import activity_masks

    cont_active, active = activity_masks(registry, continuous, categorical)
    out: list[tuple[str, str, int, float]] = []
    for j, spec in enumerate(registry.continuous):
        if spec.name not in PITCH or spec.tier > config.tier or not cont_active[j]:
            continue
        raw = spec.from_unit(float(continuous[j]))
        values = [raw - 12, raw + 12, 0.0] if spec.name.endswith("_transpose") else [0.0]
        for v in values:
            if spec.min <= v <= spec.max and v != raw:
                out.append(("continuous", spec.name, j, spec.to_unit(v)))
    cols = [
        j
        for j, s in enumerate(registry.categorical)
        if s.tier <= config.tier and s.name not in LOAD_ONLY and s.n_options > 1 and active[j]
    ]
    if probabilities:
        ranked = sorted(
            (j for j in cols if registry.categorical[j].name in probabilities),
            key=lambda j: float(np.max(probabilities[registry.categorical[j].name])),
        )
        for j in ranked[: config.top_k_categoricals]:
            p = probabilities[registry.categorical[j].name]
            options = [int(o) for o in np.argsort(-p) if int(o) != int(categorical[j])]
            out += [
                ("categorical", registry.categorical[j].name, j, o) for o in options[: config.alternatives]
            ]
        return out
    for j in cols:
        spec = registry.categorical[j]
        options = [o for o in range(spec.n_options) if o != int(categorical[j])]
        for o in rng.permutation(options)[: config.alternatives]:
            out.append(("categorical", spec.name, j, int(o)))
    return out


def _with_change(cont: np.ndarray, cat: np.ndarray, kind: str, col: int, value: float):
    c, k = cont.copy(), cat.copy()
    if kind == "continuous":
        c[col] = value
    else:
        k[col] = int(value)
    return c, k


def _discrete_phase(
    search: _Search, config: RefineConfig, deadline_s: float, probabilities, rng, changes: list[str]
) -> str | None:
    """Rounds of single changes until none lowers the loss by 1% or time is up. Each round tries
    every proposal on the current best; the changes that helped on their own (the best one per
    parameter) are then tried together, and the better of that combination and the best single
    change is kept."""
    reg = search.registry
    tried: set[tuple[str, int, float]] = set()
    while True:
        why = search.budget.spent()
        if why:
            return why
        if search.budget.elapsed >= deadline_s:
            return None
        best_loss, cont, cat = search.best
        proposals = [
            p
            for p in _discrete_candidates(reg, cont, cat, config, probabilities, rng)
            if (p[0], p[2], p[3]) not in tried
        ][: search.budget.evals_left()]
        if not proposals:
            return None
        tried.update((kind, j, v) for kind, _, j, v in proposals)
        losses = search.run([_with_change(cont, cat, kind, j, v) for kind, _, j, v in proposals])
        helped: dict[tuple[str, int], int] = {}  # parameter -> index of its best helping proposal
        for i, (kind, _, j, _) in enumerate(proposals):
            if losses[i] < 0.99 * best_loss and (
                (kind, j) not in helped or losses[i] < losses[helped[(kind, j)]]
            ):
                helped[(kind, j)] = i
        if not helped:  # gains below 1% may have become the best; they end the rounds
            return None
        kept = [min(helped.values(), key=lambda i: losses[i])]
        if len(helped) > 1 and not search.budget.spent():
            c, k = cont, cat
            for i in helped.values():
                c, k = _with_change(c, k, proposals[i][0], proposals[i][2], proposals[i][3])
            if search.run([(c, k)])[0] < losses[kept[0]]:
                kept = list(helped.values())
        for i in kept:
            kind, name, col, value = proposals[i]
            spec = reg[name]
            if kind == "continuous":
                changes.append(f"{name}: {spec.from_unit(float(cont[col])):g} -> {spec.from_unit(value):g}")
            else:
                changes.append(f"{name}: {spec.option_name(int(cat[col]))} -> {spec.option_name(int(value))}")


def refine(
    pool: WorkerPool,
    registry: ParamRegistry,
    start: tuple[np.ndarray, np.ndarray],
    target: SearchTarget,
    config: RefineConfig = RefineConfig(),
    *,
    probabilities: dict[str, np.ndarray] | None = None,
    start_loss: float | None = None,
    progress: Callable[[int, float, float], None] | None = None,
    budget: Budget | None = None,
    snapshots: tuple[tuple[str, float], ...] = (),
) -> Refinement:
    """Search from ``start`` for the preset whose render is closest to ``target``.

    Args:
        pool: a pool started with ``initializer=init_worker`` on ``registry`` (and its tables).
        registry: the full registry the vectors follow.
        start: ``(continuous (C,), categorical (K,))`` full vectors.
        target: the sound to match, at the search rate.
        config: search settings.
        probabilities: network probabilities per categorical name (steers the discrete pass).
        start_loss: the start's search loss if already known (else it is evaluated first).
        progress: called as ``progress(evaluations, seconds, best_loss)`` after each batch.
        budget: a budget already running (e.g. including the choice of the start); default: a
            new one of ``config.budget_s`` / ``config.max_evals``.
        snapshots: ``(("evals", 100), ("s", 30), ...)``: keep the best point as it was when the
            search passed these marks (for quality-against-budget curves).

    Returns:
        :class:`Refinement`; never worse than the start by the search loss. Ctrl-C ends the
        search early with ``stopped_by == "interrupt"`` and the best found so far.
    """
    config.check()
    budget = budget or Budget(config.budget_s, config.max_evals)
    search = _Search(pool, registry, target, budget, progress, snapshots)
    cont0 = np.asarray(start[0], np.float32).copy()
    cat0 = np.asarray(start[1], np.int32).copy()
    rng = np.random.default_rng(config.seed)
    changes: list[str] = []
    stopped: str | None = None
    try:
        if start_loss is None or not math.isfinite(start_loss):
            start_loss = float(search.run([(cont0, cat0)])[0])
        else:
            search.best = (float(start_loss), cont0, cat0)
            search._remember()
        total = budget.elapsed + max(0.0, budget.remaining_s)
        t1 = budget.elapsed + config.first_phase * (total - budget.elapsed)
        stopped = _cma_phase(search, config, t1, config.seed)
        if stopped in (None, "converged", "nothing to search"):
            t2 = budget.elapsed + config.discrete_share * total
            stopped = _discrete_phase(search, config, t2, probabilities, rng, changes)
        restart = 1
        while stopped in (None, "converged"):  # restarts from the best point until the budget ends
            stopped = _cma_phase(search, config, math.inf, config.seed + 1000 * restart)
            restart += 1
    except KeyboardInterrupt:
        stopped = "interrupt"
    if start_loss is None:  # interrupted before the start was evaluated
        start_loss = math.nan
    if search.best is None:
        search.best = (float(start_loss), cont0, cat0)
    best_loss, cont, cat = search.best
    for mark in list(search.marks):  # marks the search stopped before: the final point
        search.snapshot(mark)
    return Refinement(
        continuous=cont,
        categorical=cat,
        loss=float(best_loss),
        start_loss=float(start_loss),
        curve=search.curve,
        evals=budget.evals,
        failures=search.failures,
        seconds=budget.elapsed,
        stopped_by="converged" if stopped in (None, "nothing to search") else stopped,
        changes=changes,
        snapshots=search.snapshots,
        elites=[(c, k, loss) for loss, c, k in sorted(search.elites, key=lambda e: e[0])],
    )
