"""The offline guide: a preset -> a deterministic step-by-step Markdown guide to build it in Vital.

Stage: tutorial (guide). Input: a Vital preset (JSON dict) or a
:class:`~vitalmatch.synth.state.PresetState`. Output: Markdown (:func:`offline_tutorial`) that starts
from Vital's init preset and lists, section by section in the order of Vital's UI, every setting that
differs from it, with the values as Vital displays them (from
:func:`~vitalmatch.tutorial.table.parameter_table`).
Settings that do nothing in the preset (unison controls with one voice, a filter model's unused
knobs, the tempo in Seconds mode, envelopes and LFOs no modulation uses) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from vitalmatch.synth.display import EFFECT_NAMES, EFFECTS, effect_order, source_name
from vitalmatch.synth.state import PresetState
from vitalmatch.tutorial.table import ParamRow, _clamped_values, _state, parameter_table

__all__ = ["offline_tutorial"]


#: Global controls that are performance state or handled elsewhere, kept out of the guide.
_GUIDE_SKIP = ("bypass", "pitch_wheel", "mod_wheel", "effect_chain_order")
#: Oscillator controls that only act with more than one unison voice.
_UNISON_ONLY = (
    "unison_detune", "unison_blend", "detune_power", "detune_range", "stack_style", "frame_spread",
    "stereo_spread", "spectral_unison",
)  # fmt: skip


def offline_tutorial(preset: Mapping | PresetState, name: str | None = None) -> str:
    """A deterministic Markdown guide to rebuild a preset in Vital, starting from the init preset.

    It covers the oscillators that are on (wavetable, frame, unison, transposition, ...), the
    sample, the filters that are on (model, style, cutoff in Hz, resonance, drive, key tracking),
    the amplitude envelope and every envelope or LFO a modulation uses (stages in ms, sustain in
    %), the effects that are on and their order, the modulations with non-zero amounts, the macros
    and the global settings. Whatever is at the init preset's value is left out.

    Args:
        preset: preset JSON dict or a :class:`PresetState`.
        name: title; default the preset's own ``preset_name``, else "this preset".
    """
    state = _state(preset)
    rows = parameter_table(state)
    by_group: dict[str, list[ParamRow]] = {}
    for r in rows:
        by_group.setdefault(r.group, []).append(r)
    values = state.values()
    title = name or state.meta.get("preset_name") or "this preset"
    mods = _active_modulations(by_group.get("Modulation", []), state)
    used_sources = {state.modulations[_slot(r) - 1][0] for r in mods}

    out = [f'# How to build "{title}" in Vital', ""]
    about = [f"by {state.meta['author']}" if state.meta.get("author") else ""]
    about.append(f"style: {state.meta['preset_style']}" if state.meta.get("preset_style") else "")
    if any(about):
        out += ["Preset " + ", ".join(a for a in about if a) + ".", ""]
    if state.meta.get("comments", "").strip():
        out += ["> " + " ".join(state.meta["comments"].split()), ""]
    out += [
        "Start from Vital's init preset and change only what this guide lists: everything it does "
        "not mention stays at its init value. Values are given as Vital displays them.",
        "",
    ]
    out += _clamped_note(rows, state)
    sections: list[tuple[str, list[str]]] = [("Start from the init preset", _init_steps())]
    sections.append(("Oscillators", _oscillator_steps(by_group, values)))
    sections.append(("Sample oscillator", _sample_steps(by_group, values)))
    sections.append(("Filters", _filter_steps(by_group, values)))
    sections.append(("Envelopes", _envelope_steps(by_group, used_sources)))
    sections.append(("LFOs", _lfo_steps(by_group, values, used_sources)))
    sections.append(("Effects", _effect_steps(by_group, values)))
    sections.append(("Modulations", _modulation_steps(mods)))
    sections.append(("Macros", _macro_steps(by_group, state, used_sources)))
    sections.append(("Global settings", _global_steps(by_group)))
    n = 0
    for heading, lines in sections:
        if not lines:
            continue
        n += 1
        out += [f"## {n}. {heading}", "", *lines, ""]
    return "\n".join(out).rstrip() + "\n"


#: Most clamped values the guide's note names one by one.
_MAX_CLAMPED_LISTED = 10


def _clamped_note(rows: Sequence[ParamRow], state: PresetState) -> list[str]:
    """A paragraph naming the values that were out of range (in table order), or ``[]``."""
    clamped = _clamped_values(state)
    listed = [f"{r.display_name} {clamped[r.control]:g} -> {r.text}" for r in rows if r.control in clamped]
    if not listed:
        return []
    more = len(listed) - _MAX_CLAMPED_LISTED
    items = "; ".join(listed[:_MAX_CLAMPED_LISTED]) + (f"; and {more} more" if more > 0 else "")
    return [
        "Some values in the preset are outside their control's range, between the steps of a stepped "
        "control, or not numbers. This guide shows them as vitalmatch sets them on the synth (clamped "
        f"to the range, rounded to a step, the init value for a non-number): {items}.",
        "",
    ]


def _slot(row: ParamRow) -> int:
    """Modulation slot number (1-based) of a modulation row."""
    return int(row.control.split("_")[1])


def _active_modulations(rows: Sequence[ParamRow], state: PresetState) -> list[ParamRow]:
    """Connected slots with a non-zero amount, plus the slots whose amount another active one
    modulates (their amount can be 0 and still matter)."""
    active = {_slot(r) for r in rows if not r.is_default}
    while True:
        targets = {
            int(m.group(1))
            for i in active
            if (m := re.fullmatch(r"modulation_(\d+)_amount", state.modulations[i - 1][1]))
        }
        if targets <= active:
            break
        active |= targets
    return [r for r in rows if _slot(r) in active]


def _init_steps() -> list[str]:
    return ["Open the preset menu (the preset name at the top) and choose **Initialize Preset**."]


def _changed(rows: Sequence[ParamRow], skip: Iterable[str] = ()) -> list[ParamRow]:
    skip = set(skip)
    return [r for r in rows if not r.is_default and r.control not in skip]


def _bullets(rows: Sequence[ParamRow]) -> list[str]:
    return [f"- {r.label}: **{r.text}**" for r in rows]


def _is_on(values: Mapping[str, float], switch: str) -> bool:
    return values.get(switch, 0.0) >= 0.5


def _switch_line(row: ParamRow | None, what: str) -> list[str]:
    """``["- Turn **X** on."]`` (or off) when the switch differs from the init preset, else ``[]``."""
    if row is None or row.is_default:
        return []
    return [f"- Turn **{what}** {row.text.lower()}."]


def _sync_skip(prefix: str, values: Mapping[str, float]) -> list[str]:
    """Controls that do nothing for the current sync mode: tempo in Seconds mode, frequency in the
    tempo modes, the keytrack settings unless the mode is Keytrack (LFOs)."""
    sync = int(round(values.get(f"{prefix}_sync", 1.0)))
    skip = [f"{prefix}_tempo"] if sync == 0 else [f"{prefix}_frequency"]
    if sync == 4:
        skip = [f"{prefix}_tempo", f"{prefix}_frequency"]
    else:
        skip += [f"{prefix}_keytrack_transpose", f"{prefix}_keytrack_tune"]
    return skip


def _oscillator_steps(by_group: Mapping[str, list[ParamRow]], values: Mapping[str, float]) -> list[str]:
    lines: list[str] = []
    for i in (1, 2, 3):
        rows = by_group.get(f"Oscillator {i}", [])
        switch = next((r for r in rows if r.control == f"osc_{i}_on"), None)
        if not _is_on(values, f"osc_{i}_on"):
            if switch is not None and not switch.is_default:
                lines += [f"### Oscillator {i}", "", f"- Turn **Oscillator {i}** off.", ""]
            continue
        lines += [f"### Oscillator {i}", ""]
        lines += _switch_line(switch, f"Oscillator {i}")
        wavetable = next((r for r in rows if r.control == f"osc_{i}_wavetable"), None)
        if wavetable is not None:
            note = " (Vital's default saw)" if wavetable.is_default else " (it is stored in the preset file)"
            lines.append(f"- Wavetable: **{wavetable.text}**{note}")
        changed = _changed(rows, skip=[f"osc_{i}_on", f"osc_{i}_wavetable", *_oscillator_skip(i, values)])
        lines += _bullets(changed)
        if not changed:
            lines.append("- Everything else as in the init preset.")
        lines.append("")
    return lines[:-1] if lines else lines


def _oscillator_skip(i: int, values: Mapping[str, float]) -> list[str]:
    """Oscillator controls that do nothing: unison settings with one voice, the amounts of a
    distortion or frequency morph of type None."""
    p = f"osc_{i}_"
    skip = []
    if int(round(values.get(p + "unison_voices", 1.0))) <= 1:
        skip += [p + k for k in _UNISON_ONLY]
    if int(round(values.get(p + "distortion_type", 0.0))) == 0:
        skip += [p + "distortion_amount", p + "distortion_phase", p + "distortion_spread"]
    if int(round(values.get(p + "spectral_morph_type", 0.0))) == 0:
        skip += [p + "spectral_morph_amount", p + "spectral_morph_spread"]
    return skip


def _sample_steps(by_group: Mapping[str, list[ParamRow]], values: Mapping[str, float]) -> list[str]:
    if not _is_on(values, "sample_on"):
        return []
    rows = by_group.get("Sample", [])
    switch = next((r for r in rows if r.control == "sample_on"), None)
    return _switch_line(switch, "Sample") + _bullets(_changed(rows, skip=("sample_on",)))


def _filter_rows_to_skip(prefix: str, values: Mapping[str, float]) -> list[str]:
    """Model-specific controls that the chosen model does not use, and the legacy input switches."""
    model = int(round(values.get(f"{prefix}_model", 0.0)))
    skip = [f"{prefix}_{k}_input" for k in ("osc1", "osc2", "osc3", "sample")]
    if model == 5:  # Vital shows the formant controls in the places of these
        skip += [f"{prefix}_{k}" for k in ("cutoff", "resonance", "drive", "keytrack", "blend")]
    else:
        skip += [f"{prefix}_formant_{k}" for k in ("x", "y", "transpose", "resonance", "spread")]
    if model == 6:  # the comb's blend offset takes the drive knob's place
        skip.append(f"{prefix}_drive")
    else:
        skip.append(f"{prefix}_blend_transpose")
    return skip


def _filter_steps(by_group: Mapping[str, list[ParamRow]], values: Mapping[str, float]) -> list[str]:
    lines: list[str] = []
    for i in (1, 2):
        prefix = f"filter_{i}"
        if not _is_on(values, f"{prefix}_on"):
            continue
        rows = by_group.get(f"Filter {i}", [])
        switch = next((r for r in rows if r.control == f"{prefix}_on"), None)
        lines += [f"### Filter {i}", "", *_switch_line(switch, f"Filter {i}")]
        model = next(r for r in rows if r.control == f"{prefix}_model")
        style = next(r for r in rows if r.control == f"{prefix}_style")
        lines.append(f"- Model: **{model.text}**, style: **{style.text}**")
        skip = [f"{prefix}_on", f"{prefix}_model", f"{prefix}_style", f"{prefix}_filter_input"]
        skip += _filter_rows_to_skip(prefix, values)
        lines += _bullets(_changed(rows, skip=skip))
        routed = [
            f"Oscillator {n}"
            for n in (1, 2, 3)
            if _is_on(values, f"osc_{n}_on")
            and int(round(values.get(f"osc_{n}_destination", 0))) in (i - 1, 2)
        ]
        if _is_on(values, "sample_on") and int(round(values.get("sample_destination", 3))) in (i - 1, 2):
            routed.append("Sample")
        if _is_on(values, f"{prefix}_filter_input") and _is_on(values, f"filter_{3 - i}_on"):
            routed.append(f"Filter {3 - i} (turn on the FIL{3 - i} input button)")
        lines.append(f"- Input: {', '.join(routed) if routed else 'no oscillator is routed to it'}")
        lines.append("")
    return lines[:-1] if lines else lines


def _envelope_steps(by_group: Mapping[str, list[ParamRow]], used_sources: set[str]) -> list[str]:
    lines: list[str] = []
    for i in range(1, 7):
        if i > 1 and f"env_{i}" not in used_sources:
            continue  # only envelope 1 acts without a modulation
        changed = _changed(by_group.get(f"Envelope {i}", []))
        if not changed:
            continue
        what = " (amplitude of every note)" if i == 1 else " (a modulation source, see below)"
        lines += [f"### Envelope {i}{what}", "", *_bullets(changed), ""]
    return lines[:-1] if lines else lines


def _lfo_steps(
    by_group: Mapping[str, list[ParamRow]], values: Mapping[str, float], used_sources: set[str]
) -> list[str]:
    lines: list[str] = []
    for kind, group, count in (("lfo", "LFO", 8), ("random", "Random LFO", 4)):
        for i in range(1, count + 1):
            prefix = f"{kind}_{i}"
            if prefix not in used_sources:
                continue
            rows = by_group.get(f"{group} {i}", [])
            changed = _changed(rows, skip=[f"{prefix}_shape", *_sync_skip(prefix, values)])
            shape = next((r for r in rows if r.control == f"{prefix}_shape"), None)
            lines += [f"### {group} {i}", ""]
            if shape is not None:
                where = (
                    "the init shape"
                    if shape.is_default
                    else "drawn in the LFO editor; the preset file holds it"
                )
                lines.append(f"- Shape: **{shape.text}** ({where})")
            lines += _bullets(changed) or ["- All settings as in the init preset."]
            lines.append("")
    return lines[:-1] if lines else lines


def _effect_steps(by_group: Mapping[str, list[ParamRow]], values: Mapping[str, float]) -> list[str]:
    on = [e for e in effect_order(values.get("effect_chain_order", 0.0)) if _is_on(values, f"{e}_on")]
    if not on:
        return []
    lines = []
    if len(on) > 1 and effect_order(values.get("effect_chain_order", 0.0)) != list(EFFECTS):
        lines += [
            "Effect order, first to last (drag the effects into this order): "
            + " -> ".join(EFFECT_NAMES[e] for e in on)
            + ".",
            "",
        ]
    for effect in on:
        name = EFFECT_NAMES[effect]
        rows = by_group.get(f"Effects: {name}", [])
        skip = [f"{effect}_on"]
        if effect in ("chorus", "flanger", "phaser"):
            skip += _sync_skip(effect, values)
        if effect == "delay":
            skip += _sync_skip("delay", values)
            aux = [f"delay_aux_{k}" for k in ("sync", "tempo", "frequency")]
            skip += _sync_skip("delay_aux", values) if int(round(values.get("delay_style", 0))) else aux
        if effect == "filter_fx":
            skip += ["filter_fx_model", "filter_fx_style", *_filter_rows_to_skip("filter_fx", values)]
        heading = "Filter (the effect, not Filter 1 or 2)" if effect == "filter_fx" else name
        lines += [f"### {heading}", "", f"- Turn **{name}** on."]
        if effect == "filter_fx":
            model = next(r for r in rows if r.control == "filter_fx_model")
            style = next(r for r in rows if r.control == "filter_fx_style")
            lines.append(f"- Model: **{model.text}**, style: **{style.text}**")
        changed = _changed(rows, skip=skip)
        lines += _bullets(changed) or ["- Leave its settings at their init values."]
        lines.append("")
    return lines[:-1]


def _modulation_steps(mods: Sequence[ParamRow]) -> list[str]:
    if not mods:
        return []
    lines = [
        "Drag each source onto its destination knob (or add the pair in the modulation matrix), "
        "then set the amount:",
        "",
        "| Slot | Source -> destination | Amount |",
        "|---|---|---|",
    ]
    lines += [f"| {_slot(r)} | {r.label} | {r.text} |" for r in mods]
    if any("-> Modulation " in r.label for r in mods):
        lines += ["", '"Modulation N Amount" is the amount of the connection in slot N of this table.']
    return lines


def _macro_steps(
    by_group: Mapping[str, list[ParamRow]], state: PresetState, used_sources: set[str]
) -> list[str]:
    lines = []
    for r in by_group.get("Macros", []):
        if r.is_default and r.control not in used_sources:
            continue
        lines.append(f"- {source_name(r.control, state.meta)}: **{r.text}**")
    return lines


def _global_steps(by_group: Mapping[str, list[ParamRow]]) -> list[str]:
    return _bullets(_changed(by_group.get("Global", []), skip=_GUIDE_SKIP))
