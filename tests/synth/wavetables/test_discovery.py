"""Discovery (vitalmatch.synth.wavetables.discovery): presets, ``.vitaltable`` and ``.vitalbank``
files, bad files, Vital's install folders.

The test on real presets reads the shared folder ``$VITALMATCH_SHARED/presets`` (env var, the folder
that holds ``presets/``), else ``<repo>/../shared/presets``, and skips when it is absent. Nothing
from that folder is copied anywhere.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.pace import slowdown
from tests.synth.wavetables.common import with_table
from vitalmatch.synth.render import inject_wavetable
from vitalmatch.synth.wavetables import (
    WavetableCatalog,
    discover,
    discovery,
    make_wavetable,
    vital_init_table,
    wavetable_frames,
    wavetable_hash,
)


def shared_presets() -> Path:
    root = os.environ.get("VITALMATCH_SHARED")
    base = Path(root) if root else Path(__file__).resolve().parents[3] / ".." / "shared"
    return (base / "presets").resolve()


def write_corrupt_files(folder: Path, init_preset: dict) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "broken.vital": json.dumps(init_preset)[:5000],  # truncated JSON
        "garbage.vital": b"\x00\xff\xfe binary \x80",  # not UTF-8
        "notes.vital": "just some words, not JSON",
        "list.vital": "[1, 2, 3]",  # JSON, but not a preset
        "deep.vital": "[" * 200_000,  # nesting deep enough to blow the parser's recursion limit
    }
    paths = []
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        paths.append(path)
    (folder / "readme.txt").write_text("ignored: not a Vital file")
    return paths


def test_discover_shared_presets(tmp_path, init_preset):
    presets = shared_presets()
    if not presets.is_dir():
        pytest.skip(f"shared presets not found at {presets}")
    n_files = sum(1 for _ in presets.rglob("*.vital"))
    bad = write_corrupt_files(tmp_path / "bad", init_preset)

    pace = slowdown()
    report = discover([presets, tmp_path / "bad"], include_install_dirs=False)
    print(report.summary())

    assert report.files_scanned == n_files + len(bad)
    assert report.presets_parsed == n_files
    assert sorted(path for path, _ in report.skipped) == sorted(str(p) for p in bad)
    assert all(reason and "\n" not in reason for _, reason in report.skipped)
    assert report.tables_found == 3 * n_files
    catalog = report.catalog
    assert report.unique_added == len(catalog) >= 50
    assert 0 < report.custom == sum(e.custom for e in catalog) < len(catalog)
    init = catalog[catalog.index_of(wavetable_hash(vital_init_table()))]
    assert not init.custom and init.count > 10
    assert sum(e.count for e in catalog) == report.tables_found
    assert all(e.origin.startswith("file:") for e in catalog)
    # Tables that are not plain Wave Sources (audio files, lines, modifiers) are kept as-is.
    assert any(wavetable_frames(e.table) is None for e in catalog)
    assert len(set(catalog.names)) == len(catalog)
    assert report.seconds < 20 * pace


def test_discover_survives_bad_files_without_shared(tmp_path, init_preset):
    bad = write_corrupt_files(tmp_path, init_preset)
    report = discover([tmp_path, tmp_path / "missing"], include_install_dirs=False)
    assert report.files_scanned == len(bad) and report.presets_parsed == 0 and len(report.catalog) == 0
    reasons = dict(report.skipped)
    assert reasons[str(tmp_path / "missing")] == "no such file or folder"
    assert reasons[str(tmp_path / "garbage.vital")] == "not UTF-8 text"
    assert reasons[str(tmp_path / "broken.vital")].startswith("invalid JSON")
    assert "not a Vital preset" in reasons[str(tmp_path / "list.vital")]
    assert reasons[str(tmp_path / "deep.vital")].startswith("invalid JSON")


def test_discover_empty_folder(tmp_path):
    report = discover([tmp_path], include_install_dirs=False)
    assert len(report.catalog) == 0 and report.skipped == []
    assert report.files_scanned == report.presets_parsed == report.tables_found == report.unique_added == 0
    assert "scanned 0 files" in report.summary()


def test_discover_install_dirs_tables_and_banks(tmp_path, init_preset, builtin):
    """Install content is stock (custom=False); .vitaltable and .vitalbank files are read too."""
    install, user = tmp_path / "Vital", tmp_path / "user"
    (install / "Factory" / "Wavetables").mkdir(parents=True)
    (install / "Factory" / "Wavetables" / "Factory Square.vitaltable").write_text(
        json.dumps(builtin["Square"].table)
    )
    with zipfile.ZipFile(install / "Pack.vitalbank", "w") as bank:
        bank.writestr(
            "Pack/Presets/Bell.vital", json.dumps(with_table(init_preset, builtin["FM Bell"].table, 2))
        )
        bank.writestr("Pack/Wavetables/Fold.vitaltable", json.dumps(builtin["Fold Sweep"].table))
        bank.writestr("Pack/Wavetables/broken.vitaltable", "{")

    rng = np.random.default_rng(1)
    mine = make_wavetable("Mine", [(0, rng.uniform(-1, 1, 2048)), (256, rng.uniform(-1, 1, 2048))])
    preset = with_table(init_preset, builtin["Square"].table, 1)
    inject_wavetable(preset, 3, mine)
    user.mkdir()
    (user / "song.vital").write_text(json.dumps(preset))
    (user / "Mine.vitaltable").write_text(json.dumps(mine))

    report = discover([user], install_dirs=[install, tmp_path / "not-there"])
    catalog = report.catalog
    assert report.roots == [str(install), str(user)]
    assert report.files_scanned == 4 and report.presets_parsed == 2 and report.table_files_parsed == 3
    assert [reason for _, reason in report.skipped] == [report.skipped[0][1]]
    assert report.skipped[0][0].endswith("Pack.vitalbank!Pack/Wavetables/broken.vitaltable")

    square = catalog[catalog.index_of(builtin["Square"].hash)]
    assert (square.name, square.origin, square.custom) == ("Factory Square", "vital-install", False)
    assert square.count == 2  # factory file + the user's preset
    fold = catalog[catalog.index_of(builtin["Fold Sweep"].hash)]
    assert fold.name == "Fold" and not fold.custom
    assert not catalog[catalog.index_of(builtin["FM Bell"].hash)].custom
    own = catalog[catalog.index_of(wavetable_hash(mine))]
    assert own.custom and own.origin == f"file:{user / 'Mine.vitaltable'}" and own.count == 2  # sorted walk
    assert report.custom == 1
    assert not catalog[catalog.index_of(wavetable_hash(vital_init_table()))].custom

    # Extending the built-in catalog: known tables are counted, not added again.
    extended = discover([user], include_install_dirs=False, catalog=WavetableCatalog.builtin())
    assert extended.unique_added == 1 and len(extended.catalog) == len(builtin) + 1
    assert extended.catalog["Square"].count == 2


def test_existing_install_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("APPDATA", str(tmp_path / "AppData"))
    monkeypatch.delenv("USERPROFILE", raising=False)
    (tmp_path / ".vital").mkdir()
    (tmp_path / "AppData" / "Vital").mkdir(parents=True)
    found = discovery.existing_install_dirs()
    assert tmp_path / ".vital" in found and tmp_path / "AppData" / "Vital" in found
    assert all(p.is_dir() for p in found)
    assert len(discovery.VITAL_INSTALL_DIRS) == 8
