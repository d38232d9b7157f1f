"""Shared pieces of the tutorial tests: the changes made to the init preset, row look-up."""

from __future__ import annotations

#: Changes made to the init preset, and the rows they must (and alone may) make non-default.
CHANGES = {
    "filter_1_on": 1.0,
    "filter_1_cutoff": 72.0,  # MIDI C5 = 523.25 Hz
    "filter_1_resonance": 0.7,
    "env_1_attack": 0.5,  # Quartic: 0.5^4 s = 62.5 ms
    "env_1_sustain": 0.25,
    "delay_on": 1.0,
    "delay_tempo": 12.0,  # 1/64 in Vital; the bindings print "1/4"
    "osc_2_on": 1.0,
    "osc_2_transpose": -12.0,
    "modulation_1_amount": 0.5,
}
EXPECTED_CHANGED = set(CHANGES) | {"osc_1_wavetable"}


def row(rows, control):
    """The table row of ``control``."""
    return next(r for r in rows if r.control == control)


def control_chars(text: str) -> list[str]:
    """Control characters (C0, DEL, C1) in ``text``, except newline and tab."""
    return [c for c in text if (ord(c) < 32 or 127 <= ord(c) < 160) and c not in "\n\t"]
