"""The offline guide: what it lists and leaves out, on the init preset, a changed one and real
presets, and the ``tutorial`` CLI without an LLM (errors, files, terminal escapes)."""

from __future__ import annotations

import json
import re

import pytest

from tests.processes import run_cli
from tests.tutorial.common import control_chars as _control_chars
from vitalmatch.cli import main
from vitalmatch.synth.display import midi_to_hz
from vitalmatch.synth.export import read_vital
from vitalmatch.tutorial import load_state, offline_tutorial


def test_guide_of_the_init_preset_only_starts(init_state):
    guide = offline_tutorial(init_state, name="Init")
    assert guide.startswith('# How to build "Init" in Vital\n')
    assert re.findall(r"^## .*", guide, flags=re.M) == [
        "## 1. Start from the init preset",
        "## 2. Oscillators",
    ]
    assert "Everything else as in the init preset." in guide
    assert "Filter" not in guide and "Reverb" not in guide


def test_guide_lists_the_changes_and_skips_the_defaults(changed_state):
    guide = offline_tutorial(changed_state)
    assert guide == offline_tutorial(changed_state)  # deterministic
    assert guide.startswith('# How to build "Changed Init" in Vital')
    for expected in (
        "- Wavetable: **My Table**",
        "- Turn **Oscillator 2** on.",
        "- Transpose: **-12 semitones**",
        "- Turn **Filter 1** on.",
        "- Model: **Analog**, style: **12dB**",
        "- Cutoff: **523.3 Hz**",
        "- Resonance: **70%**",
        "- Input: Oscillator 1\n",  # oscillator 2 goes to filter 2 (off: straight through)
        "- Attack: **62.5 ms**",
        "- Sustain: **25%**",
        "### LFO 1",
        "- Turn **Delay** on.",
        "- Tempo: **1/64**",
        "| 1 | LFO 1 -> Filter 1 Cutoff | +0.5 |",
    ):
        assert expected in guide, expected
    for absent in ("Decay", "Release", "Reverb", "Oscillator 3", "Drive", "Frequency", "Volume", "LFO 2"):
        assert absent not in guide, absent


def test_guides_of_real_presets(presets_dir):
    files = sorted(presets_dir.rglob("*.vital"))[:: max(1, len(list(presets_dir.rglob("*.vital"))) // 3)][:3]
    for path in files:
        preset = read_vital(path)
        state = load_state(preset)
        guide = offline_tutorial(state, name=path.stem)
        assert guide.startswith(f'# How to build "{path.stem}" in Vital\n'), path
        s = preset["settings"]
        for i in (1, 2, 3):
            if state.controls[f"osc_{i}_on"].value >= 0.5:
                assert f"- Wavetable: **{s['wavetables'][i - 1]['name']}**" in guide, (path, i)
        for i in (1, 2):
            info = state.controls[f"filter_{i}_model"]
            if state.controls[f"filter_{i}_on"].value >= 0.5 and info.value != 5:
                cutoff = state.controls[f"filter_{i}_cutoff"]
                if not cutoff.is_default:
                    assert f"{midi_to_hz(cutoff.value):.1f} Hz" in guide.replace(".0 Hz", " Hz") or (
                        f"{midi_to_hz(cutoff.value):.0f} Hz" in guide
                    ), (path, i)
        assert "Traceback" not in guide


def test_cli_errors_are_one_line(tmp_path, capsys):
    not_json = tmp_path / "x.vital"
    not_json.write_text("no json here")
    for argv, message in (
        (["tutorial", str(tmp_path / "missing.vital")], "no such preset file"),
        (["tutorial", str(not_json)], "is not a Vital preset"),
        (["tutorial", str(not_json), "-o", str(tmp_path / "nodir" / "g.md")], "does not exist"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 1
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_cli_writes_a_file_and_refuses_to_overwrite(tmp_path, changed_preset, capsys):
    preset = tmp_path / "Changed.vital"
    preset.write_text(json.dumps(changed_preset))
    out = tmp_path / "guide.md"
    main(["tutorial", str(preset), "-o", str(out)])
    assert "wrote" in capsys.readouterr().out
    assert "- Cutoff: **523.3 Hz**" in out.read_text()
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(SystemExit) as exit_info:
        main(["tutorial", str(preset), "-o", str(out)])
    assert exit_info.value.code == 1 and "exists; use --overwrite" in capsys.readouterr().err
    main(["tutorial", str(preset), "-o", str(out), "--overwrite", "--name", "Renamed"])
    assert out.read_text().startswith('# How to build "Renamed" in Vital')


def test_offline_guide_loses_terminal_escapes_from_the_file(tmp_path, changed_preset):
    """The preset's own text (its name, a wavetable's name) reaches the guide: no escapes either."""
    preset = json.loads(json.dumps(changed_preset))
    preset["preset_name"] = "Evil\x1b]0;pwned\x07 Pad\x1b[2J"
    preset["settings"]["wavetables"][0]["name"] = "Table\x1b[31m red"
    path = tmp_path / "evil.vital"
    path.write_text(json.dumps(preset))
    run = run_cli("tutorial", path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert _control_chars(run.stdout) == []
    assert "Evil Pad" in run.stdout and "Table red" in run.stdout
