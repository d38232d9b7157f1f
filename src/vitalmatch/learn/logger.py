"""Training logs: one strict JSON record per event, plus TensorBoard or Weights & Biases.

Stage: learn (logging). Input: events of a training run (``kind``, optimiser step, a dict of
values, possibly nested). Output: ``metrics.jsonl`` in the run folder (always; one JSON object a
line with ``kind``, ``step``, ``time`` and the values; NaN and infinite values are written as
``null``, because JSON has neither) and the finite scalars as ``kind/name`` series in TensorBoard
event files or a W&B run. Only the main process (rank 0) logs; a logger made with
``enabled=False`` does nothing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vitalmatch.learn.config import TrainConfig


class Logger:
    """``metrics.jsonl`` always; TensorBoard or W&B on top, as ``config.logger`` says."""

    def __init__(self, out: Path, config: TrainConfig, enabled: bool) -> None:
        self.enabled = enabled
        self.tb = self.wandb = None
        if not enabled:
            return
        self.path = out / "metrics.jsonl"
        if config.logger == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                print("warning: tensorboard is not installed; metrics go to metrics.jsonl only")
        elif config.logger == "wandb":
            try:
                import wandb
            except ImportError:
                raise ValueError("--logger wandb needs the wandb package (pip install wandb)") from None
            self.wandb = wandb.init(
                project="vitalmatch", name=out.name, config=asdict(config), dir=str(out), resume="allow"
            )

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append one record ``{"kind", "step", "time" (Unix s), **values}`` and its finite scalars."""
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": time.time(), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        scalars = {
            k: v for k, v in flatten(values).items() if isinstance(v, int | float) and math.isfinite(v)
        }
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{kind}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"{kind}/{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def json_safe(x: Any) -> Any:
    """``x`` with every NaN or infinite float replaced by None (JSON has no NaN or Infinity), and
    numpy scalars and arrays made plain Python values."""
    if isinstance(x, float | np.floating):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer | np.bool_):
        return x.item()
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one flat dict with ``/``-joined keys: ``{"a": {"b": 1}}`` -> ``{"a/b": 1}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out
