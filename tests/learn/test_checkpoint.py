"""Checkpoint files: round trip, atomic writes, loading that never runs code, checked entries."""

from __future__ import annotations

import math
import os

import pytest
import torch

from vitalmatch.learn import checkpoint

#: Checkpoint entries of the wrong type, each of which gave a traceback.
WRONG_TYPES = {
    "features_str": ("features", "abc"),
    "features_list": ("features", [1, 2, 3]),
    "features_field": ("features", {"sample_rate": "fast"}),
    "mean_str": ("norm_mean", "abc"),
    "std_list": ("norm_std", [1.0, 2.0]),
    "std_shape": ("norm_std", torch.ones(3)),
    "fill_str": ("fill_continuous", "abc"),
    "frames_str": ("input_frames", "44"),
    "registry_list": ("registry_json", [1, 2]),
    "model_config_str": ("model_config", "slim10"),
}


def _payload(ckpt: dict) -> dict:
    """What :func:`checkpoint.save` is given: a loaded checkpoint without format and version."""
    return {k: v for k, v in ckpt.items() if k not in ("format", "version")}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):  # the baseline's metrics of inactive parameters
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_save_and_load_round_trip(tiny_checkpoint, tmp_path):
    ckpt = checkpoint.load(tiny_checkpoint)
    assert ckpt["format"] == checkpoint.FORMAT and ckpt["version"] == checkpoint.VERSION
    dst = tmp_path / "sub" / "copy.pt"  # the folder is made
    checkpoint.save(dst, _payload(ckpt))
    again = checkpoint.load(dst)
    assert _same(ckpt, again)
    # The network and the helpers read the same things from both.
    x = torch.randn(2, 1, ckpt["features"]["n_mels"], int(ckpt["input_frames"]))
    with torch.no_grad():
        a = checkpoint.build_model(ckpt).eval()(x)["continuous"]
        b = checkpoint.build_model(again).eval()(x)["continuous"]
    assert torch.equal(a, b)
    assert checkpoint.registry(again).to_json() == ckpt["registry_json"]
    assert checkpoint.features(again).n_mels == ckpt["features"]["n_mels"]
    assert checkpoint.wavetables(again).names == checkpoint.wavetables(ckpt).names
    checkpoint.check_resumable(again, dst)


def test_writes_are_atomic(tiny_checkpoint, tmp_path, monkeypatch):
    """A write that dies half way leaves the previous file as it was; a good one leaves no temp file."""
    ckpt = checkpoint.load(tiny_checkpoint)
    dst = tmp_path / "last.pt"
    checkpoint.save(dst, _payload(ckpt))
    before = dst.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]

    real_save = torch.save

    def dies_half_way(obj, f, *a, **kw):
        real_save(obj, f, *a, **kw)
        with open(f, "r+b") as fh:
            fh.truncate(100)  # half a file on disk, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(dst, {**_payload(ckpt), "baseline": {"changed": 1.0}})
    monkeypatch.setattr(torch, "save", real_save)
    assert dst.read_bytes() == before
    assert _same(checkpoint.load(dst)["baseline"], ckpt["baseline"])

    def no_rename(src, dst_):
        raise OSError("killed before the rename")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="before the rename"):
        checkpoint.save(dst, {**_payload(ckpt), "baseline": {"changed": 1.0}})
    assert dst.read_bytes() == before


class _Payload:
    """A pickled object that makes a folder when it is unpickled (stands for any code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_load_never_runs_pickled_code(tiny_checkpoint, tmp_path):
    ckpt = checkpoint.load(tiny_checkpoint)
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({**ckpt, "baseline": {"x": _Payload(str(marker))}}, evil)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load(evil)
    assert not marker.exists()
    # The file really carries code: a full unpickler runs it.
    torch.load(evil, weights_only=False)
    assert marker.is_dir()


def test_load_refuses_what_is_not_a_checkpoint(tiny_checkpoint, tmp_path, edit_checkpoint):
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.pt")
    (tmp_path / "noise.pt").write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        checkpoint.load(tmp_path / "noise.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a vitalmatch checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a vitalmatch checkpoint"):
        checkpoint.load(tmp_path / "list.pt")
    newer = edit_checkpoint(tiny_checkpoint, lambda ck: ck.update(version=99), "newer.pt")
    with pytest.raises(ValueError, match="checkpoint version 99, this vitalmatch reads 1"):
        checkpoint.load(newer)
    partial = edit_checkpoint(tiny_checkpoint, lambda ck: ck.pop("norm_std"), "partial.pt")
    with pytest.raises(ValueError, match="incomplete: it lacks norm_std"):
        checkpoint.load(partial)


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_load_rejects_entries_of_the_wrong_type(case, tiny_checkpoint, edit_checkpoint):
    key, value = WRONG_TYPES[case]
    bad = edit_checkpoint(tiny_checkpoint, lambda ck: ck.update({key: value}))
    with pytest.raises(ValueError, match=key):
        checkpoint.load(bad)


def _nan_mean(ck):
    ck["norm_mean"][0] = float("nan")


def _zero_std(ck):
    ck["norm_std"][0] = 0.0


def _long_clips(ck):
    ck["input_frames"] = 10**7


def _more_heads(ck):
    ck["model_config"]["n_continuous"] += 1


def _unknown_field(ck):
    ck["model_config"]["layers"] = 3


def _int_fill(ck):
    ck["fill_continuous"] = ck["fill_continuous"].long()


def _render_settings(ck):
    ck["render_settings"]["velocity"] = "loud"


def _foreign_column(ck):
    import json

    data = json.loads(ck["registry_json"])
    data["continuous"][0]["name"] = "no_such_control"
    ck["registry_json"] = json.dumps(data)


#: Entries of the right type that are still unusable, and a word of the error each gives.
MALFORMED = {
    "nan_mean": (_nan_mean, "norm_mean holds NaN or Inf"),
    "zero_std": (_zero_std, "norm_std must be > 0"),
    "long_clips": (_long_clips, "more than 60 s"),
    "more_heads": (_more_heads, "model_config does not match"),
    "unknown_field": (_unknown_field, "unknown field"),
    "int_fill": (_int_fill, "fill_continuous has dtype"),
    "render_settings": (_render_settings, "render_settings.velocity must be a number"),
    "foreign_column": (_foreign_column, "is not a continuous column of full_registry_json"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_load_rejects_malformed_entries(case, tiny_checkpoint, edit_checkpoint):
    change, want = MALFORMED[case]
    bad = edit_checkpoint(tiny_checkpoint, change)
    with pytest.raises(ValueError, match=want) as e:
        checkpoint.load(bad)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{bad} is not a valid checkpoint: ")


def test_check_resumable_wants_a_training_state(tiny_checkpoint):
    ckpt = checkpoint.load(tiny_checkpoint)
    checkpoint.check_resumable(ckpt, tiny_checkpoint)
    cases = [
        ({"train": None}, "train is missing"),
        ({"train": {**ckpt["train"], "optimizer": [1]}}, "train.optimizer is a list"),
        ({"train": {**ckpt["train"], "optimizer": {"state": {}}}}, "not an optimiser state dict"),
        ({"weights": torch.ones(2)}, "weights has shape"),
        ({"weights": None}, "weights is missing"),
    ]
    for change, want in cases:
        with pytest.raises(ValueError, match=want):
            checkpoint.check_resumable({**ckpt, **change}, "x.pt")


def test_weights_that_do_not_fit_and_a_missing_catalog(tiny_checkpoint):
    ck = checkpoint.load(tiny_checkpoint)
    ck["model_config"]["arch"] = "resnet18"
    with pytest.raises(ValueError, match="do not fit"):
        checkpoint.build_model(ck)
    with pytest.raises(ValueError, match="holds no wavetable catalog"):
        checkpoint.wavetables({**ck, "wavetables_json": ""})
