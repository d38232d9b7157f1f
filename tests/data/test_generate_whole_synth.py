"""Generation of the whole synth on the real synth: Tier 2 and 3 (modulation stored sparse), resume,
and re-rendering a stored row reproducing its stored audio."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.processes import run_cli
from vitalmatch.data.generate import GenerateConfig, generate
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import StorageConfig
from vitalmatch.synth.modulation import decode
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.render import RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import WavetableCatalog

FAST = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=0.3, render_duration_s=0.6)
EXACT = StorageConfig(audio_format="float32", channels="stereo")


def _config(path, n: int, tier: int, **kw) -> GenerateConfig:
    kw.setdefault("workers", 2)
    kw.setdefault("storage", EXACT)
    return GenerateConfig(
        output=path, n_presets=n, tier=tier, render=FAST, progress=False, commit_every=3, **kw
    )


def _rows(path) -> dict:
    with DatasetReader(path) as ds:
        return {
            "audio": ds.audio(slice(None)),
            "continuous": ds.continuous(slice(None)),
            "categorical": ds.categorical(slice(None)),
            "modulation": ds.modulation(slice(None)),
            "lfo_shape": ds.lfo_shape(slice(None)),
            "preset_hash": ds.metadata("preset_hash"),
        }


@pytest.fixture(scope="module")
def tier3(tmp_path_factory):
    path = tmp_path_factory.mktemp("t3") / "t3.h5"
    summary = generate(_config(path, 8, 3))
    return path, summary


_ENGINE = None


def _init_engine(path: str) -> None:
    global _ENGINE
    with DatasetReader(path) as ds:
        reg = ParamRegistry.from_json(ds.attrs["registry_json"])
        catalog = WavetableCatalog.from_json_data(json.loads(ds.blob("wavetables").decode()))
    _ENGINE = RenderEngine(reg, [e.table for e in catalog], FAST)


def _rerender(task: tuple[str, int]) -> np.ndarray:
    path, i = task
    with DatasetReader(path) as ds:
        cont, cat, note, extras = (
            ds.continuous(i),
            ds.categorical(i),
            int(ds.metadata("midi_note", i)),
            ds.preset_extras(i),
        )
    return _ENGINE.render(cont, cat, (note,), extras)[0]


def test_tier3_stores_sparse_modulation_that_rerenders_exactly(tier3):
    """Each row's sparse connections, LFO shapes and vectors, rendered again by a new engine in a
    fresh worker process (as generate's workers are), give the stored audio bit for bit (float32
    storage): the labels are what the synth played. (An engine built in a process that has
    already built or played other synths may differ on presets using the random sources:
    docs/vita-facts.md §6.)"""
    path, summary = tier3
    assert summary.kept_presets == 8
    with DatasetReader(path) as ds:
        assert ds.attrs["tier"] == 3 and ds.has_modulation
        assert len(ds.attrs["modulation_sources"]) == 32 and len(ds.attrs["modulation_destinations"]) == 428
        mods = ds.modulation(slice(None))
        counts = [len(m) for m in mods]
        assert max(counts) > 0 and all(c <= 64 for c in counts)
        for m in mods:
            decode(m)  # valid names and values
        stored = ds.audio(slice(None))
        # the dense view agrees with the sparse rows
        dense = ds.modulation_dense(slice(None))
        assert dense.shape == (len(ds), 4, 32, 428)
        assert [int(np.count_nonzero(d[0])) for d in dense] == [int(np.count_nonzero(m[:, 3])) for m in mods]
    with WorkerPool(1, initializer=_init_engine, initargs=(str(path),)) as pool:
        again = [r.value for r in pool.map(_rerender, [(str(path), i) for i in range(len(stored))])]
    for i, a in enumerate(again):
        np.testing.assert_array_equal(a, stored[i], err_msg=f"row {i}")


def test_tier3_resume_gives_the_same_rows(tier3, tmp_path):
    """A run of 4 presets resumed to 8 stores exactly what the run of 8 stored."""
    path, _ = tier3
    part = tmp_path / "part.h5"
    generate(_config(part, 4, 3, workers=1))
    generate(_config(part, 8, 3, resume=True))
    a, b = _rows(path), _rows(part)
    for k in ("audio", "continuous", "categorical", "lfo_shape", "preset_hash"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert all(np.array_equal(x, y) for x, y in zip(a["modulation"], b["modulation"], strict=True))


def test_tier2_rows_carry_only_fixed_routings(tmp_path):
    from vitalmatch.data.sampling import FIXED_ROUTINGS

    path = tmp_path / "t2.h5"
    summary = generate(_config(path, 6, 2))
    assert summary.kept_presets == 6
    fixed = set(FIXED_ROUTINGS)
    with DatasetReader(path) as ds:
        assert ds.attrs["tier"] == 2
        for m in ds.modulation(slice(None)):
            assert {(c.source, c.destination) for c in decode(m)} <= fixed
        assert not ds.lfo_shape(slice(None)).any()  # Tier 2 keeps the init LFO shapes


def test_inspect_reports_the_modulation(tier3):
    path, _ = tier3
    res = run_cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert "tier 3" in res.stdout and "connections per row" in res.stdout


# ------------------------------------------------------------------ real presets (--presets)
def test_generate_ingests_real_presets_and_mixes_sampled_ones(presets_dir, tmp_path):
    """8 real presets (abstractionmage) plus 2 sampled: each ingested row re-renders to its stored
    audio in a fresh worker, with its source, name, file and modulation; a broken file is listed
    and skipped, never stopping the run."""
    folder = presets_dir / "abstractionmage"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "not json.vital").write_text("{ this is not json")
    path = tmp_path / "mixed.h5"
    summary = generate(_config(path, 2, 1, presets=(folder, broken)))
    with DatasetReader(path) as ds:
        sources = ds.metadata("source")
        files = ds.preset_file()
        assert set(sources) == {"community", "synthetic"}
        ingested = [i for i in range(len(ds)) if sources[i] == "community"]
        assert len({files[i] for i in ingested}) >= 6  # most of the 8 render audibly
        assert all(files[i].endswith(".vital") for i in ingested) and not any(files[sources == "synthetic"])
        assert sum(len(ds.modulation(i)) > 0 for i in ingested) >= 3  # real presets hold modulations
        progress = ds.progress()
        assert any("not json" in f.get("file", "") for f in progress["failed"])
        assert ds.attrs["ingest_hash"]
        stored = ds.audio(ingested)
    assert summary.kept_presets == len(ingested) + 2
    with WorkerPool(1, initializer=_init_engine, initargs=(str(path),)) as pool:
        again = [r.value for r in pool.map(_rerender, [(str(path), i) for i in ingested])]
    for i, a in enumerate(again):
        np.testing.assert_array_equal(a, stored[i], err_msg=f"ingested row {ingested[i]}")


def test_generate_presets_bad_input_gives_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("generate", "--presets", str(empty), "-o", str(tmp_path / "x.h5"), "--no-progress")
    assert res.returncode != 0 and "no presets in" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.h5").exists()
    res = run_cli("generate", "--presets", str(tmp_path / "missing"), "-o", str(tmp_path / "x.h5"))
    assert res.returncode != 0 and "does not exist" in res.stderr
    res = run_cli("generate", "-o", str(tmp_path / "x.h5"))
    assert res.returncode != 0 and "-n" in res.stderr
