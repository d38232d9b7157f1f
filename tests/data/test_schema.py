"""Tests of vitalmatch.data.schema on real HDF5 files: root attributes round-trip, bad ones are refused."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.dataset_rows import create
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import SCHEMA_VERSION
from vitalmatch.data.writer import DatasetWriter


def test_attrs_round_trip(tmp_path):
    attrs = {
        "seed": 3,
        "rate": 0.5,
        "flag": True,
        "name": "tier-1 ✓",
        "notes": [48, 60],
        "gains": [0.5, 1],
        "names": ["osc", "filter"],
        "bools": [True, False],
        "empty": [],
        "settings": {"a": 1, "b": [1, 2], "c": {"d": "e"}},
        "registry_json": '{"kept": "as a string"}',
        "np_int": np.int64(4),
    }
    path = tmp_path / "d.h5"
    create(path, attrs=attrs).close()
    with DatasetReader(path) as r:
        got = r.attrs
    assert got.pop("schema_version") == SCHEMA_VERSION
    assert got == {**attrs, "np_int": 4}
    writer, _ = DatasetWriter.resume(path)
    assert writer.attrs["settings"] == attrs["settings"]
    writer.close()


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({"x": None}, "unsupported type"),
        ({"x": [1, "a"]}, "only strings"),
        ({"schema_version": "2"}, "reserved"),
        ({"s": {"a": 1}, "s_json": "{}"}, "collide"),
        ({"s": {"a": object()}}, "JSON"),
    ],
)
def test_bad_attrs_are_refused(tmp_path, attrs, match):
    with pytest.raises(ValueError, match=match):
        create(tmp_path / "d.h5", attrs=attrs)
    assert not list(tmp_path.iterdir())
