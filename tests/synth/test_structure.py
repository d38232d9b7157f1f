"""Structure proposals on the real synth: from what a rendered target shows, the init preset gets
the module or routing that made it, and applying that proposal brings the init preset closer to
the target on issue 18's metric."""

from __future__ import annotations

import numpy as np
import pytest

from vitalmatch.analysis import analyse
from vitalmatch.metrics import magnitude_mel_l1
from vitalmatch.synth.modulation import MAX_SLOTS, Connection
from vitalmatch.synth.params import exponential_time_raw, frequency_raw, reproducibility_pins
from vitalmatch.synth.render import PresetExtras, RenderConfig, RenderEngine
from vitalmatch.synth.structure import Proposal, apply, proposals

SR, NOTE, NOTE_S = 44100, 60, 1.0
CONFIG = RenderConfig(sample_rate=SR, notes=(NOTE,), note_duration_s=NOTE_S, render_duration_s=2.0)

#: Targets: the init preset plus one module or routing each (raw values, connections), and what a
#: proposal answering it must contain.
TARGETS = {
    "reverb": (
        {"reverb_on": 1.0, "reverb_decay_time": exponential_time_raw(1.5), "reverb_dry_wet": 0.3},
        (),
        lambda p: p.values.get("reverb_on") == 1.0,
    ),
    "vibrato": (
        {"lfo_1_sync": 0.0, "lfo_1_frequency": frequency_raw(5.5)},
        (Connection("lfo_1", "osc_1_tune", 0.3, bipolar=True),),
        lambda p: any(c.source.startswith("lfo_") and c.destination.endswith("_tune") for c in p.connections),
    ),
    "filter envelope": (
        {
            "filter_1_on": 1.0,
            "filter_1_cutoff": 64.0,
            "env_2_attack": 0.0,
            "env_2_decay": 0.7,
            "env_2_sustain": 0.0,
        },
        (Connection("env_2", "filter_1_cutoff", 0.35),),
        lambda p: any(
            c.source.startswith("env_") and c.destination == "filter_1_cutoff" for c in p.connections
        ),
    ),
    "sample": (
        {"sample_on": 1.0, "sample_level": 0.55},
        (),
        lambda p: p.values.get("sample_on") == 1.0,
    ),
}


@pytest.fixture(scope="module")
def engine(registry, catalog):
    return RenderEngine(registry, [e.table for e in catalog], CONFIG)


@pytest.fixture(scope="module")
def init(registry):
    """The init preset with the reproducibility pins (random phases 0), as vectors."""
    return registry.from_raw(reproducibility_pins())


def _render(engine, cont, cat, conns=()) -> np.ndarray:
    return engine.render(cont, cat, extras=PresetExtras(modulations=tuple(conns)))[0]


def _loss(audio: np.ndarray, target: np.ndarray) -> float:
    return float(magnitude_mel_l1(audio.mean(axis=0), target.mean(axis=0), SR))


def test_init_target_proposes_nothing(registry, engine, init):
    audio = _render(engine, *init)
    findings = analyse(audio, SR, NOTE_S, NOTE)
    assert proposals(registry, *init, (), findings) == []


@pytest.mark.parametrize("kind", list(TARGETS))
def test_target_gets_its_structure_and_the_loss_falls(registry, engine, init, kind):
    values, conns, matches = TARGETS[kind]
    target_cont, target_cat = registry.from_raw(reproducibility_pins() | values)
    target = _render(engine, target_cont, target_cat, conns)
    findings = analyse(target, SR, NOTE_S, NOTE)
    found = proposals(registry, *init, (), findings)
    hits = [p for p in found if matches(p)]
    assert hits, f"{kind}: no matching proposal among {[p.name for p in found]} ({findings})"
    cont, cat, new_conns = apply(registry, *init, (), hits[0])
    before = _loss(_render(engine, *init), target)
    after = _loss(_render(engine, cont, cat, new_conns), target)
    assert after < 0.8 * before, f"{kind}: {hits[0].name}: loss {before:.3f} -> {after:.3f}"


def test_apply_clamps_keeps_old_connections_and_skips_duplicates(registry, init):
    old = (Connection("lfo_1", "osc_1_tune", 0.2, bipolar=True),)
    p = Proposal(
        "test",
        {"reverb_dry_wet": 7.0, "reverb_on": 1.0, "lfo_2_sync": 0.0},
        (Connection("lfo_1", "osc_1_tune", 0.9), Connection("lfo_2", "osc_1_level", -3.0)),
    )
    cont, cat, conns = apply(registry, *init, old, p)
    raw = registry.to_raw(cont, cat)
    assert raw["reverb_dry_wet"] == 1.0 and raw["reverb_on"] == 1.0 and raw["lfo_2_sync"] == 0.0
    assert conns[0] == old[0] and len(conns) == 2  # the duplicate pair kept its old slot
    assert conns[1].amount == -1.0
    dests = (
        "osc_1_tune",
        "osc_1_pan",
        "osc_1_level",
        "osc_2_tune",
        "osc_2_pan",
        "osc_2_level",
        "osc_1_phase",
        "osc_2_phase",
    )
    full = tuple(Connection(f"lfo_{k}", d, 0.1) for k in range(1, 9) for d in dests)
    assert len(full) == MAX_SLOTS
    with pytest.raises(ValueError, match="at most"):
        apply(registry, *init, full, Proposal("x", {}, (Connection("env_2", "osc_1_tune", 0.5),)))


def test_used_lfos_and_routed_destinations_are_not_proposed_again(registry, init):
    from vitalmatch.analysis import Findings

    findings = Findings(vibrato_hz=5.0, vibrato_cents=20.0)
    first = proposals(registry, *init, (), findings)
    assert [c.source for c in first[0].connections] == ["lfo_1"]
    busy = (Connection("lfo_1", "filter_1_cutoff", 0.1),)
    second = proposals(registry, *init, busy, findings)
    assert [c.source for c in second[0].connections] == ["lfo_2"]
    routed = (Connection("lfo_3", "osc_1_tune", 0.1),)
    assert proposals(registry, *init, routed, findings) == []


def test_tremolo_and_vibrato_take_different_lfos(registry, init):
    from vitalmatch.analysis import Findings

    found = proposals(
        registry, *init, (), Findings(tremolo_hz=4.0, tremolo_depth=0.3, vibrato_hz=6.0, vibrato_cents=15.0)
    )
    assert [p.kind for p in found] == ["tremolo", "vibrato"]
    cont, cat, conns = init[0], init[1], ()
    for p in found:
        cont, cat, conns = apply(registry, cont, cat, conns, p)
    assert {(c.source, c.destination) for c in conns} == {("lfo_1", "osc_1_level"), ("lfo_2", "osc_1_tune")}
    raw = registry.to_raw(cont, cat)
    assert 2 ** raw["lfo_1_frequency"] == pytest.approx(4.0) and 2 ** raw["lfo_2_frequency"] == pytest.approx(
        6.0
    )
