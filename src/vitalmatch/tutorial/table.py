"""The parameter table: a preset -> one row per parameter with Vital's display value.

Stage: tutorial (table). Input: a Vital preset (the JSON dict of a ``.vital`` file) or a
:class:`~vitalmatch.synth.state.PresetState`. Output: a list of :class:`ParamRow`, grouped by
module in the order of Vital's UI (the guide, the LLM prompt and the demo's table are made from it).

How the values are read: :func:`vitalmatch.synth.state.load_state` loads the preset into a live
``vita.Synth`` in a crash-isolated worker and reads every control's raw value and the bindings'
text back (what the synth makes of the preset, not what the file says), plus the init preset's
texts (the defaults) and the settings that are not controls. :mod:`vitalmatch.synth.display`
turns raw values and the bindings' texts into Vital's display text.

Out-of-range values: ``load_json`` and ``ControlValue.set`` do no clamping, so a file can put
``filter_1_cutoff`` at 1e6 or ``osc_1_unison_voices`` at 4e6 into the synth (and 1e39, past
float32, becomes inf). This module's :func:`load_state` (and every function of the tutorial that
is given a :class:`PresetState`) first clamps each control the way vitalmatch drives the synth,
:meth:`vitalmatch.synth.params.ParamSpec.clamp` with the live synth's ``min``/``max`` and
``default``: clamped to [min, max], Indexed controls rounded, NaN and +-inf replaced by the
default. The clamped controls' texts are read again from a synth (a second worker, only when
something was clamped), and the guide lists what was clamped.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vitalmatch.synth.display import (
    EFFECT_CONTROL_PREFIX,
    EFFECT_NAMES,
    EFFECTS,
    clamp_control,
    control_texts,
    display_text,
    format_number,
    source_name,
)
from vitalmatch.synth.params import VIEW_ONLY
from vitalmatch.synth.state import PresetState
from vitalmatch.synth.state import load_state as _load_synth_state

__all__ = [
    "ClampedState",
    "ParamRow",
    "clamp_state",
    "format_table",
    "load_state",
    "non_default",
    "parameter_table",
]


#: Order of the controls inside a group (by the part of the name after the module); others follow
#: alphabetically.
_PRIORITY = (
    "on", "wavetable", "shape", "name", "model", "style", "sync", "tempo", "frequency",
    "wave_frame", "cutoff", "resonance", "drive", "keytrack", "blend", "dry_wet", "mix",
    "level", "pan", "transpose", "tune", "unison_voices", "unison_detune", "unison_blend",
    "stack_style", "destination", "delay", "attack", "hold", "decay", "sustain", "release",
    "attack_power", "decay_power", "release_power", "feedback", "size", "decay_time", "type",
)  # fmt: skip

_MODULE_RE = re.compile(
    r"^(osc_\d|filter_fx|filter_\d|env_\d|lfo_\d|random_\d|modulation_\d+|macro_control_\d|"
    r"sample|chorus|compressor|delay|distortion|eq|flanger|phaser|reverb)(?:_|$)"
)


# ============================================================================ reading the synth
@dataclass(frozen=True)
class ClampedState(PresetState):
    """A :class:`PresetState` in which some controls were out of range and have been clamped.

    Attributes:
        clamped: the raw values the synth held (or the file gave, for NaN and +-inf) before
            clamping, by control name; ``controls`` holds the clamped values and their texts.
    """

    clamped: dict[str, float] = field(default_factory=dict)


def load_state(preset: Mapping, *, timeout_s: float = 30.0) -> PresetState:
    """:func:`vitalmatch.synth.state.load_state`, then :func:`clamp_state`.

    Top-level ``settings`` values that are NaN or +-inf (Python's ``json`` reads ``NaN`` and
    ``Infinity``) are left out of what the synth loads, so those controls take their defaults
    (vita-facts §3: missing controls are reset to defaults), as ``ParamSpec.clamp`` does; they are
    listed in ``clamped``.

    Raises:
        ValueError: one line, when the synth rejects the preset, crashes or hangs on it.
    """
    not_numbers: dict[str, float] = {}
    settings = preset.get("settings") if isinstance(preset, Mapping) else None
    if isinstance(settings, Mapping):
        not_numbers = {k: v for k, v in settings.items() if isinstance(v, float) and not math.isfinite(v)}
        if not_numbers:
            kept = {k: v for k, v in settings.items() if k not in not_numbers}
            preset = {**preset, "settings": kept}
    state = clamp_state(_load_synth_state(preset, timeout_s=timeout_s), timeout_s=timeout_s)
    not_numbers = {k: v for k, v in not_numbers.items() if k in state.controls}
    if not not_numbers:
        return state
    return ClampedState(**{**_fields(state), "clamped": {**not_numbers, **_clamped_values(state)}})


def clamp_state(state: PresetState, *, timeout_s: float = 30.0) -> PresetState:
    """``state`` with every control clamped as vitalmatch drives the synth (``ParamSpec.clamp``
    with the control's live ``min``, ``max`` and ``default``).

    Returns ``state`` itself when nothing is out of range; else a :class:`ClampedState` whose
    clamped controls carry the bindings' text for the clamped value (read from a fresh synth in a
    crash-isolated worker, ~1 s).
    """
    changed = {}
    for name, info in state.controls.items():
        value = clamp_control(info, info.value)
        if value != info.value:  # also when the synth holds NaN
            changed[name] = value
    if not changed:
        return state
    texts = control_texts(changed, timeout_s=timeout_s, what="the synth could not show the clamped values")
    controls = dict(state.controls)
    for name, value in changed.items():
        controls[name] = dataclasses.replace(controls[name], value=value, text=texts[name])
    clamped = {**_clamped_values(state), **{n: state.controls[n].value for n in changed}}
    return ClampedState(**{**_fields(state), "controls": controls, "clamped": clamped})


def _fields(state: PresetState) -> dict:
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(PresetState)}


def _clamped_values(state: PresetState) -> dict[str, float]:
    return dict(state.clamped) if isinstance(state, ClampedState) else {}


def _state(preset: Mapping | PresetState) -> PresetState:
    return clamp_state(preset) if isinstance(preset, PresetState) else load_state(preset)


# ============================================================================ parameter table
@dataclass(frozen=True)
class ParamRow:
    """One row of the parameter table.

    Attributes:
        group: Vital module as its UI names it: ``"Oscillator 1"``, ``"Sample"``, ``"Filter 1"``,
            ``"Envelope 1"``, ``"LFO 1"``, ``"Random LFO 1"``, ``"Effects: Reverb"``,
            ``"Macros"``, ``"Global"``, ``"Modulation"``.
        control: control name (``"filter_1_cutoff"``); settings that are not controls get
            ``osc_N_wavetable``, ``sample_name`` and ``lfo_N_shape``; modulations
            ``modulation_N_amount``.
        display_name: Vital's full name (``"Filter 1 Cutoff"``; ``"LFO 1 -> Filter 1 Cutoff"``
            for a modulation).
        label: the name inside its group (``"Cutoff"``).
        value: raw engine value (a name for wavetables, samples and LFO shapes).
        text: display value with units, as Vital shows it (``"523.3 Hz"``, ``"12 ms"``).
        default_text: the same for the init preset's value.
        is_default: the value is the init preset's (a modulation: its amount is 0).
    """

    group: str
    control: str
    display_name: str
    label: str
    value: float | str
    text: str
    default_text: str
    is_default: bool


def parameter_table(preset: Mapping | PresetState) -> list[ParamRow]:
    """Every parameter of a preset with Vital's display value, grouped by module in UI order.

    Args:
        preset: preset JSON dict (loaded into the synth in a worker, ~1 s) or a
            :class:`PresetState` from :func:`load_state`.

    Returns:
        One row per control (the four view-only switches left out), per wavetable, sample and LFO
        shape, and per connected modulation slot. Use :func:`non_default` for the changed ones.
    """
    state = _state(preset)
    values = state.values()
    defaults = {n: c.default for n, c in state.controls.items()}
    rows: list[tuple[tuple, ParamRow]] = []
    for name, info in state.controls.items():
        if name in VIEW_ONLY or name.startswith("modulation_"):
            continue
        group, prefix = _group(name)
        row = ParamRow(
            group=group,
            control=name,
            display_name=info.display_name,
            label=_label(info.display_name, prefix),
            value=info.value,
            text=display_text(info, info.value, info.text, values),
            default_text=display_text(info, info.default, info.default_text, defaults),
            is_default=info.is_default,
        )
        rows.append((_sort_key(group, name), row))
    for row in _named_rows(state):
        rows.append((_sort_key(row.group, row.control), row))
    for i, row in enumerate(_modulation_rows(state)):
        rows.append(((_GROUPS_END + 1, i, ""), row))
    return [row for _, row in sorted(rows, key=lambda kr: kr[0])]


def non_default(rows: Iterable[ParamRow]) -> list[ParamRow]:
    """The rows whose value differs from the init preset (order kept)."""
    return [r for r in rows if not r.is_default]


def format_table(rows: Iterable[ParamRow]) -> str:
    """Rows as a Markdown table: group, parameter, value, default."""
    lines = ["| Module | Parameter | Value | Init value |", "|---|---|---|---|"]
    for r in rows:
        cells = (r.group, r.label, r.text, r.default_text)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _group(name: str) -> tuple[str, str]:
    """``(group, display-name prefix)`` of a control."""
    m = _MODULE_RE.match(name)
    module = m.group(1) if m else "global"
    kind, _, number = module.rpartition("_")
    if module.startswith("osc_"):
        return f"Oscillator {number}", f"Oscillator {number} "
    if module == "filter_fx":
        return "Effects: Filter", "Filter fx "
    if module.startswith("filter_"):
        return f"Filter {number}", f"Filter {number} "
    if module.startswith("env_"):
        return f"Envelope {number}", f"Envelope {number} "
    if module.startswith("lfo_"):
        return f"LFO {number}", f"LFO {number} "
    if module.startswith("random_"):
        return f"Random LFO {number}", f"Random LFO {number} "
    if kind == "macro_control":
        return "Macros", ""
    if module.startswith("modulation_"):
        return "Modulation", ""
    if module == "sample":
        return "Sample", "Sample "
    if module in EFFECT_NAMES:
        return f"Effects: {EFFECT_NAMES[module]}", EFFECT_CONTROL_PREFIX[module] + " "
    return "Global", ""


_GROUP_ORDER = (
    [f"Oscillator {i}" for i in (1, 2, 3)]
    + ["Sample", "Filter 1", "Filter 2"]
    + [f"Envelope {i}" for i in range(1, 7)]
    + [f"LFO {i}" for i in range(1, 9)]
    + [f"Random LFO {i}" for i in range(1, 5)]
    + [f"Effects: {EFFECT_NAMES[e]}" for e in EFFECTS]
    + ["Macros", "Global"]
)
_GROUPS_END = len(_GROUP_ORDER)


def _sort_key(group: str, name: str) -> tuple:
    g = _GROUP_ORDER.index(group) if group in _GROUP_ORDER else _GROUPS_END
    m = _MODULE_RE.match(name)
    rest = name[m.end() :] if m else name
    p = _PRIORITY.index(rest) if rest in _PRIORITY else len(_PRIORITY)
    return (g, p, name)


def _label(display_name: str, prefix: str) -> str:
    if prefix and display_name.lower().startswith(prefix.lower()) and len(display_name) > len(prefix):
        return display_name[len(prefix) :]
    return display_name


def _named_rows(state: PresetState) -> list[ParamRow]:
    """Rows for the settings that are names, not controls: wavetables, the sample, LFO shapes.

    Their init values: "Init" (Vital's saw), "White Noise", "Triangle".
    """

    def row(group: str, control: str, display: str, label: str, value: str, default: str) -> ParamRow:
        return ParamRow(group, control, display, label, value, value, default, value == default)

    rows = [
        row(f"Oscillator {i}", f"osc_{i}_wavetable", f"Oscillator {i} Wavetable", "Wavetable", name, "Init")
        for i, name in enumerate(state.wavetables, start=1)
    ]
    if state.sample:
        rows.append(row("Sample", "sample_name", "Sample", "Sample", state.sample, "White Noise"))
    rows += [
        row(f"LFO {i}", f"lfo_{i}_shape", f"LFO {i} Shape", "Shape", shape, "Triangle")
        for i, shape in enumerate(state.lfo_shapes, start=1)
    ]
    return rows


def _modulation_rows(state: PresetState) -> list[ParamRow]:
    """One row per connected modulation slot: amount, with bipolar/stereo/bypass/power in the text."""
    rows = []
    for i, (source, destination) in enumerate(state.modulations, start=1):
        if not source or not destination:
            continue
        amount = state.controls.get(f"modulation_{i}_amount")
        value = amount.value if amount is not None else 0.0
        flags = []
        for flag in ("bipolar", "stereo", "bypass"):
            c = state.controls.get(f"modulation_{i}_{flag}")
            if c is not None and c.value >= 0.5:
                flags.append("bypassed" if flag == "bypass" else flag)
        power = state.controls.get(f"modulation_{i}_power")
        if power is not None and abs(power.value) > 1e-6:
            flags.append(f"curve {format_number(power.value, signed=True)}")
        dest = state.controls.get(destination)
        dest_name = dest.display_name if dest is not None else destination
        text = format_number(value, signed=True) + (f" ({', '.join(flags)})" if flags else "")
        label = f"{source_name(source, state.meta)} -> {dest_name}"
        rows.append(
            ParamRow(
                "Modulation", f"modulation_{i}_amount", label, label, value, text, "0", abs(value) < 1e-6
            )
        )
    return rows
