"""The parameter table: display values and the bindings' label corrections, and the clamping of
out-of-range values before they are displayed (checked through the ``tutorial`` CLI too)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.processes import cli_in_process
from tests.tutorial.common import EXPECTED_CHANGED
from tests.tutorial.common import row as _row
from vitalmatch.synth.display import midi_to_hz
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.tutorial import load_state, non_default, parameter_table


def test_table_marks_exactly_the_changed_parameters(changed_state):
    rows = parameter_table(changed_state)
    assert {r.control for r in non_default(rows)} == EXPECTED_CHANGED
    groups = [r.group for r in rows]
    assert groups.index("Oscillator 1") < groups.index("Filter 1") < groups.index("Effects: Reverb")
    assert groups[-1] == "Modulation"
    assert not any(r.control.endswith("view_2d") for r in rows)


def test_table_display_values_in_vitals_units(changed_state):
    rows = parameter_table(changed_state)
    cutoff = _row(rows, "filter_1_cutoff")
    assert (cutoff.group, cutoff.label, cutoff.value) == ("Filter 1", "Cutoff", 72.0)
    assert (cutoff.text, cutoff.default_text, cutoff.is_default) == ("523.3 Hz", "261.6 Hz", False)
    assert _row(rows, "filter_1_resonance").text == "70%"
    assert _row(rows, "env_1_attack").text == "62.5 ms"
    assert _row(rows, "env_1_attack").default_text == "0.4995 ms"  # 0.1495^4 s
    assert _row(rows, "env_1_sustain").text == "25%"
    assert _row(rows, "env_1_release").text == "89.92 ms"
    assert _row(rows, "osc_2_transpose").text == "-12 semitones"
    assert _row(rows, "osc_1_unison_voices").text == "1v"
    assert _row(rows, "volume").text == "-6.02 dB"
    assert _row(rows, "osc_1_wavetable").text == "My Table"
    mod = _row(rows, "modulation_1_amount")
    assert (mod.group, mod.display_name, mod.text) == ("Modulation", "LFO 1 -> Filter 1 Cutoff", "+0.5")


def test_delay_tempo_labels_are_corrected(changed_state):
    """The bindings index the names by raw - min (min is 4): raw 12 reads "1/4", default 9 "2/1"."""
    info = changed_state.controls["delay_tempo"]
    assert (info.text, info.default_text) == ("1/4", "2/1")  # the bindings' bug, still present
    row = _row(parameter_table(changed_state), "delay_tempo")
    assert (row.text, row.default_text) == ("1/64", "1/8")


def _echo_delay_s(synth_tempo: float) -> float:
    """Seconds from note start to the delay's echo (100% wet, no feedback, 120 BPM, short note)."""
    import vita

    synth = vita.Synth()
    controls = synth.get_controls()
    for name, value in {
        "osc_1_random_phase": 0.0, "env_1_attack": 0.0, "env_1_decay": 0.2, "env_1_sustain": 0.0,
        "env_1_release": 0.2, "delay_on": 1.0, "delay_dry_wet": 1.0, "delay_feedback": 0.0,
        "delay_sync": 1.0, "delay_tempo": synth_tempo,
    }.items():  # fmt: skip
        controls[name].set(value)
    synth.set_bpm(120.0)
    audio = np.abs(synth.render(60, 0.7, 0.05, 1.0)[0])
    return int(np.argmax(audio > 0.2 * audio.max())) / 44100


def test_corrected_delay_tempo_label_matches_the_echo_time(changed_state):
    """At 120 BPM a 1/8 note lasts 0.25 s: raw 9 is 1/8 (our label), not 2/1 (the bindings')."""
    info = changed_state.controls["delay_tempo"]
    row_default = _row(parameter_table(changed_state), "delay_tempo").default_text
    assert row_default == "1/8" and info.default == 9.0
    assert _echo_delay_s(9.0) == pytest.approx(0.25, abs=0.01)


def test_numbers_agree_with_get_control_text_where_no_unit_changes(changed_state):
    """Only rounding separates our text from the bindings' for the controls we do not convert."""
    converted = re.compile(r"_(cutoff|center)$|^env_\d_(delay|attack|hold|decay|release|sustain)$")
    checked = 0
    for row in parameter_table(changed_state):
        info = changed_state.controls.get(row.control)
        if info is None or info.options or converted.search(row.control):
            continue
        ours = float(re.match(r"[-+]?[\d.]+", row.text).group())
        theirs = float(re.match(r"[-+]?[\d.]+", info.text).group())
        assert ours == pytest.approx(theirs, rel=2e-3, abs=1e-3), row
        checked += 1
    assert checked > 250
    attack = changed_state.controls["env_1_attack"]
    assert float(attack.text.split()[0]) == pytest.approx(0.0625, rel=1e-5)  # bindings: seconds


def test_bad_presets_give_one_line_errors(init_preset):
    with pytest.raises(ValueError, match="no settings"):
        load_state({"preset_name": "x"})
    broken = json.loads(json.dumps(init_preset))
    broken["settings"]["osc_1_level"] = "loud"
    with pytest.raises(ValueError, match="rejected") as info:
        load_state(broken)
    assert "\n" not in str(info.value)


#: Values past the synth's ranges (1e39 is past float32: the synth holds inf), and an Indexed
#: control between two integers.
WILD = {
    "filter_1_on": 1.0,
    "filter_1_cutoff": 1e6,
    "effect_chain_order": 1e39,
    "delay_on": 1.0,
    "reverb_on": 1.0,
    "osc_1_unison_voices": 4e6,
    "osc_1_transpose": 2.4,
    "env_1_attack": -3.0,
}


@pytest.fixture(scope="module")
def live_registry() -> ParamRegistry:
    return ParamRegistry.from_synth()


def _as_the_synth_holds(raw: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(raw))  # the engine's controls are float32: 1e39 -> inf


def test_cli_clamps_out_of_range_values_before_displaying(tmp_path, init_preset, live_registry, capsys):
    """``tutorial`` on values far past the ranges (an OverflowError before): the guide shows the
    values clamped to the live synth's [min, max] and rounded, as ParamSpec.clamp drives the synth."""
    preset = json.loads(json.dumps(init_preset))
    preset["settings"].update(WILD)
    path = tmp_path / "Wild.vital"
    path.write_text(json.dumps(preset))
    run = cli_in_process(capsys, "tutorial", path)
    assert run.returncode == 0, run.stderr
    guide = run.stdout
    expected = {name: live_registry[name].clamp(_as_the_synth_holds(raw)) for name, raw in WILD.items()}
    assert expected["filter_1_cutoff"] == live_registry["filter_1_cutoff"].max
    assert f"- Cutoff: **{midi_to_hz(expected['filter_1_cutoff']):.0f} Hz**" in guide
    assert expected["osc_1_unison_voices"] == live_registry["osc_1_unison_voices"].max == 16
    assert "- Unison Voices: **16v**" in guide and "4000000" not in guide
    assert f"- Transpose: **+{expected['osc_1_transpose']:g} semitones**" in guide  # 2.4 -> +2
    assert "- Attack: **0 ms**" in guide  # -3 -> min 0
    # inf is no effect order: the default (Vital's order), as ParamSpec.clamp does for inf and NaN
    assert expected["effect_chain_order"] == live_registry["effect_chain_order"].default
    assert "Effect order" not in guide and guide.index("### Delay") < guide.index("### Reverb")
    [note] = [line for line in guide.splitlines() if "clamped" in line]
    assert "Filter 1 Cutoff 1e+06 -> " in note and "Oscillator 1 Unison Voices 4e+06 -> 16v" in note
    assert "inf" not in guide.replace(note, "").replace("init", "")

    state = load_state(preset)
    for name, value in expected.items():
        assert state.controls[name].value == value, name
    assert set(state.clamped) == set(WILD) - {"filter_1_on", "delay_on", "reverb_on"}
    import vita

    synth = vita.Synth()
    synth.get_controls()["osc_1_unison_voices"].set(16.0)
    assert state.controls["osc_1_unison_voices"].text == synth.get_control_text("osc_1_unison_voices")


def test_cli_takes_the_default_for_nan_and_inf_values(tmp_path, init_preset, live_registry, capsys):
    """NaN and +-Infinity in the file (Python's json reads them) are not numbers the synth can be
    set to: they take the control's default, as ParamSpec.clamp does, instead of an error."""
    preset = json.loads(json.dumps(init_preset))
    preset["settings"].update(
        {"filter_1_on": 1.0, "filter_1_cutoff": float("inf"), "filter_1_resonance": float("-inf")}
    )
    preset["settings"]["osc_1_level"] = float("nan")
    path = tmp_path / "NotNumbers.vital"
    path.write_text(json.dumps(preset))  # writes NaN, Infinity, -Infinity
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    run = cli_in_process(capsys, "tutorial", path)
    assert run.returncode == 0, run.stderr
    guide = run.stdout
    assert "- Turn **Filter 1** on." in guide
    filter_section = guide[guide.index("### Filter 1") :]
    assert "Cutoff:" not in filter_section and "Resonance:" not in filter_section  # the defaults
    assert "Level:" not in guide
    state = load_state(preset)
    for name in ("filter_1_cutoff", "filter_1_resonance", "osc_1_level"):
        assert state.controls[name].value == pytest.approx(live_registry[name].default, abs=1e-6), name
        assert state.controls[name].is_default, name
    assert set(state.clamped) == {"filter_1_cutoff", "filter_1_resonance", "osc_1_level"}
