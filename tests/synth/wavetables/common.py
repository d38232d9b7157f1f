"""Shared helpers of the wavetable tests."""

from __future__ import annotations

import copy

from vitalmatch.synth.render import inject_wavetable


def with_table(init_preset: dict, table: dict, osc: int = 1) -> dict:
    """A copy of ``init_preset`` with ``table`` in oscillator ``osc``."""
    preset = copy.deepcopy(init_preset)
    inject_wavetable(preset, osc, table)
    return preset
