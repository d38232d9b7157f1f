"""Structure phase of the search: which modules are on and which routings exist.

Stage: refine (structure). Input: a :class:`~vitalmatch.search.budget.Search` holding the best
point (full vectors and :class:`~vitalmatch.synth.render.PresetExtras`) and the
:class:`~vitalmatch.analysis.Findings` of the input sound (a tail after note-off, periodic
amplitude or pitch movement, a noise floor, stereo width, a cutoff sweep). Output: better points
recorded in the ``Search`` and the structure changes kept, as text.

The proposals come from :func:`vitalmatch.synth.structure.proposals` (only ``synth/`` knows which
Vital modules and routings realise a finding, and at which values); each is tried on the current
best, and kept only when it lowers the loss by 1% (a blind flip of every switch made Tier 2
worse than Tier 1 in round 1: the extra dimensions cost more than they bring). The proposals
that helped on their own are then tried together, and the better of that and the best single one
is kept.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vitalmatch.analysis import Findings
    from vitalmatch.search.budget import Search


def structure_phase(search: Search, findings: Findings, changes: list[str], rounds: int = 2) -> str | None:
    """Up to ``rounds`` rounds of structure proposals on the current best.

    Returns:
        ``"budget"`` or ``"evals"`` when the budget ran out, else None.
    """
    from vitalmatch.synth.structure import apply, proposals

    reg = search.registry
    tried: set[str] = set()
    for _ in range(rounds):
        why = search.budget.spent()
        if why:
            return why
        best_loss, cont, cat, extras = search.best
        props = [p for p in proposals(reg, cont, cat, extras.modulations, findings) if p.name not in tried]
        props = props[: search.budget.evals_left()]
        props = props[: search.fits(len(props), "change")]  # the batch ends by the deadline
        if not props:
            return None
        tried.update(p.name for p in props)
        points = []
        for p in props:
            c, k, conns = apply(reg, cont, cat, extras.modulations, p)
            points.append((c, k, dataclasses.replace(extras, modulations=tuple(conns))))
        losses = search.run(points, kind="change")
        helped = [i for i in range(len(props)) if losses[i] < 0.99 * best_loss]
        if not helped:
            return None
        kept = [min(helped, key=lambda i: losses[i])]
        if len(helped) > 1 and not search.budget.spent():
            c, k, conns = cont, cat, extras.modulations
            names: set[str] = set()
            applied = []
            for i in sorted(helped, key=lambda i: losses[i]):
                family = props[i].kind  # one alternative per finding (reverb, delay or release ...)
                if family in names:
                    continue
                names.add(family)
                applied.append(i)
                c, k, conns = apply(reg, c, k, conns, props[i])
            together = search.run(
                [(c, k, dataclasses.replace(extras, modulations=tuple(conns)))], kind="change"
            )[0]
            if together < losses[kept[0]]:
                kept = applied
        changes.extend(f"structure: {props[i].name}" for i in kept)
    return None
