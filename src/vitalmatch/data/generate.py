"""Dataset generation: sample presets, render them in crash-isolated workers, store them in HDF5.

Stage: generate. Input: a :class:`GenerateConfig`. Output: one HDF5 file (schema in
:mod:`vitalmatch.data.schema`, written by :mod:`vitalmatch.data.writer`) with one row per accepted
render (preset x note) and the registry, wavetable catalog, seed and every setting as attributes;
or, for a directory output (``-o DIR/``, ``shard_size``, ``shard``), one such file per block of
``shard_size`` presets plus ``index.json`` (the plan and the index: :mod:`vitalmatch.data.shards`).

Flow: :class:`~vitalmatch.data.sampling.PresetSampler` yields presets in stream order ->
:class:`~vitalmatch.synth.pool.WorkerPool` (or, with ``backend="ray"``,
:class:`~vitalmatch.synth.ray_pool.RayPool`) renders them, one :class:`RenderEngine` per worker
process (a segfault or hang loses one preset, logged as failed, never the run) -> each note is
validated (:mod:`vitalmatch.data.validation`) -> accepted rows are appended *in stream order*
and committed every ``commit_every`` presets together with the stream position.

Reproducibility: preset ``i`` depends only on ``(seed, i)``, renders are bit-identical
(``osc_N_random_phase`` pinned to 0, voices flushed before each note), and rows are written in
stream order whatever the number of workers. A run killed at any moment and continued with
``resume=True`` therefore produces the same file contents as an uninterrupted run.
``n_presets`` counts *kept* presets (at least one note accepted); the stream runs on until that
many are kept, or until ``give_up_after`` presets in a row gave no usable render (thresholds that
nothing passes would otherwise run forever): the run then stops with :class:`GenerationStalled`,
after committing every row kept so far.

Every setting is checked (:meth:`GenerateConfig.check`) before any file is created or opened, so
a refused run leaves no new file behind and never touches an existing one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitalmatch import __version__
from vitalmatch.data.reader import DatasetReader, extras_of
from vitalmatch.data.sampling import PresetSampler, SamplerConfig, preset_hash, split_of
from vitalmatch.data.schema import StorageConfig
from vitalmatch.data.shards import (
    DEFAULT_SHARD_SIZE,
    Block,
    blocks_of_shard,
    check_shard,
    index_directory,
    plan_blocks,
)
from vitalmatch.data.validation import ValidationConfig, check_audio
from vitalmatch.data.writer import DatasetWriter
from vitalmatch.interrupts import sigint_deferred
from vitalmatch.synth.modulation import LFO_SHAPES, destinations, sources
from vitalmatch.synth.params import ParamRegistry, check_tier
from vitalmatch.synth.ray_pool import check_backend, open_pool
from vitalmatch.synth.render import RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import WavetableCatalog

log = logging.getLogger(__name__)

#: At most this many failed presets are listed (with reasons) in the file's progress record.
MAX_FAILED_LISTED = 1000

#: Default :attr:`GenerateConfig.give_up_after`: a run stops with an error after this many
#: presets in a row without a kept one (every note rejected, or the preset failed). With sane
#: thresholds far fewer presets than this are rejected in a row (the sampler keeps most of them);
#: such a streak means the thresholds, the notes or the synth reject everything.
GIVE_UP_AFTER = 1000


@dataclass
class GenerateConfig:
    """Everything that defines a generation run.

    Attributes:
        output: HDF5 file to write.
        n_presets: sampled presets to keep (each gives one row per accepted note); 0 with
            ``presets`` ingests real presets only.
        presets: folders (or files) of real ``.vital`` / ``.vitalbank`` presets to ingest before
            the sampled ones (:mod:`vitalmatch.data.ingest`): each is parsed into registry
            vectors, modulations, LFO shapes and its sample, and rendered from those through the
            same engine, so the stored labels are exactly what the synth played. Files that do
            not parse, or crash the synth, are listed in the progress record and skipped.
        tier: 1 (oscillators 1-2, filter 1, envelope 1, volume), 2 (all non-modulation
            parameters plus 8 fixed modulation routings) or 3 (2 plus a sparse random
            modulation matrix and LFO shapes). Ingested presets keep all they hold.
        seed: sampling seed.
        workers: render processes (with ``backend="ray"``: Ray workers of one CPU each, across
            the cluster).
        backend: where the renders run: "local" (worker processes here) or "ray" (one synth per
            Ray worker process, vitalmatch.synth.ray_pool; a worker that crashes or hangs costs
            its preset, recorded as failed as locally, not retried; this process writes the rows).
        address: the Ray cluster with --backend ray: auto (the cluster this machine joined) or
            HOST:PORT; none starts a private Ray on this machine with --workers CPUs.
        render, validation, storage: per-stage settings.
        split: train/val/test fractions, assigned by preset hash.
        wavetables: catalog JSON (``vitalmatch discover-wt``); None = the built-in catalog.
        notes_per_preset: render only this many of ``render.notes`` per preset, chosen at random
            (seeded by ``seed`` and the preset index, so resume and re-runs agree); None = all.
            More presets for the same rendering time, at fewer pitches each.
        store_mels: also store float16 log-mels (``features/log_mel``) computed with the defaults of
            :class:`vitalmatch.features.FeatureConfig` at the render sample rate, in the render
            workers (one torch thread each), from the float renders before 16-bit storage.
        commit_every: presets between durable commits.
        task_timeout_s: a render taking longer kills its worker; the preset is logged as failed.
            Must be > 0 (None: no limit).
        max_tasks_per_worker: workers are replaced after this many presets.
        give_up_after: stop with :class:`GenerationStalled` after this many presets in a row
            without a kept one (rejected or failed), counted within one run (a resumed run
            counts afresh); :data:`GIVE_UP_AFTER` by default.
        resume: continue an interrupted file; overwrite: replace an existing file.
        progress: show a progress bar.
        shard_size: kept sampled presets per shard: the output is then a directory of
            shard-NNNNN.h5 files and index.json (vitalmatch.data.shards); an -o path ending in /
            or an existing directory writes one with 1000 per shard.
        shard: K/N (0 <= K < N): write only the shards of blocks b with b % N == K, e.g.
            $SLURM_ARRAY_TASK_ID/N in an array job; the union of the N runs is the whole run.
    """

    output: Path
    n_presets: int
    presets: tuple[Path, ...] = ()
    tier: int = 1
    seed: int = 0
    workers: int = 2
    backend: str = "local"
    address: str | None = None
    render: RenderConfig = field(default_factory=RenderConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    storage: StorageConfig = field(default_factory=lambda: StorageConfig(channels="mono"))
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    wavetables: Path | None = None
    store_mels: bool = False
    notes_per_preset: int | None = None
    commit_every: int = 32
    task_timeout_s: float = 60.0
    max_tasks_per_worker: int = 500
    give_up_after: int = GIVE_UP_AFTER
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    shard_size: int | None = None
    shard: tuple[int, int] | None = None

    @property
    def sharded(self) -> bool:
        """Whether the output is a directory of shards (:mod:`vitalmatch.data.shards`)."""
        return self.shard_size is not None or self.shard is not None or Path(self.output).is_dir()

    @property
    def shard_size_or_default(self) -> int:
        return DEFAULT_SHARD_SIZE if self.shard_size is None else self.shard_size

    def run_settings(self, n_ingested: int) -> dict[str, Any]:
        """The whole run's content settings, stored in every shard (equal across the shards)."""
        return {
            **self.content_settings(),
            "n_presets": self.n_presets,
            "n_ingested": n_ingested,
            "shard_size": self.shard_size_or_default,
        }

    def check(self) -> None:
        """Raise ValueError with a one-line message for invalid settings.

        Covers every setting the run uses (render notes, validation thresholds, storage, worker
        pool), so that :func:`generate` fails here, before it creates or opens a file."""
        check_tier(self.tier)
        if isinstance(self.n_presets, bool) or not isinstance(self.n_presets, int) or self.n_presets < 0:
            raise ValueError(f"-n must be a number of presets >= 0, got {self.n_presets!r}")
        if self.n_presets == 0 and not self.presets:
            raise ValueError("-n must be a positive number of presets (or give --presets DIR to ingest)")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        check_backend(self.backend, self.address)
        bad_notes = [n for n in self.render.notes if not _is_midi_note(n)]
        if bad_notes:
            raise ValueError(f"--notes must be whole MIDI note numbers in 0..127, got {bad_notes[0]!r}")
        self.validation.check()
        self.storage.check()
        timeout = self.task_timeout_s
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise ValueError(f"--timeout must be > 0 seconds, got {timeout!r}")
        if self.max_tasks_per_worker is not None and self.max_tasks_per_worker < 1:
            raise ValueError(f"max_tasks_per_worker must be >= 1, got {self.max_tasks_per_worker}")
        if (
            isinstance(self.give_up_after, bool)
            or not isinstance(self.give_up_after, int)
            or self.give_up_after < 1
        ):
            raise ValueError(
                f"--give-up-after (give_up_after) must be an integer >= 1, got {self.give_up_after!r}"
            )
        if self.notes_per_preset is not None and not 1 <= self.notes_per_preset <= len(self.render.notes):
            raise ValueError(
                f"--notes-per-preset must be 1..{len(self.render.notes)} (the number of --notes), "
                f"got {self.notes_per_preset}"
            )
        if self.commit_every < 1:
            raise ValueError("commit_every must be >= 1")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        size = self.shard_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"--shard-size must be an integer >= 1, got {size!r}")
        if self.shard is not None:
            check_shard(self.shard)
        if self.sharded and Path(self.output).exists() and not Path(self.output).is_dir():
            raise ValueError(
                f"{self.output} is a file; a sharded run (--shard-size, --shard, -o DIR/) writes a directory"
            )
        split_of("0" * 16, self.split)

    def content_settings(self) -> dict[str, Any]:
        """The settings that determine the file's contents (must match on resume)."""
        settings = {
            "tier": self.tier,
            "seed": self.seed,
            "render": asdict(self.render),
            "validation": asdict(self.validation),
            "storage": asdict(self.storage),
            "split": list(self.split),
            "store_mels": self.store_mels,
        }
        if self.notes_per_preset is not None:  # absent from older files' settings
            settings["notes_per_preset"] = self.notes_per_preset
        if self.presets:  # absent from older and sampling-only files' settings
            settings["presets"] = [str(Path(p).resolve()) for p in self.presets]
        return settings

    def notes_for(self, index: int) -> tuple[int, ...]:
        """The MIDI notes rendered for preset ``index`` (in ``render.notes`` order)."""
        notes = self.render.notes
        k = self.notes_per_preset
        if k is None or k >= len(notes):
            return notes
        rng = np.random.default_rng([self.seed, index, 0x6E6F7465])  # "note"
        chosen = set(rng.choice(len(notes), size=k, replace=False).tolist())
        return tuple(n for i, n in enumerate(notes) if i in chosen)


def _is_midi_note(n: Any) -> bool:
    """A whole number in 0..127 (``60`` or ``60.0``; not ``60.9``, which would render as 60)."""
    if isinstance(n, bool) or not isinstance(n, int | float | np.integer | np.floating):
        return False
    return bool(float(n).is_integer() and 0 <= n <= 127)


def load_catalog(path: Path | None) -> WavetableCatalog:
    """The catalog a run uses: a JSON file from ``discover-wt``, or the built-in one."""
    return WavetableCatalog.builtin() if path is None else WavetableCatalog.load(path)


# ------------------------------------------------------------------------------ worker side
#: Test-only fault injection, read by each worker: ``"crash:3,7;hang:5"`` makes the worker crash
#: the real synth (``chorus_voices`` = 7 segfaults vita, vita-facts §4) or hang at those preset
#: indices, so tests can check that the run survives both.
FAULTS_ENV = "VITALMATCH_FAULTS"

_ENGINE: RenderEngine | None = None
_TABLES: tuple[list, list] = ([], [])  # the run's LFO-shape and sample tables (see Extras)
_VALIDATION: ValidationConfig | None = None
_FAULTS: dict[int, str] = {}
_FEATURES: Any = None  # FeatureConfig of the stored log-mels (--store-mels), else None


def parse_faults(text: str) -> dict[int, str]:
    """``{index: kind}`` from a fault switch such as ``"crash:3,7;hang:5"`` (tests only)."""
    faults: dict[int, str] = {}
    for part in filter(None, text.split(";")):
        kind, _, indices = part.partition(":")
        faults.update({int(i): kind.strip() for i in indices.split(",") if i.strip()})
    return faults


def _init_worker(
    registry_json: str,
    tables: list[dict],
    render: RenderConfig,
    validation: ValidationConfig,
    features: Any = None,
    lfo_table: list | None = None,
    sample_table: list | None = None,
) -> None:
    global _ENGINE, _VALIDATION, _FAULTS, _FEATURES, _TABLES
    _ENGINE = RenderEngine(ParamRegistry.from_json(registry_json), tables, render)
    _TABLES = (list(lfo_table or LFO_SHAPES), list(sample_table or [None]))
    _VALIDATION = validation
    _FAULTS = parse_faults(os.environ.get(FAULTS_ENV, ""))
    _FEATURES = features
    if features is not None:
        import torch

        # One thread per worker: the workers already fill the cores, and OpenMP threads spinning
        # beside them would slow every render down.
        torch.set_num_threads(1)


def _inject_fault(index: int) -> None:
    kind = _FAULTS.get(index)
    assert _ENGINE is not None
    if kind == "crash":
        _ENGINE.crash()
    elif kind == "hang":
        time.sleep(3600)


def _render_task(
    task: tuple,
) -> tuple[int, list[np.ndarray | None], list[str | None], list[np.ndarray | None]]:
    """Render one preset at its notes; return the accepted audio, each note's verdict and, with
    ``--store-mels``, the accepted renders' float16 log-mels ``(n_mels, frames)`` (computed here,
    in the worker, so that they scale with the workers).

    ``task`` is ``(index, continuous, categorical, notes, modulation, lfo_shape, sample)``."""
    index, cont, cat, notes, modulation, lfo_shape, sample = task
    assert _ENGINE is not None and _VALIDATION is not None
    if _FAULTS:
        _inject_fault(index)
    audio = _ENGINE.render(cont, cat, notes, extras_of(modulation, lfo_shape, sample, *_TABLES))
    reasons = [check_audio(a, _VALIDATION) for a in audio]
    kept = [a if r is None else None for a, r in zip(audio, reasons, strict=True)]
    mels: list[np.ndarray | None] = [None] * len(kept)
    good = [i for i, a in enumerate(kept) if a is not None]
    if _FEATURES is not None and good:
        from vitalmatch.features import log_mel

        block = log_mel(np.stack([audio[i] for i in good]), _FEATURES).numpy().astype(np.float16)
        for i, m in zip(good, block, strict=True):
            mels[i] = m
    return index, kept, reasons, mels


# ------------------------------------------------------------------------------ main side
@dataclass
class GenerateSummary:
    """What a run did (also stored as the file's committed progress)."""

    path: str
    kept_presets: int
    rows: int
    next_preset: int
    rejections: dict[str, int]
    failed: int
    seconds: float
    ingested: tuple[int, int, int] | None = None  # (kept, parsed, files that did not parse)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    ingest_report: tuple[str, ...] = ()  # what parsing found (IngestPlan.summary)
    shards: str | None = None  # a directory run: the index written, or what the shard run did

    def lines(self) -> list[str]:
        tried = max(self.next_preset, 1)
        out = [
            f"wrote {self.path}: {self.kept_presets} presets, {self.rows} renders",
            f"presets tried {self.next_preset}, failed (crash/timeout/error) {self.failed}",
            "renders rejected: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items())) or "none")
            + f" (preset rejection rate {(tried - self.kept_presets) / tried:.1%})",
        ]
        if self.ingested is not None:
            kept, parsed, unparsed = self.ingested
            why = ", ".join(f"{k} {v}" for k, v in sorted(self.failure_reasons.items()))
            listed = f"; not kept: {why} (listed in the file's progress record)" if why else ""
            line = f"real presets: {kept} kept of {parsed} parsed; {unparsed} files did not parse{listed}"
            out.append(line)
            out.extend(self.ingest_report)
        if self.shards is not None:
            out.append(self.shards)
        out.append(f"time {self.seconds:.1f} s")
        return out


@dataclass(frozen=True)
class _Item:
    """One preset to render: sampled (``source`` "synthetic") or ingested from a file."""

    position: int  # in the run's stream: ingested presets first, then sampled ones
    index: int  # preset_index column: sampling-stream index, or position in the ingested list
    continuous: np.ndarray
    categorical: np.ndarray
    modulation: np.ndarray
    lfo_shape: np.ndarray
    sample: int
    name: str
    source: str
    file: str = ""


def _synthetic_item(preset, position: int) -> _Item:
    return _Item(
        position,
        preset.index,
        preset.continuous,
        preset.categorical,
        preset.modulation,
        preset.lfo_shape,
        0,
        preset.name,
        "synthetic",
    )


def _ingested_item(ingested, position: int, index: int | None = None) -> _Item:
    parsed = ingested.preset
    return _Item(
        position,
        position if index is None else index,
        parsed.continuous,
        parsed.categorical,
        parsed.modulation,
        parsed.lfo_shape,
        int(parsed.sample),
        parsed.name,
        ingested.source,
        parsed.file,
    )


def _ingest_hash(plan) -> str:
    """SHA-256 over the ingested files' names and bytes (resume must see the same files)."""
    h = hashlib.sha256()
    for src in plan.files:
        h.update(src.file.encode() + b"\0")
        h.update(hashlib.sha256(Path(src.path).read_bytes()).digest())
    return h.hexdigest()


def content_hash(item: _Item, catalog, wt_cols, lfo_table, sample_table) -> str:
    """The preset's hash: its vectors, chosen wavetables, modulation, LFO shapes and sample."""
    extra = [catalog.hashes[item.categorical[c]] for c in wt_cols]
    if len(item.modulation) or np.any(item.lfo_shape) or item.sample:
        blob = json.dumps(
            [
                np.asarray(item.modulation, dtype=np.float32).tolist(),
                [lfo_table[int(i)] for i in item.lfo_shape],
                sample_table[int(item.sample)],
            ],
            sort_keys=True,
        )
        extra.append(hashlib.sha256(blob.encode()).hexdigest())
    return preset_hash(item.continuous, item.categorical, extra)


@dataclass
class _Job:
    """One output file of a run and its counters: the single ``.h5`` file, or one block's shard.

    Positions are local to the file: ``[0, m)`` are the ingested presets ``ingest[0] + p``
    (``m = ingest[1] - ingest[0]``), later ones the sampled presets ``stream_start + p - m``.
    ``status`` is "new" (create), "resume" or "complete" (a finished shard, skipped)."""

    path: Path
    block: Block | None
    ingest: tuple[int, int]
    stream_start: int
    quota: int
    status: str
    progress: dict = field(default_factory=dict)
    writer: DatasetWriter | None = None

    def __post_init__(self) -> None:
        self.load(self.progress)

    def load(self, progress: dict) -> None:
        """Set the counters from a committed progress record."""
        m = self.n_ingested
        self.kept = int(progress.get("kept_presets", 0))
        self.kept_synthetic = int(progress.get("kept_synthetic", self.kept if m == 0 else 0))
        self.next_preset = int(progress.get("next_preset", 0))
        self.rows = int(progress.get("rows", 0))
        self.rejections: Counter[str] = Counter(progress.get("rejections", {}))
        self.failed: list[dict] = list(progress.get("failed", []))
        self.n_failed = int(progress.get("n_failed", len(self.failed)))

    @property
    def n_ingested(self) -> int:
        return self.ingest[1] - self.ingest[0]

    def done(self) -> bool:
        return self.next_preset >= self.n_ingested and self.kept_synthetic >= self.quota

    def record(self) -> dict[str, Any]:
        """The progress record to commit (``complete`` marks a finished shard)."""
        out = _progress(
            self.kept,
            self.next_preset,
            self.rows,
            self.rejections,
            self.failed,
            self.n_failed,
            self.kept_synthetic,
        )
        if self.block is not None:
            out["complete"] = self.done()
        return out

    def items(self, plan, sampler: PresetSampler):
        """The presets to render from the committed position on (endless past the ingested ones
        unless the block keeps no sampled presets)."""
        lo, m, start = self.ingest[0], self.n_ingested, self.next_preset
        for pos in range(start, m):
            yield _ingested_item(plan.presets[lo + pos], pos, lo + pos)
        if self.quota == 0:
            return
        first = max(start, m) - m
        for preset in sampler.stream(self.stream_start + first):
            yield _synthetic_item(preset, m + preset.index - self.stream_start)


def generate(config: GenerateConfig) -> GenerateSummary:
    """Run (or resume) a generation job; see the module docstring. A directory output
    (:attr:`GenerateConfig.sharded`) writes one shard file per block through one worker pool
    (:mod:`vitalmatch.data.shards`), and ``index.json`` when this run wrote every block."""
    config.check()
    t0 = time.perf_counter()
    catalog = load_catalog(config.wavetables)
    lfo_table: list = list(LFO_SHAPES)
    sample_table: list = [None]
    plan = None
    plan_hash: str | None = None
    if config.presets:
        from vitalmatch.data.ingest import ingest

        plan = ingest(list(config.presets), catalog)
        catalog, lfo_table, sample_table = plan.catalog, list(plan.lfo_shapes), list(plan.samples)
        sample_table[0] = None  # index 0 is the init preset's white noise: nothing to write
        registry = plan.registry
        plan_hash = _ingest_hash(plan)
        for line in plan.summary():
            log.info(line)
    else:
        registry = ParamRegistry.from_synth(wavetable_names=catalog.names)
    n_ingested = len(plan.presets) if plan is not None else 0
    features = None
    if config.store_mels:
        from vitalmatch.features import FeatureConfig

        features = FeatureConfig(sample_rate=config.render.sample_rate)

    attrs = {
        "created_by": f"vitalmatch {__version__}",
        "tier": config.tier,
        "seed": config.seed,
        "sample_rate": config.render.sample_rate,
        "render_duration_s": config.render.render_duration_s,
        "note_duration_s": config.render.note_duration_s,
        "velocity": config.render.velocity,
        "notes": list(config.render.notes),
        "continuous_names": registry.continuous_names,
        "categorical_names": registry.categorical_names,
        "registry_json": registry.to_json(),
        "wavetable_names": list(catalog.names),
        "wavetable_hashes": list(catalog.hashes),
        "modulation_sources": list(sources()),
        "modulation_destinations": list(destinations()),
        "settings_json": json.dumps(config.content_settings()),
    }
    if plan is not None:
        attrs["ingest_hash"] = plan_hash
    run_settings = config.run_settings(n_ingested)
    mel_shape = (features.n_mels, features.n_frames(config.render.n_samples)) if features else None
    failed0 = [{"file": f, "reason": r} for f, r in (plan.failures if plan is not None else [])]

    def open_writer(job: _Job) -> None:
        """Create or resume ``job``'s file and load its counters from the committed progress."""
        if job.status == "resume":
            writer, progress = DatasetWriter.resume(job.path)
            shard_run = run_settings if job.block is not None else None  # single files have none
            _check_resume(writer, config, registry, catalog, plan_hash, job.path, shard_run)
        else:
            file_attrs = dict(attrs)
            if job.block is not None:
                file_attrs.update(
                    shard_block=job.block.block,
                    shard_blocks=job.block.blocks,
                    shard_size=job.block.size,
                    stream_start=job.block.stream_start,
                    run_settings_json=json.dumps(run_settings),
                )
            writer = DatasetWriter.create(
                job.path,
                audio_length=config.render.n_samples,
                sample_rate=config.render.sample_rate,
                n_continuous=len(registry.continuous),
                n_categorical=len(registry.categorical),
                storage=config.storage,
                attrs=file_attrs,
                mel_shape=mel_shape,
                overwrite=config.overwrite,
            )
            writer.write_blob("wavetables", catalog.to_json().encode())
            writer.write_blob("lfo_shapes", json.dumps(lfo_table).encode())
            writer.write_blob("samples", json.dumps(sample_table).encode())
            first = job.block is None or job.block.block == 0
            listed = failed0 if first else []  # the files that did not parse, listed once
            job.load({})
            writer.commit(_progress(0, 0, 0, Counter(), listed[:MAX_FAILED_LISTED], len(listed)))
            progress = writer.progress
        job.writer = writer
        job.load(progress)

    if config.sharded:
        whole = plan_blocks(config.n_presets, n_ingested, config.shard_size_or_default)
        blocks = blocks_of_shard(whole, config.shard)
        jobs = [_shard_job(config, b, registry, catalog, plan_hash, run_settings) for b in blocks]
        config.output.mkdir(parents=True, exist_ok=True)
    else:
        jobs = [
            _Job(
                config.output,
                None,
                (0, n_ingested),
                0,
                config.n_presets,
                "resume" if config.resume else "new",
            )
        ]
        open_writer(jobs[0])
    todo = [j for j in jobs if j.status != "complete"]

    sampler = PresetSampler(registry, SamplerConfig(tier=config.tier, seed=config.seed))
    wt_cols = [registry.locate(f"osc_{o}_wavetable")[1] for o in (1, 2, 3)]
    # pool result k is pending[k]: (the job it was rendered for, the preset). The task generator
    # runs in the pool's dispatcher thread; `current[0]`, set here, tells it which job the
    # results are consumed for, so it leaves a finished block at once (the few tasks it pulled
    # ahead for that block are rendered and dropped: the pool keeps running, not restarting).
    pending: dict[int, tuple[int, _Item]] = {}
    current = [0]

    def tasks():
        k, j = 0, 0
        while j < len(todo):
            for item in todo[j].items(plan, sampler):
                if current[0] > j:
                    break
                pending[k] = (j, item)
                k += 1
                notes = config.notes_for(item.index) if item.source == "synthetic" else config.render.notes
                yield (
                    item.index,
                    item.continuous,
                    item.categorical,
                    notes,
                    item.modulation,
                    item.lfo_shape,
                    item.sample,
                )
            else:  # a block of ingested presets only ran out: its results end it, go on
                j += 1
                continue
            j = current[0]

    total = sum(j.n_ingested + j.quota for j in jobs)
    bar = _progress_bar(config, sum(min(j.next_preset, j.n_ingested) + j.kept_synthetic for j in jobs), total)
    interrupted = False
    since_commit = 0
    streak = 0  # sampled presets in a row without a kept one (rejected or failed), in this run
    streak_reasons: Counter[str] = Counter()  # why: render rejections, and "failed" presets
    job: _Job | None = None

    def next_job() -> _Job | None:
        """Open the next unfinished job (finishing those that need no render); None: all done."""
        while current[0] < len(todo):
            nxt = todo[current[0]]
            if nxt.writer is None:
                open_writer(nxt)
            if not nxt.done():
                return nxt
            _finish(nxt)
            current[0] += 1
        return None

    try:
        job = next_job()
        if job is None:
            raise _Finished
        with open_pool(
            config.backend,
            config.workers,
            address=config.address,
            initializer=_init_worker,
            initargs=(
                registry.to_json(),
                [e.table for e in catalog],
                config.render,
                config.validation,
                features,
                lfo_table,
                sample_table,
            ),
            task_timeout_s=config.task_timeout_s,
            max_tasks_per_worker=config.max_tasks_per_worker,
        ) as pool:
            for result in pool.map(_render_task, tasks()):
                # rows, counters and the commit change together: a Ctrl-C waits for the block (while
                # waiting for renders it raises at once), so --resume can never store a preset twice
                with sigint_deferred():
                    owner, item = pending.pop(result.index)
                    if owner != current[0]:
                        continue  # rendered ahead for a block that has finished
                    assert job is not None and job.writer is not None and item.position == job.next_preset
                    writer = job.writer
                    synthetic = item.source == "synthetic"
                    kept_before = job.kept
                    what = {"preset": item.index} if synthetic else {"file": item.file, "name": item.name}
                    if result.status != "ok":
                        job.n_failed += 1
                        streak_reasons["failed"] += 1
                        if len(job.failed) < MAX_FAILED_LISTED:
                            job.failed.append({**what, "reason": result.error})
                        log.warning("preset %s failed: %s", item.name, result.error)
                    else:
                        _, audio, reasons, mels = result.value
                        job.rejections.update(r for r in reasons if r)
                        streak_reasons.update(r for r in reasons if r)
                        notes = config.notes_for(item.index) if synthetic else config.render.notes
                        good = [
                            (n, a, m) for n, a, m in zip(notes, audio, mels, strict=True) if a is not None
                        ]
                        if good:
                            h = content_hash(item, catalog, wt_cols, lfo_table, sample_table)
                            b = len(good)
                            writer.append(
                                audio=np.stack([a for _, a, _ in good]),
                                continuous=np.tile(item.continuous, (b, 1)),
                                categorical=np.tile(item.categorical, (b, 1)),
                                midi_note=[n for n, _, _ in good],
                                source=[item.source] * b,
                                tier=[config.tier if synthetic else 3] * b,
                                preset_hash=[h] * b,
                                preset_name=[item.name] * b,
                                split=[split_of(h, config.split)] * b,
                                preset_index=[item.index] * b,
                                log_mel=np.stack([m for _, _, m in good]) if features is not None else None,
                                modulation=[item.modulation] * b if writer.has_modulation else None,
                                lfo_shape=np.tile(item.lfo_shape, (b, 1)) if writer.has_modulation else None,
                                sample=[item.sample] * b if writer.has_modulation else None,
                                preset_file=[item.file] * b if writer.has_modulation else None,
                            )
                            job.kept += 1
                            job.kept_synthetic += synthetic
                            job.rows += b
                        else:
                            job.rejections["preset_no_valid_note"] += 1
                            if not synthetic and len(job.failed) < MAX_FAILED_LISTED:
                                # listed so that the skipped file is named; a rejection, not a failure
                                job.failed.append({**what, "reason": "rejected: no note passed validation"})
                    if bar is not None and (not synthetic or job.kept > kept_before):
                        bar.update(1)
                    job.next_preset = item.position + 1
                    since_commit += 1
                    if job.kept > kept_before or not synthetic:
                        streak = 0
                        streak_reasons.clear()
                    else:
                        streak += 1
                    if since_commit >= config.commit_every or job.done():
                        writer.commit(job.record())
                        since_commit = 0
                    if bar is not None:
                        done_rows = sum(j.rows for j in jobs)
                        tried = sum(j.next_preset for j in jobs)
                        kept_all = sum(j.kept for j in jobs)
                        bar.set_postfix(
                            renders_s=f"{done_rows / max(time.perf_counter() - t0, 1e-9):.1f}",
                            rejected=f"{(tried - kept_all) / max(tried, 1):.0%}",
                            failed=sum(j.n_failed for j in jobs),
                            refresh=False,
                        )
                    if job.done():
                        _finish(job)
                        current[0] += 1
                        job = next_job()
                        since_commit = 0
                if job is None or streak >= config.give_up_after:
                    break  # the finally below commits what was kept
    except _Finished:
        pass
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with sigint_deferred(deliver=False):
            for j in todo:
                if j.writer is not None:
                    _finish(j)
        if bar is not None:
            bar.close()
    ingested = None
    why: Counter[str] = Counter()
    kept = sum(j.kept for j in jobs)
    kept_synthetic = sum(j.kept_synthetic for j in jobs)
    if plan is not None:
        for j in jobs:
            for f in j.failed:
                if "file" in f:
                    why[_reason_kind(f["reason"])] += 1
        ingested = (kept - kept_synthetic, n_ingested, len(plan.failures))
    summary = GenerateSummary(
        str(config.output),
        kept,
        sum(j.rows for j in jobs),
        sum(j.next_preset for j in jobs),
        dict(sum((j.rejections for j in jobs), Counter())),
        sum(j.n_failed for j in jobs),
        time.perf_counter() - t0,
        ingested,
        dict(why),
        tuple(plan.summary(max_failures=5)) if plan is not None else (),
    )
    if interrupted:
        raise GenerationInterrupted(summary)
    if streak >= config.give_up_after:
        raise GenerationStalled(summary, streak, streak_reasons, config.validation)
    if config.sharded:
        summary.shards = _shards_line(config, len(whole), jobs, run_settings)
    return summary


def _finish(job: _Job) -> None:
    """Commit ``job``'s counters (marking a finished shard complete) and close its file."""
    if job.writer is None:
        return
    writer, job.writer = job.writer, None
    try:
        writer.commit(job.record())
    finally:
        writer.close()


def _shard_job(config: GenerateConfig, block: Block, registry, catalog, plan_hash, run_settings) -> _Job:
    """The job of one block: new, to resume or complete. Checked before any file is written:
    an existing shard needs --resume (same settings) or --overwrite."""
    path = config.output / block.file
    job = _Job(path, block, block.ingest, block.stream_start, block.quota, "new")
    if not path.exists() or config.overwrite:
        return job
    if not config.resume:
        raise FileExistsError(
            f"{path} already exists; pass --resume to continue the run or --overwrite to replace it"
        )
    with DatasetReader(path) as r:
        _check_attrs(r.attrs, path, config, registry, catalog, plan_hash, run_settings)
        progress = r.progress()
    job.status = "complete" if progress.get("complete") else "resume"
    job.load(progress)
    return job


def _shards_line(config: GenerateConfig, blocks: int, jobs: list[_Job], run_settings: dict) -> str:
    """The summary's line on the shards; writes ``index.json`` when every block is done here."""
    if config.shard is None or config.shard[1] == 1:
        done = index_directory(config.output, run_settings)
        return done.line()
    k, n = config.shard
    return (
        f"shard {k}/{n}: {len(jobs)} of {blocks} blocks complete in {config.output}; when all {n} "
        f"shard runs are done, run: vitalmatch index {config.output}/"
    )


def _reason_kind(reason: str) -> str:
    """A failure reason without its details (counted in the summary): text before a colon or
    parenthesis, e.g. ``"the synth crashed (SIGSEGV)"`` -> ``"the synth crashed"``."""
    return reason.split(":")[0].split("(")[0].strip() or "unknown"


class _Finished(Exception):
    """Nothing left to do (a resumed run that had already finished)."""


class GenerationInterrupted(Exception):
    """Ctrl-C: everything up to the last preset handled was committed; resume continues."""

    def __init__(self, summary: GenerateSummary) -> None:
        super().__init__(
            f"interrupted after {summary.kept_presets} presets; all of them are saved in {summary.path}, "
            "continue with --resume"
        )
        self.summary = summary


class GenerationStalled(RuntimeError):
    """``give_up_after`` presets in a row gave no usable render (the thresholds, notes or synth
    reject everything); every row kept before was committed. The message is one line."""

    def __init__(
        self, summary: GenerateSummary, streak: int, reasons: Counter[str], validation: ValidationConfig
    ) -> None:
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
        super().__init__(
            f"gave up: {streak} presets in a row gave no usable render ({why}); check the thresholds "
            f"(--silence-db {validation.silence_peak_db:g}, --clip-peak {validation.clip_peak:g}) and "
            f"--notes; {summary.kept_presets} presets ({summary.rows} renders) are saved in {summary.path}"
        )
        self.summary = summary


def _progress(
    kept, next_preset, rows, rejections, failed, n_failed=None, kept_synthetic=None
) -> dict[str, Any]:
    out = {
        "kept_presets": kept,
        "next_preset": next_preset,
        "rows": rows,
        "rejections": dict(rejections),
        "failed": list(failed),
        "n_failed": len(failed) if n_failed is None else n_failed,
    }
    if kept_synthetic is not None:
        out["kept_synthetic"] = kept_synthetic
    return out


def _progress_bar(config: GenerateConfig, initial: int, total: int):
    if not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="preset", desc="generate", dynamic_ncols=True)


def _check_resume(
    writer: DatasetWriter,
    config: GenerateConfig,
    registry: ParamRegistry,
    catalog,
    ingest_hash: str | None = None,
    path: Path | None = None,
    run_settings: dict | None = None,
) -> None:
    try:
        _check_attrs(
            writer.attrs, path or config.output, config, registry, catalog, ingest_hash, run_settings
        )
    except ValueError:
        writer.close()
        raise


def _check_attrs(
    attrs: dict,
    path: Path,
    config: GenerateConfig,
    registry: ParamRegistry,
    catalog,
    ingest_hash: str | None = None,
    run_settings: dict | None = None,
) -> None:
    """``ValueError`` (one line) unless the file at ``path`` was written by this run's settings
    (and, for a shard, ``run_settings``: the same whole run)."""
    stored = (
        json.loads(attrs["settings_json"])
        if isinstance(attrs.get("settings_json"), str)
        else attrs.get("settings")
    )
    wanted = json.loads(json.dumps(config.content_settings()))
    if stored != wanted:
        diff = (
            sorted(k for k in set(wanted) | set(stored) if stored.get(k) != wanted.get(k))
            if isinstance(stored, dict)
            else ["all"]
        )
        raise ValueError(
            f"{path} was generated with other settings ({', '.join(diff)} differ); "
            "resume with the same options as the original run"
        )
    if run_settings is not None:
        text = attrs.get("run_settings_json")
        stored_run = json.loads(text) if isinstance(text, str) else None
        if stored_run != json.loads(json.dumps(run_settings)):
            diff = (
                sorted(
                    k for k in set(run_settings) | set(stored_run) if stored_run.get(k) != run_settings.get(k)
                )
                if isinstance(stored_run, dict)
                else ["not a shard of a directory run"]
            )
            raise ValueError(
                f"{path} belongs to another run ({', '.join(diff)} differ); "
                "resume with the same -n, --shard-size and options as the original run"
            )
    if (
        list(attrs["wavetable_hashes"]) != list(catalog.hashes)
        or attrs["registry_json"] != registry.to_json()
    ):
        raise ValueError(f"{path} was generated with another wavetable catalog or synth version")
    if ingest_hash is not None and attrs.get("ingest_hash") != ingest_hash:
        raise ValueError(
            f"{path} was generated from other preset files (the --presets folders changed); "
            "resume needs the same files"
        )
