"""Refinement: search a preset's parameters with the synth in the loop (CMA-ES + a discrete pass).

Stage: refine. Input: a starting preset (full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry`: ``(C,)`` float32 in [0, 1], ``(K,)`` int32), a
:class:`SearchTarget` (mono audio ``(T,)`` float32 at the search rate, the MIDI note and note
length to play) and a :class:`~vitalmatch.synth.pool.WorkerPool` started with
:func:`init_worker`. Output: :class:`Refinement` -- the best vectors found, their search loss,
and the loss curve.

The search (:func:`refine`) runs in phases on one time and evaluation budget
(:mod:`~vitalmatch.search.budget`):

1. CMA-ES (:mod:`~vitalmatch.search.cma`) over the continuous parameters of the tier that can
   affect the sound with the current switches, from the start, step ``sigma0``, bounds [0, 1];
2. a discrete pass (:mod:`~vitalmatch.search.discrete`) over categoricals: the runner-up options
   of the most uncertain network choices (with probabilities), or a few alternatives of each
   active categorical (without); one change is taken per round when it lowers the loss;
3. CMA-ES again from the best point, over the parameters active after the discrete pass,
   restarted until the budget ends.

Each evaluation is a task for the pool (:mod:`~vitalmatch.search.worker`: a synth per worker that
changes only the controls that differ between candidates); the score is the search loss
(:mod:`~vitalmatch.search.loss`: multi-scale log-mel L1 plus a loudness-contour term, at the
output gain that fits the target best).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vitalmatch.search.budget import ELITES, Budget, Search
from vitalmatch.search.cma import cma_phase, searchable_columns
from vitalmatch.search.discrete import discrete_phase
from vitalmatch.search.loss import SearchTarget, best_gain, search_features, search_loss
from vitalmatch.search.worker import CRASH_EVERY_ENV, evaluate_batch, evaluate_task, final_task, init_worker
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.pool import WorkerPool

__all__ = [
    "CRASH_EVERY_ENV",
    "ELITES",
    "Budget",
    "RefineConfig",
    "Refinement",
    "SearchTarget",
    "best_gain",
    "evaluate_batch",
    "evaluate_task",
    "final_task",
    "init_worker",
    "refine",
    "search_features",
    "search_loss",
    "searchable_columns",
]


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
    elites: list[tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)


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
    on_batch: Callable[[int, float, tuple[np.ndarray, np.ndarray, float]], None] | None = None,
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
        on_batch: called as ``on_batch(evaluations, seconds, (continuous, categorical, loss))``
            with the best point so far after each batch (e.g. a benchmark's snapshots of the best
            point at given budgets).

    Returns:
        :class:`Refinement`; never worse than the start by the search loss. Ctrl-C ends the
        search early with ``stopped_by == "interrupt"`` and the best found so far.
    """
    config.check()
    budget = budget or Budget(config.budget_s, config.max_evals)
    search = Search(pool, registry, target, budget, progress, on_batch)
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
            search.remember()
        total = budget.elapsed + max(0.0, budget.remaining_s)
        t1 = budget.elapsed + config.first_phase * (total - budget.elapsed)
        stopped = cma_phase(search, config, t1, config.seed)
        if stopped in (None, "converged", "nothing to search"):
            t2 = budget.elapsed + config.discrete_share * total
            stopped = discrete_phase(search, config, t2, probabilities, rng, changes)
        restart = 1
        while stopped in (None, "converged"):  # restarts from the best point until the budget ends
            stopped = cma_phase(search, config, math.inf, config.seed + 1000 * restart)
            restart += 1
    except KeyboardInterrupt:
        stopped = "interrupt"
    if start_loss is None:  # interrupted before the start was evaluated
        start_loss = math.nan
    if search.best is None:
        search.best = (float(start_loss), cont0, cat0)
    best_loss, cont, cat = search.best
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
        elites=[(c, k, loss) for loss, c, k in sorted(search.elites, key=lambda e: e[0])],
    )
