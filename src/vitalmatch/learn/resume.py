"""Where a run starts from: its own checkpoint (``--resume``) or ImageNet weights (``--pretrained``).

Stage: learn (run start). Input: the :class:`TrainConfig` of this session, the run's ``last.pt``
and the dataset, or a ``--pretrained`` state-dict file. Output: the checkpoint dict with its
:class:`~vitalmatch.learn.payload.TrainState`, after the checks that it may be continued with
these settings and this data; or the pretrained state dict. Every refusal is one ``ValueError``
line.

The run is the one in ``--out`` wherever that folder now lies: paths are compared as files, not as
strings, and the dataset may be named by another path (or moved) when it holds the same data
(:func:`~vitalmatch.learn.data.dataset_identity`).
"""

from __future__ import annotations

import dataclasses
import filecmp
import os
from pathlib import Path
from typing import Any

import torch

from vitalmatch.learn import checkpoint
from vitalmatch.learn.config import TrainConfig
from vitalmatch.learn.data import dataset_identity, dataset_registry
from vitalmatch.learn.payload import TrainState

#: Settings that may change on resume (they belong to one session, not to the run).
SESSION = frozenset(
    {"progress", "logger", "threads", "stop_after", "time_budget_min", "device", "epochs", "patience"}
    | {"loader_workers", "memory_gb"}  # streaming: the stream's order depends on neither
)
#: Settings that are paths: compared as files (``data`` by :func:`check_data`).
PATHS = frozenset({"data", "out", "pretrained"})


def open_run(config: TrainConfig, last: Path) -> tuple[dict[str, Any], TrainConfig, TrainState]:
    """``(checkpoint, its saved config, its state)`` of ``last`` for ``--resume`` with ``config``;
    ``ValueError`` if the file cannot be resumed or the settings differ from the run's."""
    ckpt = checkpoint.load(last)
    checkpoint.check_resumable(ckpt, last)
    state = resumed_state(ckpt, last)
    saved = TrainConfig.from_dict(ckpt["train"]["config"], source=str(last))
    diff = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name not in SESSION | PATHS and getattr(saved, f.name) != getattr(config, f.name)
    ]
    if not same_pretrained(saved.pretrained, config.pretrained):
        diff.append("pretrained")
    if diff:
        raise ValueError(f"--resume with other settings than {last} ({', '.join(sorted(diff))} differ)")
    return ckpt, saved, state


def check_data(reader, ckpt: dict[str, Any], saved: TrainConfig, config: TrainConfig, last: Path) -> str:
    """The identity of the dataset open in ``reader`` (``config.data``), after checking that it
    is the data the run in ``last`` was trained on: the same columns, and the same file or (moved,
    copied) the same content. ``ValueError`` otherwise."""
    if dataset_registry(reader).to_json() != ckpt["full_registry_json"]:
        raise ValueError(f"{config.data} has other parameters than the dataset {last} was trained on")
    identity = dataset_identity(reader)
    if not same_file(saved.data, config.data) and identity != ckpt.get("data_identity"):
        raise ValueError(
            f"--resume with other data than {last} was trained on: "
            f"{config.data} is not the dataset {saved.data}"
        )
    return identity


def resumed_state(ckpt: dict[str, Any], last: Path) -> TrainState:
    """The :class:`TrainState` in a checkpoint, type-checked field by field (``ValueError``)."""
    defaults = TrainState()
    names = {f.name for f in dataclasses.fields(TrainState)}
    values = {}
    for k, v in ckpt["train"]["state"].items():
        if k not in names:
            raise ValueError(f"{last} cannot be resumed: train.state has an unknown field {str(k)[:40]!r}")
        kind = type(getattr(defaults, k))
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise ValueError(
                f"{last} cannot be resumed: train.state.{k} must be {kind.__name__}, got {v!r:.40}"
            )
        values[k] = v
    return TrainState(**values)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (or, where one is missing, resolve to the same path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def same_pretrained(saved: str, given: str) -> bool:
    """Whether ``--pretrained`` on resume names the run's weights: both unset, or files with the
    same content. A run's file that no longer exists where it was (the folder moved) is not
    compared: resuming never reads it (the weights come from ``last.pt``)."""
    if not saved or not given:
        return saved == given
    a, b = Path(saved), Path(given)
    if a.is_file() and b.is_file():
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    return True


def load_pretrained(path: str) -> dict[str, torch.Tensor]:
    """The state dict in ``--pretrained`` ``path`` (a ``{"state_dict": ...}`` wrapper is unwrapped);
    ``ValueError`` (one line) if it is missing, unreadable or not a dict of named tensors."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--pretrained {path} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the weights-only unpickler raises anything on garbage
        what = e.strerror if isinstance(e, OSError) and e.strerror else "not a torch file"
        raise ValueError(f"--pretrained {path} is not a readable state dict ({what})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"--pretrained {path} is not a state dict (it holds a {type(state).__name__})")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"--pretrained {path} is not a state dict (not every entry is a named tensor)")
    return state
