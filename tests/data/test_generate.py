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
from tests.processes import cli_in_process, default_sigint, run_cli
from vitalmatch.data.generate import FAULTS_ENV, GenerateConfig, generate
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.schema import StorageConfig
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


def test_resume_after_kill_gives_the_same_dataset(tmp_path, capsys):
    """The runs that are killed or interrupted are child processes (real signals); the others call
    the CLI's ``main`` here (the same code path, without an interpreter start each)."""
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
    assert cli_in_process(capsys, *args, "-o", ref).returncode == 0
    killed = tmp_path / "killed.h5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalmatch", *args, "-o", str(killed)], start_new_session=True
    )
    _stop_when_committed(killed, proc, signal.SIGKILL)
    with DatasetReader(killed) as ds:
        done = ds.progress()["kept_presets"]
    assert 0 < done < 12, "kill came too late to test resume"
    # without --resume or --overwrite the file is refused, and left as it is
    refused = cli_in_process(capsys, *args, "-o", killed)
    assert refused.returncode == 1 and "--resume" in refused.stderr and "Traceback" not in refused.stderr
    # resuming with other settings is refused
    other = cli_in_process(capsys, *[a if a != "5" else "6" for a in args], "-o", killed, "--resume")
    assert other.returncode == 1 and "seed" in other.stderr
    resumed = cli_in_process(capsys, *args, "-o", killed, "--resume")
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
    assert cli_in_process(capsys, *args, "-o", interrupted, "--resume").returncode == 0
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
        (["--tier", "0"], "tier must be 1, 2 or 3"),
        (["-n", "0"], "-n"),
        (["-n", "-4"], "-n"),
        (["--workers", "0"], "--workers"),
        (["--notes", "60,abc"], "--notes"),
        (["--split", "0.5,0.6,0.1"], "fractions"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, extra, message, capsys):
    r = cli_in_process(capsys, "generate", "-n", "2", "-o", tmp_path / "x.h5", *extra)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.h5").exists()


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = cli_in_process(capsys, "generate", "-n", "2", "-o", blocker / "x.h5", *FAST_ARGS)
    assert r.returncode == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_existing_file_is_not_touched(tmp_path, capsys):
    target = tmp_path / "exists.h5"
    target.write_bytes(b"precious data")
    r = cli_in_process(capsys, "generate", "-n", "2", "-o", target, *FAST_ARGS)
    assert r.returncode == 1 and "--overwrite" in r.stderr
    assert target.read_bytes() == b"precious data"


def test_reuse_synth_is_recorded_and_resume_must_match(tmp_path):
    """``--reuse-synth`` gives the same presets (parameters) with slightly different audio; the
    choice is stored, and resuming with the other choice is refused."""
    args = ["generate", "-n", "4", "--workers", "1", "--no-progress", *FAST_ARGS]
    reused, fresh = tmp_path / "reused.h5", tmp_path / "new" / "fresh.h5"  # the CLI makes new/ itself
    assert run_cli(*args, "--reuse-synth", "-o", reused).returncode == 0
    assert run_cli(*args, "-o", fresh).returncode == 0
    with DatasetReader(reused) as ds:
        assert json.loads(ds.attrs["settings_json"])["render"]["reproducible"] is False
    a, b = _arrays(reused), _arrays(fresh)
    np.testing.assert_array_equal(a["continuous"], b["continuous"])
    assert np.abs(a["audio"] - b["audio"]).max() < 0.7  # same sounds; only the onsets may differ
    refused = run_cli(*args, "-o", reused, "--resume")
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


# ------------------------------------------------------------------ issue 15: refused options
def test_absurd_thresholds_fail_at_once(tmp_path):
    """Thresholds no render can pass are refused before anything runs (they used to make the run
    go on forever)."""
    out = tmp_path / "x.h5"
    t0 = time.perf_counter()
    r = run_cli(
        "generate",
        "-n",
        "1",
        "-o",
        str(out),
        "--clip-peak",
        "1e-30",
        "--silence-db",
        "-601",
        *FAST_ARGS,
        timeout=60 * slowdown(),
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert "--silence-db" in r.stderr
    assert time.perf_counter() - t0 < 30 * slowdown()  # no rendering: just the interpreter's start
    assert not out.exists() and not out.parent.joinpath("x.h5.journal").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-1"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--notes", "60.9"], "--notes"),
        (["--notes", "48,72.5"], "--notes"),
        (["--notes", "127.5"], "--notes"),
        (["--notes", "128"], "--notes"),
        (["--notes", "-1"], "--notes"),
        (["--silence-db", "-601", "--clip-peak", "1e-30"], "--silence-db"),
        (["--clip-peak", "1e30"], "--clip-peak"),
        (["--give-up-after", "0"], "--give-up-after"),
    ],
)
def test_refused_options_leave_no_file_and_touch_none(tmp_path, capsys, extra, message):
    """A config error is one ``error:`` line and exit 1, before any file is created; an existing
    file is left exactly as it was, even with --overwrite."""
    new = tmp_path / "sub" / "new.h5"
    r = cli_in_process(capsys, "generate", "-n", "2", "-o", new, "--no-progress", *FAST_ARGS, *extra)
    assert not new.exists() and not new.with_name("new.h5.journal").exists(), r.stderr
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr
    precious = tmp_path / "precious.h5"
    precious.write_bytes(b"precious data")
    r = cli_in_process(
        capsys, "generate", "-n", "2", "-o", precious, "--overwrite", "--no-progress", *FAST_ARGS, *extra
    )
    assert precious.read_bytes() == b"precious data", r.stderr
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.h5"]


def test_refused_resume_leaves_the_dataset_untouched(tmp_path, capsys):
    args = ["generate", "-n", "2", "--workers", "1", "--no-progress", *FAST_ARGS]
    path = tmp_path / "done.h5"
    assert cli_in_process(capsys, *args, "-o", path).returncode == 0
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    time.sleep(0.05)
    r = cli_in_process(capsys, *args, "-n", "4", "-o", path, "--resume", "--timeout", "0")
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime, r.stderr
    assert r.returncode == 1 and r.stderr.startswith("error:") and "--timeout" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.h5"]


def test_whole_float_notes_are_accepted(tmp_path):
    path = tmp_path / "notes.h5"
    r = run_cli(
        "generate",
        "-n",
        "2",
        "--workers",
        "1",
        "--no-progress",
        "-o",
        str(path),
        *FAST_ARGS,
        "--notes",
        "48.0,72",
    )
    assert r.returncode == 0, r.stderr
    with DatasetReader(path) as ds:
        assert [int(n) for n in ds.attrs["notes"]] == [48, 72]
        assert set(ds.metadata("midi_note").tolist()) <= {48, 72}


# -------------------------------------------------------- issue 15: a run that keeps nothing
def test_run_that_no_render_passes_gives_up(tmp_path):
    """Valid thresholds that no render meets (a peak in (-0.01 dBFS, 1.0]) stop the run after
    ``--give-up-after`` presets in a row without a usable render: one error line, exit 1, and the
    file holds what was tried."""
    path = tmp_path / "nothing.h5"
    t0 = time.perf_counter()
    r = run_cli(
        "generate",
        "-n",
        "3",
        "--workers",
        "2",
        "--no-progress",
        "-o",
        str(path),
        *FAST_ARGS,
        "--silence-db",
        "-0.01",
        "--clip-peak",
        "1.0",
        "--give-up-after",
        "6",
        timeout=120 * slowdown(),
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "6 presets in a row" in r.stderr and "--silence-db" in r.stderr and "Traceback" not in r.stderr
    assert time.perf_counter() - t0 < 90 * slowdown()
    with DatasetReader(path) as ds:
        progress = ds.progress()
        assert len(ds) == progress["rows"] == 0 and progress["kept_presets"] == 0
        assert progress["next_preset"] == 6
        assert sum(progress["rejections"].values()) > 0


def test_giving_up_keeps_the_rows_already_written(tmp_path):
    """Strict but not impossible thresholds: preset 0 passes (peaks 0.80 and 0.95 at seed 0), the
    next ones are too quiet; the run gives up after 5 in a row, and the kept rows are committed."""
    from vitalmatch.data.generate import GIVE_UP_AFTER, GenerationStalled
    from vitalmatch.data.validation import ValidationConfig

    assert GenerateConfig(output=tmp_path / "x.h5", n_presets=1).give_up_after == GIVE_UP_AFTER == 1000
    path = tmp_path / "strict.h5"
    strict = ValidationConfig(silence_peak_db=-3.0, clip_peak=1.0)
    with pytest.raises(GenerationStalled, match="5 presets in a row") as err:
        generate(_config(path, 50, validation=strict, give_up_after=5))
    summary = err.value.summary
    assert summary.kept_presets >= 1 and summary.rows >= 1
    with DatasetReader(path) as ds:
        progress = ds.progress()
        assert len(ds) == progress["rows"] == summary.rows
        assert progress["kept_presets"] == summary.kept_presets
        assert progress["next_preset"] == summary.next_preset
    with pytest.raises(ValueError, match="give_up_after"):
        _config(path, 1, give_up_after=0).check()
