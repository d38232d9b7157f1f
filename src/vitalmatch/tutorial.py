"""Tutorials: a ``.vital`` preset -> a step-by-step Markdown guide to build it by hand in Vital.

Stage: tutorial. Input: a Vital preset (the JSON dict of a ``.vital`` file). Output: a
:class:`ParamRow` table of every parameter with Vital's display value, and a Markdown guide
(:func:`offline_tutorial`), optionally rewritten by an LLM (:func:`write_tutorial`).

How the values are read: :func:`vitalmatch.synth.state.load_state` loads the preset into a live
``vita.Synth`` in a crash-isolated worker and reads every control's raw value and the bindings'
text back (what the synth makes of the preset, not what the file says), plus the init preset's
texts (the defaults) and the settings that are not controls. This module only turns that state
into display values, a table and a guide.

Out-of-range values: ``load_json`` and ``ControlValue.set`` do no clamping, so a file can put
``filter_1_cutoff`` at 1e6 or ``osc_1_unison_voices`` at 4e6 into the synth (and 1e39, past
float32, becomes inf). This module's :func:`load_state` (and every function here that is given a
:class:`PresetState`) first clamps each control the way vitalmatch drives the synth,
:meth:`vitalmatch.synth.params.ParamSpec.clamp` with the live synth's ``min``/``max`` and
``default``: clamped to [min, max], Indexed controls rounded, NaN and +-inf replaced by the
default. The clamped controls' texts are read again from a synth (a second worker, only when
something was clamped), and the guide lists what was clamped.

Display corrections (the bindings' text is used everywhere else):

* ``*_tempo`` (Vital's ``kSyncedFrequencyNames``, 0 = Freeze ... 12 = 1/64): the bindings index
  the names by ``raw - min``, Vital by ``raw``. Only ``delay_tempo`` and ``delay_aux_tempo`` have
  ``min = 4``, so their labels were shifted by four (raw 9 read "2/1"; Vital and the engine's
  echo time say 1/8). ``vita.constants.SyncedFrequency`` is off by one against the same table
  (``k1_16 = 9`` means 1/8) and is not used.
* ``filter_*_style``: the bindings always use the names of the analog models; Vital names the
  style by filter model (Diode: Low Shelf/Low Cut, Formant: AOIE/AIUO/The Mouth, Comb: 6
  styles, Phaser: Positive/Negative).
* ``osc_N_distortion_type``: "FM <- Osc" / "RM <- Osc" get the number of the modulating
  oscillator, as in Vital's menu.
* Units: filter, EQ, effect and reverb cutoffs and centres are MIDI notes (the bindings print
  "semitones", the filter cutoff relative to C4): shown in Hz, Vital's alternate display
  (8.1758 Hz * 2^(note/12)). Envelope stages in ms (the bindings print seconds), sustain in %
  (the bindings print 0-1). Tunes get "cents", transposes "semitones", phases "°", the tempo
  "BPM" (the bindings print bare numbers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
import os
import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vitalmatch.synth.params import CONTINUOUS, ParamSpec
from vitalmatch.synth.state import ControlInfo, PresetState, run_isolated
from vitalmatch.synth.state import load_state as _load_synth_state

__all__ = [
    "DEFAULT_MODEL",
    "LLM_MAX_CHARS_PER_TOKEN",
    "ClampedState",
    "ControlInfo",
    "ParamRow",
    "PresetState",
    "Tutorial",
    "TutorialConfig",
    "clamp_state",
    "clean_llm_text",
    "effect_order",
    "filter_style_name",
    "format_table",
    "load_state",
    "display_text",
    "llm_prompt",
    "midi_to_hz",
    "non_default",
    "offline_tutorial",
    "parameter_table",
    "source_name",
    "write_tutorial",
]

#: Claude model used when none is given.
DEFAULT_MODEL = "claude-sonnet-5"

#: Most characters an LLM answer may have per token of ``max_tokens``. Claude's tokens average
#: about 4 characters of English prose or Markdown, so an answer longer than ``max_tokens`` times
#: this did not come from a model that kept to ``max_tokens``: it is rejected (the offline guide
#: is used) rather than cut, like an answer cut at ``max_tokens``.
LLM_MAX_CHARS_PER_TOKEN = 8

#: Vital's ``kSyncedFrequencyNames``, indexed by the raw value of every ``*_tempo`` control.
SYNCED_FREQUENCY_NAMES = (
    "Freeze", "32/1", "16/1", "8/1", "4/1", "2/1", "1/1", "1/2", "1/4", "1/8", "1/16", "1/32", "1/64",
)  # fmt: skip

#: Effects in Vital's index order (``kEffectOrder``): what ``effect_chain_order`` permutes.
EFFECTS = ("chorus", "compressor", "delay", "distortion", "eq", "filter_fx", "flanger", "phaser", "reverb")

#: Frequency of MIDI note 0 (Vital's ``kMidi0Frequency``).
MIDI0_HZ = 8.1757989156

_FILTER_STYLES = ("12dB", "24dB", "Notch Blend", "Notch Spread", "B/P/N")
_DIODE_STYLES = ("Low Shelf", "Low Cut")
_COMB_STYLES = (
    "Low High Comb", "Low High Flange+", "Low High Flange-",
    "Band Spread Comb", "Band Spread Flange+", "Band Spread Flange-",
)  # fmt: skip
_EFFECT_NAMES = {
    "chorus": "Chorus", "compressor": "Compressor", "delay": "Delay", "distortion": "Distortion",
    "eq": "EQ", "filter_fx": "Filter", "flanger": "Flanger", "phaser": "Phaser", "reverb": "Reverb",
}  # fmt: skip
#: Display-name prefix of each effect's controls (stripped to make a short label).
_EFFECT_PREFIX = {**_EFFECT_NAMES, "filter_fx": "Filter fx"}

#: Controls kept out of the table: the editor's view switches (no sound).
_VIEW_ONLY = ("osc_1_view_2d", "osc_2_view_2d", "osc_3_view_2d", "view_spectrogram")
#: Global controls that are performance state or handled elsewhere, kept out of the guide.
_GUIDE_SKIP = ("bypass", "pitch_wheel", "mod_wheel", "effect_chain_order")
_ENV_STAGES = ("delay", "attack", "hold", "decay", "release")
#: Oscillator controls that only act with more than one unison voice.
_UNISON_ONLY = (
    "unison_detune", "unison_blend", "detune_power", "detune_range", "stack_style", "frame_spread",
    "stereo_spread", "spectral_unison",
)  # fmt: skip

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
_NUMBER_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


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
        value = _clamp(info, info.value)
        if value != info.value:  # also when the synth holds NaN
            changed[name] = value
    if not changed:
        return state
    texts = run_isolated(_control_texts, changed, timeout_s, "the synth could not show the clamped values")
    controls = dict(state.controls)
    for name, value in changed.items():
        controls[name] = dataclasses.replace(controls[name], value=value, text=texts[name])
    clamped = {**_clamped_values(state), **{n: state.controls[n].value for n in changed}}
    return ClampedState(**{**_fields(state), "controls": controls, "clamped": clamped})


def _clamp(info: ControlInfo, value: float) -> float:
    """A raw value clamped as :meth:`ParamSpec.clamp` clamps it before every ``set``."""
    spec = ParamSpec(
        name=info.name,
        kind=CONTINUOUS,
        min=info.min,
        max=info.max,
        default=info.default,
        scale=info.scale,
        integer=info.scale == "Indexed",
    )
    return spec.clamp(value)


def _control_texts(values: Mapping[str, float]) -> dict[str, str]:
    """Worker body: the bindings' text of each control at an (in-range) value, on a fresh synth."""
    import vita

    synth = vita.Synth()
    controls = synth.get_controls()
    for name, value in values.items():
        controls[name].set(float(value))
    return {name: str(synth.get_control_text(name)) for name in values}


def _fields(state: PresetState) -> dict:
    return {f.name: getattr(state, f.name) for f in dataclasses.fields(PresetState)}


def _clamped_values(state: PresetState) -> dict[str, float]:
    return dict(state.clamped) if isinstance(state, ClampedState) else {}


def _state(preset: Mapping | PresetState) -> PresetState:
    return clamp_state(preset) if isinstance(preset, PresetState) else load_state(preset)


# ============================================================================ display values
def midi_to_hz(note: float) -> float:
    """MIDI note (Vital's cutoff unit) -> Hz: 60 -> 261.63, 69 -> 440."""
    return MIDI0_HZ * 2.0 ** (note / 12.0)


def filter_style_name(model: float, style: float) -> str:
    """Vital's name for a filter style, which depends on the filter model (0..7)."""
    model, style = int(round(model)), int(round(style))
    if 0 <= model <= 3:
        return _FILTER_STYLES[_clip(style, len(_FILTER_STYLES))]
    if model == 4:
        return _DIODE_STYLES[_clip(style, len(_DIODE_STYLES))]
    if model == 5:
        return {1: "AIUO", 2: "The Mouth"}.get(style, "AOIE")
    if model == 6:
        return _COMB_STYLES[_clip(style, len(_COMB_STYLES))]
    if model == 7:
        return "Negative" if style else "Positive"
    return str(style)


def effect_order(code: float) -> list[str]:
    """Effects (``EFFECTS`` names) in processing order for an ``effect_chain_order`` code.

    The code is a permutation number (Vital's ``decodeFloatToOrder``); 0 is ``EFFECTS`` order.
    Codes past the range are clamped to 0 .. 9! - 1; NaN and +-inf give 0.
    """
    order = list(range(len(EFFECTS)))
    code = min(max(int(code), 0), math.factorial(len(EFFECTS)) - 1) if math.isfinite(code) else 0
    for i in range(len(EFFECTS)):
        remaining = len(EFFECTS) - i
        last = remaining - 1
        inversions = code % remaining
        code //= remaining
        order.insert(last, order.pop(last - inversions))
    return [EFFECTS[i] for i in order]


def _clip(index: int, n: int) -> int:
    return min(max(index, 0), n - 1)


def _num(x: float, signed: bool = False) -> str:
    """A display number: about 4 significant digits, no trailing zeros (261.6, 0.0005, 1047)."""
    if not math.isfinite(x):
        return str(x)
    a = abs(x)
    if a >= 1000:
        decimals = 0
    elif a >= 0.1:
        decimals = 3 - int(math.floor(math.log10(a)))  # 100-999 -> 1, 10-99 -> 2, 1-9 -> 3, ...
    elif a > 0:
        decimals = min(6, 2 - int(math.floor(math.log10(a))))
    else:
        decimals = 0
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return f"+{text}" if signed and not text.startswith("-") and text != "0" else text


def _join(number: str, units: str) -> str:
    if not units:
        return number
    return f"{number}{units}" if units in ("%", "v", "°") else f"{number} {units}"


def display_text(info: ControlInfo, value: float, text: str, values: Mapping[str, float]) -> str:
    """Vital's display text for ``value`` of a control, from the bindings' ``text``, corrected.

    Args:
        info: the control.
        value: raw value (the loaded value or the default); clamped like ``ParamSpec.clamp``
            first (an out-of-range value cannot overflow the unit conversions).
        text: ``get_control_text`` for ``value``.
        values: raw values of the other controls (the filter style's name needs the model).
    """
    name = info.name
    value = _clamp(info, value)
    if info.options:
        if name.endswith("_tempo"):
            return SYNCED_FREQUENCY_NAMES[_clip(int(round(value)), len(SYNCED_FREQUENCY_NAMES))]
        if name.startswith("filter_") and name.endswith("_style"):
            return filter_style_name(values.get(name[: -len("style")] + "model", 0.0), value)
        m = re.fullmatch(r"osc_(\d)_distortion_type", name)
        if m and int(round(value)) in (7, 8, 10, 11):
            others = [i for i in (1, 2, 3) if i != int(m.group(1))]
            return f"{text} {others[int(round(value)) in (8, 11)]}"
        return text
    if re.search(r"_(cutoff|center)$", name) and info.units in ("semitones", ""):
        return f"{_num(midi_to_hz(value))} Hz"
    stage = re.fullmatch(r"env_\d_(\w+)", name)
    if stage and stage.group(1) in _ENV_STAGES:
        return f"{_num(value**4 * 1000.0)} ms"  # Quartic: display = raw^4 seconds
    if stage and stage.group(1) == "sustain":
        return f"{_num(value * 100.0)}%"
    m = _NUMBER_RE.match(text)
    if m is None:
        return text
    number, units = float(m.group(1)), m.group(2)
    signed = False
    if not units:
        if name.endswith("_tune") and info.multiply == 100:
            units = "cents"
        elif name.endswith("transpose"):
            units, signed = "semitones", True
        elif info.multiply == 360:
            units = "°"
        elif name == "beats_per_minute":
            units = "BPM"
        elif name == "chorus_voices":
            units = "voices"
    if info.scale == "Indexed":
        number = round(number)
    if units == "voices" and number == 1:
        units = "voice"
    return _join(_num(number, signed), units)


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
        if name in _VIEW_ONLY or name.startswith("modulation_"):
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
    if module in _EFFECT_NAMES:
        return f"Effects: {_EFFECT_NAMES[module]}", _EFFECT_PREFIX[module] + " "
    return "Global", ""


_GROUP_ORDER = (
    [f"Oscillator {i}" for i in (1, 2, 3)]
    + ["Sample", "Filter 1", "Filter 2"]
    + [f"Envelope {i}" for i in range(1, 7)]
    + [f"LFO {i}" for i in range(1, 9)]
    + [f"Random LFO {i}" for i in range(1, 5)]
    + [f"Effects: {_EFFECT_NAMES[e]}" for e in EFFECTS]
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


def source_name(source: str, meta: Mapping[str, str] | None = None) -> str:
    """Vital's name of a modulation source: ``"env_2"`` -> ``"Envelope 2"``, ``"macro_control_1"``
    -> ``"Macro 1"`` (with the macro's own name when the preset gives one)."""
    m = re.fullmatch(r"(env|lfo|random|macro_control)_(\d+)", source)
    if m:
        kind, n = m.groups()
        base = {"env": "Envelope", "lfo": "LFO", "random": "Random LFO", "macro_control": "Macro"}[kind]
        label = f"{base} {n}"
        custom = (meta or {}).get(f"macro{n}", "") if kind == "macro_control" else ""
        if custom and custom.strip().upper() != f"MACRO {n}":
            label += f' ("{custom.strip()}")'
        return label
    return source.replace("_", " ").title()


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
            flags.append(f"curve {_num(power.value, signed=True)}")
        dest = state.controls.get(destination)
        dest_name = dest.display_name if dest is not None else destination
        text = _num(value, signed=True) + (f" ({', '.join(flags)})" if flags else "")
        label = f"{source_name(source, state.meta)} -> {dest_name}"
        rows.append(
            ParamRow(
                "Modulation", f"modulation_{i}_amount", label, label, value, text, "0", abs(value) < 1e-6
            )
        )
    return rows


# ============================================================================ offline guide
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
            + " -> ".join(_EFFECT_NAMES[e] for e in on)
            + ".",
            "",
        ]
    for effect in on:
        name = _EFFECT_NAMES[effect]
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


# ============================================================================ LLM guide
@dataclass
class TutorialConfig:
    """How to write a tutorial.

    Attributes:
        llm: have an LLM (Anthropic's Messages API) rewrite the offline guide.
        model: Claude model id.
        timeout_s: seconds the whole LLM call may take (connecting, sending, every retry and
            reading the answer) before it is cancelled and the offline guide is used. Also each
            read's own timeout.
        max_tokens: longest answer the LLM may give (tokens); an answer of more than
            ``max_tokens * LLM_MAX_CHARS_PER_TOKEN`` characters is rejected.
        base_url: API base URL; None: ``$ANTHROPIC_BASE_URL``, else Anthropic's.
        max_retries: retries of a failed request by the SDK (0: fall back at once).
        load_timeout_s: seconds the synth may take to load the preset.
    """

    llm: bool = False
    model: str = DEFAULT_MODEL
    timeout_s: float = 30.0
    max_tokens: int = 4096
    base_url: str | None = None
    max_retries: int = 0
    load_timeout_s: float = 30.0


@dataclass(frozen=True)
class Tutorial:
    """A written tutorial.

    Attributes:
        text: Markdown.
        source: ``"offline"`` or ``"llm"``.
        note: why the LLM was not used when it was asked for (one line), else None.
        model: the LLM's model id when ``source == "llm"``.
    """

    text: str
    source: str
    note: str | None = None
    model: str | None = None


_SYSTEM_PROMPT = """\
You are a sound-design teacher. You turn a factual guide to a Vital synthesizer preset into a \
clear, friendly step-by-step tutorial a beginner can follow in Vital.

Rules:
- Use only the parameters, values, units, wavetable names and modulations given to you. Copy \
every value exactly as written (with its unit). Never invent a parameter, a value, a wavetable, an \
effect or a modulation; anything not listed stays at Vital's init value.
- Keep the order of the steps: init preset, oscillators, sample, filters, envelopes, LFOs, \
effects, modulations, macros, global settings.
- For each step, say in one short sentence what it does to the sound.
- Answer with the tutorial only, in Markdown, with a title and numbered sections."""


def llm_prompt(guide: str, rows: Sequence[ParamRow], name: str) -> str:
    """The user message sent to the LLM: the offline guide and the non-default parameter listing."""
    return (
        f'Preset: "{name}"\n\n'
        f"<guide>\n{guide.strip()}\n</guide>\n\n"
        "<parameters>\nEvery parameter that differs from Vital's init preset, with Vital's display "
        "value. Some belong to modules that are off or settings the guide leaves out because they "
        "do not change the sound: follow the guide for what to set.\n\n"
        f"{format_table(non_default(rows))}\n</parameters>\n\n"
        "Write the tutorial."
    )


def write_tutorial(
    preset: Mapping | PresetState, config: TutorialConfig | None = None, name: str | None = None
) -> Tutorial:
    """The offline guide, or with ``config.llm`` the LLM's rewrite of it.

    In LLM mode any failure (no ``ANTHROPIC_API_KEY``, connection error, HTTP error, no answer
    within ``config.timeout_s`` in all, an empty, truncated or oversized answer) falls back to the
    offline guide: ``note`` says why and the same line goes to stderr as ``note: ...``. The LLM's
    text is cleaned by :func:`clean_llm_text` (no terminal escape sequences or control
    characters) before it is returned.

    Raises:
        ValueError: the preset cannot be loaded (one line).
    """
    config = config or TutorialConfig()
    if isinstance(preset, PresetState):
        state = clamp_state(preset, timeout_s=config.load_timeout_s)
    else:
        state = load_state(preset, timeout_s=config.load_timeout_s)
    title = name or state.meta.get("preset_name") or "this preset"
    # The file's own text (name, author, comments, wavetable and macro names) reaches the guide:
    # it gets the same cleaning as an LLM answer, so a preset cannot send terminal escapes either.
    guide = clean_llm_text(offline_tutorial(state, name=title))
    if not config.llm:
        return Tutorial(guide, "offline")
    try:
        text = _ask_llm(llm_prompt(guide, parameter_table(state), title), config)
    except Exception as exc:  # noqa: BLE001 - the LLM is optional: any failure falls back
        reason = clean_llm_text(_describe_llm_error(exc, config)).replace("\n", " ").replace("\t", " ")
        note = f"LLM tutorial unavailable ({reason}); using the offline guide"
        print(f"note: {note}", file=sys.stderr)
        return Tutorial(guide, "offline", note=note)
    return Tutorial(text.strip() + "\n", "llm", model=config.model)


class _LLMUnavailable(Exception):
    """The LLM cannot be asked or gave no usable answer (message: why, one line)."""


def _ask_llm(prompt: str, config: TutorialConfig) -> str:
    """One Messages API call within ``config.timeout_s`` in all; the answer's cleaned text.

    The deadline starts before the SDK is imported (1-3 s the first time; an import cannot be cut
    short, so a first call takes at least that long). The call runs on its own asyncio
    event loop (in a helper thread if the caller's thread already runs one) under
    ``asyncio.wait_for``: at the deadline the request is cancelled wherever it is (connecting,
    waiting, retrying, or reading an answer that trickles in, which httpx's per-read timeout never
    ends) and its connection is closed. Raises on any failure.
    """
    deadline = time.monotonic() + config.timeout_s
    key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
    if not key:
        raise _LLMUnavailable("ANTHROPIC_API_KEY is not set")
    import anthropic

    async def ask():
        async with anthropic.AsyncAnthropic(
            api_key=key,
            base_url=config.base_url or None,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        ) as client:
            request = client.messages.create(
                model=config.model,
                max_tokens=config.max_tokens,
                system=_SYSTEM_PROMPT,
                messages=[{"role": "user", "content": prompt}],
            )
            return await asyncio.wait_for(request, max(0.0, deadline - time.monotonic()))

    try:
        message = _run_coroutine(ask)
    except TimeoutError:  # asyncio.wait_for's (builtin TimeoutError on Python 3.11)
        raise _LLMUnavailable(f"no answer within {config.timeout_s:g} s") from None
    text = "".join(getattr(block, "text", "") for block in message.content if block.type == "text")
    if message.stop_reason == "max_tokens":
        raise _LLMUnavailable(f"the answer was cut at max_tokens={config.max_tokens}")
    cap = config.max_tokens * LLM_MAX_CHARS_PER_TOKEN
    if len(text) > cap:
        raise _LLMUnavailable(
            f"the answer has {len(text)} characters, over {cap} "
            f"(max_tokens={config.max_tokens} x {LLM_MAX_CHARS_PER_TOKEN})"
        )
    text = clean_llm_text(text)
    if not text.strip():
        raise _LLMUnavailable("the answer was empty")
    return text


def _run_coroutine(make):
    """``make()``'s coroutine run to the end on a new event loop; in a helper thread when this
    thread already runs a loop (``asyncio.run`` cannot nest). The loop is closed without waiting
    for its default executor (a stuck DNS look-up must not outlast the deadline)."""

    def run():
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(make())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


#: Terminal escape sequences (ECMA-48), 7- and 8-bit: CSI (``ESC [`` ... final byte), the
#: string commands OSC, DCS, SOS, PM and APC up to BEL or ST (or the line's end when
#: unterminated), and the other two- or three-byte ``ESC`` sequences.
_ESCAPE_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
)


def clean_llm_text(text: str) -> str:
    """Text from the LLM, safe to print or write: no terminal escape sequences (``\\x1b[2J``,
    ``\\x1b]0;title\\x07``, ``\\x1b]8;;url\\x07`` hyperlinks, 8-bit ``\\x9b`` CSI, ...), with
    their parameters, and no other control characters (Unicode category Cc) except ``\\n`` and
    ``\\t``; ``\\r\\n`` becomes ``\\n``."""
    text = _ESCAPE_RE.sub("", text.replace("\r\n", "\n"))
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


def _describe_llm_error(exc: BaseException, config: TutorialConfig) -> str:
    """One short line for a failed LLM call."""
    if isinstance(exc, _LLMUnavailable):
        return str(exc)
    try:
        import anthropic
    except ImportError:
        return "the anthropic package is not installed"
    if isinstance(exc, anthropic.APITimeoutError):
        return f"no answer within {config.timeout_s:g} s"
    if isinstance(exc, anthropic.APIStatusError):
        return f"HTTP {exc.status_code} from the API"
    if isinstance(exc, anthropic.APIConnectionError):
        return "cannot connect to the API"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
