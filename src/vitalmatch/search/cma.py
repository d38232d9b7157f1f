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

from typing import TYPE_CHECKING

import numpy as np

from vitalmatch.synth.params import ParamRegistry

if TYPE_CHECKING:
    from vitalmatch.search import RefineConfig
    from vitalmatch.search.budget import Search


def searchable_columns(
    registry: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
    tier: int,
    exclude: frozenset[str] = frozenset(),
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

    active, _ = activity_masks(registry, continuous, categorical)
    cols = [
        j
        for j, s in enumerate(registry.continuous)
        if s.tier <= tier and not (s.pinned or s.pitch or s.load_only) and s.name not in exclude and active[j]
    ]
    return np.array(cols, dtype=int)


def cma_phase(search: Search, config: RefineConfig, deadline_s: float, seed: int) -> str | None:
    """CMA-ES from the current best over its active columns until ``deadline_s`` (budget
    seconds elapsed) or the budget ends.

    Returns:
        Why it stopped: ``"budget"``, ``"evals"``, ``"converged"``, ``"nothing to search"`` (fewer
        than two columns), or None (reached ``deadline_s``).
    """
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
