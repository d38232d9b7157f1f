"""The default model: which network ``match``, ``predict`` and the demo use when given none.

Stage: learn (model choice). Input: the ``--checkpoint`` and ``--no-model`` options. Output: the
path of the model file or checkpoint to load, or None (no network: the starting set and the init
preset only). This module imports nothing heavy (no torch), so the CLI can call it first.

The default is, in order:

1. ``$VITALMATCH_DEFAULT_MODEL`` when the variable is set: a path, or the empty string for no
   default (the test suite sets it empty; tests of the default point it at a tiny model);
2. :data:`DEFAULT_MODEL`, the model file packaged with vitalmatch, when it is installed;
3. none.

A default model that does not fit the live synth (its parameters differ, e.g. after a vita
update) is skipped with a one-line warning by the matcher (:func:`is_default` tells it apart); a
model the user named with ``--checkpoint`` must fit, or the command fails.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The model file shipped in the package (absent until a trained one is put there).
DEFAULT_MODEL = Path(__file__).with_name("default-model.safetensors")
#: Environment variable naming another default model ("" = none).
ENV = "VITALMATCH_DEFAULT_MODEL"


def default_path() -> Path | None:
    """The default model's path, or None when there is none (see the module docstring).

    Raises:
        ValueError: ``$VITALMATCH_DEFAULT_MODEL`` names a file that does not exist.
    """
    if ENV in os.environ:
        value = os.environ[ENV].strip()
        if not value:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"${ENV} names {value}, which is not a file (set it to '' for no default)")
        return path
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None


def resolve(checkpoint: str | os.PathLike | None, no_model: bool = False) -> Path | None:
    """The model to use: ``checkpoint`` when given, none with ``no_model``, else the default.

    Raises:
        ValueError: both are given, ``checkpoint`` does not exist, or the default's variable names
            a missing file.
    """
    if checkpoint is not None:
        if no_model:
            raise ValueError("--checkpoint and --no-model exclude each other")
        if not Path(checkpoint).is_file():
            raise ValueError(f"checkpoint {checkpoint} does not exist")
        return Path(checkpoint)
    if no_model:
        return None
    return default_path()


def is_default(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is the default model (the matcher then skips it, with a warning, where it
    does not fit the live synth, instead of failing)."""
    if path is None:
        return False
    try:
        default = default_path()
    except ValueError:
        return False
    return default is not None and Path(path).resolve() == default.resolve()
