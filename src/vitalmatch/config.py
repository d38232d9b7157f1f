"""Stage settings on the command line and in files: one path from a config dataclass to its flags.

Stage: every stage's configuration (``vitalmatch STAGE``). Input: a stage's config dataclass (its
fields, their defaults and the ``Attributes:`` section of its docstring), an optional flat TOML file
(``--config FILE``) and the command-line flags. Output: the settings as ``{field: value}``, defaults
< file < flags, and the config built from them (:func:`from_dict`, type-checked per field).

A flag is described once, by a :class:`Flag` that names the field it sets; its default and help
are read from the dataclass, so no default is written twice. Nested configs (``GenerateConfig``'s
``render``, ``validation``, ``storage``) are flattened: a file names a setting by its field name
(``silence_peak_db = -50``), whatever the flag is called (``--silence-db``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

MISSING = dataclasses.MISSING


# -------------------------------------------------------------------------------- the dataclass side
def field_help(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass docstring.

    An entry is a line indented 8 spaces, ``name: text`` (``a, b: text`` documents several fields
    at once), continued by the more deeply indented lines below it; the section ends at the first
    line indented less. Sphinx markup is dropped (``:class:`~a.B``` -> ``B``, ````x```` -> ``x``).
    """
    doc = (cls.__doc__ or "").split("Attributes:", 1)
    if len(doc) < 2:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    for line in doc[1].splitlines():
        if not line.strip():
            continue
        if len(line) - len(line.lstrip()) < 8:
            break
        m = re.match(r"^\s{8}([a-z_][a-z0-9_, ]*):\s*(.*)$", line)
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = m.group(2).strip()
        elif names:
            for n in names:
                out[n] += " " + line.strip()
    return {k: _plain(v) for k, v in out.items()}


def _plain(text: str) -> str:
    text = re.sub(r":\w+:`~([^`]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r":\w+:`([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def settings_of(cls: type) -> dict[str, tuple[str, ...]]:
    """``{key: path}`` of every setting of ``cls``: a field's name, or for a field that is itself a
    config dataclass, its fields' names (flattened; ``"silence_peak_db" -> ("validation",
    "silence_peak_db")``). Raises ``TypeError`` if two nested fields share a name."""
    out: dict[str, tuple[str, ...]] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        inner = settings_of(hint) if dataclasses.is_dataclass(hint) else {f.name: ()}
        for key, rest in inner.items():
            if key in out:
                raise TypeError(f"{cls.__name__}: two settings are called {key}")
            out[key] = (f.name, *rest)
    return out


def field_default(cls: type, path: str | Iterable[str]) -> Any:
    """The default of the field at ``path`` (``"render.notes"`` or a tuple), as ``cls`` builds it:
    a nested config's default comes from its parent field's default (``GenerateConfig``'s storage
    is mono). ``MISSING`` for a field without a default."""
    parts = path.split(".") if isinstance(path, str) else list(path)
    f = {f.name: f for f in dataclasses.fields(cls)}[parts[0]]
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return MISSING
    for part in parts[1:]:
        value = getattr(value, part)
    return value


def _hint_at(cls: type, path: tuple[str, ...]) -> Any:
    hint: Any = cls
    for part in path:
        hint = _hints(hint)[part]
    return hint


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if _is_optional(hint):
        return _describe(_unwrap(hint))
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} {_describe(args[0])}"
    if hint is Path:
        return "a path (string)"
    return getattr(hint, "__name__", str(hint))


def _unwrap(hint: Any) -> Any:
    """``X`` of ``X | None``; other hints as they are."""
    return next(a for a in typing.get_args(hint) if a is not type(None)) if _is_optional(hint) else hint


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as a field of type ``hint`` holds it; raises ``TypeError`` if it is not one."""
    if _is_optional(hint):
        if value is None:
            return None
        return _coerce(value, _unwrap(hint))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise TypeError
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise TypeError
        return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Path and isinstance(value, str | os.PathLike):
        return Path(value)
    if hint in (bool, int, float, str) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise TypeError
    return value


def from_dict(
    cls: type,
    values: dict[str, Any],
    *,
    source: str = "config",
    fixed: dict[str, Any] | None = None,
    keys: Iterable[str] | None = None,
) -> Any:
    """Build ``cls`` from flat settings (``{key: value}``, keys as :func:`settings_of` names them),
    each type-checked against its field; ``fixed`` holds top-level fields given as they are (the
    command's inputs and outputs). Settings not given keep the dataclass defaults.

    Raises ``ValueError`` (one line, starting with ``source``) for a key that is not a setting, or
    not one of ``keys`` when they are given, and for a value of the wrong type; the config's own
    checks (``__post_init__``) raise theirs.
    """
    by_path: dict[tuple[str, ...], dict[tuple[str, ...], Any]] = {}
    for path, value in _checked(cls, values, source, keys).items():
        by_path.setdefault(path[:1], {})[path[1:]] = value
    kw = dict(fixed or {})
    for (name,), inner in by_path.items():
        kw[name] = inner[()] if () in inner else _replace(field_default(cls, (name,)), inner)
    return cls(**kw)


def _checked(
    cls: type, values: dict[str, Any], source: str, keys: Iterable[str] | None
) -> dict[tuple[str, ...], Any]:
    """``{path: value}`` of flat settings, each value as its field holds it (see :func:`from_dict`)."""
    paths = settings_of(cls)
    allowed = set(paths) if keys is None else set(keys) & set(paths)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    out = {}
    for key, value in values.items():
        hint = _hint_at(cls, paths[key])
        try:
            out[paths[key]] = _coerce(value, hint)
        except TypeError:
            raise ValueError(f"{source}: {key} must be {_describe(hint)}, got {value!r}") from None
    return out


def _replace(obj: Any, by_path: dict[tuple[str, ...], Any]) -> Any:
    """A copy of the dataclass ``obj`` with the values at ``by_path`` (paths inside ``obj``)."""
    changes: dict[str, Any] = {}
    inner: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in by_path.items():
        if len(path) == 1:
            changes[path[0]] = value
        else:
            inner.setdefault(path[0], {})[path[1:]] = value
    for name, sub in inner.items():
        changes[name] = _replace(getattr(obj, name), sub)
    return dataclasses.replace(obj, **changes)


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The table of a TOML file; ``ValueError`` (one line) if it is missing or not TOML."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {p} does not exist")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"config file {p} is not valid TOML ({e})") from None


def load_config_file(path: str | os.PathLike, cls: type, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Settings of ``cls`` from a flat TOML file (keys: field names, or only ``keys``), checked at
    once: an unknown key or a wrong type is a one-line ``ValueError`` naming the file."""
    data = read_toml(path)
    _checked(cls, data, str(path), keys)
    return data


# -------------------------------------------------------------------------------- the command side
@dataclass(frozen=True)
class Flag:
    """One command-line flag that sets one setting of a stage's config.

    Attributes:
        path: the field it sets, dotted into nested configs (``"validation.silence_peak_db"``).
        flag: the long flag (default: ``--`` and the field's name with dashes).
        parse: text -> field value, for settings a flag gives as text (``"48,60"`` -> ``(48, 60)``);
            it raises ``ValueError`` for bad text. Its default is shown joined by commas.
        invert: a plain flag that sets the boolean field to False (``--no-refine``).
        negatable: a boolean field gets ``--flag/--no-flag``; False: only ``--flag`` (sets True).
        type: click type (default: from the field's annotation).
        help: help text (default: the field's entry in the ``Attributes:`` section).
    """

    path: str
    flag: str | None = None
    parse: Callable[[str], Any] | None = None
    invert: bool = False
    negatable: bool = True
    type: Any = None
    help: str | None = None

    @property
    def key(self) -> str:
        """The setting's name (the field's name; also its key in a ``--config`` file)."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def long(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")

    @property
    def dest(self) -> str:
        return self.long.lstrip("-").replace("-", "_")

    def value(self, given: Any) -> Any:
        """The field value of a flag's value."""
        if self.invert:
            return not given
        return self.parse(given) if self.parse is not None else given


def show_default(value: Any) -> str | None:
    """A default as ``--help`` shows it (None: not shown): tuples joined by commas."""
    if value is None or value is MISSING:
        return None
    if value == "":
        return "''"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def fields_as_flags(cls: type, skip: Iterable[str] = ()) -> tuple[Flag, ...]:
    """A :class:`Flag` for every top-level field of ``cls`` but ``skip`` (``--flag/--no-flag`` for
    booleans), named after the fields."""
    return tuple(Flag(f.name) for f in dataclasses.fields(cls) if f.name not in skip)


def click_option(cls: type, flag: Flag, helps: dict[str, str] | None = None) -> click.Option:
    """The click option of ``flag``. It defaults to None, so that only a flag given on the command
    line overrides the ``--config`` file and the dataclass; the help shows the dataclass default."""
    helps = field_help(_hint_at(cls, tuple(flag.path.split(".")[:-1]))) if helps is None else helps
    default = field_default(cls, flag.path)
    hint = _hint_at(cls, tuple(flag.path.split(".")))
    text = flag.help if flag.help is not None else helps.get(flag.key, "")
    text = text[:1].upper() + text[1:]
    if flag.invert or (hint is bool and not flag.negatable):
        opt = click.Option([flag.long, flag.dest], is_flag=True, default=None, help=text)
    elif hint is bool:
        name = flag.long.lstrip("-")
        shown = name if default else f"no-{name}"
        opt = click.Option(
            [f"{flag.long}/--no-{name}", flag.dest], default=None, help=f"{text}  [default: {shown}]"
        )
    else:
        kind = flag.type
        if kind is None:
            base = _unwrap(hint)
            if flag.parse is not None:
                kind = str
            elif base is Path:
                kind = click.Path(path_type=Path)
            else:
                kind = base
        shown = show_default(default)
        opt = click.Option(
            [flag.long, flag.dest],
            type=kind,
            default=None,
            help=f"{text}  [default: {shown}]" if shown is not None else text,
        )
    opt.config_flag = flag  # type: ignore[attr-defined]  (read by the tests and ConfigCommand)
    return opt


class ConfigCommand(click.Command):
    """A stage's command whose settings come from its config dataclass.

    ``setup()`` returns ``(config class, flags)``; it runs (importing the stage) only when the
    command itself is used, so that ``vitalmatch --help`` stays quick. The command gains
    ``--config FILE`` and one option per flag; its callback receives ``settings``: ``{key: value}``
    of the file, overridden by the flags given (what is in neither keeps the dataclass default).
    ``file_keys`` are further settings the file may hold (train's ``data`` and ``out``).
    """

    def __init__(
        self, *args: Any, setup: Callable[[], tuple[type, tuple[Flag, ...]]], file_keys=(), **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.setup = setup
        self.file_keys = tuple(file_keys)
        self._generated = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._generated:
            cls, flags = self.setup()
            self.params.append(
                click.Option(
                    ["--config", "config_file"],
                    type=click.Path(path_type=Path),
                    default=None,
                    help="Flat TOML file of settings (key = value), named as the options below, or as "
                    "their [file: ...] says; flags override it.",
                )
            )
            for flag in flags:
                opt = click_option(cls, flag)
                if flag.invert:
                    opt.help = f"{opt.help}  [file: {flag.key} = false]"
                elif flag.dest != flag.key:
                    opt.help = f"{opt.help}  [file: {flag.key}]"
                self.params.append(opt)
            self._generated = True
        return super().get_params(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        cls, flags = self.setup()
        config_file = ctx.params.pop("config_file", None)
        given = {flag: ctx.params.pop(flag.dest, None) for flag in flags}
        ctx.params["settings"] = settings(cls, flags, config_file, given, file_keys=self.file_keys)
        return super().invoke(ctx)


def settings(
    cls: type,
    flags: Iterable[Flag],
    config_file: str | os.PathLike | None,
    given: dict[Flag, Any],
    *,
    file_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """``{key: value}``: the ``--config`` file's settings (checked against ``cls``, only the flags'
    keys and ``file_keys``), overridden by the flags given (None: not given), as field values."""
    flags = tuple(flags)
    values: dict[str, Any] = {}
    if config_file is not None:
        keys = [f.key for f in flags] + list(file_keys)
        values.update(load_config_file(config_file, cls, keys))
    for flag in flags:
        if given.get(flag) is not None:
            values[flag.key] = flag.value(given[flag])
            _checked(cls, {flag.key: values[flag.key]}, flag.long, None)  # "--split: split must be ..."
    return values
