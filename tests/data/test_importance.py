"""compute-weights: perturbation importance with the real synth, real worker processes, real HDF5."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.processes import cli_in_process
from vitalmatch.data.generate import GenerateConfig, generate
from vitalmatch.data.importance import (
    FAULTS_ENV,
    SETTINGS_ATTR,
    WEIGHTS_ATTR,
    ImportanceConfig,
    compute_weights,
    stored_weights,
)
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import StorageConfig
from vitalmatch.data.writer import DatasetWriter
from vitalmatch.synth.params import ParamRegistry, reproducibility_pins
from vitalmatch.synth.render import RenderConfig, RenderEngine

RENDER = RenderConfig(sample_rate=16000, notes=(48, 60), note_duration_s=0.2, render_duration_s=0.3)

#: Raw values of the hand-made presets (on top of the init preset: osc 1 on, osc 2 and filter 1
#: off, one unison voice, sustain at 1). Varied across presets, so that compute-weights perturbs
#: them: volume and osc_1_level (audible); env_1_decay (inaudible: with sustain at its maximum the
#: envelope never decays); filter_1_cutoff (filter off) and osc_1_unison_detune (one voice):
#: active in no preset.
HAND = [
    {
        "volume": 5000.0,
        "osc_1_level": 0.6,
        "env_1_decay": 0.5,
        "filter_1_cutoff": 40.0,
        "osc_1_unison_detune": 2,
    },
    {
        "volume": 6000.0,
        "osc_1_level": 0.8,
        "env_1_decay": 1.5,
        "filter_1_cutoff": 80.0,
        "osc_1_unison_detune": 5,
    },
    {
        "volume": 4500.0,
        "osc_1_level": 0.7,
        "env_1_decay": 1.0,
        "filter_1_cutoff": 100.0,
        "osc_1_unison_detune": 7,
    },
    {
        "volume": 5500.0,
        "osc_1_level": 0.9,
        "env_1_decay": 2.0,
        "filter_1_cutoff": 60.0,
        "osc_1_unison_detune": 1,
    },
]


@pytest.fixture(scope="module")
def hand(tmp_path_factory, registry, catalog):
    """4 hand-made Tier-1 presets x 2 notes, rendered by the real engine, written by the writer."""
    path = tmp_path_factory.mktemp("imp") / "hand.h5"
    engine = RenderEngine(registry, [e.table for e in catalog], RENDER)
    attrs = {
        "tier": 1,
        "seed": 0,
        "sample_rate": RENDER.sample_rate,
        "render_duration_s": RENDER.render_duration_s,
        "note_duration_s": RENDER.note_duration_s,
        "velocity": RENDER.velocity,
        "notes": list(RENDER.notes),
        "continuous_names": registry.continuous_names,
        "categorical_names": registry.categorical_names,
        "registry_json": registry.to_json(),
        "wavetable_names": list(catalog.names),
        "wavetable_hashes": list(catalog.hashes),
    }
    with DatasetWriter.create(
        path,
        audio_length=RENDER.n_samples,
        sample_rate=RENDER.sample_rate,
        n_continuous=len(registry.continuous),
        n_categorical=len(registry.categorical),
        storage=StorageConfig(channels="mono"),
        attrs=attrs,
    ) as w:
        w.write_blob("wavetables", catalog.to_json().encode())
        for i, values in enumerate(HAND):
            cont, cat = registry.from_raw({**reproducibility_pins(), **values})
            audio = engine.render(cont, cat)
            w.append(
                audio=audio,
                continuous=np.tile(cont, (2, 1)),
                categorical=np.tile(cat, (2, 1)),
                midi_note=list(RENDER.notes),
                source=["synthetic"] * 2,
                tier=[1, 1],
                preset_hash=[f"{i:064x}"] * 2,
                preset_name=[f"hand {i}"] * 2,
                split=["val" if i == 3 else "train"] * 2,
                preset_index=[i, i],
            )
        w.commit({"kept_presets": len(HAND)})
    return path


@pytest.fixture(scope="module")
def hand_weights(hand, tmp_path_factory):
    """The hand dataset with weights computed by the CLI (a copy: the fixture stays clean)."""
    path = tmp_path_factory.mktemp("imp") / "weighted.h5"
    shutil.copy(hand, path)
    r = subprocess.run(
        [sys.executable, "-m", "vitalmatch", "compute-weights", str(path), "--n-base", "4", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return path, r.stdout


def _copy(src: Path, tmp_path: Path, name: str = "copy.h5") -> Path:
    dst = tmp_path / name
    shutil.copy(src, dst)
    return dst


def test_weights_are_stored_finite_mean_one(hand_weights, registry):
    path, out = hand_weights
    assert "wrote importance weights of" in out
    weights, settings = stored_weights(path)
    assert list(weights) == registry.continuous_names
    w = np.array(list(weights.values()))
    assert np.isfinite(w).all() and (w > 0).all()
    assert w.mean() == pytest.approx(1.0, abs=1e-9)
    assert settings["metric"] == "multiscale_mel_l1" and settings["n_base_used"] == 4
    assert settings["failed"] == 0 and settings["delta"] == 0.1
    # learn.data reads them as they are stored (mean 1 over the columns a model predicts)
    with DatasetReader(path) as reader:
        assert json.loads(reader.attrs[WEIGHTS_ATTR]) == weights
        assert len(reader) == 2 * len(HAND)  # the rows are still there


def test_audible_parameters_outrank_an_inaudible_one(hand_weights):
    weights, settings = stored_weights(hand_weights[0])
    active = settings["active_bases"]
    assert active["volume"] == active["osc_1_level"] == active["env_1_decay"] == 4
    assert weights["volume"] > 10 * weights["env_1_decay"]
    assert weights["osc_1_level"] > 10 * weights["env_1_decay"]
    # the inaudible one is at the floor (min_weight of the measured mean): the least of all
    assert weights["env_1_decay"] == min(weights[n] for n, c in active.items() if c)


def test_never_active_parameters_get_the_median(hand_weights, registry):
    weights, settings = stored_weights(hand_weights[0])
    active = settings["active_bases"]
    assert active["filter_1_cutoff"] == active["osc_1_unison_detune"] == 0
    assert settings["not_measured"] == ["filter_1_cutoff", "osc_1_unison_detune"]
    median = float(np.median([weights[n] for n, c in active.items() if c]))
    assert weights["filter_1_cutoff"] == pytest.approx(median)
    assert weights["osc_1_unison_detune"] == pytest.approx(median)
    # columns that were not perturbed (constant in the file, outside the tier) get it too
    assert weights["reverb_dry_wet"] == pytest.approx(median)


def test_same_seed_same_weights_whatever_the_workers(hand_weights, tmp_path):
    path = _copy(hand_weights[0], tmp_path)
    config = ImportanceConfig(data=path, n_base=4, workers=2, chunk=2, overwrite=True, progress=False)
    again = compute_weights(config)
    assert again.weights == stored_weights(hand_weights[0])[0]  # bit for bit


def test_train_uses_the_weights_without_the_uniform_warning(
    hand, hand_weights, tiny_config, tmp_path, capsys
):
    from vitalmatch.learn.train import fit

    fit(tiny_config(hand, tmp_path / "plain"))
    assert "no importance weights" in capsys.readouterr().out
    fit(tiny_config(hand_weights[0], tmp_path / "weighted"))
    assert "no importance weights" not in capsys.readouterr().out
    start = json.loads((tmp_path / "weighted" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["importance_weights"] is True


def test_a_crashed_worker_costs_its_renders_not_the_run(hand, tmp_path, monkeypatch):
    path = _copy(hand, tmp_path)
    monkeypatch.setenv(FAULTS_ENV, "crash:0")
    result = compute_weights(ImportanceConfig(data=path, n_base=4, progress=False))
    assert result.failures.get("crash", 0) > 0 and result.failed == result.failures["crash"]
    assert result.n_base == 4 and stored_weights(path) is not None
    assert result.active_bases["volume"] == 3  # base 0 was lost


def test_a_generated_dataset_is_measured_as_it_was_rendered(tmp_path):
    """A sampled Tier-1 file: its render settings, its varying Tier-1 columns, one row per base."""
    from vitalmatch.data.importance import _plan

    path = tmp_path / "gen.h5"
    render = RenderConfig(
        sample_rate=16000, notes=(48, 60), note_duration_s=0.2, render_duration_s=0.3, bpm=90
    )
    generate(GenerateConfig(output=path, n_presets=3, render=render, workers=2, progress=False, seed=5))
    plan = _plan(path, ImportanceConfig(data=path, n_base=2, seed=1))
    assert plan.render == RenderConfig(**{**render.__dict__, "notes": (48, 60)})
    with DatasetReader(path) as ds:
        cont, notes = ds.continuous(slice(None)), ds.metadata("midi_note")
        reg = ParamRegistry.from_json(ds.attrs["registry_json"])
    varying = {s.name for j, s in enumerate(reg.continuous) if s.tier == 1 and np.ptp(cont[:, j]) > 0}
    assert {reg.continuous[j].name for j in plan.perturbed} == varying and "volume" in varying
    for c, note in zip(plan.cont, plan.notes, strict=True):  # each base is a stored row
        assert ((cont == c).all(axis=1) & (notes == note)).any()
    assert len({bytes(c) for c in plan.cont}) == 2  # two distinct presets
    # inactive (here: unison details with one voice, ...) and unmoved sides are not rendered
    assert np.isnan(plan.moved[~plan.active]).all() and (~np.isnan(plan.moved)).sum() > 20


def test_existing_weights_and_another_tier_are_refused(hand_weights, capsys):
    path = hand_weights[0]
    weights = stored_weights(path)[0]
    r = cli_in_process(capsys, "compute-weights", path, "--n-base", "1")
    assert r.returncode == 1 and "already has importance weights" in r.stderr and "--overwrite" in r.stderr
    r = cli_in_process(capsys, "compute-weights", path, "--tier", "2", "--overwrite")
    assert r.returncode == 1 and r.stderr.strip() == f"error: {path} is a Tier-1 dataset, not Tier 2 (--tier)"
    assert stored_weights(path)[0] == weights


@pytest.mark.parametrize(
    "case",
    ["missing", "folder", "not_hdf5", "foreign_hdf5", "empty", "n_base", "delta", "being_written"],
)
def test_bad_input_is_one_line(case, hand, tmp_path, capsys, registry):
    import h5py

    path = tmp_path / "data.h5"
    extra: list[str] = []
    writer = None
    if case == "folder":
        path.mkdir()
    elif case == "not_hdf5":
        path.write_text("not a dataset")
    elif case == "foreign_hdf5":
        with h5py.File(path, "w") as f:
            f["x"] = np.zeros(3)
    elif case == "empty":
        DatasetWriter.create(
            path,
            audio_length=100,
            sample_rate=16000,
            n_continuous=len(registry.continuous),
            n_categorical=len(registry.categorical),
            storage=StorageConfig(),
            attrs={"tier": 1, "registry_json": registry.to_json()},
        ).close()
    elif case in ("n_base", "delta", "being_written"):
        shutil.copy(hand, path)
        extra = {"n_base": ["--n-base", "0"], "delta": ["--delta", "1.5"], "being_written": []}[case]
        if case == "being_written":
            writer, _ = DatasetWriter.resume(path)  # as a running generate holds it
    before = path.read_bytes() if path.is_file() else None
    try:
        r = cli_in_process(capsys, "compute-weights", path, *extra, "--no-progress")
    finally:
        if writer is not None:
            writer.close()
    expected = {
        "missing": "does not exist",
        "folder": "is a folder",
        "not_hdf5": "not an HDF5 file",
        "foreign_hdf5": "not a vitalmatch dataset",
        "empty": "has no rows",
        "n_base": "--n-base must be an integer >= 1",
        "delta": "--delta must be in (0, 1]",
        "being_written": "is being written by another process",
    }[case]
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    if before is not None:
        assert path.read_bytes() == before  # nothing written
    assert "Traceback" not in r.stderr


_KILL = """
import os, signal, sys
from vitalmatch.data.writer import DatasetWriter
w, progress = DatasetWriter.resume(sys.argv[1])
w.set_attr("importance_weights", '{"volume": 1.0}')
if sys.argv[2] == "after":
    w.commit(progress)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_around_the_commit_keeps_the_rows(hand, tmp_path, when):
    """The attribute write is durable at the commit and never damages the rows (SIGKILL)."""
    path = _copy(hand, tmp_path)
    with DatasetReader(hand) as ds:
        audio, cont = ds.audio(slice(None)), ds.continuous(slice(None))
    r = subprocess.run([sys.executable, "-c", _KILL, str(path), when], capture_output=True, timeout=120)
    assert r.returncode == -9, r.stderr
    with DatasetReader(path) as ds:  # reads the last commit, journal or not
        assert (WEIGHTS_ATTR in ds.attrs) == (when == "after")
        np.testing.assert_array_equal(ds.audio(slice(None)), audio)
        np.testing.assert_array_equal(ds.continuous(slice(None)), cont)
    writer, _ = DatasetWriter.resume(path)  # and it reopens for writing, repaired
    assert writer.n_committed == len(audio)
    writer.close()
    assert SETTINGS_ATTR not in DatasetReader(path).attrs


def test_a_tier3_dataset_is_measured_with_its_modulations(tmp_path):
    """Tier 3: each base renders with its row's connections and LFO shapes (the base render equals
    the stored audio), and an LFO's rate is perturbed only where the LFO modulates something."""
    from vitalmatch.data.importance import _init_worker, _perturb_task, _plan, _tasks

    path = tmp_path / "t3.h5"
    render = RenderConfig(sample_rate=16000, notes=(60,), note_duration_s=0.2, render_duration_s=0.3)
    storage = StorageConfig(audio_format="float32", channels="mono")
    generate(
        GenerateConfig(
            output=path, n_presets=4, tier=3, render=render, storage=storage, workers=1, progress=False
        )
    )
    plan = _plan(path, ImportanceConfig(data=path, n_base=4, seed=0))
    assert len(plan.extras) == len(plan.cont) and any(e.modulations for e in plan.extras)
    names = [plan.registry.continuous[j].name for j in plan.perturbed]
    measured_lfo = 0
    for b, extras in enumerate(plan.extras):
        sources = {c.source for c in extras.modulations}
        for lfo in range(1, 9):
            if f"lfo_{lfo}_frequency" in names:
                active = bool(plan.active[b, names.index(f"lfo_{lfo}_frequency")])
                assert not active or f"lfo_{lfo}" in sources  # an LFO counts only through a connection
                measured_lfo += active
    assert measured_lfo > 0
    # the base render of a worker task is the stored row (mono float32 storage)
    _init_worker(plan.registry.to_json(), plan.tables, plan.render)
    task, b, _ = next(iter(_tasks(plan, 4)))
    ref, _, _ = _perturb_task(task)
    with DatasetReader(path) as ds:
        stored = ds.audio(slice(None))[:, 0]
    assert any(np.array_equal(ref, row) for row in stored)
