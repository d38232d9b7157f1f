"""Preset libraries as starting points: a producer's folders of presets, indexed once by sound.

Stage: match (starting points, ``vitalmatch match INPUT --library DIR ...``). Input: folders (or
files) of ``.vital`` presets and ``.vitalbank`` banks, e.g. the packs ``download-presets`` writes
(presets in subfolders beside licence files), plus Vital's factory folders when they exist; later
a target sound ``(T,)`` with its MIDI note. Output: :class:`Library`, whose :meth:`Library.nearest`
returns the ``k`` presets whose render at the indexed note nearest the target's sounds closest to
it, as :class:`LibraryEntry` (registry vectors and :class:`~vitalmatch.synth.render.PresetExtras`),
for the matcher to render at the target's note and score.

The index. Each preset is stored (:func:`~vitalmatch.data.preset_store.pack_preset`: compact JSON,
its wavetables by content hash) and rendered once from that stored form, as the file holds it
(:meth:`~vitalmatch.synth.render.RenderEngine.render_preset_dict`, reproducible: every render is a
child forked from a template synth), at each of :attr:`LibraryConfig.notes`, in crash-isolated
worker processes (:class:`~vitalmatch.synth.pool.WorkerPool`, no torch there): a preset that
segfaults or hangs costs that preset (listed in :attr:`Library.failures`), never the index. Its
features at a note are the coarse log-mels of :class:`~vitalmatch.neighbours.NearestNeighbours` (as
the built-in starting set, :mod:`vitalmatch.match.start_set`) of the whole render, scaled to a
fixed RMS first so loudness does not choose the neighbour. A note whose render is silent (peak
below :data:`SILENT_PEAK`) or not finite is left out of that note's search; a preset silent at
every note is a failure.

The cache. One HDF5 file per library, ``$VITALMATCH_CACHE/library/<key>.h5`` (see
:func:`~vitalmatch.match.start_set.cache_dir`), named by a sha256 of the resolved folder list, the
render and feature settings and the vita version (:func:`cache_key`). Per source file it holds the
size, ``mtime_ns`` and sha1 of the content and the file's failures; per preset its name, where it
came from, its features and valid notes, and the stored preset. The wavetables are written once
each, content-addressed, as ``library/wavetables/<hash>.json`` (shared by all libraries;
:attr:`PresetExtras.wavetable_files` points the render engine at those the catalog lacks). Opening a
library reuses every file whose size and mtime are unchanged, or whose content hash is unchanged
(the new mtime is noted); new and changed files are indexed, deleted ones dropped; the failures of
an unchanged file are kept too, so a preset that crashes the synth is not rendered on every open.
The cache file is rewritten only when something changed, atomically (a temporary file, then
``os.replace``; Ctrl-C deferred meanwhile), also when indexing is interrupted (with the files
finished so far); an unreadable one is rebuilt with a one-line notice.

Rebuilding an entry needs no render: its stored JSON goes through the same parser as
``generate --presets`` (:func:`~vitalmatch.synth.preset_file.to_vectors`); the wavetables the given
catalog holds become its ``osc_N_wavetable`` indices, the others index 0 and name their file. Only
the entries :meth:`Library.nearest` returns are rebuilt, so opening a cached library reads only
features and names: 0.10 s for the 124 shared presets, ~10 ms per rebuilt entry (docs/cli.md, match).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vitalmatch.data.ingest import scan
from vitalmatch.data.preset_store import init_worker, pack_preset, render_task, table_path, unpack_preset
from vitalmatch.features import FeatureConfig
from vitalmatch.interrupts import sigint_deferred
from vitalmatch.match.start_set import cache_dir
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.preset_file import PresetFile, PresetTables, factory_dirs, read_presets, to_vectors
from vitalmatch.synth.render import PresetExtras
from vitalmatch.synth.wavetables.catalog import WavetableCatalog
from vitalmatch.synth.wavetables.format import NUM_OSCILLATORS

if TYPE_CHECKING:
    from vitalmatch.neighbours import NearestNeighbours  # imports torch: only where it is used

__all__ = ["LIBRARY_RATE", "Library", "LibraryConfig", "LibraryEntry", "LibraryError", "cache_key"]

#: Bumped whenever the index recipe or the cache layout changes (old cache files are then unused).
LIBRARY_VERSION = 1
#: A render whose peak is below this is silent (the dataset's default threshold).
SILENT_PEAK = 1e-4
#: RMS every clip and query is scaled to before the log-mels (as the built-in starting set).
INDEX_RMS = 0.1
#: Presets indexed per second per worker at the default settings (5 notes of 1.5 s at 22.05 kHz;
#: docs/cli.md, match); used only for the estimate announced before indexing.
LIBRARY_RATE = 1.4
#: Seconds one preset's renders may take in a worker before it is killed (a hung synth).
TASK_TIMEOUT_S = 120.0
_FORMAT = "vitalmatch-library"


class LibraryError(ValueError):
    """A library that cannot be used (one line), e.g. ``library folder not found: X``."""


@dataclass(frozen=True)
class LibraryConfig:
    """How a library is indexed.

    Attributes:
        notes: MIDI notes each preset is rendered at (a query uses the one nearest its note).
            Five notes cost ~25% more than three: loading a real preset (its wavetables) costs
            more than a note.
        sample_rate: Hz of the index renders.
        note_s: seconds from note-on to note-off.
        render_s: seconds of audio per render (the features cover all of it: release tails count).
        workers: render processes while indexing.
        include_factory: add Vital's factory folders (:func:`~vitalmatch.synth.preset_file.factory_dirs`)
            when they exist.
        progress: show a progress bar (stderr) while indexing.
    """

    notes: tuple[int, ...] = (36, 48, 60, 72, 84)
    sample_rate: int = 22050
    note_s: float = 1.0
    render_s: float = 1.5
    workers: int = 2
    include_factory: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        notes = self.notes
        if not notes or any(
            isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 127 for n in notes
        ):
            raise LibraryError(f"library notes must be MIDI note numbers in 0..127, got {list(notes)}")
        if not 8000 <= self.sample_rate <= 192000:
            raise LibraryError(f"library sample rate must be in 8000..192000 Hz, got {self.sample_rate}")
        if not self.note_s > 0:
            raise LibraryError(f"library note length must be > 0 s, got {self.note_s}")
        if not 0 < self.render_s <= 60:
            raise LibraryError(f"library render length must be in (0, 60] s, got {self.render_s}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise LibraryError(f"library workers must be an integer >= 1, got {self.workers!r}")

    @property
    def n_samples(self) -> int:
        """Samples per index render, as vita computes it."""
        return int(np.float32(self.render_s) * self.sample_rate)

    @property
    def features(self) -> FeatureConfig:
        """Log-mel settings of the index (those of the built-in starting set)."""
        return FeatureConfig(sample_rate=self.sample_rate, n_fft=1024, hop_length=256, n_mels=64)

    @property
    def n_features(self) -> int:
        """Length ``D`` of one clip's features (``pooled_log_mel``: 4 x 4 tiles of bands x frames)."""
        f = self.features
        return (f.n_mels // 4) * (f.n_frames(self.n_samples) // 4)


@dataclass(frozen=True, eq=False)
class LibraryEntry:
    """One preset of a library, ready to render.

    Attributes:
        name: the preset's name (file stem; ``bank/member`` for a bank member).
        file: where it came from: the file's path; ``<bank file>!<member path>`` for a bank member.
        continuous: ``(C,)`` float32 in [0, 1], the columns of the registry given to :class:`Library`.
        categorical: ``(K,)`` int32 option indices; ``osc_N_wavetable`` indexes the catalog given
            (0 where the preset's table is not in it: :attr:`wavetable_files` names it then).
        extras: modulations, LFO shapes, sample and ``wavetable_files`` of the preset.
        wavetable_files: per oscillator 1..3, the JSON file of a table the catalog lacks, or None
            (also in ``extras``).
    """

    name: str
    file: str
    continuous: np.ndarray
    categorical: np.ndarray
    extras: PresetExtras
    wavetable_files: tuple[str | None, ...] = (None, None, None)


@dataclass(eq=False)
class _Stored:
    """One preset as the cache holds it."""

    name: str
    where: str
    blob: bytes  # zlib of the compact preset JSON, wavetables replaced by their hashes
    tables: tuple[str, ...]  # the three wavetable content hashes
    features: np.ndarray  # (n_notes, D) float32 (zeros where not valid)
    valid: np.ndarray  # (n_notes,) bool


@dataclass(eq=False)
class _FileRecord:
    """One source file as the cache holds it: its identity, presets and failures."""

    path: str
    size: int
    mtime_ns: int
    sha1: str
    entries: list[_Stored] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


# ------------------------------------------------------------------------------------ keys and files
def cache_key(dirs: Sequence[Path], config: LibraryConfig) -> str:
    """sha256 hex naming a library's cache file: the resolved folders (sorted, each once), the
    render and feature settings, the vita version and :data:`LIBRARY_VERSION`."""
    from vitalmatch.synth.params import _vita_version  # renders change with the synth version

    payload = {
        "version": LIBRARY_VERSION,
        "dirs": sorted({str(Path(d).resolve()) for d in dirs}),
        "render": [list(config.notes), config.sample_rate, config.note_s, config.render_s],
        "features": dataclasses.asdict(config.features),
        "rms": INDEX_RMS,
        "vita": _vita_version(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _file_sha1(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def _hidden(file: str) -> bool:
    """A scanned file under a hidden folder, a hidden file or a macOS resource fork (``file`` is
    ``<top folder>/<relative path>`` from :func:`~vitalmatch.data.ingest.scan`)."""
    parts = Path(file).parts[1:]
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


# ------------------------------------------------------------------------------------ the library
class Library:
    """A library of presets indexed by sound (state: the entries' features and stored presets).

    Opening scans the folders, reuses the cached index of unchanged files and indexes the rest
    (module docstring), then writes the cache when anything changed.

    Args:
        dirs: folders (searched recursively; hidden folders and ``__MACOSX`` left out) or files of
            ``.vital`` / ``.vitalbank`` presets.
        registry: the full registry the entries' vectors are columns of (its ``osc_N_wavetable``
            options are ``catalog``'s names).
        catalog: the wavetable catalog the entries' ``osc_N_wavetable`` indices refer to.
        config: index settings.
        notify: called with one-line notices: before indexing (how many, where, about how long)
            and when an unreadable cache file is rebuilt.

    Raises:
        LibraryError: (one line) a folder that does not exist, a folder without presets, or no
            usable preset at all (every file broken, silent or crashing: the first reason given).

    Attributes:
        failures: ``(file, one-line reason)`` of every preset or file left out (did not parse,
            crashed or hung the synth, silent at every note).
        path: the cache file.
        rendered, reused, dropped: presets rendered by this open, presets taken from the cache,
            and files dropped from it (no longer in the folders).
    """

    def __init__(
        self,
        dirs: Sequence[Path],
        registry: ParamRegistry,
        catalog: WavetableCatalog,
        config: LibraryConfig = LibraryConfig(),
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.catalog = catalog
        self.config = config
        self._notify = notify or (lambda _line: None)
        self.failures: list[tuple[str, str]] = []
        self.rendered = self.reused = self.dropped = 0
        self.seconds = 0.0
        start = time.perf_counter()

        given = [Path(d) for d in dirs]
        if not given:
            raise LibraryError("no library folders given")
        roots = self._roots(given)
        sources = self._scan(roots)
        self.dirs = [r for r, _, _ in roots]
        self.path = cache_dir() / "library" / f"{cache_key(self.dirs, config)[:20]}.h5"
        self.tables_dir = cache_dir() / "library" / "wavetables"  # shared by all libraries

        cached = self._load_cache()
        records: dict[str, _FileRecord] = {}
        todo: list[tuple[Path, int, int, str]] = []
        changed = False
        for path in sources:
            key = str(path)
            try:
                st = path.stat()
                rec = cached.get(key)
                if rec is None or (rec.size, rec.mtime_ns) != (st.st_size, st.st_mtime_ns):
                    sha1 = _file_sha1(path)
                    if rec is not None and rec.sha1 == sha1:  # touched, not changed
                        rec.size, rec.mtime_ns = st.st_size, st.st_mtime_ns
                        changed = True
                    else:
                        todo.append((path, st.st_size, st.st_mtime_ns, sha1))
                        continue
                if not self._tables_present(rec):  # a table file was removed: index it again
                    todo.append((path, st.st_size, st.st_mtime_ns, rec.sha1))
                    continue
            except OSError as e:
                self.failures.append((key, f"cannot read ({e.strerror or e})"))
                continue
            records[key] = rec
            self.reused += len(rec.entries)
        present = {str(p) for p in sources}
        self.dropped = sum(1 for k in cached if k not in present)
        changed = changed or self.dropped > 0 or bool(todo)

        try:
            if todo:
                try:
                    self.tables_dir.mkdir(parents=True, exist_ok=True)
                    self._index(todo, records)
                except OSError as e:  # the cache folder cannot be written (tables, the index)
                    raise LibraryError(f"cannot write the library index in {self.path.parent}: {e}") from None
        finally:
            if changed:
                try:
                    self._save(records)
                except OSError as e:  # the library works without its cache; the next open indexes again
                    self._notify(f"cannot write the library index {self.path}: {e}")
        for key in sorted(records):
            self.failures.extend(records[key].failures)
        self._stored = [e for key in sorted(records) for e in records[key].entries]  # file order
        self._entries: dict[int, LibraryEntry | None] = {}
        self._index_by_note: dict[int, tuple[NearestNeighbours, np.ndarray]] = {}
        self._tables: PresetTables | None = None
        self.seconds = time.perf_counter() - start
        if not self._stored:
            where = ", ".join(str(d) for d in given)
            first = f" (first: {self.failures[0][0]}: {self.failures[0][1]})" if self.failures else ""
            raise LibraryError(f"no usable presets in {where}: {len(self.failures)} failed{first}")

    # -------------------------------------------------------------------------------- scanning
    def _roots(self, given: list[Path]) -> list[tuple[Path, Path, bool]]:
        """``(resolved folder, as given, given by the caller)`` for each folder once; the factory
        folders last (when included)."""
        roots = []
        for d in given:
            if not d.exists():
                raise LibraryError(f"library folder not found: {d}")
            roots.append((d.resolve(), d, True))
        if self.config.include_factory:
            roots += [(d.resolve(), d, False) for d in factory_dirs()]
        out, seen = [], set()
        for root in roots:
            if root[0] not in seen:
                seen.add(root[0])
                out.append(root)
        return out

    @staticmethod
    def _scan(roots: list[tuple[Path, Path, bool]]) -> list[Path]:
        """Every preset file under ``roots``, each once, sorted (:func:`~vitalmatch.data.ingest.scan`,
        hidden files and folders left out).

        Raises:
            LibraryError: a given file that is no preset file, a given folder without presets.
        """
        found: dict[str, Path] = {}
        for root, shown, own in roots:
            try:
                sources = [s for s in scan([root]) if not _hidden(s.file)]
            except ValueError:
                sources = []
            if not sources and own:
                if root.is_file():
                    raise LibraryError(f"{shown} is not a .vital or .vitalbank file")
                raise LibraryError(f"no .vital or .vitalbank presets in {shown}")
            for s in sources:
                found.setdefault(os.path.realpath(s.path), s.path)
        return sorted(found.values())

    def _tables_present(self, rec: _FileRecord) -> bool:
        return all(table_path(self.tables_dir, h).is_file() for e in rec.entries for h in e.tables)

    # -------------------------------------------------------------------------------- indexing
    def _index(self, todo: list[tuple[Path, int, int, str]], records: dict[str, _FileRecord]) -> None:
        """Read and store the files of ``todo``, then render their presets, into ``records``.

        A file enters ``records`` once all its presets are rendered, so an interrupted run keeps
        every finished file. The workers render the stored form (JSON and table files), so the
        index describes exactly what the cache rebuilds; the features are made here, so the
        workers need no torch.
        """
        from vitalmatch.neighbours import NearestNeighbours
        from vitalmatch.synth.pool import WorkerPool
        from vitalmatch.synth.render import RenderConfig

        cfg = self.config
        work: list[tuple[_FileRecord, _Stored]] = []
        left: dict[str, int] = {}
        for path, size, mtime_ns, sha1 in todo:
            rec = _FileRecord(str(path), size, mtime_ns, sha1)
            presets, rec.failures = read_presets(path, str(path))
            scratch = PresetTables(self.catalog)  # stage_preset's side tables (not kept)
            for p in presets:
                try:
                    blob, tables = pack_preset(p, self.tables_dir, scratch)
                except ValueError as e:
                    rec.failures.append((p.file, str(e)))
                    continue
                n = len(cfg.notes)
                features = np.zeros((n, cfg.n_features), np.float32)
                work.append((rec, _Stored(p.name, p.file, blob, tables, features, np.zeros(n, bool))))
            left[rec.path] = sum(1 for r, _ in work if r is rec)
            if left[rec.path] == 0:
                records[rec.path] = rec  # nothing to render: only failures
        if not work:
            return
        minutes = len(work) / (LIBRARY_RATE * cfg.workers) / 60
        self._notify(
            f"indexing {len(work)} presets of {len(todo)} new or changed library files (once; about "
            f"{max(minutes, 0.1):.1f} min on {cfg.workers} workers) into {self.path}"
        )
        render = RenderConfig(
            sample_rate=cfg.sample_rate,
            notes=cfg.notes,
            note_duration_s=cfg.note_s,
            render_duration_s=cfg.render_s,
            reproducible=True,
        )
        embedder = NearestNeighbours(np.zeros((0, 0), np.float32), cfg.features, rms=INDEX_RMS)
        bar = _progress_bar(len(work), cfg.progress)
        try:
            with WorkerPool(
                cfg.workers,
                initializer=init_worker,
                initargs=(self.registry.to_json(), render, str(self.tables_dir)),
                task_timeout_s=TASK_TIMEOUT_S,
            ) as pool:
                for result in pool.map_unordered(render_task, (stored.blob for _, stored in work)):
                    rec, stored = work[result.index]
                    self.rendered += 1
                    if result.status != "ok":
                        rec.failures.append((stored.where, f"the synth failed on it: {result.error}"))
                    else:
                        stored.features, stored.valid = _features(result.value, embedder)
                        if stored.valid.any():
                            rec.entries.append(stored)
                        else:
                            rec.failures.append((stored.where, "silent at every indexed note"))
                    left[rec.path] -= 1
                    if left[rec.path] == 0:
                        rec.entries.sort(key=lambda e: e.where)
                        records[rec.path] = rec
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    # -------------------------------------------------------------------------------- the cache
    def _load_cache(self) -> dict[str, _FileRecord]:
        """The cached records by file path; {} when there is none, or (with a notice) when it is
        unreadable or was made by other settings."""
        if not self.path.is_file():
            return {}
        try:
            return self._read_cache()
        except Exception as e:  # noqa: BLE001 - any damage means: rebuild, never a traceback
            reason = (str(e).splitlines() or [""])[0][:120] or type(e).__name__
            self._notify(f"library index {self.path} is unreadable ({reason}); rebuilding it")
            return {}

    def _read_cache(self) -> dict[str, _FileRecord]:
        import h5py

        n_notes, dim = len(self.config.notes), self.config.n_features
        with h5py.File(self.path, "r") as f:
            if f.attrs.get("format") != _FORMAT or int(f.attrs.get("version", -1)) != LIBRARY_VERSION:
                raise ValueError("not a library index of this version")
            if f.attrs.get("key") != cache_key(self.dirs, self.config):
                raise ValueError("made for other folders or settings")
            paths = [str(p) for p in f["files/path"].asstr()[()]]
            sizes, mtimes = f["files/size"][()], f["files/mtime_ns"][()]
            sha1s = [s.decode() for s in f["files/sha1"][()]]
            records = [
                _FileRecord(p, int(s), int(m), h)
                for p, s, m, h in zip(paths, sizes, mtimes, sha1s, strict=True)
            ]
            e = f["entries"]
            owner = e["file"][()]
            names = e["name"].asstr()[()]
            wheres = e["where"].asstr()[()]
            tables = e["tables"][()]
            features = e["features"][()]
            valid = e["valid"][()]
            offsets = e["offsets"][()]
            blob = e["blob"][()].tobytes()
            if features.shape != (len(owner), n_notes, dim) or valid.shape != (len(owner), n_notes):
                raise ValueError("features of another shape")
            if len(offsets) != len(owner) + 1 or offsets[-1] != len(blob):
                raise ValueError("stored presets do not add up")
            for i, r in enumerate(owner):
                records[int(r)].entries.append(
                    _Stored(
                        name=str(names[i]),
                        where=str(wheres[i]),
                        blob=blob[offsets[i] : offsets[i + 1]],
                        tables=tuple(t.decode() for t in tables[i]),
                        features=features[i].astype(np.float32),
                        valid=valid[i].astype(bool),
                    )
                )
            fail = f["failures"]
            for r, where, reason in zip(
                fail["file"][()], fail["where"].asstr()[()], fail["reason"].asstr()[()], strict=True
            ):
                records[int(r)].failures.append((str(where), str(reason)))
        return {r.path: r for r in records}

    def _save(self, records: dict[str, _FileRecord]) -> None:
        """Write ``records`` as the cache file, atomically (Ctrl-C waits until it is in place)."""
        import h5py

        recs = list(records.values())
        entries = [(i, e) for i, r in enumerate(recs) for e in r.entries]
        failures = [(i, w, why) for i, r in enumerate(recs) for w, why in r.failures]
        n_notes, dim = len(self.config.notes), self.config.n_features
        text = h5py.string_dtype()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with sigint_deferred():
            try:
                with h5py.File(tmp, "w") as f:
                    f.attrs.update(
                        {
                            "format": _FORMAT,
                            "version": LIBRARY_VERSION,
                            "key": cache_key(self.dirs, self.config),
                            "dirs": json.dumps([str(d) for d in self.dirs]),
                            "config": json.dumps(dataclasses.asdict(self.config)),
                        }
                    )
                    g = f.create_group("files")
                    g.create_dataset("path", data=[r.path for r in recs], dtype=text)
                    g.create_dataset("size", data=np.array([r.size for r in recs], np.int64))
                    g.create_dataset("mtime_ns", data=np.array([r.mtime_ns for r in recs], np.int64))
                    g.create_dataset("sha1", data=np.array([r.sha1 for r in recs], "S40"))
                    g = f.create_group("entries")
                    g.create_dataset("file", data=np.array([i for i, _ in entries], np.int32))
                    g.create_dataset("name", data=[e.name for _, e in entries], dtype=text)
                    g.create_dataset("where", data=[e.where for _, e in entries], dtype=text)
                    g.create_dataset(
                        "tables",
                        data=np.array([e.tables for _, e in entries], "S64").reshape(-1, NUM_OSCILLATORS),
                    )
                    feats = np.zeros((len(entries), n_notes, dim), np.float32)
                    valid = np.zeros((len(entries), n_notes), bool)
                    for j, (_, e) in enumerate(entries):
                        feats[j], valid[j] = e.features, e.valid
                    g.create_dataset("features", data=feats)
                    g.create_dataset("valid", data=valid)
                    sizes = np.array([len(e.blob) for _, e in entries], np.int64)
                    g.create_dataset("offsets", data=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
                    blob = b"".join(e.blob for _, e in entries)
                    g.create_dataset("blob", data=np.frombuffer(blob, np.uint8))
                    g = f.create_group("failures")
                    g.create_dataset("file", data=np.array([i for i, _, _ in failures], np.int32))
                    g.create_dataset("where", data=[w for _, w, _ in failures], dtype=text)
                    g.create_dataset("reason", data=[why for _, _, why in failures], dtype=text)
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)

    # -------------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._stored)

    def summary(self) -> str:
        """One line: presets, what this open rendered and reused, failures and the cache file."""
        return (
            f"library: {len(self)} presets ({self.rendered} rendered, {self.reused} from the index, "
            f"{self.dropped} files dropped), {len(self.failures)} left out, in {self.seconds:.1f} s; "
            f"index {self.path}"
        )

    def nearest(self, audio: np.ndarray, sample_rate: int, note: int, k: int) -> list[LibraryEntry]:
        """The ``k`` presets whose index render sounds closest to ``audio``, closest first.

        Args:
            audio: mono ``(T,)`` target at ``sample_rate`` Hz (its first
                :attr:`LibraryConfig.render_s` seconds are compared; a shorter one is padded).
            note: the target's MIDI note; the index note nearest it is used (presets silent
                there are left out).
            k: how many (fewer when the library is smaller).
        """
        import soxr

        from vitalmatch.neighbours import NearestNeighbours

        if k <= 0 or not self._stored:
            return []
        cfg = self.config
        x = np.nan_to_num(np.asarray(audio, np.float32).reshape(-1))
        if sample_rate != cfg.sample_rate:
            x = soxr.resample(x, sample_rate, cfg.sample_rate).astype(np.float32)
        n = cfg.n_samples
        query = np.zeros(n, np.float32)
        query[: min(n, len(x))] = x[:n]
        j = int(np.argmin(np.abs(np.asarray(cfg.notes) - int(note))))
        if j not in self._index_by_note:
            features = np.stack([e.features[j] for e in self._stored])
            rows = np.flatnonzero([e.valid[j] for e in self._stored])
            self._index_by_note[j] = (NearestNeighbours(features, cfg.features, rms=INDEX_RMS), rows)
        index, rows = self._index_by_note[j]
        out: list[LibraryEntry] = []
        if len(rows) == 0:  # every preset is silent at this note
            return out
        for row in index.nearest(query, len(rows), among=rows):
            entry = self._entry(int(row))
            if entry is not None:
                out.append(entry)
            if len(out) == k:
                break
        return out

    def entries(self) -> Iterator[LibraryEntry]:
        """Every usable preset of the library, in file order (each rebuilt from the cache)."""
        for row in range(len(self._stored)):
            entry = self._entry(row)
            if entry is not None:
                yield entry

    def _entry(self, row: int) -> LibraryEntry | None:
        """Rebuild stored preset ``row`` (cached); None, with a failure listed, if it cannot be."""
        if row in self._entries:
            return self._entries[row]
        stored = self._stored[row]
        if self._tables is None:
            self._tables = PresetTables(self.catalog)
        catalog = self.catalog
        # A table the catalog holds becomes its index; another one names its file, and the
        # catalog's table 0 stands in for it in the vectors.
        tables = [
            catalog[catalog.index_of(h)].table if h in catalog else catalog[0].table for h in stored.tables
        ]
        files = tuple(None if h in catalog else str(table_path(self.tables_dir, h)) for h in stored.tables)
        try:
            missing = [f for f in files if f is not None and not os.path.isfile(f)]
            if missing:
                raise ValueError(f"wavetable file {missing[0]} is missing")
            preset = unpack_preset(stored.blob, self.tables_dir, tables)
            parsed = to_vectors(
                PresetFile(stored.name, stored.where, preset), self.registry, catalog, self._tables
            )
            extras = self._tables.extras(parsed.modulation, parsed.lfo_shape, parsed.sample)
        except (ValueError, KeyError, TypeError, zlib.error) as e:
            self.failures.append((stored.where, f"cannot be rebuilt from the index: {e}"))
            self._entries[row] = None
            return None
        entry = LibraryEntry(
            name=stored.name,
            file=stored.where,
            continuous=parsed.continuous,
            categorical=parsed.categorical,
            extras=dataclasses.replace(extras, wavetable_files=files) if any(files) else extras,
            wavetable_files=files,
        )
        self._entries[row] = entry
        return entry


def _features(mono: np.ndarray, embedder) -> tuple[np.ndarray, np.ndarray]:
    """``(n_notes, T)`` renders -> ``((n_notes, D) float32 features, (n_notes,) bool valid)``: a
    silent (peak below :data:`SILENT_PEAK`) or non-finite note is not valid (features zeros)."""
    finite = np.isfinite(mono).all(axis=1)
    clean = np.nan_to_num(mono)
    valid = finite & (np.abs(clean).max(axis=1) >= SILENT_PEAK)
    features = embedder.embed(np.where(valid[:, None], clean, 0.0)).numpy().astype(np.float32)
    features[~valid] = 0.0
    return features, valid


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="preset", desc="indexing library", dynamic_ncols=True, file=sys.stderr)
