"""Activity masks: the rules, and (with the real synth) that masked parameters are inaudible."""

from __future__ import annotations

import numpy as np
import pytest

from vitalmatch.synth.activity import activity_masks
from vitalmatch.synth.render import RenderConfig, RenderEngine


def _preset(registry, **raw):
    cont, cat = registry.defaults()
    cont, cat = cont.copy(), cat.copy()
    for name, value in raw.items():
        kind, col = registry.locate(name)
        spec = registry[name]
        if kind == "continuous":
            cont[col] = spec.to_unit(value)
        else:
            cat[col] = int(value)
    return cont, cat


def _active(registry, masks, name):
    kind, col = registry.locate(name)
    return bool(masks[0 if kind == "continuous" else 1][col])


def test_switches_and_routing(registry):
    reg = registry
    # Init preset: osc 1 on (to filter 1, which is off: it passes through), osc 2 off.
    m = activity_masks(reg, *_preset(reg))
    assert _active(reg, m, "osc_1_level") and _active(reg, m, "osc_1_wave_frame")
    assert not _active(reg, m, "osc_2_level") and _active(reg, m, "osc_2_on")
    assert not _active(reg, m, "filter_1_cutoff") and _active(reg, m, "filter_1_on")
    assert _active(reg, m, "env_1_attack") and _active(reg, m, "volume")
    assert not _active(reg, m, "lfo_1_frequency") and not _active(reg, m, "reverb_size")
    # Unison detune needs more than one voice; distortion amount needs a distortion type.
    assert not _active(reg, m, "osc_1_unison_detune") and not _active(reg, m, "osc_1_distortion_amount")
    m = activity_masks(reg, *_preset(reg, osc_1_unison_voices=4, osc_1_distortion_type=2, filter_1_on=1))
    assert _active(reg, m, "osc_1_unison_detune") and _active(reg, m, "osc_1_distortion_amount")
    assert _active(reg, m, "filter_1_cutoff") and not _active(reg, m, "filter_1_formant_x")
    m = activity_masks(reg, *_preset(reg, filter_1_on=1, filter_1_model=5))  # Formant
    assert _active(reg, m, "filter_1_formant_x")
    # Filter 1 on, but osc 1 goes straight out: nothing feeds filter 1.
    m = activity_masks(reg, *_preset(reg, filter_1_on=1, osc_1_destination=4))
    assert not _active(reg, m, "filter_1_cutoff") and _active(reg, m, "osc_1_level")
    # Osc 1 routed to the chorus alone: silent, with the chorus off and on (measured, vita-facts §8).
    m = activity_masks(reg, *_preset(reg, osc_1_destination=5))
    assert not _active(reg, m, "osc_1_level")
    m = activity_masks(reg, *_preset(reg, osc_1_destination=5, chorus_on=1))
    assert not _active(reg, m, "osc_1_level") and _active(reg, m, "chorus_dry_wet")


def test_batched_and_tier_subset(registry):
    t1 = registry.for_tier(1)
    rows = [_preset(registry), _preset(registry, osc_2_on=1)]
    cont = np.stack([r[0] for r in rows])
    cat = np.stack([r[1] for r in rows])
    full_c, full_k = activity_masks(registry, cont, cat)
    assert full_c.shape == cont.shape and full_k.shape == cat.shape
    # The same decisions through a tier-1 registry (columns selected).
    ci = [registry.locate(s.name)[1] for s in t1.continuous]
    ki = [registry.locate(s.name)[1] for s in t1.categorical]
    sub_c, sub_k = activity_masks(t1, cont[:, ci], cat[:, ki])
    np.testing.assert_array_equal(sub_c, full_c[:, ci])
    np.testing.assert_array_equal(sub_k, full_k[:, ki])
    assert not sub_c[0, t1.locate("osc_2_level")[1]] and sub_c[1, t1.locate("osc_2_level")[1]]


@pytest.mark.parametrize(
    "base, name, value, audible",
    [
        ({}, "osc_2_level", 0.2, False),  # osc 2 off
        ({"osc_2_on": 1}, "osc_2_level", 0.2, True),
        ({}, "osc_1_unison_detune", 9.0, False),  # one unison voice
        ({"osc_1_unison_voices": 5}, "osc_1_unison_detune", 9.0, True),
        ({}, "filter_1_cutoff", 30.0, False),  # filter 1 off
        ({"filter_1_on": 1}, "filter_1_cutoff", 30.0, True),
        ({"filter_1_on": 1}, "filter_1_formant_x", 0.0, False),  # not the formant model
        ({"chorus_on": 1, "osc_1_destination": 5}, "osc_1_level", 0.3, False),  # routed to the chorus alone
        ({"reverb_on": 1, "osc_1_destination": 13}, "osc_1_level", 0.3, False),  # ... to the reverb alone
    ],
)
def test_masked_parameters_are_inaudible(registry, catalog, base, name, value, audible):
    """The claims hold in the real synth: changing an inactive parameter leaves the audio alone."""
    engine = RenderEngine(registry, [e.table for e in catalog], RenderConfig(sample_rate=22050, notes=(60,)))
    cont, cat = _preset(registry, osc_1_random_phase=0, osc_2_random_phase=0, **base)
    changed = _preset(registry, osc_1_random_phase=0, osc_2_random_phase=0, **base, **{name: value})
    assert _active(registry, activity_masks(registry, cont, cat), name) == audible
    a = engine.render(cont, cat)
    b = engine.render(*changed)
    assert (np.abs(a - b).max() > 1e-3) == audible


# ------------------------------------------------------------------------------ modulation
def _rows(*connections):
    from vitalmatch.synth.modulation import Connection, encode

    return encode([Connection(*c) for c in connections])


def test_modulation_sources_are_active_only_when_they_drive_something(registry):
    reg = registry
    on = _preset(reg, filter_1_on=1)  # osc 1 -> filter 1 (on): filter_1_cutoff is active
    off = _preset(reg)  # filter 1 off: its cutoff is inactive
    # without connections (old signature, or None, or empty rows): inactive
    for m in (
        activity_masks(reg, *on),
        activity_masks(reg, *on, modulation=None),
        activity_masks(reg, *on, modulation=np.zeros((0, 7), np.float32)),
    ):
        assert not _active(reg, m, "lfo_1_frequency") and not _active(reg, m, "lfo_1_sync")
    rows = _rows(("lfo_1", "filter_1_cutoff", 0.3))
    m = activity_masks(reg, *on, modulation=rows)
    assert _active(reg, m, "lfo_1_frequency") and _active(reg, m, "lfo_1_sync")
    assert not _active(reg, m, "lfo_2_frequency") and not _active(reg, m, "env_2_attack")
    # the destination is inactive (filter 1 off): the LFO drives nothing audible
    assert not _active(reg, activity_masks(reg, *off, modulation=rows), "lfo_1_frequency")
    # amount 0 moves nothing
    assert not _active(
        reg, activity_masks(reg, *on, modulation=_rows(("lfo_1", "filter_1_cutoff", 0.0))), "lfo_1_phase"
    )
    # chains: lfo_2 -> lfo_1's rate counts only while lfo_1 itself drives an active destination
    chain = _rows(("lfo_2", "lfo_1_frequency", 0.5), ("lfo_1", "filter_1_cutoff", 0.3))
    m = activity_masks(reg, *on, modulation=chain)
    assert _active(reg, m, "lfo_2_frequency") and _active(reg, m, "lfo_1_frequency")
    m = activity_masks(reg, *off, modulation=chain)
    assert not _active(reg, m, "lfo_2_frequency") and not _active(reg, m, "lfo_1_frequency")
    # macros and envelopes 2-6 follow the same rule; env_1 stays active as before
    m = activity_masks(
        reg, *on, modulation=_rows(("macro_control_2", "osc_1_level", 0.2), ("env_4", "volume", 0.1))
    )
    assert (
        _active(reg, m, "macro_control_2")
        and _active(reg, m, "env_4_decay")
        and _active(reg, m, "env_1_decay")
    )
    assert not _active(reg, m, "macro_control_1") and not _active(reg, m, "env_5_decay")
    # batched: one rows array per preset, in order
    cont = np.stack([on[0], off[0], on[0]])
    cat = np.stack([on[1], off[1], on[1]])
    mc, _ = activity_masks(reg, cont, cat, modulation=[rows, rows, np.zeros((0, 7), np.float32)])
    j = reg.locate("lfo_1_frequency")[1]
    assert mc[:, j].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="modulation"):
        activity_masks(reg, cont, cat, modulation=[rows])


def test_modulated_lfo_is_audible_and_unmodulated_one_is_not(registry, catalog):
    """The rule holds in the real synth: lfo_1's rate changes the audio only through a connection."""
    from vitalmatch.synth.modulation import decode
    from vitalmatch.synth.render import PresetExtras

    config = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=0.5, render_duration_s=0.6)
    engine = RenderEngine(registry, [e.table for e in catalog], config)
    base = dict(osc_1_random_phase=0, filter_1_on=1, filter_1_cutoff=70.0, lfo_1_sync=0)
    slow, fast = (
        _preset(registry, **base, lfo_1_frequency=0.0),
        _preset(registry, **base, lfo_1_frequency=3.0),
    )
    rows = _rows(("lfo_1", "filter_1_cutoff", 0.4))
    for modulation, audible in ((None, False), (rows, True)):
        assert (
            _active(registry, activity_masks(registry, *slow, modulation=modulation), "lfo_1_frequency")
            == audible
        )
        extras = PresetExtras(modulations=tuple(decode(rows))) if modulation is not None else None
        a = engine.render(*slow, extras=extras)
        b = engine.render(*fast, extras=extras)
        assert (np.abs(a - b).max() > 1e-3) == audible
