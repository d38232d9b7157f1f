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

The default set (:data:`PACKAGED_SIZE` presets) also ships inside the package
(:data:`PACKAGED_FILE`: the vectors, extras and index of that build, no audio, ~2 MB), so a first
``match`` starts in seconds instead of building it for minutes; it is used only when its recipe
key (:func:`start_set_key`: recipe version, size, seed, vita version) matches this install,
otherwise the set is built as above. Written from a built set by :func:`main`
(``python -c "from vitalmatch.match.start_set import main; main(['OUT.npz'])"``).
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
#: Size of the starting set shipped in the package (``MatchConfig.start_set_size``'s default).
PACKAGED_SIZE = 256
#: The shipped copy of the default starting set (see the module docstring).
PACKAGED_FILE = Path(__file__).with_name("starts-default.npz")
#: Format of :meth:`StartSet.save` files.
_SAVE_FORMAT = "vitalmatch-start-set-1"


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
        self.size: int | None = None  # presets the set was built from (set by ensure_start_set)
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

    def save(self, path: str | os.PathLike) -> None:
        """Write the set without its audio to ``path`` (numpy ``.npz``, no pickle): vectors, notes,
        names, extras (encoded connections, LFO shapes and samples through shared tables), the
        catalogs, the registry and the index features, with :func:`start_set_key` of its size.
        :meth:`load` reads it back into an equal set (tested)."""
        from vitalmatch.synth.modulation import encode

        lfo_table: list[str] = []  # JSON of each distinct shape / sample, indexed from 1
        sample_table: list[str] = []
        rows = []
        for x in self.extras:
            lfos = [0 if d is None else _intern(lfo_table, d) for d in x.lfos]
            sample = 0 if x.sample is None else _intern(sample_table, x.sample)
            if any(x.wavetable_files):
                raise ValueError("a starting set with custom wavetable files cannot be saved")
            rows.append({"m": encode(x.modulations).tolist(), "l": lfos, "s": sample})
        if self.size is None:
            raise ValueError("the starting set's size is unknown (build it with ensure_start_set)")
        meta = {
            "format": _SAVE_FORMAT,
            "key": start_set_key(self.size),
            "size": self.size,
            "sample_rate": self.sample_rate,
            "registry": self.registry.to_json(),
            "catalogs": [_catalog_entry(c) for c in self.catalogs],
            "lfo_table": [json.loads(t) for t in lfo_table],
            "sample_table": [json.loads(t) for t in sample_table],
            "extras": rows,
        }
        tmp = Path(path).with_name(Path(path).name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            notes=self.notes.astype(np.int16),
            names=np.array(self.names),
            continuous=self.continuous.astype(np.float32),
            categorical=self.categorical.astype(np.int32),
            file_of=np.asarray(self.file_of, np.int16),
            features=self.index.features.numpy().astype(np.float16),  # log-mels: 1e-3 is plenty
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, size: int | None = None) -> StartSet | None:
        """The set :meth:`save` wrote to ``path``, or None when the file is absent, unreadable or
        was made for another recipe, size or synth version (``size``: the size asked for;
        None accepts any)."""
        from vitalmatch.data.reader import extras_of
        from vitalmatch.synth.modulation import ENCODED_WIDTH
        from vitalmatch.synth.wavetables import WavetableCatalog

        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                arrays = {
                    k: z[k] for k in ("notes", "names", "continuous", "categorical", "file_of", "features")
                }
        except (OSError, ValueError, KeyError):
            return None
        if meta.get("format") != _SAVE_FORMAT or (size is not None and meta.get("size") != size):
            return None
        if meta.get("key") != start_set_key(int(meta["size"])):
            return None
        self = cls.__new__(cls)
        self.paths = [Path(path)]
        self.size = int(meta["size"])
        self.sample_rate = int(meta["sample_rate"])
        self.registry = ParamRegistry.from_json(meta["registry"])
        builtin = WavetableCatalog.builtin()
        self.catalogs = [
            builtin if c == "builtin" else WavetableCatalog.from_json_data(json.loads(c))
            for c in meta["catalogs"]
        ]
        self.catalog = self.catalogs[0] if self.catalogs else None
        lfo_table = [None, *meta["lfo_table"]]
        sample_table = [None, *meta["sample_table"]]
        self.extras = [
            extras_of(
                np.asarray(r["m"], np.float32).reshape(-1, ENCODED_WIDTH),
                np.asarray(r["l"]),
                int(r["s"]),
                lfo_table,
                sample_table,
            )
            for r in meta["extras"]
        ]
        self.notes = arrays["notes"].astype(int)
        self.names = [str(n) for n in arrays["names"]]
        self.continuous = arrays["continuous"]
        self.categorical = arrays["categorical"].astype(np.int64)
        self.file_of = [int(f) for f in arrays["file_of"]]
        features = arrays["features"].astype(np.float32)
        self.index = NearestNeighbours(features, self.feature_config(), rms=_INDEX_RMS)
        return self

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


def start_set_key(size: int, tier: int | None = None) -> str:
    """What a starting set of ``size`` presets (its ``tier`` part; None: the whole set) depends
    on: the recipe version, size, seed and the vita version (renders change with the synth)."""
    from vitalmatch.synth.params import _vita_version

    part = "" if tier is None else f":{tier}"
    return hashlib.sha256(
        f"{START_SET_VERSION}:{size}{part}:{START_SET_SEED}:{_vita_version()}".encode()
    ).hexdigest()


def start_set_path(size: int, tier: int = 1) -> Path:
    """Cache file of the ``tier`` part of the starting set of ``size`` presets."""
    return cache_dir() / f"starts-t{tier}-n{size}-{start_set_key(size, tier)[:10]}.h5"


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
    packaged: bool = True,
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
        packaged: use the copy shipped in the package (:data:`PACKAGED_FILE`) when it was made
            for this size, recipe and synth version; False renders (or reuses) the cached build.
    """
    if size <= 0:
        return None
    if packaged and size == PACKAGED_SIZE:
        shipped = StartSet.load(PACKAGED_FILE, size)
        if shipped is not None:  # the same recipe and synth: no need to render it again
            return shipped
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
    starts = StartSet(paths)
    starts.size = size
    return starts


def _catalog_entry(catalog) -> str:
    """``"builtin"`` for the built-in wavetable catalog (its tables ship with the package), else
    the catalog's JSON."""
    from vitalmatch.synth.wavetables import WavetableCatalog

    return "builtin" if list(catalog.hashes) == list(WavetableCatalog.builtin().hashes) else catalog.to_json()


def _intern(table: list[str], value: dict) -> int:
    """1-based index of ``value`` (as sorted JSON) in ``table``, appended when new."""
    text = json.dumps(value, sort_keys=True)
    if text not in table:
        table.append(text)
    return table.index(text) + 1


def main(argv: list[str] | None = None) -> int:
    """``main(["OUT.npz", "--size", "N"])``: build (or reuse the cached) starting
    set of ``N`` presets and write it with :meth:`StartSet.save` (how :data:`PACKAGED_FILE` is made)."""
    import argparse

    ap = argparse.ArgumentParser(prog="start_set", description="write a starting set without its audio")
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=PACKAGED_SIZE)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    check_start_set_size(args.size)
    paths = [start_set_path(args.size, t) for t in tier_sizes(args.size)]
    if not all(p.with_suffix(".done").is_file() for p in paths):
        ensure_start_set(args.size, workers=args.workers, notify=print, packaged=False)
    starts = StartSet(paths)
    starts.size = args.size
    starts.save(args.out)
    mb = args.out.stat().st_size / 1e6
    print(f"wrote {args.out}: {len(starts)} rows of {args.size} presets ({mb:.1f} MB)")
    return 0
