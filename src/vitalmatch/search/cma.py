"""CMA-ES phase of the search: continuous parameters, from the best point so far.

Stage: refine (continuous search). Input: a :class:`~vitalmatch.search.budget.Search` holding the
best point (full vectors ``(C,)`` float32 in [0, 1], ``(K,)`` int32) and the search settings.
Output: better points recorded in the ``Search``, and why the phase stopped.

CMA-ES (Hansen 2016, https://arxiv.org/abs/1604.00772; the ``cma`` package) runs over the
continuous parameters of the tier that can affect the sound with the current switches
(:func:`vitalmatch.synth.activity.activity_masks`), from the best point, with step ``sigma0`` and
bounds [0, 1] (:func:`searchable_columns`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import PresetExtras

if TYPE_CHECKING:
    from vitalmatch.search import RefineConfig
    from vitalmatch.search.budget import Search


def searchable_columns(
    registry: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
    tier: int,
    exclude: frozenset[str] = frozenset(),
    extras: PresetExtras | None = None,
) -> np.ndarray:
    """Continuous columns CMA-ES moves, as an int array: in the tier, active for these switches,
    and none of

    * the reproducibility pins (:attr:`~vitalmatch.synth.params.ParamSpec.pinned`);
    * the pitch offsets (:attr:`~vitalmatch.synth.params.ParamSpec.pitch`): a continuous search
      over transposition wanders between octaves and harmonics (measured: a 24-dimensional search
      from a perturbed init preset ended at 0.60 of the start loss with them after 900 renders,
      at 0.06 without); the discrete pass tries octaves instead;
    * load-only controls (:attr:`~vitalmatch.synth.params.ParamSpec.load_only`: each change would
      cost a full load);
    * the names in ``exclude``.
    """
    from vitalmatch.synth.activity import activity_masks
    from vitalmatch.synth.modulation import encode

    modulation = encode(list(extras.modulations)) if extras is not None and extras.modulations else None
    active, _ = activity_masks(registry, continuous, categorical, modulation)
    cols = [
        j
        for j, s in enumerate(registry.continuous)
        if s.tier <= tier and not (s.pinned or s.pitch or s.load_only) and s.name not in exclude and active[j]
    ]
    return np.array(cols, dtype=int)


def solved_names(target) -> frozenset[str]:
    """Parameters the search solves rather than searches: ``volume`` when the target is scored at
    each candidate's best output level (:func:`vitalmatch.search.loss.best_gain`)."""
    return frozenset({"volume"}) if target.match_level else frozenset()


def amount_unit(amount: float) -> float:
    """A connection amount in [-1, 1] as a CMA-ES coordinate in [0, 1]."""
    return 0.5 * (float(amount) + 1.0)


def cma_phase(
    search: Search,
    config: RefineConfig,
    deadline_s: float,
    seed: int,
    columns: np.ndarray | None = None,
    amounts: bool | Sequence[int] = False,
    sigma0: float | None = None,
    popsize: int | None = None,
    evals_until: int | None = None,
) -> str | None:
    """CMA-ES from the current best until ``deadline_s`` (budget seconds elapsed) or the budget
    ends.

    Args:
        columns: continuous columns to move (default: :func:`searchable_columns` of the tier).
        amounts: also move the amounts of the best point's modulation connections (one
            coordinate each, ``(amount + 1) / 2``): True for all of them, or their slot indices.
        sigma0, popsize: override ``config``'s (restarts grow the population, IPOP-style).
        evals_until: stop (returning None) once the budget has counted this many evaluations.

    Returns:
        Why it stopped: ``"budget"``, ``"evals"``, ``"converged"``, ``"nothing to search"`` (fewer
        than two coordinates), or None (reached ``deadline_s``).
    """
    import cma

    _, cont0, cat0, extras0 = search.best
    reg = search.registry
    solved = solved_names(search.target)
    if columns is None:
        columns = searchable_columns(reg, cont0, cat0, config.tier, solved, extras0)
    cols = np.asarray(columns, dtype=int)
    if isinstance(amounts, bool):
        slots = list(range(len(extras0.modulations))) if amounts else []
    else:
        slots = [int(i) for i in amounts if 0 <= int(i) < len(extras0.modulations)]
    n_amounts = len(slots)
    if len(cols) + n_amounts < 2:
        return "nothing to search"
    integer = [i for i, j in enumerate(cols) if reg.continuous[j].integer]
    opts = {
        "bounds": [0.0, 1.0],
        "seed": seed + 1,  # cma treats seed 0 as "random"
        "verbose": -9,
        "tolfun": 1e-4,
    }
    n_dims = len(cols) + n_amounts
    size = popsize or config.popsize or int(4 + 3 * np.log(n_dims))  # cma's default
    workers = max(1, int(getattr(search.pool, "workers", 1)))
    opts["popsize"] = -(-size // workers) * workers  # a multiple of the workers: none waits for the last
    if integer:
        opts["integer_variables"] = integer
    x0 = np.concatenate(
        [cont0[cols].astype(np.float64), [amount_unit(extras0.modulations[i].amount) for i in slots]]
    )
    es = cma.CMAEvolutionStrategy(x0, sigma0 or config.sigma0, opts)
    k = len(cols)
    while True:
        why = search.budget.spent()
        if why:
            return why
        if search.budget.elapsed >= deadline_s:
            return None
        if evals_until is not None and search.budget.evals >= evals_until:
            return None
        if es.stop():
            return "converged"
        n = min(es.popsize, search.budget.evals_left(), (evals_until or 1 << 30) - search.budget.evals)
        n = search.fits(n)  # near the deadline a part of the generation (not told: it may still find a best)
        xs = es.ask()
        candidates = []
        for x in xs[:n]:
            c = cont0.copy()
            c[cols] = np.clip(x[:k], 0.0, 1.0)
            extras = extras0
            if n_amounts:
                new = [c.amount for c in extras0.modulations]
                for i, v in zip(slots, 2.0 * np.clip(x[k:], 0.0, 1.0) - 1.0, strict=True):
                    new[i] = float(v)
                extras = extras0.with_amounts(new)
            candidates.append((c, cat0, extras))
        losses = search.run(candidates)
        if n == es.popsize:
            es.tell(xs, losses.tolist())
