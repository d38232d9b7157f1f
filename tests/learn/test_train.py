"""The training loop on real tiny datasets: learning, exact resume, DDP, bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vitalmatch.config import load_config_file
from vitalmatch.learn import checkpoint
from vitalmatch.learn.config import TrainConfig, TrainingInterrupted
from vitalmatch.learn.train import fit, lr_at
from vitalmatch.synth.wavetables import WavetableCatalog


def _records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


#: 16 examples, no regularisation, no augmentation: a run that can only overfit.
OVERFIT = dict(
    epochs=40,
    max_train_rows=16,
    max_val_rows=8,
    lr=3e-3,
    dropout=0.0,
    spec_augment=False,
    gain_db=0.0,
    noise_prob=0.0,
    weight_decay=0.0,
    patience=0,
)


def test_loss_falls_when_overfitting_16_examples(tiny_config, tiny_dataset, tmp_path):
    state = fit(tiny_config(tiny_dataset, tmp_path / "overfit", **OVERFIT))
    train = _records(tmp_path / "overfit", "train")
    first, last = train[0]["loss"], train[-1]["loss"]
    assert state.step == 40 * 4 and last < 0.35 * first, (first, last)
    start = _records(tmp_path / "overfit", "start")[0]
    assert start["train_examples"] == 16 and start["baseline"]["mae"] > 0


def test_learning_rate_warms_up_then_decays_to_zero(tiny_config):
    config = tiny_config("d.h5", "o", lr=1e-3, warmup_steps=4)
    lrs = [lr_at(s, config, 20) for s in range(21)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])  # linear warm-up to the peak
    assert lrs[4] == pytest.approx(1e-3) and lrs[20] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # cosine: never rises again
    assert lrs[12] == pytest.approx(5e-4)  # half way through the decay, half the peak
    # A run shorter than its warm-up still reaches the peak at its last step.
    assert lr_at(2, tiny_config("d.h5", "o", lr=1e-3, warmup_steps=200), 4) == pytest.approx(1e-3)


def test_train_step_returns_named_losses(tiny_checkpoint, tiny_config, tiny_dataset, tmp_path):
    """One optimiser step: the named terms, their weighted sum, the lr; the weights change."""
    from vitalmatch.learn.train import _epoch_order, _setup, train_step

    shutil.copytree(tiny_checkpoint.parent, tmp_path / "run")
    config = tiny_config(tiny_dataset, tmp_path / "run", epochs=2)  # one more epoch to train
    run = _setup(config, resume=True, overwrite=False)
    before = [p.detach().clone() for p in run.params]
    logs = train_step(run, _epoch_order(config, run.state.epoch, len(run.train)))
    assert set(logs) == {"loss", "continuous_mse", "categorical_ce", "lr", "grad_norm"}
    weighted = (
        config.continuous_weight * logs["continuous_mse"] + config.categorical_weight * logs["categorical_ce"]
    )
    assert logs["loss"] == pytest.approx(weighted, rel=1e-5)
    assert logs["lr"] == lr_at(run.state.step, config, run.total) and logs["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, run.params, strict=True))
    assert run.state.step == checkpoint.load(tiny_checkpoint)["train"]["state"]["step"]  # not advanced
    run.logger.close()


def _state(path: Path) -> dict:
    ck = checkpoint.load(path)
    return {
        "model": ck["model"],
        "opt": ck["train"]["optimizer"]["state"],
        "step": ck["train"]["state"]["step"],
    }


def test_resume_continues_exactly(tiny_config, tiny_dataset, tmp_path):
    full = tiny_config(tiny_dataset, tmp_path / "full", epochs=3, max_train_rows=16)
    fit(full)
    parts = replace(full, out=str(tmp_path / "parts"), stop_after=5)
    with pytest.raises(TrainingInterrupted, match="--stop-after 5"):
        fit(parts)  # stops mid-epoch 2 (4 steps per epoch)
    assert checkpoint.load(tmp_path / "parts" / "last.pt")["train"]["state"]["step"] == 5
    fit(replace(parts, stop_after=0), resume=True)
    a, b = _state(tmp_path / "full" / "last.pt"), _state(tmp_path / "parts" / "last.pt")
    assert a["step"] == b["step"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["opt"]:
        assert torch.equal(a["opt"][k]["exp_avg"], b["opt"][k]["exp_avg"])
    vals_a = [r["loss"] for r in _records(tmp_path / "full", "val")]
    vals_b = [r["loss"] for r in _records(tmp_path / "parts", "val")]
    assert vals_a == vals_b and len(vals_a) == 3


def test_checkpoint_predicts_and_holds_the_bundle(tiny_checkpoint):
    ck = checkpoint.load(tiny_checkpoint.parent / "best.pt")
    model = checkpoint.build_model(ck).eval()
    reg = checkpoint.registry(ck)
    x = torch.zeros(1, 1, 64, int(ck["input_frames"]))
    out = model(x)
    assert out["continuous"].shape == (1, len(reg.continuous))
    assert len(out["categorical"]) == len(reg.categorical)
    assert ck["norm_mean"].shape == (64,) and ck["features"]["n_mels"] == 64
    assert ck["fill_continuous"].shape == (322,)
    # The catalog and render settings of the training data travel with the model.
    assert checkpoint.wavetables(ck).names == WavetableCatalog.builtin().names
    assert ck["render_settings"]["sample_rate"] == 22050 and ck["render_settings"]["notes"] == [48, 72]


def test_bad_input_gives_clear_errors(tiny_config, tiny_dataset, tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        fit(tiny_config(tmp_path / "missing.h5", tmp_path / "x"))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        fit(tiny_config(tiny_dataset, tmp_path / "x", batch_size=0))
    shutil.copytree(tiny_checkpoint.parent, tmp_path / "run")  # a finished run of tiny_config
    with pytest.raises(ValueError, match="already holds a training run"):
        fit(tiny_config(tiny_dataset, tmp_path / "run"))
    with pytest.raises(ValueError, match=r"other settings .*lr differ"):
        fit(tiny_config(tiny_dataset, tmp_path / "run", lr=0.5), resume=True)
    # A corrupt checkpoint.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "last.pt").write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        fit(tiny_config(tiny_dataset, tmp_path / "bad"), resume=True)
    # A checkpoint of something else.
    torch.save({"weights": torch.zeros(3)}, tmp_path / "bad" / "last.pt")
    with pytest.raises(ValueError, match="not a vitalmatch checkpoint"):
        fit(tiny_config(tiny_dataset, tmp_path / "bad"), resume=True)
    # A dataset file that is not HDF5.
    junk = tmp_path / "junk.h5"
    junk.write_text("not a dataset")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        fit(tiny_config(junk, tmp_path / "y"))
    # Config files: unknown keys and wrong types.
    (tmp_path / "c.toml").write_text("lr = 'fast'\n")
    with pytest.raises(ValueError, match="lr must be float"):
        load_config_file(tmp_path / "c.toml", TrainConfig)
    (tmp_path / "d.toml").write_text("learning_rate = 0.1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_config_file(tmp_path / "d.toml", TrainConfig)


def _cli(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "vitalmatch", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


SMALL = ["--epochs", "1", "--batch-size", "4", "--n-mels", "64", "--n-fft", "1024", "--hop-length", "256"]


def test_cli_train_with_config_file_and_tensorboard(tiny_dataset, tmp_path, capsys):
    (tmp_path / "cfg.toml").write_text("epochs = 2\nlr = 0.002\nwarmup_steps = 1\n")
    out = tmp_path / "cli"
    r = _cli(
        "train",
        "--data",
        str(tiny_dataset),
        "--out",
        str(out),
        "--config",
        str(tmp_path / "cfg.toml"),
        *SMALL[2:],
        "--no-progress",
        "--threads",  # all cores (the default) made these 10 steps ~4x slower on a shared 2-core machine
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert "finished at step" in r.stdout and "importance weights" in r.stdout
    saved = json.loads((out / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["lr"] == 0.002  # from the file
    assert list((out / "tensorboard").iterdir())
    assert len(_records(out, "val")) == 2
    # Errors: one line, exit status 1 (the same main(), in this process: ~3 s less each).
    from tests.processes import cli_in_process

    r = cli_in_process(capsys, "train", "--data", str(tiny_dataset), "--out", str(out), *SMALL)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "already holds a training run" in r.stderr
    r = cli_in_process(capsys, "train", "--data", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and r.stderr.strip() == f"error: dataset {tmp_path / 'nope.h5'} does not exist"


def test_ddp_two_processes_gloo(tiny_dataset, tmp_path):
    """torchrun with 2 CPU processes: one run, averaged gradients, identical replicas."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "vitalmatch",
        "train",
        "--data",
        str(tiny_dataset),
        "--out",
        str(out),
        *SMALL,
        "--batch-size",
        "2",
        "--device",
        "cpu",  # gloo on CPU processes, also where a GPU is present
        "--no-progress",
        "--logger",
        "none",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    start = _records(out, "start")[0]
    end = _records(out, "end")[0]
    assert start["world_size"] == 2 and end["reason"] == "finished"
    # 2 processes x batch 2 = 4 examples per step: the same step count as one process with batch 4.
    n_train = start["train_examples"]
    assert end["step"] == n_train // 4
    assert r.stdout.count("finished at step") == 1  # only rank 0 reports


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_bf16_run_learns_and_its_checkpoint_runs_on_the_cpu(tiny_config, tiny_dataset, tmp_path):
    out = tmp_path / "gpu"
    fit(tiny_config(tiny_dataset, out, device="cuda", **OVERFIT))  # amp "auto": bf16 autocast on CUDA
    assert _records(out, "start")[0]["device"] == "cuda:0"
    train = _records(out, "train")
    assert train[-1]["loss"] < 0.35 * train[0]["loss"], (train[0]["loss"], train[-1]["loss"])
    ck = checkpoint.load(out / "best.pt")
    assert all(t.device.type == "cpu" for t in ck["model"].values())
    model = checkpoint.build_model(ck).eval()
    x = torch.randn(2, 1, 64, int(ck["input_frames"]), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        on_cpu = model(x)["continuous"]
        on_gpu = model.to("cuda")(x.to("cuda"))["continuous"].cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-3), (on_cpu - on_gpu).abs().max()


@needs_cuda
def test_more_processes_than_gpus_is_a_clear_error(tiny_dataset, tmp_path):
    gpus = torch.cuda.device_count()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus + 1)]
    cmd += ["-m", "vitalmatch", "train", "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), *SMALL]
    r = subprocess.run(
        [*cmd, "--no-progress", "--logger", "none"], capture_output=True, text=True, timeout=600
    )
    assert r.returncode != 0
    want = f"error: this process wants cuda:{gpus} but torch sees {gpus} GPU(s);"
    assert want in r.stderr, r.stderr[-3000:]


def test_early_stopping_and_accumulation(tiny_config, tiny_dataset, tmp_path):
    # A frozen trunk and a vanishing learning rate: the validation loss cannot improve.
    cfg = tiny_config(
        tiny_dataset, tmp_path / "es", epochs=6, freeze=5, lr=1e-12, patience=2, max_train_rows=16
    )
    state = fit(cfg)
    assert state.epoch == 3 and state.stop_reason.startswith("early stop")
    assert [r["best"] for r in _records(tmp_path / "es", "val")] == [True, False, False]
    # Two micro-batches of 2 per optimiser step: 16 examples make 4 steps.
    acc = fit(tiny_config(tiny_dataset, tmp_path / "acc", batch_size=2, accum_steps=2, max_train_rows=16))
    assert acc.step == 16 // 4


def _strict_json(line: str):
    """``json.loads`` that refuses NaN and Infinity (which are not JSON)."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def test_metrics_jsonl_is_strict_json(tiny_config, tiny_dataset, tmp_path):
    # One validation example: most parameters are inactive in it, so their MAE is NaN.
    out = tmp_path / "m"
    fit(tiny_config(tiny_dataset, out, max_train_rows=8, max_val_rows=1))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [_strict_json(line) for line in lines]
    assert [r["kind"] for r in records][-2:] == ["val", "end"]
    val = records[-2]
    assert None in val["mae_param"].values()  # NaN is written as null
    assert all(v is None or isinstance(v, float) for v in val["mae_param"].values())
    assert _records(out, "val")[0]["loss"] == val["loss"]  # the readers keep working


def test_a_run_shorter_than_one_epoch_writes_best(tiny_config, tiny_dataset, tmp_path):
    out = tmp_path / "short"
    state = fit(tiny_config(tiny_dataset, out, max_steps=2))  # 5 steps per epoch
    assert state.step == 2 and state.epoch == 0
    assert (out / "best.pt").is_file()
    best = checkpoint.load(out / "best.pt")
    assert best["train"]["state"]["step"] == 2 and best["train"]["state"]["best_step"] == 2
    assert math.isfinite(state.best_val) and state.best_step == 2
    val = _records(out, "val")
    assert len(val) == 1 and val[0]["step"] == 2 and val[0]["best"] is True


def test_resume_finds_the_run_by_another_path_and_moved(
    tiny_dataset, tiny_audio_only, tmp_path, monkeypatch, capsys
):
    from tests.processes import cli_in_process

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    shutil.copy(tiny_dataset, tmp_path / "data" / "tiny.h5")
    flags = [*SMALL, "--max-train-rows", "8", "--no-progress", "--logger", "none", "--threads", "1"]
    r = cli_in_process(
        capsys, "train", "--data", "data/tiny.h5", "--out", "runs/x", *flags, "--stop-after", "1"
    )
    assert r.returncode == 130 and "continue with --resume" in r.stderr, r.stderr
    # The same folder and data by other paths (absolute, with ..).
    r = cli_in_process(
        capsys,
        "train",
        "--data",
        str(tmp_path / "data" / ".." / "data" / "tiny.h5"),
        "--out",
        str(tmp_path / "runs" / "x"),
        *flags,
        "--stop-after",
        "1",
        "--resume",
    )
    assert r.returncode == 130 and "stopped at step 2" in r.stderr, r.stderr
    # The run folder and the data moved elsewhere: the data is recognised by its content.
    shutil.move(tmp_path / "runs" / "x", tmp_path / "moved")
    shutil.move(tmp_path / "data" / "tiny.h5", tmp_path / "tiny_copy.h5")
    r = cli_in_process(capsys, "train", "--data", "tiny_copy.h5", "--out", "moved", *flags, "--resume")
    assert r.returncode == 0 and "finished at step 2" in r.stdout, r.stderr
    assert checkpoint.load(tmp_path / "moved" / "last.pt")["train"]["config"]["data"] == "tiny_copy.h5"
    # Other data is still refused: the same presets, but a file made with other settings.
    r = cli_in_process(capsys, "train", "--data", tiny_audio_only, "--out", "moved", *flags, "--resume")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: --resume with other data than "), r.stderr


def test_pretrained_that_is_not_a_state_dict_is_one_error_line(tiny_dataset, tmp_path, capsys):
    from tests.processes import cli_in_process

    (tmp_path / "text.pt").write_text("not weights\n")
    torch.save([torch.zeros(2), 3], tmp_path / "list.pt")
    torch.save({"conv1.weight": "abc"}, tmp_path / "strings.pt")
    for name in ("text.pt", "list.pt", "strings.pt", "missing.pt"):
        r = cli_in_process(
            capsys,
            "train",
            "--data",
            tiny_dataset,
            "--out",
            tmp_path / name.replace(".", "_"),
            *SMALL,
            "--arch",
            "resnet18",
            "--pretrained",
            tmp_path / name,
            "--no-progress",
            "--logger",
            "none",
        )
        assert r.returncode == 1 and r.stderr.count("\n") == 1, (name, r.stderr)
        assert r.stderr.startswith(f"error: --pretrained {tmp_path / name}"), r.stderr
        assert not (tmp_path / name.replace(".", "_") / "last.pt").exists()


def test_resume_rejects_checkpoint_entries_of_the_wrong_type(tiny_dataset, tmp_path, capsys):
    from tests.processes import cli_in_process

    out = tmp_path / "r"
    flags = [*SMALL, "--max-train-rows", "8", "--no-progress", "--logger", "none", "--threads", "1"]
    args = ["train", "--data", str(tiny_dataset), "--out", str(out), *flags]
    assert cli_in_process(capsys, *args, "--stop-after", "1").returncode == 130
    good = torch.load(out / "last.pt", weights_only=True)
    cases = [
        ("features", "abc"),
        ("features", ["sample_rate", 22050]),
        ("norm_mean", "abc"),
        ("norm_std", {"a": 1}),
        ("weights", "abc"),
        ("train", "abc"),
        ("train", {**good["train"], "state": "abc"}),
        ("train", {**good["train"], "config": [1]}),
        ("train", {**good["train"], "state": {**good["train"]["state"], "step": "1"}}),
        ("train", {**good["train"], "optimizer": {"state": "abc"}}),
    ]
    for key, value in cases:
        torch.save({**good, key: value}, out / "last.pt")
        r = cli_in_process(capsys, *args, "--resume")
        assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, (
            key,
            r.stderr,
        )
        assert key in r.stderr, r.stderr
