"""Search budget and bookkeeping: what a search may still spend, and the best it has found.

Stage: refine (parent side). Input: a time budget in seconds and an optional number of candidate
evaluations; batches of candidates evaluated by the workers (:func:`vitalmatch.search.worker.evaluate_batch`).
Output: the best point so far, the loss curve, the failure count and the remembered runner-ups
that :func:`vitalmatch.search.refine` turns into a :class:`~vitalmatch.search.Refinement`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np

from vitalmatch.search.loss import SearchTarget
from vitalmatch.search.worker import evaluate_batch
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.render import PresetExtras

#: Best points a search remembers for the final choice (see :attr:`Refinement.elites`).
ELITES = 4


class Budget:
    """Time and evaluation budget shared by the phases of a search.

    Args:
        seconds: wall-clock seconds from ``start``.
        max_evals: candidate evaluations at most (None: only the time budget).
        start: ``time.perf_counter()`` the budget counts from (default: now).
    """

    def __init__(self, seconds: float, max_evals: int | None, start: float | None = None) -> None:
        self.t0 = time.perf_counter() if start is None else start
        self.deadline = self.t0 + seconds
        self.max_evals = max_evals
        self.evals = 0
        #: Seconds per batch round (one evaluation per worker) by kind of batch: ``"step"``
        #: (CMA-ES points: controls set through handles), ``"change"`` (structure and discrete
        #: changes, re-scores: often a full reload). Measured by :meth:`Search.run`; a caller may
        #: seed an estimate (the matcher seeds ``"change"`` with its starting candidates' time).
        self.costs: dict[str, float] = {}

    @property
    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.perf_counter() - self.t0

    @property
    def remaining_s(self) -> float:
        """Seconds left (negative once spent)."""
        return self.deadline - time.perf_counter()

    def evals_left(self) -> int:
        """Evaluations left (a large number without ``max_evals``)."""
        return 1 << 30 if self.max_evals is None else max(0, self.max_evals - self.evals)

    def record(self, kind: str, n: int, seconds: float, workers: int) -> None:
        """Fold a batch of ``n`` evaluations of ``kind`` that took ``seconds`` on ``workers``
        into the running estimate of :attr:`costs` (mean of the last estimate and this one)."""
        if n <= 0:
            return
        per_round = seconds / -(-n // max(1, workers))
        old = self.costs.get(kind)
        self.costs[kind] = per_round if old is None else 0.5 * (old + per_round)

    def fits(self, kind: str, n: int, workers: int) -> int:
        """How many of ``n`` evaluations of ``kind`` to send so that the batch ends by the
        deadline, or at most one round after it: ``workers`` times the whole rounds left by the
        estimate of :attr:`costs` (at least one round; all ``n`` while ``kind`` is unmeasured)."""
        per_round = self.costs.get(kind)
        if per_round is None or per_round <= 0:
            return n
        rounds = max(1, int(self.remaining_s / per_round))
        return min(n, rounds * max(1, workers))

    def spent(self) -> str | None:
        """``"budget"`` (time) or ``"evals"`` once either is used up, else None."""
        if self.remaining_s <= 0:
            return "budget"
        if self.evals_left() <= 0:
            return "evals"
        return None


class Search:
    """Bookkeeping of one :func:`vitalmatch.search.refine` call (best point, curve, penalties).

    Points are ``(continuous (C,), categorical (K,), extras)`` (``extras``: a
    :class:`~vitalmatch.synth.render.PresetExtras`: the modulations and what else the registry's
    vectors do not hold); the best is ``(loss, continuous, categorical, extras)`` under the
    current objective (``target.objective``; :meth:`switch` changes it and re-scores).

    Args:
        pool: a pool started with :func:`vitalmatch.search.worker.init_worker`.
        registry: the full registry the vectors follow.
        target: the sound to match.
        budget: the budget the phases share.
        progress: called as ``progress(evaluations, seconds, best_loss)`` after each batch.
        on_batch: called as ``on_batch(evaluations, seconds, (continuous, categorical, loss,
            extras))`` with the best point so far after each batch (once there is one; during a
            coarse phase, the coarse best and its coarse loss).
    """

    def __init__(
        self,
        pool: WorkerPool,
        registry: ParamRegistry,
        target: SearchTarget,
        budget: Budget,
        progress: Callable[[int, float, float], None] | None,
        on_batch: Callable[[int, float, tuple], None] | None = None,
    ) -> None:
        self.pool, self.registry, self.target = pool, registry, target
        self.budget, self.progress, self.on_batch = budget, progress, on_batch
        self.best: tuple[float, np.ndarray, np.ndarray, PresetExtras] | None = None
        self.worst = 0.0
        self.failures = 0
        self.curve: list[tuple[int, float, float]] = []
        self.elites: list[tuple[float, np.ndarray, np.ndarray, PresetExtras]] = []  # newest last
        self._left: dict[str, tuple] = {}  # objective -> (best, elites) when it was left

    @property
    def best_extras(self) -> PresetExtras:
        return self.best[3] if self.best is not None else PresetExtras()

    def reported_best(self) -> float:
        """The best loss under the metric (``"fine"``) so far, what the curve and the progress
        show: during a coarse phase, the fine best from before it (coarse losses are another
        scale)."""
        if self.target.objective == "fine":
            return self.best[0] if self.best else math.inf
        known = self._left.get("fine", (None, []))[0]
        return known[0] if known else math.inf

    def remember(self) -> None:
        """Add the best point to the elites (the last :data:`ELITES` bests)."""
        if self.best is not None and (not self.elites or self.elites[-1] is not self.best):
            self.elites = [*self.elites, self.best][-ELITES:]

    def switch(self, objective: str) -> None:
        """Score from now on by ``objective``. Losses of two objectives are not comparable: the
        points found under the other one (the best and the elites) are evaluated again, and
        merged with the points this objective already knew (kept from when it was left, with
        their losses), so a switch back never loses a better point. A re-scored point worse
        than every point this objective knew (for the metric: worse than the start) is dropped,
        so the elites stay the bests found."""
        if objective == self.target.objective or self.budget.spent():
            return  # (a spent budget cannot re-score: the search ends on the objective it is on)
        self._left[self.target.objective] = (self.best, list(self.elites))
        known_best, known_elites = self._left.pop(objective, (None, []))
        self.target = dataclasses.replace(self.target, objective=objective)
        points = [(c, k, x) for _, c, k, x in self.elites[::-1]] or (
            [(self.best[1], self.best[2], self.best[3])] if self.best else []
        )
        points = points[: self.budget.evals_left()]  # best first: an evaluation budget cuts the rest
        points = points[: self.fits(len(points), "change")]  # and so does a short time budget
        self.best, self.elites, self.worst = None, [], 0.0
        scored: list[tuple[float, np.ndarray, np.ndarray, PresetExtras]] = []
        if points:
            losses = self.run(points, record=False, kind="change")
            scored = [(float(losses[j]), *points[j]) for j in range(len(points)) if np.isfinite(losses[j])]
            if self.best is not None:  # the best new point at the gain it was scored at
                scored = [e for e in scored if e[0] != self.best[0]] + [self.best]
        known = known_elites + ([known_best] if known_best else [])
        if known:  # a point of the other objective that this one scores worse than all it knew
            ceiling = max(e[0] for e in known)  # (the start, for the metric) is no elite
            scored = [e for e in scored if e[0] <= ceiling]
        merged = sorted(scored + known, key=lambda e: -e[0])
        unique: list = []
        for e in merged:  # worst first, best last; the same point once
            if not any(e is u for u in unique):
                unique.append(e)
        self.elites = unique[-ELITES:]
        self.best = self.elites[-1] if self.elites else None

    @property
    def workers(self) -> int:
        """The pool's worker processes (evaluations per round)."""
        return max(1, int(getattr(self.pool, "workers", 1)))

    def fits(self, n: int, kind: str = "step") -> int:
        """How many of ``n`` evaluations of ``kind`` fit the time left (:meth:`Budget.fits`)."""
        return self.budget.fits(kind, n, self.workers)

    def run(self, candidates: list[tuple], record: bool = True, kind: str = "step") -> np.ndarray:
        """Evaluate points ``(continuous, categorical[, extras])``, update the best, and return
        losses ``(n,)`` with failures replaced by a penalty worse than any loss seen. The batch's
        time goes into the budget's estimate for ``kind`` (:meth:`Budget.record`)."""
        points = [
            (c[0], c[1], c[2] if len(c) > 2 and c[2] is not None else PresetExtras()) for c in candidates
        ]
        t = time.perf_counter()
        losses, gains, failed = evaluate_batch(self.pool, points, self.target)
        self.budget.record(kind, len(points), time.perf_counter() - t, self.workers)
        self.budget.evals += len(points)
        self.failures += failed
        finite = losses[np.isfinite(losses)]
        if len(finite):
            self.worst = max(self.worst, float(finite.max()))
            j = int(np.nanargmin(losses))
            if self.best is None or losses[j] < self.best[0]:
                cont = self.registry.with_output_gain(points[j][0], gains[j])  # a copy
                self.best = (float(losses[j]), cont, points[j][1].copy(), points[j][2])
                self.remember()
        losses = np.where(np.isfinite(losses), losses, self.worst + 1.0 + abs(self.worst))
        best = self.reported_best()
        if record:
            if self.on_batch is not None and self.best is not None:
                self.on_batch(
                    self.budget.evals,
                    self.budget.elapsed,
                    (self.best[1], self.best[2], self.best[0], self.best[3]),
                )
            self.curve.append((self.budget.evals, self.budget.elapsed, best))
            if self.progress is not None:
                self.progress(self.budget.evals, self.budget.elapsed, best)
        return losses
