"""Tutorials: display values and label corrections, the offline guide, the CLI, and the LLM mode
against a local server that answers like Anthropic's Messages API (the real SDK, no mocks)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.pace import slowdown
from tests.processes import cli_in_process, run_cli
from vitalmatch.cli import main
from vitalmatch.synth.export import read_vital
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.tutorial import (
    EFFECTS,
    SYNCED_FREQUENCY_NAMES,
    PresetState,
    TutorialConfig,
    effect_order,
    filter_style_name,
    load_state,
    midi_to_hz,
    non_default,
    offline_tutorial,
    parameter_table,
    write_tutorial,
)

REPO = Path(__file__).resolve().parents[1]

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


@pytest.fixture(scope="module")
def init_preset() -> dict:
    import vita

    return json.loads(vita.Synth().to_json())


@pytest.fixture(scope="module")
def changed_preset(init_preset) -> dict:
    preset = json.loads(json.dumps(init_preset))
    settings = preset["settings"]
    settings.update(CHANGES)
    settings["wavetables"][0]["name"] = "My Table"
    settings["modulations"][0] = {"source": "lfo_1", "destination": "filter_1_cutoff"}
    preset["preset_name"] = "Changed Init"
    return preset


@pytest.fixture(scope="module")
def changed_state(changed_preset) -> PresetState:
    return load_state(changed_preset)


@pytest.fixture(scope="module")
def init_state(init_preset) -> PresetState:
    return load_state(init_preset)


# ------------------------------------------------------------------------------------- units
def test_midi_to_hz_golden():
    assert midi_to_hz(69) == pytest.approx(440.0, rel=1e-9)
    assert midi_to_hz(60) == pytest.approx(261.6256, rel=1e-6)
    assert midi_to_hz(72) == pytest.approx(523.2511, rel=1e-6)


def _vital_encode_order(order: list[int]) -> int:
    """Vital's ``encodeOrderToFloat`` (utils.cpp), the inverse of what effect_order decodes."""
    code = 0
    for i in range(1, len(order)):
        code = code * (i + 1) + sum(order[i] < order[j] for j in range(i))
    return code


def test_effect_order_decodes_vitals_encoding():
    assert effect_order(0) == list(EFFECTS)
    rng = np.random.default_rng(0)
    for _ in range(50):
        perm = [int(i) for i in rng.permutation(len(EFFECTS))]
        assert effect_order(_vital_encode_order(perm)) == [EFFECTS[i] for i in perm]


def test_filter_style_names_follow_the_model():
    assert filter_style_name(0, 1) == "24dB"
    assert filter_style_name(3, 4) == "B/P/N"
    assert filter_style_name(4, 1) == "Low Cut"
    assert filter_style_name(5, 2) == "The Mouth"
    assert filter_style_name(6, 3) == "Band Spread Comb"
    assert filter_style_name(7, 1) == "Negative"


# ------------------------------------------------------------------------- parameter table
def _row(rows, control):
    return next(r for r in rows if r.control == control)


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


def test_synced_frequency_table_matches_the_lfo_tempo_names(init_state):
    """lfo_N_tempo has min 0, so there the bindings' names are Vital's; the enum is off by one."""
    import vita

    assert init_state.controls["lfo_1_tempo"].options == SYNCED_FREQUENCY_NAMES
    assert int(vita.constants.SyncedFrequency.k1_16) == 9 and SYNCED_FREQUENCY_NAMES[9] == "1/8"


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


# ------------------------------------------------------------------------------ offline guide
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


# ------------------------------------------------------------------------------- bad input
def test_bad_presets_give_one_line_errors(init_preset):
    with pytest.raises(ValueError, match="no settings"):
        load_state({"preset_name": "x"})
    broken = json.loads(json.dumps(init_preset))
    broken["settings"]["osc_1_level"] = "loud"
    with pytest.raises(ValueError, match="rejected") as info:
        load_state(broken)
    assert "\n" not in str(info.value)


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
    assert exit_info.value.code == 1 and "exists; pass --overwrite" in capsys.readouterr().err
    main(["tutorial", str(preset), "-o", str(out), "--overwrite", "--name", "Renamed"])
    assert out.read_text().startswith('# How to build "Renamed" in Vital')


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


# ------------------------------------------------------------------- LLM mode, local server
LLM_TEXT = "# Tutorial from the fake API\n\nTurn the cutoff to 523.3 Hz.\n"


class FakeMessagesAPI:
    """A local HTTP server answering ``POST /v1/messages`` like Anthropic's Messages API.

    ``mode``: ``"ok"`` (a message with ``text``, default ``LLM_TEXT``), ``"error"`` (HTTP 500),
    ``"slow"`` (sleeps ``delay_s`` first) or ``"trickle"`` (the whole HTTP response, status line
    included, one byte per second: every read gets data well within any per-read timeout).
    Requests are kept in ``requests`` as (path, headers, body).
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 3.0
        self.text = LLM_TEXT
        self.requests: list[tuple[str, dict, dict]] = []
        self.stop = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                api.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if api.mode == "slow":
                    time.sleep(api.delay_s)
                if api.mode == "error":
                    self._send(500, {"type": "error", "error": {"type": "api_error", "message": "boom"}})
                    return
                message = {
                    "id": "msg_fake_01",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", ""),
                    "content": [{"type": "text", "text": api.text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 100, "output_tokens": 20},
                }
                if api.mode == "trickle":
                    self._trickle(message)
                    return
                self._send(200, message)

            def _trickle(self, payload: dict) -> None:
                data = json.dumps(payload).encode()
                head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                head += f"content-length: {len(data)}\r\n\r\n"
                for byte in head.encode() + data:
                    if api.stop.wait(1.0):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api(monkeypatch):
    api = FakeMessagesAPI()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    yield api
    api.close()


def test_llm_request_carries_the_parameters_and_its_text_is_used(changed_state, fake_api, capsys):
    config = TutorialConfig(llm=True, model="claude-test-model", base_url=fake_api.url, timeout_s=10)
    tutorial = write_tutorial(changed_state, config)
    assert (tutorial.source, tutorial.text, tutorial.note, tutorial.model) == (
        "llm",
        LLM_TEXT,
        None,
        "claude-test-model",
    )
    assert capsys.readouterr().err == ""
    [(path, headers, body)] = fake_api.requests
    assert path == "/v1/messages"
    assert "test-key" in headers.get("x-api-key", "") + headers.get("authorization", "")
    assert body["model"] == "claude-test-model" and body["max_tokens"] == config.max_tokens
    prompt = body["messages"][0]["content"]
    for value in ("523.3 Hz", "My Table", "62.5 ms", "1/64", "LFO 1 -> Filter 1 Cutoff"):
        assert value in prompt, value
    assert offline_tutorial(changed_state) in prompt
    assert "invent" in json.dumps(body["system"])


def test_llm_http_error_falls_back_to_the_offline_guide(changed_state, fake_api, capsys):
    fake_api.mode = "error"
    tutorial = write_tutorial(changed_state, TutorialConfig(llm=True, base_url=fake_api.url, timeout_s=10))
    assert tutorial.source == "offline" and tutorial.text == offline_tutorial(changed_state)
    assert "HTTP 500" in tutorial.note
    err = capsys.readouterr().err
    assert err.startswith("note: ") and "HTTP 500" in err and err.count("\n") == 1
    assert len(fake_api.requests) == 1  # no retries by default


def test_llm_timeout_falls_back_to_the_offline_guide(changed_state, fake_api, capsys):
    fake_api.mode = "slow"
    limit = 2.0 + 0.5 * slowdown()
    t0 = time.monotonic()
    tutorial = write_tutorial(changed_state, TutorialConfig(llm=True, base_url=fake_api.url, timeout_s=0.5))
    assert time.monotonic() - t0 < limit
    assert tutorial.source == "offline" and "no answer within 0.5 s" in tutorial.note
    assert "no answer within 0.5 s" in capsys.readouterr().err


def test_llm_without_a_key_falls_back_without_a_request(changed_state, fake_api, monkeypatch, capsys):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    tutorial = write_tutorial(changed_state, TutorialConfig(llm=True, base_url=fake_api.url))
    assert tutorial.source == "offline" and "ANTHROPIC_API_KEY is not set" in tutorial.note
    assert fake_api.requests == []
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err


def test_cli_llm_end_to_end_uses_anthropic_base_url(tmp_path, changed_preset, fake_api):
    """``python -m vitalmatch tutorial --llm`` in a subprocess, pointed at the server by the SDK's
    standard ANTHROPIC_BASE_URL."""
    preset = tmp_path / "Changed.vital"
    preset.write_text(json.dumps(changed_preset))
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake_api.url}
    run = subprocess.run(
        [sys.executable, "-m", "vitalmatch", "tutorial", str(preset), "--llm", "--model", "claude-x"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == LLM_TEXT and run.stderr == ""
    assert fake_api.requests[0][2]["model"] == "claude-x"


def test_cli_llm_timeout_is_a_deadline_for_the_whole_call(tmp_path, changed_preset, changed_state, fake_api):
    """A server that sends one byte per second never lets a per-read timeout fire: ``--timeout 4``
    must still end the call after 4 s and print the offline guide with a one-line note."""
    fake_api.mode = "trickle"
    preset = tmp_path / "Changed.vital"
    preset.write_text(json.dumps(changed_preset))
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake_api.url}
    limit = 4.0 + 5.0 * slowdown()  # start, load and exit: ~2 s on an idle machine
    t0 = time.monotonic()
    try:
        run = run_cli("tutorial", preset, "--llm", "--timeout", "4", env=env, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tutorial --llm --timeout 4 was still running after {limit:.1f} s")
    elapsed = time.monotonic() - t0
    assert run.returncode == 0, run.stderr
    assert len(fake_api.requests) == 1
    assert elapsed > 4.0  # it did wait for the server
    assert run.stdout == offline_tutorial(changed_state)
    assert run.stderr.startswith("note: ") and "no answer within 4 s" in run.stderr
    assert run.stderr.count("\n") == 1


#: An answer with terminal escapes: clear screen, window title, a hyperlink, colours, 8-bit CSI,
#: and bare control characters; only the text, newlines and tabs may reach the terminal.
ESCAPED_TEXT = (
    "# Tutorial\x1b[2J\x1b[H\r\n\x1b]0;owned title\x07Turn the \x1b]8;;http://x\x07cutoff\x1b]8;;\x07 "
    "to \x1b[1;31m523.3 Hz\x1b[0m.\n\tThen play.\x00\x08\x7f\x9b2J\x1bc\x1b]2;t\x1b\\ Done.\n"
)
CLEAN_TEXT = "# Tutorial\nTurn the cutoff to 523.3 Hz.\n\tThen play. Done.\n"


def _control_chars(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 or 127 <= ord(c) < 160) and c not in "\n\t"]


def test_llm_answer_loses_terminal_escapes_on_stdout_and_in_files(tmp_path, changed_preset, fake_api, capsys):
    fake_api.text = ESCAPED_TEXT
    preset = tmp_path / "Changed.vital"
    preset.write_text(json.dumps(changed_preset))
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake_api.url}
    run = run_cli("tutorial", preset, "--llm", env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert _control_chars(run.stdout) == [] and run.stdout == CLEAN_TEXT and run.stderr == ""
    out = tmp_path / "guide.md"
    tutorial = write_tutorial(
        read_vital(preset), TutorialConfig(llm=True, base_url=fake_api.url, timeout_s=10)
    )
    assert tutorial.source == "llm" and tutorial.text == CLEAN_TEXT
    run = cli_in_process(capsys, "tutorial", preset, "--llm", "--base-url", fake_api.url, "-o", out)
    assert run.returncode == 0, run.stderr
    assert out.read_text(encoding="utf-8") == CLEAN_TEXT


def test_llm_answer_over_the_size_cap_falls_back(changed_state, fake_api, capsys):
    """No model writes more than max_tokens tokens; an answer far longer than that is rejected."""
    from vitalmatch import tutorial as tutorial_module

    config = TutorialConfig(llm=True, base_url=fake_api.url, timeout_s=10, max_tokens=100)
    fake_api.text = "Set the cutoff. " * 2000  # 32000 characters for 100 tokens
    tutorial = write_tutorial(changed_state, config)
    assert tutorial.source == "offline" and tutorial.text == offline_tutorial(changed_state)
    assert "characters" in tutorial.note and "max_tokens=100" in tutorial.note
    err = capsys.readouterr().err
    assert err.startswith("note: ") and err.count("\n") == 1
    cap = config.max_tokens * tutorial_module.LLM_MAX_CHARS_PER_TOKEN
    fake_api.text = "x" * cap  # at the cap: accepted
    assert write_tutorial(changed_state, config).source == "llm"
    fake_api.text = "x" * (cap + 1)
    assert write_tutorial(changed_state, config).source == "offline"


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
