"""One config path for every stage (vitalmatch.config): flags generated from the config dataclasses,
``--config FILE`` overrides, and the settings' checks.

Each stage's file test is cheap: the file sets a value the stage refuses, so the one-line error
names it and no real work starts; a flag given beside it replaces it, so the error changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.processes import cli_in_process
from vitalmatch.cli import cli
from vitalmatch.config import (
    MISSING,
    ConfigCommand,
    field_default,
    field_help,
    from_dict,
    load_config_file,
    settings_of,
    show_default,
)

STAGES = ("generate", "train", "evaluate", "match", "tutorial", "demo")


# ------------------------------------------------------------------------------ the helper itself
@dataclass
class _Inner:
    """Nested settings.

    Attributes:
        level: a level in dB,
            said on two lines.
        names: some names.
    """

    level: float = -60.0
    names: tuple[str, ...] = ("a", "b")


@dataclass
class _Outer:
    """Top-level settings.

    Attributes:
        path: a file.
        count, other: two counts.
        inner: nested settings.
        maybe: an optional number; see :class:`~vitalmatch.config.Flag`.

    Text after the section is no field's help.
    """

    path: Path
    count: int = 3
    other: int | None = None
    inner: _Inner = field(default_factory=lambda: _Inner(level=-40.0))
    maybe: float | None = None


def test_field_help_reads_the_attributes_section():
    helps = field_help(_Outer)
    assert helps == {
        "path": "a file.",
        "count": "two counts.",
        "other": "two counts.",
        "inner": "nested settings.",
        "maybe": "an optional number; see Flag.",
    }
    assert field_help(_Inner)["level"] == "a level in dB, said on two lines."


def test_settings_are_flattened_and_defaults_come_from_the_parent_field():
    assert settings_of(_Outer)["level"] == ("inner", "level")
    assert field_default(_Outer, "inner.level") == -40.0  # the parent's factory, not _Inner's -60
    assert field_default(_Outer, "path") is MISSING
    assert show_default((48, 60, 72)) == "48,60,72" and show_default(None) is None


def test_from_dict_types_and_nesting():
    built = from_dict(
        _Outer, {"count": 4, "level": -10, "names": ["x"], "maybe": 2}, fixed={"path": Path("p")}
    )
    assert built == _Outer(Path("p"), 4, None, _Inner(-10.0, ("x",)), 2.0)
    assert isinstance(built.inner.level, float) and isinstance(built.maybe, float)
    for values, message in (
        ({"count": "3"}, "src: count must be int, got '3'"),
        ({"count": True}, "src: count must be int, got True"),
        ({"names": "x"}, "src: names must be a list of str, got 'x'"),
        ({"colour": 1, "count": 2}, "src: unknown setting(s) colour"),
    ):
        with pytest.raises(ValueError) as info:
            from_dict(_Outer, values, source="src", fixed={"path": Path("p")})
        assert str(info.value) == message


def test_config_file_errors_are_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text("count = [\n")
    for name, message in (("none.toml", "does not exist"), ("bad.toml", "is not valid TOML")):
        with pytest.raises(ValueError, match=message) as info:
            load_config_file(tmp_path / name, _Outer)
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------- every stage's flags
def _stage(name: str) -> tuple[ConfigCommand, type, tuple]:
    command = cli.commands[name]
    assert isinstance(command, ConfigCommand), name
    config_cls, flags = command.setup()
    return command, config_cls, flags


@pytest.mark.parametrize("name", STAGES)
def test_every_flag_default_is_the_dataclass_default(name):
    """A generated flag has no click default of its own (None: not given) and its help shows the
    field's default; an explicit option that sets a field has the field's default (or is required),
    so no default is written twice."""
    command, config_cls, flags = _stage(name)
    ctx = click.Context(command)
    params = command.get_params(ctx)
    generated = {p.name: p for p in params if hasattr(p, "config_flag")}
    assert set(generated) == {f.dest for f in flags}
    for param in generated.values():
        flag = param.config_flag
        assert param.get_default(ctx) is None, flag.long
        default = field_default(config_cls, flag.path)
        assert default is not MISSING, flag.long
        shown = show_default(default)
        if flag.invert:
            assert default is True, flag.long  # the flag turns it off
        elif isinstance(default, bool) and not flag.negatable:
            assert default is False, flag.long  # the flag turns it on
        elif isinstance(default, bool):
            name = flag.long.lstrip("-")
            assert f"[default: {name if default else 'no-' + name}]" in param.help, flag.long
        elif shown is not None:
            assert f"[default: {shown}]" in param.help, flag.long
    # An empty settings dict builds the dataclass defaults.
    fields = settings_of(config_cls)
    for param in params:
        if hasattr(param, "config_flag") or param.name not in fields or len(fields[param.name]) != 1:
            continue
        default = field_default(config_cls, param.name)
        assert param.required or default is MISSING or param.get_default(ctx) == default, param.name


@pytest.mark.parametrize("name", STAGES)
def test_help_shows_the_defaults(name):
    result = CliRunner().invoke(cli, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    _, config_cls, flags = _stage(name)
    for flag in flags:
        assert flag.long in result.output
        shown = show_default(field_default(config_cls, flag.path))
        if shown is not None and not isinstance(field_default(config_cls, flag.path), bool):
            assert f"[default: {shown}]" in result.output, flag.long


def test_no_settings_give_the_dataclass_defaults():
    from vitalmatch.data.generate import GenerateConfig
    from vitalmatch.demo import DemoConfig
    from vitalmatch.match import MatchConfig

    assert from_dict(MatchConfig, {}) == MatchConfig()
    assert from_dict(DemoConfig, {}) == DemoConfig()
    fixed = {"output": Path("x.h5"), "n_presets": 1}
    assert from_dict(GenerateConfig, {}, fixed=fixed) == GenerateConfig(**fixed)


# ------------------------------------------------------------------- --config FILE, per stage
def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"s{len(list(tmp_path.glob('s*.toml')))}.toml"
    path.write_text(text)
    return path


def _error(capsys, *args) -> str:
    """The one ``error:`` line of a refused run."""
    r = cli_in_process(capsys, *args)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture
def stage_args(tmp_path):
    """For each stage, the arguments of a run that the file's settings decide about."""
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio")
    data = tmp_path / "d.h5"
    data.write_bytes(b"not a dataset")
    return {
        "generate": ["generate", "-n", "1", "-o", tmp_path / "g" / "x.h5", "--no-progress"],
        "train": ["train", "--data", tmp_path / "none.h5", "--out", tmp_path / "run"],
        "evaluate": ["evaluate", "--data", data, "-o", tmp_path / "report", "--no-progress"],
        "match": ["match", junk, "-o", tmp_path / "o.vital", "--no-progress"],
        "tutorial": ["tutorial", tmp_path / "missing.vital"],
        "demo": ["demo"],
    }


#: stage: (file that a stage refuses, its error, the flag that replaces it, the error then).
OVERRIDES = {
    "generate": (
        "give_up_after = 0\nsilence_peak_db = -50\n",
        "--give-up-after (give_up_after) must be an integer >= 1, got 0",
        ["--give-up-after", "5", "--timeout", "0"],
        "--timeout must be > 0 seconds, got 0.0",
    ),
    "train": (
        "amp = 'fp8'\n",
        "amp must be auto, bf16 or off, got 'fp8'",
        ["--amp", "off"],
        "does not exist",
    ),
    "evaluate": (
        "preset_note = 200\nimages = -1\n",
        "preset_note must be a MIDI note 0..127, got 200",
        ["--preset-note", "60"],
        "images must be >= 0, got -1",
    ),
    "match": (
        "budget_s = inf\nstart_set_size = 100000\n",
        "--budget-s must be a number of seconds in (0, 86400]",
        ["--budget-s", "5"],
        "--start-set must be in 0..10000, got 100000",
    ),
    "tutorial": (
        "timeout_s = 0\n",
        "--timeout must be > 0 and --max-tokens >= 1",
        ["--timeout", "5"],
        "no such preset file",
    ),
    "demo": (
        "port = 0\nworkers = 0\n",
        "--port must be in 1..65535, got 0",
        ["--port", "7000"],
        "--workers must be >= 1, got 0",
    ),
}


@pytest.mark.parametrize("name", STAGES)
def test_config_file_overrides_defaults_and_flags_override_the_file(name, tmp_path, capsys, stage_args):
    text, message, flags, then = OVERRIDES[name]
    path = _file(tmp_path, text)
    assert message in _error(capsys, *stage_args[name], "--config", path)
    assert then in _error(capsys, *stage_args[name], "--config", path, *flags)
    assert not (tmp_path / "g").exists()  # generate refused before it made a folder


@pytest.mark.parametrize("name", STAGES)
def test_unknown_keys_and_wrong_types_in_the_file_are_one_line(name, tmp_path, capsys, stage_args):
    path = _file(tmp_path, "colour = 'red'\n")
    assert _error(capsys, *stage_args[name], "--config", path) == f"error: {path}: unknown setting(s) colour"
    _, config_cls, flags = _stage(name)
    flag = next(f for f in flags if not isinstance(field_default(config_cls, f.path), str))
    path = _file(tmp_path, f"{flag.key} = 'many'\n")
    line = _error(capsys, *stage_args[name], "--config", path)
    assert line.startswith(f"error: {path}: {flag.key} must be ") and line.endswith(", got 'many'")


def test_a_file_names_settings_by_field_not_by_flag(tmp_path, capsys, stage_args):
    """``--timeout`` sets ``task_timeout_s``: the file says the field's name (as its help shows)."""
    path = _file(tmp_path, "timeout = 3\n")
    assert "unknown setting(s) timeout" in _error(capsys, *stage_args["generate"], "--config", path)
    path = _file(tmp_path, "task_timeout_s = 0\nnotes = [48, 200]\n")
    assert "notes must be MIDI numbers in 0..127" in _error(capsys, *stage_args["generate"], "--config", path)
    path = _file(tmp_path, "notes = [48, 60.5]\n")
    line = _error(capsys, *stage_args["generate"], "--config", path)
    assert line == f"error: {path}: notes must be a list of int, got [48, 60.5]"


def test_generated_settings_reach_the_config(monkeypatch, tmp_path, capsys):
    """The file, the flags and the derived full scale arrive in the GenerateConfig the run gets."""
    import vitalmatch.data.generate as generate_module

    seen = []

    def fake_generate(config):
        seen.append(config)
        raise ValueError("stop here")

    monkeypatch.setattr(generate_module, "generate", fake_generate)
    path = _file(tmp_path, "clip_peak = 2.0\nsample_rate = 22050\nreproducible = false\nsplit = [1, 0, 0]\n")
    args = ["generate", "-n", "3", "-o", tmp_path / "x.h5", "--config", path, "--notes", "60.0,72"]
    assert _error(capsys, *args, "--sample-rate", "32000", "--no-progress") == "error: stop here"
    [config] = seen
    assert config.render.notes == (60, 72) and config.render.sample_rate == 32000
    assert not config.render.reproducible and config.split == (1.0, 0.0, 0.0)
    assert config.validation.clip_peak == 2.0 and config.storage.full_scale == 2.0
    assert config.storage.channels == "mono" and config.n_presets == 3 and not config.progress
    assert config.task_timeout_s == field_default(type(config), "task_timeout_s")
