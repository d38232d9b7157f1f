"""Activity: which parameters can affect the audio of a preset, given its switches.

Stage: synth (signal-flow knowledge). Input: full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry` -- continuous ``(N, C)`` in [0, 1] and
categorical ``(N, K)`` option indices. Output: boolean masks ``(N, C)`` and ``(N, K)``, True
where the parameter can change the sound of that preset.

Used by training (no loss on parameters that cannot affect a sample's audio: the label is
arbitrary there) and by search (only active parameters are worth searching). The rules follow
Vital's signal flow without modulation (Tiers 1-2):

* a module with an ``*_on`` switch that is off (oscillators, filters, sample, effects): all its
  other parameters are inactive;
* an oscillator (or the sample) whose destination is one effect alone (CHORUS .. REVERB,
  options 5-13) is silent, whether that effect is on or off (measured on vita 0.1.0: digital
  silence for each of the nine, docs/vita-facts.md §8): its parameters are inactive;
* a filter that no sounding source feeds is inactive;
* unison settings (detune, blend, spreads, stack) do nothing with one unison voice;
* oscillator distortion and spectral-morph amounts do nothing when their type is "None";
* the formant controls only act on the Formant filter model;
* LFOs, random generators, envelopes 2-6 and macros only act through the modulation matrix.
  Without connections (``modulation=None``, or an empty row) they are inactive. With each
  preset's encoded connections (``modulation``: the ``(k, 7)`` rows of
  :func:`vitalmatch.synth.modulation.encode`) such a module is active when it is the source of
  a connection whose destination is active, found by a fixed point: a destination inside
  another modulation-only module (``lfo_2 -> lfo_1_frequency``) counts once that module is
  active itself. A connection with amount 0 moves nothing and counts for nothing. A destination
  outside the registry (the ``modulation_N_amount`` / ``_power`` meta destinations) counts as
  active: the rules err towards "active".

The switches themselves (``*_on``) are always active. The rules are conservative heuristics:
a parameter marked active may still be inaudible in a particular preset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitalmatch.synth.params import ParamRegistry, module_of

#: Modules that only act through modulation (inactive without a modulation matrix).
MODULATION_ONLY = tuple(
    [f"lfo_{i}" for i in range(1, 9)]
    + [f"random_{i}" for i in range(1, 5)]
    + [f"env_{i}" for i in range(2, 7)]
    + [f"macro_control_{i}" for i in range(1, 5)]
)

#: Per-oscillator parameters that only matter with more than one unison voice.
_UNISON = (
    "unison_detune",
    "unison_blend",
    "detune_power",
    "detune_range",
    "stereo_spread",
    "frame_spread",
    "distortion_spread",
    "spectral_morph_spread",
    "stack_style",
    "spectral_unison",
)

_EFFECTS = ("chorus", "compressor", "delay", "distortion", "eq", "flanger", "phaser", "reverb")


def _option_index(registry: ParamRegistry, name: str, option: str) -> int | None:
    """Index of the option called ``option`` (case-insensitive) of categorical ``name``."""
    if name not in registry:
        return None
    for i, o in enumerate(registry[name].options):
        if o.strip().lower() == option.lower():
            return i
    return None


#: Effect switch of each effect destination label of ``osc_N_destination`` / ``sample_destination``
#: (lower case, as Vital names the options).
_EFFECT_LABELS = {fx: f"{fx}_on" for fx in _EFFECTS} | {"fx filter": "filter_fx_on"}


def effect_destinations(registry: ParamRegistry, name: str) -> dict[int, str]:
    """``{option index: effect switch}`` of the options of a destination categorical
    (``osc_N_destination``, ``sample_destination``) that feed one effect alone (CHORUS .. REVERB,
    FX FILTER). A source routed there is silent on vita 0.1.0, even with the effect on (module
    docstring). Empty if ``name`` is missing."""
    if name not in registry:
        return {}
    out = {}
    for i, label in enumerate(registry[name].options):
        switch = _EFFECT_LABELS.get(label.strip().lower())
        if switch is not None:
            out[i] = switch
    return out


def activity_masks(
    registry: ParamRegistry,
    continuous: np.ndarray,
    categorical: np.ndarray,
    modulation: Sequence[np.ndarray] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the parameters that can affect each preset's audio.

    Args:
        registry: the registry whose column order the vectors follow (full or a tier's subset;
            switches missing from it count as "on").
        continuous: ``(N, C)`` or ``(C,)`` unit-range values.
        categorical: ``(N, K)`` or ``(K,)`` option indices.
        modulation: per preset its encoded connections, ``(k, 7)`` float rows
            (:func:`vitalmatch.synth.modulation.encode`; one array for a single ``(C,)`` preset);
            None = no connections anywhere (Tiers 1-2 without routings).

    Returns:
        ``(cont_mask, cat_mask)`` boolean arrays shaped like the inputs.
    """
    cont = np.asarray(continuous, dtype=np.float64)
    cat = np.asarray(categorical)
    single = cont.ndim == 1
    cont, cat = np.atleast_2d(cont), np.atleast_2d(cat)
    n = cont.shape[0]
    cont_mask = np.ones((n, len(registry.continuous)), dtype=bool)
    cat_mask = np.ones((n, len(registry.categorical)), dtype=bool)

    def value(name: str, default: float) -> np.ndarray:
        """Raw value of a parameter per row (``default`` where the registry lacks it)."""
        if name not in registry:
            return np.full(n, default)
        kind, col = registry.locate(name)
        spec = registry[name]
        if kind == "categorical":
            return cat[:, col].astype(np.float64)
        return spec.min + np.clip(cont[:, col], 0, 1) * spec.span

    def switch(name: str) -> np.ndarray:
        return value(name, 1.0) > 0.5

    # Which module each column belongs to, and the column's short name within it.
    cont_modules = np.array([s.module for s in registry.continuous])
    cat_modules = np.array([s.module for s in registry.categorical])

    def kill(module: str, off: np.ndarray, keep: tuple[str, ...] = ()) -> None:
        """Mark the parameters of ``module`` inactive on rows where ``off`` is True."""
        if not off.any():
            return
        for specs, modules, mask in (
            (registry.continuous, cont_modules, cont_mask),
            (registry.categorical, cat_modules, cat_mask),
        ):
            cols = [
                j
                for j in np.flatnonzero(modules == module)
                if specs[j].name not in keep and not specs[j].name.endswith("_on")
            ]
            if cols:
                mask[np.ix_(off, cols)] = False

    def kill_names(names: list[str], off: np.ndarray) -> None:
        for name in names:
            if name in registry and off.any():
                kind, col = registry.locate(name)
                (cont_mask if kind == "continuous" else cat_mask)[off, col] = False

    # Effects and filters that are on.
    effect_on = {fx: switch(f"{fx}_on") if f"{fx}_on" in registry else np.zeros(n, bool) for fx in _EFFECTS}
    filter_on = {
        k: switch(f"filter_{k}_on") if f"filter_{k}_on" in registry else np.zeros(n, bool) for k in (1, 2)
    }
    if "filter_1_on" not in registry:  # a subset registry without the switch: assume Tier-1 flow
        filter_on[1] = np.ones(n, bool)

    # Sources (oscillators and the sample): on, and routed somewhere that reaches the output.
    sources = [f"osc_{i}" for i in (1, 2, 3)] + ["sample"]
    feeds = {1: np.zeros(n, bool), 2: np.zeros(n, bool)}
    for src in sources:
        on_name = f"{src}_on"
        dest_name = f"{src}_destination"
        if on_name not in registry:
            continue
        on = switch(on_name)
        sounding = on.copy()
        if dest_name in registry:
            dest = value(dest_name, 0).astype(int)
            options = [o.strip().lower() for o in registry[dest_name].options]
            for k, label in enumerate(options):
                rows = dest == k
                if not rows.any():
                    continue
                if label in ("filter 1", "filter 2", "filter 1+2"):
                    targets = [1] if label == "filter 1" else [2] if label == "filter 2" else [1, 2]
                    reach = np.zeros(n, bool)
                    for t in targets:
                        feeds[t] |= rows & on
                        # A source routed to a filter that is off still passes through it.
                        reach |= rows
                    sounding &= ~rows | reach
                elif label in _EFFECT_LABELS:
                    sounding &= ~rows  # silent even with the effect on (module docstring)
        kill(src, ~sounding)
        # Unison, distortion and spectral morph details of oscillators.
        if src.startswith("osc_"):
            voices = value(f"{src}_unison_voices", 1.0)
            kill_names([f"{src}_{p}" for p in _UNISON], voices < 1.5)
            none_dist = _option_index(registry, f"{src}_distortion_type", "None")
            if none_dist is not None:
                off = value(f"{src}_distortion_type", 0).astype(int) == none_dist
                kill_names(
                    [f"{src}_distortion_amount", f"{src}_distortion_phase", f"{src}_distortion_spread"], off
                )
            none_morph = _option_index(registry, f"{src}_spectral_morph_type", "None")
            if none_morph is not None:
                off = value(f"{src}_spectral_morph_type", 0).astype(int) == none_morph
                kill_names([f"{src}_spectral_morph_amount", f"{src}_spectral_morph_spread"], off)

    # Filters: on and fed by a sounding source (filter 2 can also feed filter 1 and vice versa).
    for k in (1, 2):
        module = f"filter_{k}"
        if not any(s.module == module for s in registry.specs):
            continue
        fed = feeds[k] if any(f"{s}_on" in registry for s in sources) else np.ones(n, bool)
        other = 2 if k == 1 else 1
        if f"{module}_filter_input" in registry:
            fed = fed | (switch(f"{module}_filter_input") & filter_on[other] & feeds[other])
        kill(module, ~(filter_on[k] & fed))
        formant = _option_index(registry, f"{module}_model", "Formant")
        if formant is not None:
            not_formant = value(f"{module}_model", 0).astype(int) != formant
            names = [s.name for s in registry.specs if s.name.startswith(f"{module}_formant_")]
            kill_names(names, not_formant)

    # Effects that are off; modulation-only modules.
    for fx in _EFFECTS:
        kill(fx, ~effect_on[fx])
    if "filter_fx_on" in registry:
        kill("filter_fx", ~switch("filter_fx_on"))
    driven = _driven_modules(registry, cont_mask, cat_mask, modulation, n, single)
    for module in MODULATION_ONLY:
        kill(module, ~driven[module])

    if single:
        return cont_mask[0], cat_mask[0]
    return cont_mask, cat_mask


def _driven_modules(
    registry: ParamRegistry,
    cont_mask: np.ndarray,
    cat_mask: np.ndarray,
    modulation: Sequence[np.ndarray] | np.ndarray | None,
    n: int,
    single: bool,
) -> dict[str, np.ndarray]:
    """``{module: (N,) bool}``: the modulation-only modules that drive an active destination.

    ``cont_mask`` / ``cat_mask`` are the masks before the modulation-only modules are killed; a
    destination inside a modulation-only module counts only once that module is driven itself
    (fixed point over at most one pass per module).
    """
    driven = {m: np.zeros(n, bool) for m in MODULATION_ONLY}
    if modulation is None:
        return driven
    rows_list = [modulation] if single else list(modulation)
    if len(rows_list) != n:
        raise ValueError(f"modulation: expected {n} presets' connections, got {len(rows_list)}")
    from vitalmatch.synth.modulation import ENCODED_WIDTH, destinations, sources

    src_names, dst_names = sources(), destinations()
    only = set(MODULATION_ONLY)
    for r, rows in enumerate(rows_list):
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, ENCODED_WIDTH)
        # (source module, destination module or None, destination active before)
        links: list[tuple[str, str | None, bool]] = []
        for _, s, d, amount, *_ in arr:
            if amount == 0 or not (0 <= s < len(src_names) and 0 <= d < len(dst_names)):
                continue
            src_module = module_of(src_names[int(s)])
            if src_module not in only:
                continue  # env_1, note, velocity, ...: no parameters of their own to switch on
            dst = dst_names[int(d)]
            if dst in registry:
                kind, col = registry.locate(dst)
                before = bool((cont_mask if kind == "continuous" else cat_mask)[r, col])
            else:
                before = True
            dst_module = module_of(dst)
            links.append((src_module, dst_module if dst_module in only else None, before))
        on: set[str] = set()
        changed = True
        while changed:
            changed = False
            for source_module, target_module, before in links:
                if source_module in on or not before:
                    continue
                if target_module is None or target_module in on:
                    on.add(source_module)
                    changed = True
        for m in on:
            driven[m][r] = True
    return driven
