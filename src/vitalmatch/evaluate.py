"""Evaluation: how close re-rendered predictions sound to their targets, beside baselines.

Stage: evaluation. Input: a dataset (its test split gives synthetic targets; its train split
feeds the mean and nearest-neighbour baselines; it also fixes the registry, wavetable catalog
and render settings), optionally a checkpoint (the ``model`` method) and a folder of real
``.vital`` presets (rendered by the synth at a fixed note: real targets). Output: a report folder
with ``report.md`` (the tables), ``results.json`` (every number, per example too),
spectrogram comparison images and, for the same shown targets, each method's preset as a ``.vital``
file in ``presets/`` (to listen to in Vital).

Methods, each giving a whole preset per target:

* ``model``: the network's prediction from the target audio (:mod:`vitalmatch.learn.predict`);
* ``nn``: the preset of the training example whose log-mel is closest (L1) to the target's;
* ``mean``: the training split's mean continuous values and most frequent options;
* ``random``: a random preset from the dataset's own sampler (another seed);
* ``init``: Vital's init preset (with ``osc_N_random_phase`` pinned to 0, like the datasets);
* ``oracle`` (synthetic targets only): the target's own parameters. Renders are reproducible, so
  its distance is what is left of the stored target's 16-bit quantisation: a check of the whole
  evaluation path, and the floor every method is measured against.

Every preset is rendered at the target's note with the dataset's render settings, in the
crash-isolated worker pool (a render that crashes counts as a failure, not as a distance).
Audio metrics (:mod:`vitalmatch.metrics`) compare mono mixes. With ``level_match`` (default) both
signals are scaled to the same RMS first for ``mel_l1`` (:func:`~vitalmatch.metrics.multiscale_mel_l1`,
power mels), ``mrstft``, ``mfcc`` and ``envelope_cos``, so that these measure timbre and envelope rather
than loudness (real presets vary by more than 20 dB). ``magnitude_mel_l1``
(:func:`~vitalmatch.metrics.magnitude_mel_l1`, the metric of the matching goals) is never
level-matched: both signals are divided by the target's peak, so a wrong level, a missing reverb or
release tail all count. With a local CLAP checkpoint (``clap``, :mod:`vitalmatch.clap`),
``clap_similarity`` is the cosine similarity of the CLAP audio embeddings of target and render
(higher is better; 1 for the same sound, as the model hears it); without one the report says it
was not computed and why. Medians come with 95% bootstrap confidence
intervals. Parameter metrics (synthetic targets only) are diagnostics: the synth has symmetries
(two oscillators can swap, for one), so a sound can be matched with other values.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from vitalmatch.clap import cosine
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.sampling import PresetSampler, SamplerConfig
from vitalmatch.features import FeatureConfig, log_mel
from vitalmatch.learn.data import dataset_registry, learnable_registry, training_means
from vitalmatch.learn.logger import json_safe
from vitalmatch.metrics import all_metrics, magnitude_mel_l1, median_ci
from vitalmatch.neighbours import NearestNeighbours
from vitalmatch.synth.activity import activity_masks
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.render import RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import WavetableCatalog

METHODS = ("model", "nn", "mean", "random", "init", "oracle")
METRICS = ("mel_l1", "magnitude_mel_l1", "mrstft", "mfcc", "envelope_cos")
#: Column titles of :func:`format_report`, in ``METRICS`` order.
METRIC_TITLES = ("mel L1 (power)", "magnitude mel L1", "MR-STFT", "MFCC", "envelope cos")
#: The CLAP metric (beside :data:`METRICS`: it needs a model, ``EvaluateConfig.clap``) and its title.
CLAP_METRIC = "clap_similarity"
CLAP_TITLE = "CLAP cos"
#: Why ``clap_similarity`` is empty when no CLAP folder is given.
CLAP_NOT_GIVEN = "not computed (no --clap DIR given)"
_RMS_REF = 0.1  # level-matched signals are scaled to this RMS


@dataclass
class EvaluateConfig:
    """What to evaluate.

    Attributes:
        out: report folder.
        data: dataset file (required: registry, catalog, render settings, baselines).
        checkpoint: trained model for the ``model`` method (None: baselines only).
        presets: folder of real ``.vital`` presets (None: synthetic targets only).
        max_test: synthetic targets: the first rows of the test split (0 = none).
        max_presets: real presets: at most this many, in name order (0 = all).
        preset_note: MIDI note the real presets are rendered at.
        methods: which methods to run (``model`` needs a checkpoint).
        nn_rows: training rows indexed by the nearest-neighbour baseline.
        level_match: scale both signals to the same RMS before the audio metrics (all but
            ``magnitude_mel_l1``, which is never level-matched).
        clap: local folder of a transformers CLAP checkpoint (config.json, model.safetensors,
            preprocessor_config.json): adds clap_similarity, the cosine of the CLAP audio
            embeddings of target and render (not given: the report says it is not computed).
        workers: render processes.
        images: spectrogram comparisons (and the methods' ``.vital`` presets) written per target set.
        seed: random baseline and bootstrap seed.
        progress: progress bar.
        overwrite: replace the report files of an earlier evaluation in ``out``.
    """

    out: Path
    data: Path
    checkpoint: Path | None = None
    presets: Path | None = None
    max_test: int = 200
    max_presets: int = 0
    preset_note: int = 60
    methods: tuple[str, ...] = METHODS
    nn_rows: int = 5000
    level_match: bool = True
    clap: Path | None = None
    workers: int = 2
    images: int = 4
    seed: int = 0
    progress: bool = True
    overwrite: bool = False

    #: Files of a report (the images and presets depend on ``images``).
    REPORT_FILES = ("report.md", "results.json")

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        if "model" in self.methods and self.checkpoint is None:
            raise ValueError("the model method needs --checkpoint (or leave it out of --methods)")
        if not Path(self.data).exists():  # a file, or a directory of shards
            raise ValueError(f"dataset {self.data} does not exist")
        if self.presets is not None and not Path(self.presets).is_dir():
            raise ValueError(f"presets folder {self.presets} does not exist")
        if self.clap is not None and not Path(self.clap).is_dir():
            state = "is a file, not a folder" if Path(self.clap).exists() else "does not exist"
            raise ValueError(f"CLAP folder {self.clap} {state}")
        if self.max_test < 0 or self.max_presets < 0 or self.workers < 1:
            raise ValueError("max_test and max_presets must be >= 0 and workers >= 1")
        if not 0 <= self.preset_note <= 127:
            raise ValueError(f"preset_note must be a MIDI note 0..127, got {self.preset_note}")
        if self.images < 0:
            raise ValueError(f"images must be >= 0, got {self.images}")
        from vitalmatch.outputs import check_outputs

        # Before any render: an existing report is kept unless asked, and the folder must be writable.
        inputs = [self.data] + ([self.checkpoint] if self.checkpoint is not None else [])
        check_outputs(
            [Path(self.out) / f for f in self.REPORT_FILES], inputs=inputs, overwrite=self.overwrite
        )


@dataclass
class Target:
    """One sound to match: mono audio ``(T,)`` at the dataset rate, its note, and (synthetic
    targets) the true parameter vectors."""

    set: str
    name: str
    note: int
    audio: np.ndarray | None = None
    continuous: np.ndarray | None = None
    categorical: np.ndarray | None = None
    preset_json: str | None = None
    error: str | None = None


@dataclass
class Result:
    """Metrics of one method on one target (NaN where its render failed)."""

    target: str
    method: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


# ------------------------------------------------------------------------------------ workers
_ENGINE: RenderEngine | None = None


def _init_worker(registry_json: str, tables: list[dict], render: RenderConfig) -> None:
    global _ENGINE
    _ENGINE = RenderEngine(ParamRegistry.from_json(registry_json), tables, render)


def _render_task(task: tuple) -> np.ndarray | str:
    """Render a vector (``("vector", cont, cat, note)``) or a preset (``("preset", json, note)``);
    returns mono ``(T,)`` float32. ``("export", cont, cat)`` returns the vector's preset JSON text
    (made by the synth, as :func:`vitalmatch.synth.export.preset_dict` does)."""
    assert _ENGINE is not None
    if task[0] == "export":
        _, cont, cat = task
        _ENGINE.load(cont, cat)
        return _ENGINE.to_json()
    if task[0] == "vector":
        _, cont, cat, note = task
        _ENGINE.load(cont, cat)
    else:
        _, text, note = task
        _ENGINE.load_preset_dict(json.loads(text))
    audio = _ENGINE.render_note(int(note))
    if not np.isfinite(audio).all():
        raise ValueError("the render holds NaN or Inf")
    return audio.mean(axis=0).astype(np.float32)


# ------------------------------------------------------------------------------------ pieces
def _level(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return x * (_RMS_REF / rms) if rms > 1e-6 else x


def distances(pred: np.ndarray, target: np.ndarray, sample_rate: int, level_match: bool) -> dict[str, float]:
    """Every metric of :data:`METRICS` of a mono render ``pred`` against its mono target, ``(T,)``
    float32 each at ``sample_rate`` Hz.

    With ``level_match`` both signals are first scaled to the same RMS for ``mel_l1``, ``mrstft``,
    ``mfcc`` and ``envelope_cos``; ``magnitude_mel_l1`` always sees the signals as rendered (it
    divides both by the target's peak itself).
    """
    a, b = (_level(pred), _level(target)) if level_match else (pred, target)
    values = all_metrics(a, b, sample_rate)
    values["magnitude_mel_l1"] = magnitude_mel_l1(pred, target, sample_rate)
    return {name: float(values[name]) for name in METRICS}


class _NearestNeighbour:
    """Training examples in a :class:`~vitalmatch.neighbours.NearestNeighbours` index; query ->
    the closest example's vectors."""

    def __init__(self, reader: DatasetReader, rows: np.ndarray, features: FeatureConfig) -> None:
        batches = (reader.audio(rows[s : s + 256]).mean(axis=1) for s in range(0, len(rows), 256))
        self.index = NearestNeighbours.build(batches, features)
        self.continuous = reader.continuous(rows)
        self.categorical = reader.categorical(rows)

    def query(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        j = int(self.index.nearest(audio, 1)[0])
        return self.continuous[j].copy(), self.categorical[j].copy()


def _load_presets(folder: Path, limit: int) -> list[Target]:
    from vitalmatch.synth.export import read_vital

    files = sorted(folder.rglob("*.vital"))
    if limit:
        files = files[:limit]
    out = []
    for f in files:
        name = str(f.relative_to(folder))
        try:
            out.append(Target("presets", name, 0, preset_json=json.dumps(read_vital(f))))
        except ValueError as e:
            out.append(Target("presets", name, 0, error=str(e)))
    return out


def _bar(total: int, desc: str, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="render")


# ------------------------------------------------------------------------------------ main
def evaluate(config: EvaluateConfig) -> dict:
    """Run an evaluation (see the module docstring); returns the results dict also written to
    ``results.json``."""
    config.check()
    t0 = time.perf_counter()
    # Metrics and predictions run here while the workers render: one torch thread each keeps
    # the cores from fighting (see vitalmatch.metrics).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _evaluate(config, t0, threads)
    finally:
        torch.set_num_threads(threads)


def _evaluate(config: EvaluateConfig, t0: float, threads: int = 1) -> dict:
    out = Path(config.out)
    with DatasetReader(config.data) as reader:
        full = dataset_registry(reader)
        learn_reg = learnable_registry(reader)
        catalog = WavetableCatalog.from_json_data(json.loads(reader.blob("wavetables").decode()))
        sr = int(reader.sample_rate)
        attrs = reader.attrs
        render = RenderConfig(
            sample_rate=sr,
            notes=(config.preset_note,),
            velocity=float(attrs.get("velocity", 0.7)),
            note_duration_s=float(attrs["note_duration_s"]),
            render_duration_s=float(attrs["render_duration_s"]),
        )
        tier = int(attrs.get("tier", 1))
        test_rows = reader.split_indices("test")[: config.max_test]
        train_rows = reader.split_indices("train")
        if ("nn" in config.methods or "mean" in config.methods) and len(train_rows) == 0:
            raise ValueError(f"{config.data} has no training rows for the mean / nn baselines")
        targets = [
            Target(
                "synthetic",
                f"{reader.metadata('preset_name', int(r))}@{int(reader.metadata('midi_note', int(r)))}",
                int(reader.metadata("midi_note", int(r))),
                reader.audio(int(r)).mean(axis=0),
                reader.continuous(int(r)),
                reader.categorical(int(r)),
            )
            for r in test_rows
        ]
        mean_c, mean_k = training_means(reader)
        features = FeatureConfig(sample_rate=sr)
        nn = (
            _NearestNeighbour(reader, train_rows[: config.nn_rows], features)
            if "nn" in config.methods
            else None
        )
    if config.presets is not None:
        real = _load_presets(Path(config.presets), config.max_presets)
        for t in real:
            t.note = config.preset_note
        targets += real

    pins = SamplerConfig().pins
    init_c, init_k = full.from_raw({**{s.name: s.default for s in full.specs}, **pins})
    sampler = PresetSampler(full, SamplerConfig(tier=tier, seed=config.seed + 7_777))
    predictor = None
    if "model" in config.methods:
        from vitalmatch.learn.predict import Predictor

        predictor = Predictor(config.checkpoint)
        if predictor.full_registry.to_json() != full.to_json():
            raise ValueError(
                f"{config.checkpoint} was trained on a dataset with other parameters than {config.data}"
            )
        if predictor.sample_rate != sr:
            raise ValueError(
                f"{config.checkpoint} expects {predictor.sample_rate} Hz audio, the dataset has {sr} Hz"
            )

    clap = None
    if config.clap is not None:  # loaded before any render: a broken folder stops the run at once
        from vitalmatch.clap import Clap

        clap = Clap(config.clap)

    pool_args = (full.to_json(), [e.table for e in catalog], render)
    results: list[Result] = []
    vectors: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    renders: dict[tuple[int, str], np.ndarray] = {}
    with WorkerPool(config.workers, initializer=_init_worker, initargs=pool_args, task_timeout_s=120) as pool:
        # 1. Real presets: render the targets themselves.
        todo = [i for i, t in enumerate(targets) if t.preset_json is not None and t.error is None]
        bar = _bar(len(todo), "rendering preset targets", config.progress)
        for i, r in zip(
            todo,
            pool.map(_render_task, (("preset", targets[i].preset_json, targets[i].note) for i in todo)),
            strict=True,
        ):
            if r.status == "ok" and float(np.abs(r.value).max()) > 1e-4:
                targets[i].audio = r.value
            else:
                targets[i].error = r.error or "silent render"
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        # 2. Each method's vectors for each target that has audio.
        live = [i for i, t in enumerate(targets) if t.audio is not None]
        for i in live:
            t = targets[i]
            for m in config.methods:
                if m == "model":
                    p = predictor.predict_audio(t.audio)
                    vectors[i, m] = (p.continuous, p.categorical)
                elif m == "nn":
                    vectors[i, m] = nn.query(t.audio)
                elif m == "mean":
                    vectors[i, m] = (mean_c, mean_k)
                elif m == "random":
                    p = sampler.preset(i)
                    vectors[i, m] = (p.continuous, p.categorical)
                elif m == "init":
                    vectors[i, m] = (init_c, init_k)
                elif m == "oracle" and t.continuous is not None:
                    vectors[i, m] = (t.continuous, t.categorical)
        keys = list(vectors)
        bar = _bar(len(keys), "rendering predictions", config.progress)
        tasks = (("vector", vectors[k][0], vectors[k][1], targets[k[0]].note) for k in keys)
        for k, r in zip(keys, pool.map(_render_task, tasks), strict=True):
            i, m = k
            t = targets[i]
            if r.status != "ok":
                results.append(Result(t.name, m, {name: float("nan") for name in METRICS}, r.error))
            else:
                renders[k] = r.value
                results.append(Result(t.name, m, distances(r.value, t.audio, sr, config.level_match)))
            results[-1].metrics[CLAP_METRIC] = float("nan")  # filled below when CLAP is given
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        out.mkdir(parents=True, exist_ok=True)
        preset_files = _write_presets(out, targets, vectors, config, pool)

    clap_info = {"computed": False, "reason": CLAP_NOT_GIVEN}
    if clap is not None:
        # after the pool is closed: the cores are free for the network again
        torch.set_num_threads(threads)
        try:
            clap_info = _clap_scores(clap, targets, keys, results, renders, sr, config.progress)
        finally:
            torch.set_num_threads(1)
    report = _summarise(config, targets, results, vectors, full, learn_reg)
    report["clap"] = clap_info
    report["seconds"] = time.perf_counter() - t0
    report["images"] = _images(out, targets, renders, config, features)
    report["presets"] = preset_files
    # strict JSON: a failed method's NaN metrics are written as null
    (out / "results.json").write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
    (out / "report.md").write_text(format_report(report))
    return report


def _clap_scores(clap, targets, keys, results, renders, sample_rate: int, progress: bool) -> dict:
    """Fill ``clap_similarity`` of each result whose render exists: the cosine of the CLAP
    embeddings of target and render (:mod:`vitalmatch.clap`; each target embedded once). ``keys``
    are the results' ``(target index, method)``, in order. Returns what the report says of it."""
    t0 = time.perf_counter()
    live = sorted({i for i, _ in renders})
    if progress:
        print(f"CLAP: embedding {len(live)} targets and {len(renders)} renders", file=sys.stderr, flush=True)
    target_emb = dict(zip(live, clap.embed([targets[i].audio for i in live], sample_rate), strict=True))
    done = [k for k in keys if k in renders]
    render_emb = clap.embed([renders[k] for k in done], sample_rate)
    by_key = dict(zip(keys, results, strict=True))
    for k, e in zip(done, render_emb, strict=True):
        by_key[k].metrics[CLAP_METRIC] = float(cosine(target_emb[k[0]], e))
    return {
        "computed": True,
        "folder": str(clap.folder),
        "dim": clap.dim,
        "sample_rate": clap.sample_rate,
        "seconds": time.perf_counter() - t0,
    }


def _summarise(config, targets, results, vectors, full: ParamRegistry, learn_reg: ParamRegistry) -> dict:
    by_name = {t.name: t for t in targets}
    sets: dict[str, dict] = {}
    for set_name in ("synthetic", "presets"):
        names = [t.name for t in targets if t.set == set_name]
        if not names:
            continue
        failed_targets = [
            {"name": t.name, "error": t.error} for t in targets if t.set == set_name and t.audio is None
        ]
        table = {}
        for m in config.methods:
            rows = [r for r in results if r.method == m and by_name[r.target].set == set_name]
            if not rows:
                continue
            entry = {"n": len(rows), "failed": sum(r.error is not None for r in rows)}
            for metric in METRICS:
                med, lo, hi = median_ci([r.metrics[metric] for r in rows], seed=config.seed)
                entry[metric] = {"median": med, "low": lo, "high": hi}
            values = [r.metrics.get(CLAP_METRIC, float("nan")) for r in rows]
            if config.clap is None:
                entry[CLAP_METRIC] = None  # report["clap"]["reason"] says why
            else:
                med, lo, hi = median_ci(values, seed=config.seed)
                entry[CLAP_METRIC] = {"median": med, "low": lo, "high": hi}
            table[m] = entry
        sets[set_name] = {"targets": len(names), "targets_failed": failed_targets, "methods": table}
    # Parameter diagnostics on synthetic targets.
    syn = [(i, t) for i, t in enumerate(targets) if t.set == "synthetic" and t.audio is not None]
    if syn:
        ci = np.array([full.locate(s.name)[1] for s in learn_reg.continuous])
        ki = np.array([full.locate(s.name)[1] for s in learn_reg.categorical])
        true_c = np.stack([t.continuous for _, t in syn])
        true_k = np.stack([t.categorical for _, t in syn])
        mc, mk = activity_masks(full, true_c, true_k)
        modules = np.array([s.module for s in learn_reg.continuous])
        params = {}
        for m in config.methods:
            pc = np.stack([vectors[i, m][0] for i, _ in syn])
            pk = np.stack([vectors[i, m][1] for i, _ in syn])
            err = np.abs(pc[:, ci] - true_c[:, ci])
            mask = mc[:, ci]
            groups = {}
            for g in sorted(set(modules)):
                e = err[:, modules == g][mask[:, modules == g]]
                groups[g] = float(e.mean()) if e.size else float("nan")
            hit = (pk[:, ki] == true_k[:, ki]) & mk[:, ki]
            params[m] = {
                "mae": float(err[mask].mean()) if mask.any() else float("nan"),
                "mae_group": groups,
                "accuracy": float(hit.sum() / max(mk[:, ki].sum(), 1)),
            }
        sets["synthetic"]["parameters"] = params
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "level_match": config.level_match,
        "sets": sets,
        "examples": [asdict(r) for r in results],
    }


def _shown(targets, config) -> list[tuple[str, int, int]]:
    """``(set, n, target index)`` of the first ``config.images`` targets with audio of each set: the
    targets the report shows (spectrograms and presets)."""
    out = []
    for set_name in ("synthetic", "presets"):
        chosen = [i for i, t in enumerate(targets) if t.set == set_name and t.audio is not None]
        out += [(set_name, n, i) for n, i in enumerate(chosen[: config.images])]
    return out


def _write_presets(out: Path, targets, vectors, config, pool: WorkerPool) -> list[str]:
    """Each method's preset for the shown targets: ``presets/{set}_{n:02d}_{method}.vital``, made by
    the synth in the worker pool and written by :func:`vitalmatch.synth.export.write_vital` (so the
    Vital app loads them). Returns the paths relative to ``out``."""
    from vitalmatch.synth.export import write_vital

    jobs = [
        (set_name, n, i, m)
        for set_name, n, i in _shown(targets, config)
        for m in config.methods
        if (i, m) in vectors
    ]
    if not jobs:
        return []
    folder = out / "presets"
    folder.mkdir(exist_ok=True)
    written = []
    tasks = (("export", *vectors[i, m]) for _, _, i, m in jobs)
    for (set_name, n, i, m), r in zip(jobs, pool.map(_render_task, tasks), strict=True):
        if r.status != "ok":
            continue
        name = f"{set_name}_{n:02d}_{m}"
        preset = json.loads(r.value)
        comments = f"vitalmatch evaluate: method {m} for {set_name} target {targets[i].name}"
        preset.update({"preset_name": name, "author": "vitalmatch", "comments": comments})
        written.append(str(write_vital(folder / f"{name}.vital", preset).relative_to(out)))
    return written


def _images(out: Path, targets, renders, config, features: FeatureConfig) -> list[str]:
    """Spectrogram comparisons (target and each method) for the first targets of each set."""
    if config.images <= 0 or not renders:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for set_name, n, i in _shown(targets, config):
        t = targets[i]
        panels = [("target", t.audio)] + [(m, renders[i, m]) for m in config.methods if (i, m) in renders]
        fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), sharey=True)
        for ax, (title, audio) in zip(np.atleast_1d(axes), panels, strict=True):
            ax.imshow(log_mel(_level(audio), features).numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
        np.atleast_1d(axes)[0].set_ylabel("mel band")
        fig.suptitle(f"{set_name}: {t.name}", fontsize=9)
        fig.tight_layout()
        path = out / f"{set_name}_{n:02d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path.name)
    return written


def format_report(report: dict) -> str:
    """Markdown tables of a results dict."""
    lines = ["# vitalmatch evaluation", ""]
    lm = "level-matched (same RMS)" if report["level_match"] else "at raw levels"
    lines += [
        "Audio distances of re-rendered presets against their targets, mono; medians with 95% "
        "bootstrap confidence intervals. Lower is better, except envelope cosine (higher is better). "
        "Magnitude mel L1 (the matching goals' metric: magnitude mels, both signals divided by the "
        f"target's peak) is never level-matched; the other columns are {lm}.",
        "",
    ]
    clap = report.get("clap")
    if clap is not None and clap.get("computed"):
        lines += [
            f"{CLAP_TITLE}: cosine similarity of the CLAP audio embeddings of target and render "
            f"({clap['folder']}, {clap['dim']} dimensions; higher is better, 1 for the same sound).",
            "",
        ]
    elif clap is not None:
        lines += [f"{CLAP_TITLE}: {clap['reason']}.", ""]
    for set_name, s in report["sets"].items():
        title = "Synthetic test split" if set_name == "synthetic" else "Real presets"
        lines += [f"## {title} ({s['targets']} targets, {len(s['targets_failed'])} unusable)", ""]
        lines += [
            "| method | " + " | ".join(METRIC_TITLES) + f" | {CLAP_TITLE} | failed renders |",
            "|---|" + "---|" * (len(METRICS) + 1) + "---|",
        ]
        for m, e in s["methods"].items():
            # a results.json written before a metric existed shows "-" there
            cells = [
                f"{e[k]['median']:.3f} [{e[k]['low']:.3f}, {e[k]['high']:.3f}]" if e.get(k) else "-"
                for k in (*METRICS, CLAP_METRIC)
            ]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {e['failed']}/{e['n']} |")
        lines.append("")
        if "parameters" in s:
            groups = sorted(next(iter(s["parameters"].values()))["mae_group"])
            lines += [
                "Parameter diagnostics "
                "(MAE of normalised values on active parameters; categorical accuracy):",
                "",
                "| method | MAE | " + " | ".join(groups) + " | accuracy |",
                "|---|---|" + "---|" * len(groups) + "---|",
            ]
            for m, p in s["parameters"].items():
                lines.append(
                    f"| {m} | {p['mae']:.3f} | "
                    + " | ".join(f"{p['mae_group'][g]:.3f}" for g in groups)
                    + f" | {p['accuracy']:.3f} |"
                )
            lines.append("")
    if report.get("images"):
        lines += ["## Spectrograms", ""] + [f"![{p}]({p})" for p in report["images"]] + [""]
    if report.get("presets"):
        lines += ["## Presets (load in Vital)", ""] + [f"- [{p}]({p})" for p in report["presets"]] + [""]
    lines.append(f"Time: {report.get('seconds', 0):.0f} s.")
    return "\n".join(lines) + "\n"
