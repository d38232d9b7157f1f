"""End-to-end generation with the real synth, real worker processes and real HDF5 files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.pace import slowdown
from tests.processes import default_sigint
from vitalmatch.data.generate import FAULTS_ENV, GenerateConfig, generate
from vitalmatch.data.storage import DatasetReader, StorageConfig
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import WavetableCatalog

FAST = RenderConfig(sample_rate=22050, notes=(48, 72), note_duration_s=0.25, render_duration_s=0.5)
FAST_ARGS = [
    "--sample-rate",
    "22050",
    "--notes",
    "48,72",
    "--note-duration",
    "0.25",
    "--render-duration",
    "0.5",
]


def _config(path: Path, n: int, **kw) -> GenerateConfig:
    kw.setdefault("workers", 2)
    return GenerateConfig(output=path, n_presets=n, render=FAST, progress=False, commit_every=4, **kw)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with DatasetReader(path) as ds:
        out = {
            "audio": ds.audio(slice(None)),
            "continuous": ds.continuous(slice(None)),
            "categorical": ds.categorical(slice(None)),
        }
        for name in ("midi_note", "preset_hash", "split", "preset_index", "preset_name", "source"):
            out[name] = ds.metadata(name)
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "small.h5"
    summary = generate(_config(path, 12, storage=StorageConfig(audio_format="float32", channels="stereo")))
    return path, summary


def test_file_contents(small):
    path, summary = small
    with DatasetReader(path) as ds:
        attrs = ds.attrs
        assert summary.kept_presets == 12 and len(ds) == summary.rows >= 12
        assert attrs["tier"] == 1 and attrs["seed"] == 0 and list(attrs["notes"]) == [48, 72]
        reg = ParamRegistry.from_json(attrs["registry_json"])
        assert list(attrs["continuous_names"]) == reg.continuous_names
        assert len(attrs["wavetable_hashes"]) == len(attrs["wavetable_names"]) > 1
        audio = ds.audio(slice(None))
        assert audio.shape == (len(ds), 2, FAST.n_samples)
        assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
        cont = ds.continuous(slice(None))
        assert cont.min() >= 0 and cont.max() <= 1
        hashes, splits = ds.metadata("preset_hash"), ds.metadata("split")
        for h in set(hashes):  # all notes of a preset in one split
            assert len(set(splits[hashes == h])) == 1
        assert set(ds.metadata("midi_note")) <= {48, 72}
        progress = ds.progress()
        assert progress["kept_presets"] == 12 and progress["next_preset"] >= 12


def test_rerendering_stored_params_reproduces_stored_audio(small):
    path, _ = small
    with DatasetReader(path) as ds:
        reg = ParamRegistry.from_json(ds.attrs["registry_json"])
        catalog = WavetableCatalog.from_json_data(json.loads(ds.blob("wavetables")))
        assert catalog.hashes == list(ds.attrs["wavetable_hashes"]) == WavetableCatalog.builtin().hashes
        engine = RenderEngine(reg, [e.table for e in catalog], FAST)
        notes = [int(n) for n in ds.attrs["notes"]]
        for i in (0, len(ds) // 2, len(ds) - 1):
            note = int(ds.metadata("midi_note")[i])
            # all the dataset's notes, as the generator renders them: bit for bit
            audio = engine.render(ds.continuous(i), ds.categorical(i))[notes.index(note)]
            np.testing.assert_array_equal(audio, ds.audio(i))
            # the one note on its own, too
            alone = engine.render(ds.continuous(i), ds.categorical(i), notes=[note])[0]
            np.testing.assert_array_equal(alone, ds.audio(i))


def test_one_and_two_workers_give_the_same_file(small, tmp_path):
    path, _ = small
    one = tmp_path / "one.h5"
    generate(_config(one, 12, workers=1, storage=StorageConfig(audio_format="float32", channels="stereo")))
    _assert_same(_arrays(one), _arrays(path))


def test_crashing_and_hanging_workers_do_not_stop_the_run(tmp_path, monkeypatch, small):
    monkeypatch.setenv(FAULTS_ENV, "crash:1,4;hang:2")
    path = tmp_path / "faults.h5"
    # the hang costs the whole time-out; the healthy presets must stay well inside it, even
    # beside two replacement workers starting on a loaded machine
    timeout = 4.0 * slowdown()
    storage = StorageConfig(audio_format="float32", channels="stereo")
    summary = generate(_config(path, 8, task_timeout_s=timeout, storage=storage))
    assert summary.kept_presets == 8 and summary.failed == 3
    with DatasetReader(path) as ds:
        failed = ds.progress()["failed"]
        assert {f["preset"] for f in failed} == {1, 2, 4}
        assert any("SIGSEGV" in f["reason"] for f in failed) and any(
            "timed out" in f["reason"] for f in failed
        )
        kept = set(ds.metadata("preset_index").tolist())
        assert not kept & {1, 2, 4}
    # the surviving presets are rendered exactly as in the run without faults
    clean = _arrays(small[0])
    faulty = _arrays(path)
    common = kept & set(clean["preset_index"].tolist())
    assert len(common) >= 5
    for idx in common:
        np.testing.assert_array_equal(
            faulty["audio"][faulty["preset_index"] == idx], clean["audio"][clean["preset_index"] == idx]
        )


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vitalmatch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kw,
    )


def test_resume_after_kill_gives_the_same_dataset(tmp_path):
    args = [
        "generate",
        "--tier",
        "1",
        "-n",
        "12",
        "--workers",
        "2",
        "--seed",
        "5",
        "--commit-every",
        "2",
        "--no-progress",
        *FAST_ARGS,
    ]
    ref = tmp_path / "ref.h5"
    assert _cli(*args, "-o", str(ref)).returncode == 0
    killed = tmp_path / "killed.h5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalmatch", *args, "-o", str(killed)], start_new_session=True
    )
    _stop_when_committed(killed, proc, signal.SIGKILL)
    with DatasetReader(killed) as ds:
        done = ds.progress()["kept_presets"]
    assert 0 < done < 12, "kill came too late to test resume"
    # without --resume or --overwrite the file is refused, and left as it is
    refused = _cli(*args, "-o", str(killed))
    assert refused.returncode == 1 and "--resume" in refused.stderr and "Traceback" not in refused.stderr
    # resuming with other settings is refused
    other = _cli(*[a if a != "5" else "6" for a in args], "-o", str(killed), "--resume")
    assert other.returncode == 1 and "seed" in other.stderr
    resumed = _cli(*args, "-o", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _assert_same(_arrays(killed), _arrays(ref))

    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it): exit 130 with a one-line
    # message, everything handled so far saved; resuming gives the same dataset again
    interrupted = tmp_path / "interrupted.h5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalmatch", *args, "-o", str(interrupted)],
        start_new_session=True,
        preexec_fn=default_sigint,
        stderr=subprocess.PIPE,
        text=True,
    )
    _stop_when_committed(interrupted, proc, signal.SIGINT)
    stderr = proc.stderr.read()
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    with DatasetReader(interrupted) as ds:
        progress = ds.progress()
        assert 0 < progress["kept_presets"] < 12
        assert len(ds) == progress["rows"]
    assert _cli(*args, "-o", str(interrupted), "--resume").returncode == 0
    _assert_same(_arrays(interrupted), _arrays(ref))


def _stop_when_committed(path: Path, proc: subprocess.Popen, sig: int, presets: int = 2) -> None:
    """Wait until ``presets`` presets are committed in ``path`` (the first commit: the whole run
    takes only seconds, a later mark races its end), then send ``sig`` to the group."""
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            with DatasetReader(path) as ds:
                if ds.progress().get("kept_presets", 0) >= presets:
                    break
        except (ValueError, OSError):
            pass
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tier", "7"], "tier"),
        (["--tier", "3"], "not implemented"),
        (["-n", "0"], "-n"),
        (["-n", "-4"], "-n"),
        (["--workers", "0"], "--workers"),
        (["--notes", "60,abc"], "--notes"),
        (["--split", "0.5,0.6,0.1"], "fractions"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, extra, message):
    r = _cli("generate", "-n", "2", "-o", str(tmp_path / "x.h5"), *extra)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.h5").exists()


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = _cli("generate", "-n", "2", "-o", str(blocker / "x.h5"), *FAST_ARGS)
    assert r.returncode == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_existing_file_is_not_touched(tmp_path):
    target = tmp_path / "exists.h5"
    target.write_bytes(b"precious data")
    r = _cli("generate", "-n", "2", "-o", str(target), *FAST_ARGS)
    assert r.returncode == 1 and "--overwrite" in r.stderr
    assert target.read_bytes() == b"precious data"


def test_reuse_synth_is_recorded_and_resume_must_match(tmp_path):
    """``--reuse-synth`` gives the same presets (parameters) with slightly different audio; the
    choice is stored, and resuming with the other choice is refused."""
    args = ["generate", "-n", "4", "--workers", "1", "--no-progress", *FAST_ARGS]
    reused, fresh = tmp_path / "reused.h5", tmp_path / "new" / "fresh.h5"  # the CLI makes new/ itself
    assert _cli(*args, "--reuse-synth", "-o", str(reused)).returncode == 0
    assert _cli(*args, "-o", str(fresh)).returncode == 0
    with DatasetReader(reused) as ds:
        assert json.loads(ds.attrs["settings_json"])["render"]["reproducible"] is False
    a, b = _arrays(reused), _arrays(fresh)
    np.testing.assert_array_equal(a["continuous"], b["continuous"])
    assert np.abs(a["audio"] - b["audio"]).max() < 0.7  # same sounds; only the onsets may differ
    refused = _cli(*args, "-o", str(reused), "--resume")
    assert refused.returncode == 1 and "render" in refused.stderr


def test_notes_per_preset_picks_a_seeded_subset(tmp_path):
    path = tmp_path / "one_note.h5"
    three = RenderConfig(sample_rate=22050, notes=(48, 60, 72), note_duration_s=0.25, render_duration_s=0.5)
    config = GenerateConfig(
        output=path, n_presets=8, render=three, progress=False, workers=1, notes_per_preset=1
    )
    summary = generate(config)
    with DatasetReader(path) as ds:
        notes = ds.metadata("midi_note")
        index = ds.metadata("preset_index")
        assert summary.rows == len(ds) == 8  # one render per kept preset
        for i, n in zip(index, notes, strict=True):
            assert (int(n),) == config.notes_for(int(i))
        assert json.loads(ds.attrs["settings_json"])["notes_per_preset"] == 1
    # The subset depends on the seed and the preset index only, and it varies between presets.
    assert len({config.notes_for(i) for i in range(30)}) == 3
    with pytest.raises(ValueError, match="notes-per-preset must be 1..3"):
        GenerateConfig(output=path, n_presets=1, render=three, notes_per_preset=4).check()
    # Resuming with another subset size is refused.
    with pytest.raises(ValueError, match="notes_per_preset"):
        generate(
            GenerateConfig(output=path, n_presets=9, render=three, progress=False, workers=1, resume=True)
        )
