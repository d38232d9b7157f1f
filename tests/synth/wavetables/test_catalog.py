"""The wavetable catalog (vitalmatch.synth.wavetables.catalog): dedup by content, copies,
save/load and its checks."""

from __future__ import annotations

import copy
import json

import pytest

from vitalmatch.synth.wavetables import WavetableCatalog, vital_init_table, wavetable_hash


def test_catalog_dedups_by_content(builtin):
    table = builtin["Sine"].table
    catalog = WavetableCatalog()
    assert catalog.add(table, name="First", origin="file:a") == (0, True)
    renamed = copy.deepcopy(table)
    renamed["name"] = "Second"
    assert catalog.add(renamed, name="Second", origin="file:b") == (0, False)
    assert len(catalog) == 1 and catalog[0].name == "First" and catalog[0].count == 2
    assert catalog[0].origin == "file:a"
    # A different table under a taken name gets a unique name.
    index, added = catalog.add(builtin["Square"].table, name="First")
    assert (index, added) == (1, True) and catalog.names == ["First", "First (2)"]
    assert catalog["First (2)"].hash == builtin["Square"].hash
    assert catalog.index_of(builtin["Square"].hash) == 1 and builtin["Square"].hash in catalog
    with pytest.raises(KeyError):
        catalog["Nope"]
    with pytest.raises(KeyError):
        catalog.index_of("0" * 64)
    # A stock copy of a custom entry makes it stock.
    custom = WavetableCatalog()
    custom.add(table, origin="file:x", custom=True)
    custom.add(table, origin="vital-install", custom=False)
    assert custom[0].custom is False


def test_catalog_stores_a_copy(builtin):
    table = copy.deepcopy(builtin["Sine"].table)
    catalog = WavetableCatalog()
    catalog.add(table)
    table["groups"].clear()
    assert wavetable_hash(catalog[0].table) == catalog[0].hash


def test_catalog_save_load_round_trip(tmp_path, builtin):
    catalog = WavetableCatalog.builtin()
    odd = copy.deepcopy(vital_init_table())
    odd["groups"][0]["components"][0]["type"] = "Line Source"  # any component type round-trips
    odd["groups"][0]["components"][0]["line"] = {"points": [0.0, 1.0, 1.0, 0.0], "num_points": 2}
    catalog.add(odd, name="Line", origin="file:x.vital", custom=True)
    catalog.add(builtin["Sine"].table)  # duplicate: count 2
    path = tmp_path / "tables.json"
    catalog.save(path)
    loaded = WavetableCatalog.load(path)
    assert loaded.to_json() == catalog.to_json()
    assert loaded.names == catalog.names and loaded.hashes == catalog.hashes
    assert loaded["Line"].table == odd and loaded["Line"].custom and loaded["Sine"].count == 2
    head = json.loads(path.read_text())
    assert head["format"] == "vitalmatch-wavetables" and head["version"] == 1
    path2 = tmp_path / "again.json"
    WavetableCatalog.builtin().save(path2)
    WavetableCatalog.builtin().save(tmp_path / "again2.json")
    assert path2.read_bytes() == (tmp_path / "again2.json").read_bytes()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "\x00\xff garbage",
        json.dumps({"settings": {"wavetables": []}}),
        json.dumps({"format": "vitalmatch-wavetables", "version": 99, "entries": []}),
        json.dumps({"format": "vitalmatch-wavetables", "version": 1, "entries": {}}),
        json.dumps({"format": "vitalmatch-wavetables", "version": 1, "entries": [{"name": "x"}]}),
        json.dumps([1, 2, 3]),
    ],
)
def test_catalog_load_rejects_foreign_json(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ValueError) as info:
        WavetableCatalog.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message


def test_catalog_load_rejects_tampered_hash(tmp_path, builtin):
    catalog = WavetableCatalog()
    catalog.add(builtin["Sine"].table)
    data = json.loads(catalog.to_json())
    data["entries"][0]["table"]["full_normalize"] = False
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="hash"):
        WavetableCatalog.load(path)
