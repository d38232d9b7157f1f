"""Refinement: search a preset's parameters with the synth in the loop.

Stage: refine. Input: a starting preset (full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry`: ``(C,)`` float32 in [0, 1], ``(K,)`` int32, and
its :class:`~vitalmatch.synth.render.PresetExtras`: modulations, LFO shapes, sample, custom
wavetables), a :class:`SearchTarget` (mono audio ``(T,)`` float32 at the search rate, the MIDI
note and note length to play), optionally the input's :class:`~vitalmatch.analysis.Findings`,
and a :class:`~vitalmatch.synth.pool.WorkerPool` started with :func:`init_worker`. Output:
:class:`Refinement` -- the best point found, its loss under the metric, and the loss curve.

The search (:func:`refine`) runs coarse to fine on one time and evaluation budget
(:mod:`~vitalmatch.search.budget`):

1. structure (Tier 2+, with findings; :mod:`~vitalmatch.search.structure`): module switches and
   modulation routings proposed from what the input shows, each kept only when the metric drops;
2. CMA-ES (:mod:`~vitalmatch.search.cma`) on the *coarse* objective (time-pooled spectra:
   smooth where the metric is rugged, :mod:`~vitalmatch.search.loss`) over the continuous
   parameters that can affect the sound, and from Tier 2 the amounts of the connections;
3. a discrete pass (:mod:`~vitalmatch.search.discrete`) over categoricals and octaves, on the
   metric (the *fine* objective) from here on;
4. CMA-ES restarts on the metric from the best point until the budget ends, each with a larger
   population (IPOP, Auger & Hansen 2005) and, when there are more than ``max_dims``
   coordinates, over alternating groups (the Tier-1 core, the other modules).

Each evaluation is a task for the pool (:mod:`~vitalmatch.search.worker`: a synth per worker that
changes only the controls that differ between candidates); the score is measured at the output
gain that fits the target best.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vitalmatch.search.budget import ELITES, Budget, Search
from vitalmatch.search.cma import cma_phase, searchable_columns, solved_names
from vitalmatch.search.discrete import discrete_phase
from vitalmatch.search.loss import SearchTarget, best_gain, search_features, search_loss
from vitalmatch.search.structure import structure_phase
from vitalmatch.search.worker import CRASH_EVERY_ENV, evaluate_batch, evaluate_task, final_task, init_worker
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.render import PresetExtras

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


#: Evaluations left below which :func:`refine` skips the coarse phase.
MIN_COARSE_EVALS = 60


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
        coarse: run the first CMA-ES phase on the coarse objective (else on the metric).
        structure: run the structure phase (Tier 2+, when findings are given).
        max_dims: CMA-ES coordinates at most per phase; more are split into groups.
        ipop: population growth factor of each restart (1: none).
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
    coarse: bool = True
    structure: bool = True
    max_dims: int = 40
    ipop: float = 1.5

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
        elites: the last ``ELITES`` best points as ``(continuous, categorical, loss, extras)``,
            best first (the search loss is measured on a reused synth, so the runner-ups are worth
            a full-quality render too: see :meth:`vitalmatch.match.Matcher.match_audio`).
        extras: the best point's modulations and other extras.
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
    elites: list[tuple[np.ndarray, np.ndarray, float, PresetExtras]] = field(default_factory=list)
    extras: PresetExtras = field(default_factory=PresetExtras)


def _groups(
    search: Search, config: RefineConfig, rng: np.random.Generator, focus: np.ndarray
) -> list[np.ndarray]:
    """Column groups for the CMA-ES phases: the Tier-1 core with the ``focus`` columns (those the
    structure phase brought in) first, then the other searchable columns in chunks of at most
    ``max_dims``. (All at once when they fit: measured on 6 real presets at 30 s, searching every
    module a whole-synth start has on ended at 0.29x of the init distance against 0.20x for the
    Tier-1 core alone, worse on each of the 6.)"""
    _, cont, cat, extras = search.best
    solved = solved_names(search.target)
    whole = searchable_columns(search.registry, cont, cat, config.tier, solved, extras)
    core = np.union1d(
        searchable_columns(search.registry, cont, cat, 1, solved, extras), np.intersect1d(focus, whole)
    )
    rest = rng.permutation(np.setdiff1d(whole, core))
    size = max(2, config.max_dims)
    return [core[: config.max_dims]] + [np.sort(rest[i : i + size]) for i in range(0, len(rest), size)]


#: Restarts on the first group (the core and what the structure phase added) per restart on
#: one of the other groups.
CORE_RESTARTS = 2


def refine(
    pool: WorkerPool,
    registry: ParamRegistry,
    start: tuple,
    target: SearchTarget,
    config: RefineConfig = RefineConfig(),
    *,
    probabilities: dict[str, np.ndarray] | None = None,
    start_loss: float | None = None,
    progress: Callable[[int, float, float], None] | None = None,
    budget: Budget | None = None,
    on_batch: Callable[[int, float, tuple], None] | None = None,
    findings=None,
) -> Refinement:
    """Search from ``start`` for the preset whose render is closest to ``target``.

    Args:
        pool: a pool started with ``initializer=init_worker`` on ``registry`` (and its tables).
        registry: the full registry the vectors follow.
        start: ``(continuous (C,), categorical (K,)[, extras])``.
        target: the sound to match, at the search rate (its objective is set to ``"fine"``).
        config: search settings.
        probabilities: network probabilities per categorical name (steers the discrete pass).
        start_loss: the start's loss under the metric if already known (else it is evaluated).
        progress: called as ``progress(evaluations, seconds, best_loss)`` after each batch.
        budget: a budget already running (e.g. including the choice of the start); default: a
            new one of ``config.budget_s`` / ``config.max_evals``.
        on_batch: called as ``on_batch(evaluations, seconds, (continuous, categorical, loss, extras))``
            with the best point so far after each batch (its extras: ``Search.best_extras``).
        findings: :class:`vitalmatch.analysis.Findings` of the input (the structure phase).

    Returns:
        :class:`Refinement`; never worse than the start by the metric. Ctrl-C ends the search
        early with ``stopped_by == "interrupt"`` and the best found so far.
    """
    import dataclasses

    config.check()
    budget = budget or Budget(config.budget_s, config.max_evals)
    target = dataclasses.replace(target, objective="fine")
    search = Search(pool, registry, target, budget, progress, on_batch)
    cont0 = np.asarray(start[0], np.float32).copy()
    cat0 = np.asarray(start[1], np.int32).copy()
    extras0 = start[2] if len(start) > 2 and start[2] is not None else PresetExtras()
    rng = np.random.default_rng(config.seed)
    changes: list[str] = []
    stopped: str | None = None
    try:
        if start_loss is None or not math.isfinite(start_loss):
            start_loss = float(search.run([(cont0, cat0, extras0)])[0])
        else:
            search.best = (float(start_loss), cont0, cat0, extras0)
            search.remember()
        solved = solved_names(target)
        before = searchable_columns(registry, cont0, cat0, config.tier, solved, extras0)
        if config.tier >= 2 and config.structure and findings is not None:
            stopped = structure_phase(search, findings, changes)
        _, c1, k1, x1 = search.best
        focus = np.setdiff1d(searchable_columns(registry, c1, k1, config.tier, solved, x1), before)
        # amounts searched: Tier 3 every connection's, Tier 2 those the structure phase added
        amounts = list(range(len(x1.modulations))) if config.tier >= 3 else []
        if config.tier == 2:
            amounts = list(range(len(extras0.modulations), len(x1.modulations)))
        if stopped is None:
            total = budget.elapsed + max(0.0, budget.remaining_s)
            t1 = budget.elapsed + config.first_phase * (total - budget.elapsed)
            # the coarse phase pays off over hundreds of evaluations; a tiny evaluation budget
            # goes to the metric directly
            coarse = config.coarse and (budget.max_evals is None or budget.evals_left() >= MIN_COARSE_EVALS)
            e1 = None  # with an evaluation budget, a coarse first phase gets its share of it too
            if coarse:
                search.switch("coarse")
                if budget.max_evals is not None:  # less ELITES: re-scoring its points on the metric
                    e1 = budget.evals + int(config.first_phase * budget.evals_left()) - ELITES
            groups = _groups(search, config, rng, focus)
            stopped = cma_phase(search, config, t1, config.seed, groups[0], amounts, evals_until=e1)
            search.switch("fine")
            if stopped in (None, "converged", "nothing to search"):
                t2 = budget.elapsed + config.discrete_share * total
                stopped = discrete_phase(search, config, t2, probabilities, rng, changes)
            restart, popsize, idle = 1, None, 0
            while stopped in (None, "converged", "nothing to search"):  # restarts until the budget ends
                groups = _groups(search, config, rng, focus)
                turn = restart % (CORE_RESTARTS + 1)
                cols = (
                    groups[0] if turn or len(groups) == 1 else groups[1 + (restart // 3) % (len(groups) - 1)]
                )
                if restart >= CORE_RESTARTS:  # the core had its turns: grow the population (IPOP)
                    base = popsize or int(4 + 3 * math.log(max(2, len(cols))))
                    popsize = max(base + 1, int(round(base * config.ipop)))
                stopped = cma_phase(
                    search, config, math.inf, config.seed + 1000 * restart, cols, amounts, popsize=popsize
                )
                idle = idle + 1 if stopped == "nothing to search" else 0
                if idle >= len(groups):
                    break
                restart += 1
    except KeyboardInterrupt:
        stopped = "interrupt"
    coarse_losses = search.target.objective != "fine"  # interrupted in the coarse phase
    if search.best is None:
        search.best = (float(start_loss if start_loss is not None else math.nan), cont0, cat0, extras0)
    if coarse_losses:  # the points stand, their losses are not the metric's (the matcher re-renders)
        search.best = (math.nan, *search.best[1:])
        search.elites = [(math.nan, *e[1:]) for e in search.elites]
    if start_loss is None:  # interrupted before the start was evaluated
        start_loss = math.nan
    best_loss, cont, cat, extras = search.best
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
        elites=[(c, k, loss, x) for loss, c, k, x in sorted(search.elites, key=lambda e: e[0])],
        extras=extras,
    )
