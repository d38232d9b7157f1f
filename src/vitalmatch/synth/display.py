"""Vital's display units and names: raw control values -> the text Vital's editor shows.

Stage: synth (display). Input: a control's raw value and details (a
:class:`~vitalmatch.synth.state.ControlInfo` from :func:`vitalmatch.synth.state.load_state`) and the
bindings' ``get_control_text`` for it. Output: Vital's display text (``"523.3 Hz"``, ``"62.5 ms"``,
``"1/8"``), plus Vital's names for filter styles, effects, the effect order and modulation sources.

Only ``synth/`` knows Vital: the tutorial (:mod:`vitalmatch.tutorial`) and the demo's parameter table
show values through this module.

Corrections to the bindings' text (the bindings' text is used everywhere else):

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

Out-of-range values: ``load_json`` and ``ControlValue.set`` do no clamping, so a file can put
``filter_1_cutoff`` at 1e6 into the synth. :func:`clamp_control` clamps a raw value the way
vitalmatch drives the synth (:meth:`vitalmatch.synth.params.ParamSpec.clamp`), and
:func:`display_text` clamps before it converts, so no value can overflow the unit conversions;
:func:`control_texts` reads the bindings' text of clamped values from a fresh synth.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from vitalmatch.synth.params import CONTINUOUS, ParamSpec
from vitalmatch.synth.state import ControlInfo, run_isolated

__all__ = [
    "EFFECTS",
    "EFFECT_CONTROL_PREFIX",
    "EFFECT_NAMES",
    "MIDI0_HZ",
    "SYNCED_FREQUENCY_NAMES",
    "clamp_control",
    "control_texts",
    "display_text",
    "effect_order",
    "filter_style_name",
    "format_number",
    "midi_to_hz",
    "source_name",
]


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
#: Vital's name of each effect (its section in the effects tab).
EFFECT_NAMES = {
    "chorus": "Chorus", "compressor": "Compressor", "delay": "Delay", "distortion": "Distortion",
    "eq": "EQ", "filter_fx": "Filter", "flanger": "Flanger", "phaser": "Phaser", "reverb": "Reverb",
}  # fmt: skip
#: Display-name prefix of each effect's controls (stripped to make a short label).
EFFECT_CONTROL_PREFIX = {**EFFECT_NAMES, "filter_fx": "Filter fx"}
_ENV_STAGES = ("delay", "attack", "hold", "decay", "release")

_NUMBER_RE = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


# ============================================================================ clamping
def clamp_control(info: ControlInfo, value: float) -> float:
    """A raw value clamped as :meth:`ParamSpec.clamp` clamps it before every ``set``: to the
    control's [min, max], Indexed controls rounded, NaN and +-inf replaced by the default."""
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


def control_texts(
    values: Mapping[str, float], *, timeout_s: float = 30.0, what: str = "the synth could not show the values"
) -> dict[str, str]:
    """The bindings' ``get_control_text`` of each control at an (in-range) raw value, by name.

    Read from a fresh ``vita.Synth`` in a crash-isolated worker (~1 s).

    Raises:
        ValueError: ``"{what}: reason"`` (one line) when the worker crashes, hangs or fails.
    """
    return run_isolated(_control_texts, dict(values), timeout_s, what)


def _control_texts(values: Mapping[str, float]) -> dict[str, str]:
    """Worker body: the bindings' text of each control at an (in-range) value, on a fresh synth."""
    import vita

    synth = vita.Synth()
    controls = synth.get_controls()
    for name, value in values.items():
        controls[name].set(float(value))
    return {name: str(synth.get_control_text(name)) for name in values}


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


def format_number(x: float, signed: bool = False) -> str:
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
    value = clamp_control(info, value)
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
        return f"{format_number(midi_to_hz(value))} Hz"
    stage = re.fullmatch(r"env_\d_(\w+)", name)
    if stage and stage.group(1) in _ENV_STAGES:
        return f"{format_number(value**4 * 1000.0)} ms"  # Quartic: display = raw^4 seconds
    if stage and stage.group(1) == "sustain":
        return f"{format_number(value * 100.0)}%"
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
    return _join(format_number(number, signed), units)


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
