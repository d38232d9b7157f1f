"""Shared fixtures: the live registry, the built-in catalog, and the path of the shared presets."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests.once import build_once

REPO = Path(__file__).resolve().parents[1]

# No default model in the tests (match, predict and the demo behave as without one, whatever is
# installed); the tests of the default model point the variable at a tiny model themselves.
os.environ["VITALMATCH_DEFAULT_MODEL"] = ""

# numba's on-disk cache is not safe for processes that fill it at the same time (numba/numba#10128:
# a guvectorize kernel and its wrapper are two files, and two processes compiling at once can leave
# a mixed pair that segfaults when called). In a fresh virtual environment the two xdist workers
# compile librosa's pYIN/YIN kernels at once, and a CI run crashed in `_parabolic_interpolation`.
# So each test process keeps its own cache (per virtual environment and worker; kept between runs).
# (The controller's value is inherited by the workers, so ours is marked and replaced; a
# NUMBA_CACHE_DIR set before pytest started is left alone.)
if "numba" not in sys.modules and os.environ.get("NUMBA_CACHE_DIR", "") in ("", os.environ.get("_VM_NUMBA")):
    _venv = hashlib.sha1(sys.prefix.encode()).hexdigest()[:8]
    _worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    _dir = str(Path(tempfile.gettempdir()) / f"vitalmatch-numba-{_venv}-{_worker}")
    os.environ["NUMBA_CACHE_DIR"] = os.environ["_VM_NUMBA"] = _dir


def shared_presets_dir() -> Path | None:
    """``../shared/presets`` beside the checkout (or $VITALMATCH_SHARED/presets), if present."""
    root = Path(os.environ.get("VITALMATCH_SHARED", REPO.parent / "shared"))
    d = root / "presets"
    return d if d.is_dir() and any(d.rglob("*.vital")) else None


@pytest.fixture(scope="session")
def presets_dir() -> Path:
    d = shared_presets_dir()
    if d is None:
        pytest.skip("shared presets folder (../shared/presets) not present")
    return d


@pytest.fixture(scope="session")
def catalog():
    from vitalmatch.synth.wavetables import WavetableCatalog

    return WavetableCatalog.builtin()


@pytest.fixture(scope="session")
def registry(catalog):
    from vitalmatch.synth.params import ParamRegistry

    return ParamRegistry.from_synth(wavetable_names=catalog.names)


@pytest.fixture(scope="session")
def tiny_eval_dataset(tmp_path_factory):
    """20 Tier-1 presets x 1 note, 0.5 s at 22.05 kHz, with train, val and test rows."""
    from vitalmatch.data.generate import GenerateConfig, generate
    from vitalmatch.synth.render import RenderConfig

    render = RenderConfig(sample_rate=22050, notes=(60,), note_duration_s=0.3, render_duration_s=0.5)

    def build(folder):
        config = GenerateConfig(
            output=folder / "tiny.h5",
            n_presets=20,
            render=render,
            workers=2,
            progress=False,
            split=(0.4, 0.2, 0.4),
            seed=3,
        )
        generate(config)

    return build_once(tmp_path_factory, "eval-dataset", build) / "tiny.h5"


#: The settings every tiny training run of the tests shares: one epoch of 4-example batches on
#: 64-band log-mels, a 2-step warm-up, one CPU thread, no progress bar, no logger but metrics.jsonl.
TINY_TRAINING = dict(
    epochs=1,
    batch_size=4,
    warmup_steps=2,
    n_mels=64,
    n_fft=1024,
    hop_length=256,
    progress=False,
    logger="none",
    threads=1,
    checkpoint_every=1000,
)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(data, out, **overrides)``: the :class:`TrainConfig` of a tiny training run
    (:data:`TINY_TRAINING` with ``overrides`` on top)."""
    from vitalmatch.learn.config import TrainConfig

    def make(data, out, **overrides):
        return TrainConfig(**{**TINY_TRAINING, "data": str(data), "out": str(out), **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_eval_checkpoint(tiny_eval_dataset, tiny_config, tmp_path_factory):
    """``last.pt`` of one tiny training epoch on :func:`tiny_eval_dataset`."""
    from vitalmatch.learn.train import fit

    folder = build_once(
        tmp_path_factory, "eval-run", lambda d: fit(tiny_config(tiny_eval_dataset, d / "run"))
    )
    return folder / "run" / "last.pt"


@pytest.fixture(scope="session")
def match_cache(tmp_path_factory):
    """A private ``$VITALMATCH_CACHE`` with a :data:`tests.sounds.START_SET`-preset starting set,
    built once per test run through the real code path (shared by the match and demo tests, and by
    both xdist workers: :func:`tests.once.build_once`)."""
    import os

    from tests.sounds import START_SET
    from vitalmatch.match import ensure_start_set

    def build(path):
        old = os.environ.get("VITALMATCH_CACHE")
        os.environ["VITALMATCH_CACHE"] = str(path)
        try:
            starts = ensure_start_set(START_SET, progress=False)
        finally:
            if old is None:
                del os.environ["VITALMATCH_CACHE"]
            else:
                os.environ["VITALMATCH_CACHE"] = old
        assert len(starts) >= 3 * START_SET  # several notes per preset

    return build_once(tmp_path_factory, "match-cache", build)
