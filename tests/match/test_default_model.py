"""The default model: chosen once (``learn.default_model.resolve``), used by match and predict
unless ``--no-model`` / ``--checkpoint``; its top-K predictions as starts; a default that does not
fit the synth is left out with a warning. The default is pointed at a tiny model file through
``$VITALMATCH_DEFAULT_MODEL`` (the suite sets it empty: tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tests.match.common import run_match
from tests.processes import cli_in_process
from tests.sounds import START_SET
from vitalmatch.cli import _starts_text
from vitalmatch.learn import DEFAULT_MODEL, checkpoint
from vitalmatch.learn.default_model import ENV, is_default, resolve

K = 8  # MatchConfig().model_candidates


@pytest.fixture(scope="module")
def default_model(tiny_eval_checkpoint, tmp_path_factory):
    """The tiny training run's model file (what ``export-model`` writes)."""
    path = tmp_path_factory.mktemp("default") / "default-model.safetensors"
    return checkpoint.save_model(path, checkpoint.load(tiny_eval_checkpoint))


@pytest.fixture(scope="module")
def unfit_model(tiny_eval_checkpoint, tmp_path_factory):
    """A model file whose parameters are not the live synth's: one column the network does not
    predict is renamed, as after a vita update."""
    from vitalmatch.synth.params import ParamRegistry

    ck = checkpoint.load(tiny_eval_checkpoint)
    full, predicted = ParamRegistry.from_json(ck["full_registry_json"]), checkpoint.registry(ck)
    j = next(i for i, s in enumerate(full.continuous) if s.name not in predicted)
    cont = list(full.continuous)
    cont[j] = dataclasses.replace(cont[j], name=cont[j].name + "_renamed")
    ck["full_registry_json"] = dataclasses.replace(full, continuous=tuple(cont)).to_json()
    path = tmp_path_factory.mktemp("default") / "unfit.safetensors"
    return checkpoint.save_model(path, ck)


@pytest.fixture(scope="module")
def matcher(match_cache, default_model):
    """One Matcher on the default model (resolved as the CLI does), no search, no pitch trials."""
    from vitalmatch.match import MatchConfig, Matcher

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VITALMATCH_CACHE", str(match_cache))
        mp.setenv(ENV, str(default_model))
        config = MatchConfig(refine=False, pitch_search=False, start_set_size=START_SET)
        with Matcher(config, resolve(None)) as m:
            yield m


def test_resolve_is_checkpoint_else_default_else_none(default_model, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(default_model))
    assert resolve(None) == default_model and is_default(default_model)
    assert resolve(None, no_model=True) is None
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"x")
    assert resolve(other) == other and not is_default(other)
    with pytest.raises(ValueError, match="--checkpoint and --no-model exclude each other"):
        resolve(other, no_model=True)
    with pytest.raises(ValueError, match=f"checkpoint {tmp_path / 'nope.pt'} does not exist"):
        resolve(tmp_path / "nope.pt")
    monkeypatch.setenv(ENV, "")
    assert resolve(None) is None and not is_default(default_model)
    monkeypatch.setenv(ENV, str(tmp_path / "gone.safetensors"))
    with pytest.raises(ValueError, match=f"\\${ENV} names .*gone.safetensors, which is not a file"):
        resolve(None)
    monkeypatch.delenv(ENV)  # unset: the packaged file, when it is installed
    assert resolve(None) == (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None)
    assert DEFAULT_MODEL.name == "default-model.safetensors" and DEFAULT_MODEL.parent.name == "learn"


def test_the_default_gives_k_prediction_starts_and_the_best_scoring_start_wins(matcher, sounds):
    """The k predictions are all scored starts beside init and the starting set (``match`` prints
    how many); the start is the lowest search loss; ``start_from="prediction"`` picks the best of
    the predictions; one candidate is the plain prediction alone."""
    assert matcher.predictor is not None and matcher.model_warning is None
    config = matcher.config
    result = matcher.match_file(sounds[0])
    preds = [n for n in result.candidates if n.startswith("prediction")]
    assert preds == ["prediction"] + [f"prediction #{i}" for i in range(2, K + 1)]
    assert all(math.isfinite(result.candidates[n]) for n in preds)
    assert len(result.candidates) == 1 + 6 + K  # init, the nearest starting presets, the model's
    finite = {n: v for n, v in result.candidates.items() if math.isfinite(v)}
    assert result.start == min(finite, key=finite.get)
    assert _starts_text(result) == f"best of {1 + 6 + K} starts: {K} from the model, 6 from the start set"
    try:
        matcher.config = dataclasses.replace(config, start_from="prediction")
        only = matcher.match_file(sounds[0])
        assert only.start == min(preds, key=only.candidates.get)
        matcher.config = dataclasses.replace(config, model_candidates=1)
        one = matcher.match_file(sounds[0])
        assert [n for n in one.candidates if n.startswith("prediction")] == ["prediction"]
    finally:
        matcher.config = config


def test_a_default_that_does_not_fit_the_synth_is_left_out_with_a_warning(
    unfit_model, match_cache, sounds, tmp_path, capsys, monkeypatch
):
    """Through the CLI: a default model with other parameters than the live synth is left out with
    one warning line and the match goes on; --no-model does not even load it; the same file given
    with --checkpoint is an error, as any checkpoint that does not fit; --no-model with
    --checkpoint is one line."""
    monkeypatch.setenv(ENV, str(unfit_model))
    args = [
        sounds[1],
        "--no-refine",
        "--start-set",
        "0",
        "--workers",
        "1",
        "--no-pitch-search",
        "--no-progress",
    ]
    run = run_match([*args, "-o", tmp_path / "a.vital"], match_cache, capsys)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "default model" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: the default model is not used (")
    assert "do not match this synth" in warnings[0] and "_renamed" in warnings[0]
    assert "start: init (best of 1 starts: 0 from the model, 0 from the start set)" in run.stdout
    off = run_match([*args, "-o", tmp_path / "off.vital", "--no-model"], match_cache, capsys)
    assert off.returncode == 0, off.stderr
    assert "default model" not in off.stderr and "0 from the model" in off.stdout
    both = run_match(
        [*args, "-o", tmp_path / "x.vital", "--no-model", "--checkpoint", unfit_model], match_cache, capsys
    )
    assert both.returncode == 1
    assert both.stderr.strip().splitlines() == ["error: --checkpoint and --no-model exclude each other"]
    monkeypatch.setenv(ENV, "")
    given = run_match([*args, "-o", tmp_path / "b.vital", "--checkpoint", unfit_model], match_cache, capsys)
    assert given.returncode == 1
    lines = given.stderr.strip().splitlines()
    assert len(lines) == 1 and "do not match this synth" in lines[0]


def test_predict_uses_the_default_and_says_so_when_there_is_none(
    default_model, sounds, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv(ENV, "")
    none = cli_in_process(capsys, "predict", sounds[0], "-o", tmp_path / "none.vital")
    assert none.returncode == 1
    (line,) = none.stderr.strip().splitlines()
    assert line == (
        "error: predict needs a model: give --checkpoint (a model file or best.pt); "
        "no default model is installed"
    )
    monkeypatch.setenv(ENV, str(default_model))
    run = cli_in_process(capsys, "predict", sounds[0], "-o", tmp_path / "p.vital")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "p.vital").is_file() and f"wrote {tmp_path / 'p.vital'}" in run.stdout
