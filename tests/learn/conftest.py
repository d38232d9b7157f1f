"""Tiny real datasets (real synth, real HDF5) shared by the training tests."""

from __future__ import annotations

import pytest

from tests.once import build_once
from vitalmatch.data.generate import GenerateConfig, generate
from vitalmatch.synth.render import RenderConfig

#: Short renders at a low rate keep the fixtures quick: 0.5 s at 22.05 kHz -> 44 log-mel frames.
TINY = RenderConfig(sample_rate=22050, notes=(48, 72), note_duration_s=0.3, render_duration_s=0.5)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """20 Tier-1 presets x 2 notes with stored log-mels; train/val split 50/50."""

    def build(folder):
        config = GenerateConfig(
            output=folder / "tiny.h5",
            n_presets=20,
            render=TINY,
            workers=2,
            progress=False,
            store_mels=True,
            split=(0.5, 0.5, 0.0),
        )
        generate(config)

    return build_once(tmp_path_factory, "learn-tiny", build) / "tiny.h5"


@pytest.fixture(scope="session")
def tiny_audio_only(tmp_path_factory):
    """The same presets without stored log-mels (features computed from the audio)."""

    def build(folder):
        config = GenerateConfig(
            output=folder / "tiny_audio.h5",
            n_presets=20,
            render=TINY,
            workers=2,
            progress=False,
            split=(0.5, 0.5, 0.0),
        )
        generate(config)

    return build_once(tmp_path_factory, "learn-tiny-audio", build) / "tiny_audio.h5"


@pytest.fixture
def edit_checkpoint(tmp_path):
    """``edit(src, change, name)``: a copy of checkpoint ``src`` in ``tmp_path`` after ``change(ckpt)``
    edited its dict in place (the file is read and written with torch, as a crafted file would be)."""
    import torch

    def edit(src, change, name: str = "edited.pt"):
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
        change(ckpt)
        dst = tmp_path / name
        torch.save(ckpt, dst)
        return dst

    return edit


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset, tiny_config, tmp_path_factory):
    """``last.pt`` of one tiny training epoch on :func:`tiny_dataset` (``best.pt`` lies beside it).
    Shared: tests that change the run work on a copy of its folder."""
    from vitalmatch.learn.train import fit

    folder = build_once(tmp_path_factory, "learn-run", lambda d: fit(tiny_config(tiny_dataset, d / "run")))
    return folder / "run" / "last.pt"
