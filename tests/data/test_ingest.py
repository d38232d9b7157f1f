"""Ingestion of real presets (vitalmatch.data.ingest): folders -> an IngestPlan.

On the shared presets (``../shared/presets``; skipped when absent) and on real files written into
temporary folders: a synthetic ``.vitalbank`` zipped from two shared presets, bad files, an empty
folder, a fake Vital factory folder.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vitalmatch.data.ingest import COMMUNITY, FACTORY, ingest, scan
from vitalmatch.synth.modulation import LFO_SHAPES, check_connections, decode
from vitalmatch.synth.preset_file import init_preset
from vitalmatch.synth.wavetables import make_wavetable, wavetable_hash


@pytest.fixture(scope="module")
def shared_plan(presets_dir, catalog):
    return ingest([presets_dir], catalog, factory=[])


def test_every_shared_preset_ingests(shared_plan, presets_dir, catalog, registry):
    plan = shared_plan
    n_files = sum(1 for _ in presets_dir.rglob("*.vital"))
    print("\n".join(plan.summary()))
    assert len(plan.files) == n_files
    assert plan.failures == []  # every shared preset parses; reasons would be listed here
    assert len(plan.presets) == n_files
    files = [p.preset.file for p in plan.presets]
    assert files == sorted(files) and all(f.startswith(f"{presets_dir.name}/") for f in files)
    assert all(p.source == COMMUNITY for p in plan.presets)
    n_opts = np.array([s.n_options for s in plan.registry.categorical])
    for ip in plan.presets:
        p = ip.preset
        assert p.continuous.shape == (len(registry.continuous),)
        assert np.all((p.continuous >= 0) & (p.continuous <= 1))
        assert np.all((p.categorical >= 0) & (p.categorical < n_opts))
        check_connections(decode(p.modulation))
        assert np.all((p.lfo_shape >= 0) & (p.lfo_shape < len(plan.lfo_shapes)))
        assert 0 <= p.sample < len(plan.samples)
    # most real presets use modulation (NOTICE.md), and the slots that were left out say why
    assert sum(len(p.preset.modulation) > 0 for p in plan.presets) > n_files // 2
    assert all(": " in r for p in plan.presets for r in p.preset.skipped_modulations)


def test_custom_wavetables_are_added_to_the_catalog_once(shared_plan, catalog):
    plan = shared_plan
    ext = plan.catalog
    assert ext.hashes[: len(catalog)] == catalog.hashes  # the base comes first, unchanged
    added = list(ext)[len(catalog) :]
    assert len(added) == plan.custom_tables > 0
    assert all(e.custom and e.count == 1 for e in added)
    assert len(set(ext.hashes)) == len(ext)
    assert plan.registry["osc_1_wavetable"].n_options == len(ext)
    cols = [plan.registry.locate(f"osc_{o}_wavetable")[1] for o in (1, 2, 3)]
    used = {int(ip.preset.categorical[c]) for ip in plan.presets for c in cols}
    assert set(range(len(catalog), len(ext))) <= used  # every added table is some preset's
    flagged = sum(len(ip.preset.custom_wavetables) for ip in plan.presets)
    assert flagged == sum(ext[int(ip.preset.categorical[c])].custom for ip in plan.presets for c in cols)
    assert len(catalog) == len(type(catalog).builtin())  # the caller's catalog is not changed


def test_ingestion_is_deterministic(shared_plan, presets_dir, catalog, tmp_path):
    # the same files through other paths (two folders, given in reverse order) give the same plan
    sub = sorted(d for d in presets_dir.iterdir() if d.is_dir())
    again = ingest(list(reversed(sub)), catalog, factory=[])
    assert again.catalog.hashes == shared_plan.catalog.hashes
    a = {Path(p.preset.file).relative_to(presets_dir.name).as_posix(): p.preset for p in shared_plan.presets}
    b = {p.preset.file: p.preset for p in again.presets}
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].continuous, b[k].continuous)
        assert np.array_equal(a[k].categorical, b[k].categorical)
        assert np.array_equal(a[k].modulation, b[k].modulation)
    assert again.lfo_shapes[: len(LFO_SHAPES)] == list(LFO_SHAPES)


def test_a_bank_and_bad_files_in_one_run(presets_dir, catalog, tmp_path):
    a, b = sorted(presets_dir.rglob("*.vital"))[:2]
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(a, folder / "sub" / a.name)
    with zipfile.ZipFile(folder / "Pack.vitalbank", "w") as z:
        z.write(a, f"Pack/Presets/{a.name}")
        z.write(b, f"Pack/Presets/Leads/{b.name}")
        z.writestr("Pack/Presets/oops.vital", "{")
    (folder / "text.vital").write_text("hello")
    (folder / "list.vital").write_text("[]")
    (folder / "future.vital").write_text(json.dumps({"settings": {}, "synth_version": "100000.0.0"}))
    (folder / "broken.vitalbank").write_bytes(b"not a zip")
    bad_table = init_preset()
    bad_table["settings"]["wavetables"][0] = {"name": "no groups"}
    (folder / "badtable.vital").write_text(json.dumps(bad_table))
    (folder / "readme.txt").write_text("not a preset: not scanned")

    plan = ingest([folder], catalog, factory=[])
    names = sorted(p.preset.name for p in plan.presets)
    assert names == sorted([a.stem, f"Pack/{a.stem}", f"Pack/{b.stem}"])
    reasons = dict(plan.failures)
    assert len(reasons) == 6 and all("\n" not in r for r in reasons.values())
    assert "not JSON" in reasons["mixed/text.vital"]
    assert "no settings" in reasons["mixed/list.vital"]
    assert "newer than this synth engine" in reasons["mixed/future.vital"]
    assert "not a readable .vitalbank zip" in reasons["mixed/broken.vitalbank"]
    assert "not JSON" in reasons["mixed/Pack.vitalbank!Pack/Presets/oops.vital"]
    assert "osc 1 wavetable" in reasons["mixed/badtable.vital"]
    # the same preset alone and inside the bank gives the same vectors
    by_name = {p.preset.name: p.preset for p in plan.presets}
    assert np.array_equal(by_name[a.stem].continuous, by_name[f"Pack/{a.stem}"].continuous)
    assert sum(plan.failure_reasons().values()) == 6


def write_preset(path: Path, **settings) -> None:
    p = init_preset()
    p["settings"].update(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(p))


def test_factory_folders_give_source_factory(tmp_path, catalog):
    factory = tmp_path / "vital" / "Factory"
    write_preset(factory / "Presets" / "Bass" / "Stock Bass.vital", filter_1_cutoff=50.0)
    write_preset(tmp_path / "mine" / "My Bass.vital", filter_1_cutoff=70.0)
    plan = ingest([tmp_path / "mine", factory], catalog, factory=[factory])
    assert {p.preset.name: p.source for p in plan.presets} == {"Stock Bass": FACTORY, "My Bass": COMMUNITY}


def test_custom_tables_shared_by_presets_are_added_once(tmp_path, catalog):
    table = make_wavetable("Square-ish", [(0, np.sign(np.sin(np.linspace(0, 6.28, 2048))) * 0.9)])
    for i in range(3):
        p = init_preset()
        p["settings"]["wavetables"][i] = dict(table, name=f"copy {i}")  # same content, other names
        (tmp_path / f"p{i}.vital").write_text(json.dumps(p))
    plan = ingest([tmp_path], catalog, factory=[])
    assert plan.custom_tables == 1 and len(plan.catalog) == len(catalog) + 1
    assert plan.catalog[-1].hash == wavetable_hash(table) and plan.catalog[-1].name == "copy 0"
    assert [p.preset.custom_wavetables for p in plan.presets] == [[1], [2], [3]]


def test_scan_errors_are_one_clear_line(tmp_path):
    empty = tmp_path / "empty"
    (empty / "deeper").mkdir(parents=True)
    (empty / "deeper" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"^no presets in .*empty"):
        scan([empty])
    with pytest.raises(ValueError, match="no such file or folder"):
        scan([tmp_path / "missing"])
    with pytest.raises(ValueError, match="is not a .vital or .vitalbank file"):
        scan([empty / "deeper" / "notes.txt"])
    with pytest.raises(ValueError, match="no preset folders given"):
        scan([])
    (tmp_path / "one.vital").write_text("{}")
    found = scan([tmp_path, tmp_path / "one.vital"])  # given twice: once
    assert [s.file for s in found] == [f"{tmp_path.name}/one.vital"]
    with pytest.raises(ValueError, match="no presets in"):
        ingest([tmp_path / "one.vital", empty])
