"""Discrete phase of the search: single changes to categoricals and to pitch offsets.

Stage: refine (discrete search). Input: a :class:`~vitalmatch.search.budget.Search` holding the
best point (full vectors ``(C,)`` float32 in [0, 1], ``(K,)`` int32), the search settings and,
optionally, the network's probabilities per categorical. Output: better points recorded in the
``Search``, the changes kept as ``"name: old -> new"`` text, and why the phase stopped.

Proposals (:func:`discrete_candidates`): the runner-up options of the most uncertain network
choices (with probabilities), or a few alternatives of each active categorical (without); plus
octave moves and zero of the transposes and zero tune of the oscillators that sound (CMA-ES
leaves pitch alone). One round tries them all on the current best and keeps what helps
(:func:`discrete_phase`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vitalmatch.synth.params import CATEGORICAL, CONTINUOUS, ParamRegistry

if TYPE_CHECKING:
    from vitalmatch.search import RefineConfig
    from vitalmatch.search.budget import Search


def discrete_candidates(
    registry: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
    config: RefineConfig,
    probabilities: dict[str, np.ndarray] | None,
    rng: np.random.Generator,
    extras=None,
) -> list[tuple[str, str, int, float]]:
    """Single changes ``(kind, name, column, new value)`` to try on the current best: ``kind`` is
    ``"categorical"`` (an option index) or ``"continuous"`` (a unit value: octave moves and zero of
    the whole-semitone transposes, zero tune, of the oscillators that sound)."""
    from vitalmatch.synth.activity import activity_masks
    from vitalmatch.synth.modulation import encode

    modulation = encode(list(extras.modulations)) if extras is not None and extras.modulations else None
    cont_active, active = activity_masks(registry, continuous, categorical, modulation)
    custom = set()  # oscillators whose table is a preset's own file: their wavetable choice is fixed
    for osc, path in enumerate(extras.wavetable_files if extras is not None else (), start=1):
        if path:
            custom.add(f"osc_{osc}_wavetable")
    out: list[tuple[str, str, int, float]] = []
    for j, spec in enumerate(registry.continuous):
        if not spec.pitch or spec.tier > config.tier or not cont_active[j]:
            continue
        raw = spec.from_unit(float(continuous[j]))
        # whole semitones (transpose): octaves either way and none; fine tune: none
        values = [raw - 12, raw + 12, 0.0] if spec.integer else [0.0]
        for v in values:
            if spec.min <= v <= spec.max and v != raw:
                out.append((CONTINUOUS, spec.name, j, spec.to_unit(v)))
    cols = [
        j
        for j, s in enumerate(registry.categorical)
        if s.tier <= config.tier
        and not s.load_only
        and s.n_options > 1
        and active[j]
        and s.name not in custom
    ]
    if probabilities:
        ranked = sorted(
            (j for j in cols if registry.categorical[j].name in probabilities),
            key=lambda j: float(np.max(probabilities[registry.categorical[j].name])),
        )
        for j in ranked[: config.top_k_categoricals]:
            p = probabilities[registry.categorical[j].name]
            options = [int(o) for o in np.argsort(-p) if int(o) != int(categorical[j])]
            out += [(CATEGORICAL, registry.categorical[j].name, j, o) for o in options[: config.alternatives]]
        return out
    for j in cols:
        spec = registry.categorical[j]
        options = [o for o in range(spec.n_options) if o != int(categorical[j])]
        for o in rng.permutation(options)[: config.alternatives]:
            out.append((CATEGORICAL, spec.name, j, int(o)))
    return out


def with_change(
    cont: np.ndarray, cat: np.ndarray, kind: str, col: int, value: float
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``cont`` ``(C,)`` and ``cat`` ``(K,)`` with column ``col`` of ``kind`` set to
    ``value`` (a unit value or an option index)."""
    c, k = cont.copy(), cat.copy()
    if kind == CONTINUOUS:
        c[col] = value
    elif kind == CATEGORICAL:
        k[col] = int(value)
    else:
        raise ValueError(f"unknown parameter kind {kind!r}")
    return c, k


def _describe(registry: ParamRegistry, kind: str, name: str, old: float, new: float) -> str:
    """``"name: old -> new"`` in raw values (continuous) or option names (categorical)."""
    spec = registry[name]
    if kind == CONTINUOUS:
        return f"{name}: {spec.from_unit(old):g} -> {spec.from_unit(new):g}"
    elif kind == CATEGORICAL:
        return f"{name}: {spec.option_name(int(old))} -> {spec.option_name(int(new))}"
    else:
        raise ValueError(f"unknown parameter kind {kind!r}")


def discrete_phase(
    search: Search,
    config: RefineConfig,
    deadline_s: float,
    probabilities: dict[str, np.ndarray] | None,
    rng: np.random.Generator,
    changes: list[str],
) -> str | None:
    """Rounds of single changes until none lowers the loss by 1% or time is up.

    Each round tries every proposal on the current best; the changes that helped on their own
    (the best one per parameter) are then tried together, and the better of that combination and
    the best single change is kept (appended to ``changes``).

    Returns:
        Why it stopped: ``"budget"``, ``"evals"``, or None (no proposal left or helped, or
        ``deadline_s`` reached).
    """
    reg = search.registry
    tried: set[tuple[str, int, float]] = set()
    while True:
        why = search.budget.spent()
        if why:
            return why
        if search.budget.elapsed >= deadline_s:
            return None
        best_loss, cont, cat, extras = search.best
        proposals = [
            p
            for p in discrete_candidates(reg, cont, cat, config, probabilities, rng, extras)
            if (p[0], p[2], p[3]) not in tried
        ][: search.budget.evals_left()]
        proposals = proposals[: search.fits(len(proposals), "change")]  # the batch ends by the deadline
        if not proposals:
            return None
        tried.update((kind, j, v) for kind, _, j, v in proposals)
        losses = search.run(
            [(*with_change(cont, cat, kind, j, v), extras) for kind, _, j, v in proposals], kind="change"
        )
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
                c, k = with_change(c, k, proposals[i][0], proposals[i][2], proposals[i][3])
            if search.run([(c, k, extras)], kind="change")[0] < losses[kept[0]]:
                kept = list(helped.values())
        for i in kept:
            kind, name, col, value = proposals[i]
            old = float(cont[col]) if kind == CONTINUOUS else float(cat[col])
            changes.append(_describe(reg, kind, name, old, value))
