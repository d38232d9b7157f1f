"""The training log: strict JSON lines (NaN and infinity as null), nested values, rank 0 only."""

from __future__ import annotations

import json
import math

from vitalmatch.learn.config import TrainConfig
from vitalmatch.learn.logger import Logger, flatten, json_safe


def _strict(line: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def test_json_safe_replaces_non_finite_floats_everywhere():
    x = {"a": math.nan, "b": [1.0, math.inf, (-math.inf, 2)], "c": {"d": math.nan, "e": "nan"}, "f": 3}
    assert json_safe(x) == {"a": None, "b": [1.0, None, [None, 2]], "c": {"d": None, "e": "nan"}, "f": 3}
    json.dumps(json_safe(x), allow_nan=False)


def test_flatten_joins_nested_keys():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": 3}}}) == {"a": 1, "b/c": 2, "b/d/e": 3}


def test_logger_writes_one_strict_record_per_event(tmp_path):
    log = Logger(tmp_path, TrainConfig(logger="none"), enabled=True)
    log.log("train", 1, {"loss": 0.5, "grad_norm": math.inf})
    log.log("val", 2, {"mae_param": {"a": math.nan, "b": 0.25}, "best": True})
    log.close()
    records = [_strict(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("train", 1), ("val", 2)]
    assert records[0]["grad_norm"] is None and records[0]["loss"] == 0.5
    assert records[1]["mae_param"] == {"a": None, "b": 0.25} and records[1]["best"] is True
    assert all(isinstance(r["time"], float) for r in records)


def test_a_disabled_logger_writes_nothing(tmp_path):
    log = Logger(tmp_path, TrainConfig(logger="tensorboard"), enabled=False)
    log.log("train", 1, {"loss": 0.5})
    log.close()
    assert list(tmp_path.iterdir()) == []


def test_tensorboard_gets_the_finite_scalars(tmp_path):
    import pytest

    pytest.importorskip("torch.utils.tensorboard")
    log = Logger(tmp_path, TrainConfig(logger="tensorboard"), enabled=True)
    log.log("val", 3, {"loss": 0.5, "mae_group": {"osc_1": math.nan, "filter_1": 0.1}, "reason": "x"})
    log.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["val/loss", "val/mae_group/filter_1"]
    assert events.Scalars("val/loss")[0].step == 3


def test_json_safe_makes_numpy_and_non_finite_values_strict_json():
    import json

    import numpy as np

    from vitalmatch.learn.logger import json_safe

    value = {"a": np.float32("nan"), "b": [np.float64(1.5), np.inf], "c": np.int64(3), "d": np.arange(2)}
    assert (
        json.dumps(json_safe(value), allow_nan=False) == '{"a": null, "b": [1.5, null], "c": 3, "d": [0, 1]}'
    )
