"""The built-in starting set: random presets of the whole synth rendered once, looked up by sound.

Stage: match (its first step). Input: a size (presets), and later a target sound ``(T,)`` with its
MIDI note. Output: :class:`StartSet` -- the presets' vectors, extras (modulations, LFO shapes),
names and notes, and the rows of those whose render at the stored note nearest the target's
sounds closest to it (coarse log-mels, :class:`vitalmatch.neighbours.NearestNeighbours`).

The set mixes the sampling tiers (:data:`START_TIERS`: a third each of Tier 1, Tier 2 -- effects,
filter 2, osc 3, the noise oscillator, envelopes and LFOs on fixed routings -- and Tier 3, with a
random modulation matrix), so a reverb pad or a vibrato lead finds a start that already has
reverb or vibrato. It is rendered by the project itself on first use (:func:`ensure_start_set`,
a few minutes on 2 cores for 256 presets) with the dataset pipeline
(:func:`vitalmatch.data.generate.generate`, one file per tier) into ``$VITALMATCH_CACHE``
(default ``~/.cache/vitalmatch``), then reused; the log-mel index is cached next to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vitalmatch.features import FeatureConfig
from vitalmatch.neighbours import NearestNeighbours
from vitalmatch.synth.params import ParamRegistry

#: Notes the built-in starting set is rendered at.
START_NOTES = (36, 48, 60, 72, 84)
#: Bumped whenever the starting set's recipe changes (old cache files are then rebuilt).
START_SET_VERSION = 2
#: Sampling tiers of the starting set, each a near-equal share of its presets.
START_TIERS = (1, 2, 3)
#: Seed of the starting set's presets (not the dataset default, so they differ from data/*.h5).
START_SET_SEED = 20260
#: Largest starting set ``match`` builds (about 75 min on 2 workers at :data:`START_SET_RATE`); a
#: larger one is a dataset: make it with ``vitalmatch generate``.
MAX_START_SET = 10_000
#: Starting-set presets rendered per second per worker (5 notes each at 22.05 kHz): 256 Tier-1
#: presets took 118 s on the 2-core development machine, the tier mix about 1.5x that
#: (docs/cli.md, match). Used only for the estimate announced before a build.
START_SET_RATE = 0.75
#: RMS every clip is scaled to before indexing (loudness does not choose the neighbour).
_INDEX_RMS = 0.1


def cache_dir() -> Path:
    """Where built-in artefacts live: ``$VITALMATCH_CACHE`` or ``~/.cache/vitalmatch``."""
    return Path(os.environ.get("VITALMATCH_CACHE") or Path.home() / ".cache" / "vitalmatch")


class StartSet:
    """The built-in starting set: random presets rendered at :data:`START_NOTES`, indexed by coarse
    log-mels of their first ``window_s`` seconds (state: the vectors, extras and the index).

    Args:
        paths: the HDF5 datasets written by :func:`ensure_start_set` (one per tier), or one path.
    """

    window_s = 1.0

    def __init__(self, paths) -> None:
        from vitalmatch.data.reader import DatasetReader
        from vitalmatch.synth.wavetables import WavetableCatalog

        paths = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
        self.paths = paths
        notes, names, conts, cats, feats, self.extras, self.catalogs, self.file_of = (
            [],
            [],
            [],
            [],
            [],
            [],
            [],
            [],
        )
        self.catalog = None
        for f, path in enumerate(paths):
            index_file = path.with_suffix(".index.npz")
            with DatasetReader(path) as reader:
                self.sample_rate = int(reader.sample_rate)
                self.registry = ParamRegistry.from_json(reader.attrs["registry_json"])
                catalog = WavetableCatalog.from_json_data(json.loads(reader.blob("wavetables").decode()))
                self.catalogs.append(catalog)
                self.catalog = self.catalog or catalog
                rows = np.arange(len(reader))
                notes.append(reader.metadata("midi_note").astype(int))
                names += [str(n) for n in reader.metadata("preset_name")]
                conts.append(reader.continuous(rows))
                cats.append(reader.categorical(rows))
                self.extras += [reader.preset_extras(int(r)) for r in rows]
                self.file_of += [f] * len(rows)
                config = self.feature_config()
                if index_file.is_file():
                    feats.append(np.load(index_file)["features"])
                else:
                    n = int(self.window_s * self.sample_rate)
                    batches = (
                        reader.audio(np.arange(s, min(len(reader), s + 128))).mean(axis=1)[:, :n]
                        for s in range(0, len(reader), 128)
                    )
                    built = NearestNeighbours.build(batches, config, rms=_INDEX_RMS).features.numpy()
                    tmp = index_file.with_name(index_file.name + ".tmp.npz")
                    np.savez(tmp, features=built)
                    os.replace(tmp, index_file)
                    feats.append(built)
        self.notes = np.concatenate(notes)
        self.names = names
        self.continuous = np.concatenate(conts)
        self.categorical = np.concatenate(cats)
        self.index = NearestNeighbours(np.concatenate(feats), self.feature_config(), rms=_INDEX_RMS)

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(sample_rate=self.sample_rate, n_fft=1024, hop_length=256, n_mels=64)

    def catalog_of(self, row: int):
        """The wavetable catalog row ``row``'s ``osc_N_wavetable`` indices refer to."""
        return self.catalogs[self.file_of[row]]

    def __len__(self) -> int:
        return len(self.notes)

    def nearest(self, audio: np.ndarray, sample_rate: int, note: int, k: int) -> list[int]:
        """Rows of the ``k`` presets closest to ``audio`` (mono ``(T,)`` at ``sample_rate`` Hz) at
        the stored note nearest MIDI ``note``, closest first."""
        import soxr

        if len(self) == 0 or k <= 0:
            return []
        x = np.asarray(audio, np.float32)
        if sample_rate != self.sample_rate:
            x = soxr.resample(x, sample_rate, self.sample_rate).astype(np.float32)
        n = int(self.window_s * self.sample_rate)
        q = np.zeros(n, np.float32)
        q[: min(n, len(x))] = x[:n]
        stored = np.unique(self.notes)
        near = int(stored[np.argmin(np.abs(stored - note))])
        return [int(r) for r in self.index.nearest(q, k, among=np.flatnonzero(self.notes == near))]


def tier_sizes(size: int) -> dict[int, int]:
    """Presets per tier of a starting set of ``size`` (:data:`START_TIERS`, Tier 1 takes the
    remainder; tiers with none are left out)."""
    share = size // len(START_TIERS)
    sizes = {t: share for t in START_TIERS}
    sizes[START_TIERS[0]] += size - share * len(START_TIERS)
    return {t: n for t, n in sizes.items() if n > 0}


def start_set_path(size: int, tier: int = 1) -> Path:
    """Cache file of the ``tier`` part of the starting set of ``size`` presets (depends on the
    recipe and vita)."""
    from vitalmatch.synth.params import _vita_version  # renders change with the synth version

    key = hashlib.sha256(
        f"{START_SET_VERSION}:{size}:{tier}:{START_SET_SEED}:{_vita_version()}".encode()
    ).hexdigest()
    return cache_dir() / f"starts-t{tier}-n{size}-{key[:10]}.h5"


def check_start_set_size(size: int) -> None:
    """Raise ValueError (one line) unless ``0 <= size <=`` :data:`MAX_START_SET`."""
    if not 0 <= size <= MAX_START_SET:
        raise ValueError(
            f"--start-set must be in 0..{MAX_START_SET}, got {size} (a larger set of presets is a dataset: "
            "build it with vitalmatch generate)"
        )


def ensure_start_set(
    size: int,
    *,
    workers: int = 2,
    progress: bool = True,
    notify: Callable[[str], None] | None = None,
) -> StartSet | None:
    """The starting set of ``size`` presets, rendered now if not cached (resumes a partial file).

    Renders at 22.05 kHz, a 1 s note in a 1.5 s render, at :data:`START_NOTES`, through the
    dataset pipeline (silent / clipping presets are rejected there). Returns None for ``size=0``.

    Args:
        workers: render processes for a build.
        progress: show the build's progress bar (stderr).
        notify: called with a one-line announcement before a build (its size, where and about
            how long), whatever ``progress`` is: a first build can take long, and it is cached
            for later runs. Not called when the set is cached.
    """
    if size <= 0:
        return None
    from vitalmatch.data.generate import GenerateConfig, generate
    from vitalmatch.synth.render import RenderConfig

    paths = []
    for tier, n in tier_sizes(size).items():
        path = start_set_path(size, tier)
        done = path.with_suffix(".done")
        paths.append(path)
        if done.is_file():
            continue
        check_start_set_size(size)
        path.parent.mkdir(parents=True, exist_ok=True)
        if notify is not None:
            minutes = n / (START_SET_RATE * max(workers, 1)) / 60
            notify(
                f"building the built-in starting set, Tier {tier} ({n} presets x {len(START_NOTES)} notes, "
                f"once; about {minutes:.0f} min on {workers} workers) in {path.parent}"
            )
        config = GenerateConfig(
            output=path,
            n_presets=n,
            tier=tier,
            seed=START_SET_SEED + tier - 1,
            workers=workers,
            render=RenderConfig(
                sample_rate=22050,
                notes=START_NOTES,
                note_duration_s=1.0,
                render_duration_s=1.5,
                reproducible=False,  # an index, not a dataset: the fastest render path
            ),
            resume=path.exists(),
            progress=progress,
            commit_every=16,
        )
        generate(config)
        done.write_text(json.dumps({"size": size, "tier": tier, "created": time.time()}))
    return StartSet(paths)
