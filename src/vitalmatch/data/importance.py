"""Importance weights: how much each continuous parameter changes the sound, measured by perturbation.

Stage: compute-weights (after ``generate``, before ``train``). Input: a dataset file and an
:class:`ImportanceConfig`. Output: the same file with two more root attributes, written durably
through the dataset writer's journal (a kill at any instant leaves the file as it was, or with
both attributes; rows are never touched):

* ``importance_weights``: JSON text ``{name: weight}`` over *every* continuous column of the
  file, mean 1. :func:`vitalmatch.learn.data.importance_weights` reads it as the per-parameter
  weights of the continuous loss (and renormalises them over the columns a model predicts).
* ``importance_settings_json``: JSON text of the settings, the metric and counts of the run.

Method. ``n_base`` base presets are drawn from the file (seeded; one stored row per preset, so
one MIDI note: that row's ``midi_note``). For every *perturbed* parameter ``j`` that is active in
a base (:func:`vitalmatch.synth.activity.activity_masks`), the preset is rendered with ``u_j``
moved to ``clip(u_j + delta, 0, 1)`` and to ``clip(u_j - delta, 0, 1)`` in unit space (a side
that does not move, at the edge of the range or where the rounded raw value stays the same, has
distance 0 without rendering), and each render is compared with the base render by
:func:`vitalmatch.metrics.multiscale_mel_l1` on the mono mix (in the main process, one torch
thread; the workers only render). That metric because it is the
project's main audio distance (the matcher and evaluation use it), it is exactly 0 for identical
renders, and its log-mel scale counts a change in a quiet tail as much as one in the attack, as a
listener (and the network's log-mel input) does. The first task of each base also renders the
base twice, from two fresh synths: the distance between them, the *floor*, is 0 wherever the
synth is deterministic (Tier 1) and measures the randomness of chorus, flanger, delay, reverb and
the compressor otherwise (render.py); it is subtracted from that base's distances (clamped at
0). The importance of ``j`` is the mean, over the bases where ``j`` is active and rendered, of the
mean of its two sides.

Which parameters are perturbed: the continuous columns of the file's tier that vary in its first
20,000 rows, i.e. the columns ``train`` predicts (``learn.data.learnable_registry`` applies the
same rule). Every other column, and a perturbed one that is active in no base (or whose renders
all failed), gets the *fallback* weight, the median importance of the measured ones: a neutral
value, since the loss masks inactive parameters anyway. Measured importances below
``min_weight`` times their mean are raised to it, so that no parameter drops out of the loss;
then all weights are divided by their mean (mean 1 over the continuous columns).

Rendering: the real synth in crash-isolated workers (:class:`vitalmatch.synth.pool.WorkerPool`),
with the file's registry, wavetable catalog and render settings (sample rate, note and render
durations, velocity, tempo), each render a child forked from the worker's template synth
(bit-identical renders whatever the worker or the order, so the same file and settings give the
same weights). A render that
raises, is not finite or whose worker crashes or times out is skipped and counted, never the run.
Cost: about ``n_base * 2 * (active perturbed parameters)`` renders (Tier 1: ~35 per preset).

Rows with modulations, LFO shapes or a sample (Tiers 2-3, ingested presets) are rendered with
them (:meth:`~vitalmatch.data.reader.DatasetReader.preset_extras`), kept fixed while one
continuous parameter moves; activity takes the connections into account (an LFO counts where it
modulates something).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from vitalmatch.data.generate import parse_faults
from vitalmatch.data.reader import DatasetReader
from vitalmatch.data.writer import DatasetWriter
from vitalmatch.interrupts import sigint_deferred
from vitalmatch.synth.activity import activity_masks
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.pool import WorkerPool
from vitalmatch.synth.render import RenderConfig, RenderEngine
from vitalmatch.synth.wavetables import WavetableCatalog

log = logging.getLogger(__name__)

#: Root attribute holding the weights (JSON text ``{name: weight}``), as ``learn.data`` reads it.
WEIGHTS_ATTR = "importance_weights"
#: Root attribute holding the settings and counts of the run that computed them (JSON text).
SETTINGS_ATTR = "importance_settings_json"
#: The audio distance used (a function of :mod:`vitalmatch.metrics`).
METRIC = "multiscale_mel_l1"
#: Rows whose columns decide which parameters vary (as ``learn.data.learnable_registry``).
LEARNABLE_ROWS = 20000
#: Test-only fault injection, read by each worker: ``"crash:3"`` crashes the worker (a real
#: segfault of the synth) on the first task of base 3, so tests can check the run survives it.
FAULTS_ENV = "VITALMATCH_IMPORTANCE_FAULTS"


@dataclass
class ImportanceConfig:
    """Everything that defines an importance run (``vitalmatch compute-weights --help``).

    Attributes:
        data: the dataset file (.h5) to measure and to store the weights in.
        n_base: base presets drawn from the file (all of them when it has fewer).
        delta: perturbation in unit space, each way (clamped to [0, 1]).
        seed: seed of the choice of base presets and of their rows (notes).
        workers: render processes.
        tier: if given, the file's tier must be this (a check against using the wrong file).
        min_weight: floor of a measured importance, as a fraction of their mean.
        chunk: perturbed renders per worker task (each task also renders its base once).
        task_timeout_s: a task taking longer kills its worker; its renders count as failed.
        overwrite: replace weights the file already has.
        progress: show a progress bar.
    """

    data: Path
    n_base: int = 500
    delta: float = 0.1
    seed: int = 0
    workers: int = 2
    tier: int | None = None
    min_weight: float = 0.05
    chunk: int = 16
    task_timeout_s: float = 300.0
    overwrite: bool = False
    progress: bool = True

    def check(self) -> None:
        """Raise ``ValueError`` (one line) for the first invalid setting."""

        def whole(x: Any) -> bool:
            return isinstance(x, int | np.integer) and not isinstance(x, bool)

        if not whole(self.n_base) or self.n_base < 1:
            raise ValueError(f"--n-base must be an integer >= 1, got {self.n_base!r}")
        if not isinstance(self.delta, int | float) or not 0 < self.delta <= 1:
            raise ValueError(f"--delta must be in (0, 1], got {self.delta!r}")
        if not whole(self.workers) or self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers!r}")
        if self.tier is not None and (not whole(self.tier) or self.tier < 1):
            raise ValueError(f"--tier must be a tier number (1, 2, ...), got {self.tier!r}")
        if not isinstance(self.min_weight, int | float) or not 0 <= self.min_weight <= 1:
            raise ValueError(f"--min-weight must be in [0, 1], got {self.min_weight!r}")
        if not whole(self.chunk) or self.chunk < 1:
            raise ValueError(f"--chunk must be an integer >= 1, got {self.chunk!r}")
        t = self.task_timeout_s
        if isinstance(t, bool) or not isinstance(t, int | float) or not (math.isfinite(t) and t > 0):
            raise ValueError(f"--timeout must be > 0 seconds, got {t!r}")

    def content_settings(self) -> dict[str, Any]:
        """The settings that determine the weights (stored with them)."""
        return {"n_base": self.n_base, "delta": self.delta, "seed": self.seed, "min_weight": self.min_weight}


@dataclass
class ImportanceResult:
    """What a run measured and stored.

    Attributes:
        weights: ``{name: weight}`` over every continuous column, mean 1 (as stored).
        importance: ``{name: mean distance}`` of the measured parameters (before the floor and
            the normalisation; metric units).
        active_bases: ``{name: bases where it was active and rendered}`` of the perturbed ones.
        fallback: the weight (after normalisation) of the columns that were not measured.
        not_measured: perturbed columns active in no base (they got the fallback).
        n_base: bases used; renders: renders done; failed: renders skipped (errors, crashes,
            timeouts, non-finite audio); floor: mean floor distance over the bases; seconds.
    """

    path: str
    weights: dict[str, float]
    importance: dict[str, float]
    active_bases: dict[str, int]
    fallback: float
    not_measured: list[str]
    n_base: int
    renders: int
    failed: int
    failures: dict[str, int]
    floor: float
    seconds: float

    def ranking(self) -> list[tuple[str, float]]:
        """Measured parameters, most important first: ``[(name, weight)]``."""
        return sorted(((n, self.weights[n]) for n in self.importance), key=lambda x: (-x[1], x[0]))

    def lines(self, top: int = 5) -> list[str]:
        rank = self.ranking()
        fmt = ", ".join
        return [
            f"wrote importance weights of {len(self.weights)} continuous parameters to {self.path}",
            f"measured {len(self.importance)} from {self.n_base} base presets: {self.renders} renders, "
            f"{self.failed} failed, floor {self.floor:.4f}, {self.seconds:.1f} s",
            f"fallback weight {self.fallback:.3f} for {len(self.weights) - len(self.importance)} others"
            + (f" ({len(self.not_measured)} never active)" if self.not_measured else ""),
            "most important: " + fmt(f"{n} {w:.2f}" for n, w in rank[:top]),
            "least important: " + fmt(f"{n} {w:.2f}" for n, w in rank[-top:]),
        ]


# ------------------------------------------------------------------------------ worker side
_ENGINE: RenderEngine | None = None
_FAULTS: dict[int, str] = {}


def _init_worker(registry_json: str, tables: list[dict], render: RenderConfig) -> None:
    global _ENGINE, _FAULTS
    _ENGINE = RenderEngine(ParamRegistry.from_json(registry_json), tables, render)
    _FAULTS = parse_faults(os.environ.get(FAULTS_ENV, ""))


def _render_mono(cont: np.ndarray, cat: np.ndarray, note: int, extras=None) -> np.ndarray | None:
    """``(T,)`` mono float32 render (with the row's modulations, LFO shapes and sample), or None
    when the synth refused or crashed on it, or it is not finite. Reproducible: each render is a
    child forked from the engine's template (:meth:`RenderEngine.render`)."""
    assert _ENGINE is not None
    try:
        audio = _ENGINE.render(cont, cat, (int(note),), extras)[0].mean(axis=0)
    except Exception as e:  # noqa: BLE001 - one bad render is skipped and counted, never the run
        log.debug("render failed: %s", e)
        return None
    return audio if np.isfinite(audio).all() else None


def _perturb_task(task: tuple) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray | None]]:
    """Render one base and its perturbations (the workers only render: the distances are computed
    in the main process, so that the workers need no torch).

    Task: ``(base, first, cont (C,), cat (K,), note, cols (P,) int, values (P,) float, extras)``
    (``extras``: the base row's :class:`~vitalmatch.synth.render.PresetExtras`, kept fixed).
    Returns ``(base render (T,), a second render of the base from a fresh synth when ``first``
    else None, P renders (T,) with None where one failed)``, mono float32.
    """
    base, first, cont, cat, note, cols, values, extras = task
    if _FAULTS.get(base) == "crash" and first:
        assert _ENGINE is not None
        _ENGINE.crash()
    ref = _render_mono(cont, cat, note, extras)
    if ref is None:
        raise RuntimeError("the base preset did not render")
    again = _render_mono(cont, cat, note, extras) if first else None
    renders = []
    for col, value in zip(cols, values, strict=True):
        c = cont.copy()
        c[col] = value
        renders.append(_render_mono(c, cat, note, extras))
    return ref, again, renders


def _distances(
    ref: np.ndarray, again: np.ndarray | None, renders: list[np.ndarray | None], sample_rate: int
) -> tuple[np.ndarray, float]:
    """``((P,) distances of the renders to ``ref``, NaN where one failed; the floor, the distance
    of ``again`` to ``ref``, NaN without it)`` by :func:`vitalmatch.metrics.multiscale_mel_l1`."""
    from vitalmatch.metrics import multiscale_mel_l1

    out = np.full(len(renders), np.nan)
    good = [i for i, a in enumerate(renders) if a is not None]
    if good:
        batch = np.stack([r for r in renders if r is not None])
        out[good] = multiscale_mel_l1(batch, np.repeat(ref[None], len(good), axis=0), sample_rate).numpy()
    floor = float(multiscale_mel_l1(again, ref, sample_rate)) if again is not None else math.nan
    return out, floor


# ------------------------------------------------------------------------------ main side
@dataclass
class _Plan:
    """The bases and their perturbations (built from the file before anything renders)."""

    registry: ParamRegistry
    tables: list[dict]
    render: RenderConfig
    cont: np.ndarray  # (B, C) base presets
    cat: np.ndarray  # (B, K)
    notes: np.ndarray  # (B,)
    perturbed: np.ndarray  # (P,) continuous columns measured
    moved: np.ndarray  # (B, P, 2) unit values after +delta / -delta; NaN: no render (inactive / no move)
    active: np.ndarray  # (B, P) bool
    n_rows: int
    extras: list = field(default_factory=list)  # (B,) PresetExtras of the bases (modulations ...)


def compute_weights(config: ImportanceConfig) -> ImportanceResult:
    """Measure the importance weights of ``config.data`` and store them there; see the module
    docstring. Raises ``ValueError``/``OSError`` (one line) for bad input, before any render;
    nothing is stored unless the run completes."""
    config.check()
    t0 = time.perf_counter()
    path = Path(config.data)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a dataset file")
    plan = _plan(path, config)  # every check that reads the file
    # The writer's lock: no generate may add rows while the weights are measured, and a running
    # one makes this fail at once (BlockingIOError, one line), before any render.
    try:
        writer, progress = DatasetWriter.resume(path)
    except BlockingIOError:
        raise BlockingIOError(
            f"cannot compute weights: {path} is being written by another process (a running generate?)"
        ) from None
    try:
        if writer.n_committed != plan.n_rows:
            raise ValueError(f"{path} changed while it was being read; run compute-weights again")
        result = _summarise(plan, config, _measure(plan, config), str(path))
        result.seconds = time.perf_counter() - t0
        settings = {
            **config.content_settings(),
            "metric": METRIC,
            "perturbed": len(plan.perturbed),
            "measured": len(result.importance),
            "active_bases": result.active_bases,
            "not_measured": result.not_measured,
            "fallback": "median",
            "n_base_used": result.n_base,
            "n_rows": plan.n_rows,
            "renders": result.renders,
            "failed": result.failed,
            "floor": result.floor,
            "seconds": round(result.seconds, 1),
        }
        # Both attributes and the commit as one step: Ctrl-C waits for it (a kill cannot split it:
        # the commit is atomic, see vitalmatch.data.journal).
        with sigint_deferred():
            writer.set_attr(WEIGHTS_ATTR, json.dumps(result.weights))
            writer.set_attr(SETTINGS_ATTR, json.dumps(settings, sort_keys=True))
            writer.commit(progress)
    finally:
        with sigint_deferred(deliver=False):
            writer.close()
    return result


def stored_weights(path: str | os.PathLike) -> tuple[dict[str, float], dict] | None:
    """``(weights, settings)`` stored in a dataset by :func:`compute_weights`, None if none."""
    with DatasetReader(path) as reader:
        attrs = reader.attrs
    if WEIGHTS_ATTR not in attrs:
        return None
    text = attrs.get(SETTINGS_ATTR)
    return json.loads(attrs[WEIGHTS_ATTR]), (json.loads(text) if isinstance(text, str) else {})


def _plan(path: Path, config: ImportanceConfig) -> _Plan:
    """Read and check the file, choose the bases, list the perturbations."""
    with DatasetReader(path) as reader:  # ValueError (one line) for a file that is not a dataset
        attrs = reader.attrs
        n = len(reader)
        if n == 0:
            raise ValueError(f"{path} has no rows; generate some first")
        tier = int(attrs.get("tier", 1))
        if config.tier is not None and config.tier != tier:
            raise ValueError(f"{path} is a Tier-{tier} dataset, not Tier {config.tier} (--tier)")
        if WEIGHTS_ATTR in attrs and not config.overwrite:
            raise ValueError(f"{path} already has importance weights; pass --overwrite to replace them")
        if "registry_json" not in attrs:
            raise ValueError(f"{path} has no parameter registry (attribute registry_json)")
        registry = ParamRegistry.from_json(attrs["registry_json"])
        try:
            catalog = WavetableCatalog.from_json_data(json.loads(reader.blob("wavetables").decode()))
        except KeyError:
            raise ValueError(f"{path} has no wavetable catalog (blob 'wavetables')") from None
        render = _render_config(attrs, reader.sample_rate)

        # Which columns train predicts (the same rule as learn.data.learnable_registry).
        head = reader.continuous(slice(0, min(n, LEARNABLE_ROWS)))
        varies = np.ptp(head, axis=0) > 0 if len(head) else np.zeros(len(registry.continuous), bool)
        perturbed = np.array(
            [j for j, s in enumerate(registry.continuous) if s.tier <= tier and varies[j]], dtype=np.int64
        )

        # Bases: distinct presets (by hash) in file order, a seeded choice, one seeded row each.
        hashes = reader.metadata("preset_hash")
        _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # presets in order of their first row
        rng = np.random.default_rng([config.seed, 0x696D70])  # "imp"
        k = min(config.n_base, len(order))
        chosen = np.sort(rng.choice(len(order), size=k, replace=False))
        rows = np.array([rng.choice(np.flatnonzero(inverse == order[i])) for i in chosen], dtype=np.int64)
        cont = reader.continuous(rows).astype(np.float32)
        cat = reader.categorical(rows).astype(np.int32)
        notes = reader.metadata("midi_note", rows).astype(np.int64)
        extras = [reader.preset_extras(int(r)) for r in rows]  # modulations etc., kept as they are
        modulation = reader.modulation(rows)

    mask, _ = activity_masks(registry, cont, cat, modulation)
    active = mask[:, perturbed]
    u = cont[:, perturbed].astype(np.float64)
    moved = np.stack([np.minimum(u + config.delta, 1.0), np.maximum(u - config.delta, 0.0)], axis=-1).astype(
        np.float32
    )
    # No render where the parameter is inactive or its clamped raw value does not change.
    specs = [registry.continuous[j] for j in perturbed]
    for p, spec in enumerate(specs):
        before = np.array([spec.clamp(spec.from_unit(x)) for x in u[:, p]])
        for side in (0, 1):
            after = np.array([spec.clamp(spec.from_unit(x)) for x in moved[:, p, side]])
            same = (after == before) | ~active[:, p]
            moved[same, p, side] = np.nan
    return _Plan(
        registry, [e.table for e in catalog], render, cont, cat, notes, perturbed, moved, active, n, extras
    )


def _render_config(attrs: dict, sample_rate: int) -> RenderConfig:
    """The render settings of the dataset: its stored ``settings_json["render"]`` where present
    (tempo and settling too), else the separate attributes; always a fresh synth per render."""
    stored: dict[str, Any] = {}
    text = attrs.get("settings_json")
    if isinstance(text, str):
        stored = dict(json.loads(text).get("render", {}))
    known = {f.name for f in fields(RenderConfig)}
    kw = {k: v for k, v in stored.items() if k in known}
    for key in ("note_duration_s", "render_duration_s", "velocity"):
        if key in attrs:
            kw[key] = float(attrs[key])
    kw.update(sample_rate=int(sample_rate), reproducible=True)
    kw["notes"] = tuple(int(x) for x in (kw.get("notes") or attrs.get("notes") or (60,)))
    return RenderConfig(**kw)


def _tasks(plan: _Plan, chunk: int):
    """Worker tasks, base by base, ``chunk`` perturbations each: ``(task, base, positions)``,
    ``positions`` ``(m, 2)`` the (perturbed index, side) of its renders in ``plan.moved``."""
    for b in range(len(plan.cont)):
        todo = np.argwhere(~np.isnan(plan.moved[b]))
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            cols = plan.perturbed[part[:, 0]]
            values = plan.moved[b][part[:, 0], part[:, 1]]
            extras = plan.extras[b] if plan.extras else None
            task = (b, start == 0, plan.cont[b], plan.cat[b], int(plan.notes[b]), cols, values, extras)
            yield task, b, part


@dataclass
class _Measured:
    """Raw results: distances ``(B, P, 2)`` (NaN: not rendered or failed), floors ``(B,)`` (NaN:
    not measured), which bases rendered at all ``(B,)``, render and failure counts."""

    dist: np.ndarray
    floors: np.ndarray
    base_ok: np.ndarray
    renders: int
    failures: Counter


def _measure(plan: _Plan, config: ImportanceConfig) -> _Measured:
    """Render every perturbation in the worker pool (results are placed by position, so the
    outcome does not depend on which worker ran what, or when)."""
    m = _Measured(
        np.full(plan.moved.shape, np.nan),
        np.full(len(plan.cont), np.nan),
        np.zeros(len(plan.cont), bool),
        0,
        Counter(),
    )
    meta: list[tuple[int, np.ndarray, bool]] = []
    per_base = (~np.isnan(plan.moved)).reshape(len(plan.cont), -1).sum(axis=1)
    # each task renders its perturbations and its base; a base's first task renders the base twice
    total = int(sum(k + -(-k // config.chunk) + 1 for k in per_base if k))

    def tasks():
        for task, b, part in _tasks(plan, config.chunk):
            meta.append((b, part, task[1]))
            yield task

    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="render", desc="compute-weights", dynamic_ncols=True)
    import torch

    # The distances run here while the workers render: one torch thread keeps the cores for them.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with WorkerPool(
            config.workers,
            initializer=_init_worker,
            initargs=(plan.registry.to_json(), plan.tables, plan.render),
            task_timeout_s=config.task_timeout_s,
        ) as pool:
            for result in pool.map(_perturb_task, tasks()):
                b, part, first = meta[result.index]
                done = len(part) + 1 + first
                if result.ok:
                    ref, again, renders = result.value
                    values, floor = _distances(ref, again, renders, plan.render.sample_rate)
                    m.dist[b, part[:, 0], part[:, 1]] = values
                    m.base_ok[b] = True
                    if not math.isnan(floor):
                        m.floors[b] = floor
                    bad = int(np.isnan(values).sum()) + (first and math.isnan(floor))
                    m.failures["render"] += bad
                    m.renders += done - bad
                else:
                    m.failures[result.status] += done
                    log.warning("base %d: %d renders lost: %s", b, done, result.error)
                if bar is not None:
                    bar.update(done)
                    bar.set_postfix(failed=sum(m.failures.values()), refresh=False)
    finally:
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()
    return m


def _summarise(plan: _Plan, config: ImportanceConfig, m: _Measured, path: str) -> ImportanceResult:
    """Importances, the fallback, the floor and the normalisation (see the module docstring)."""
    no_move = np.isnan(plan.moved) & plan.active[:, :, None]  # a side that did not move: exactly 0
    d = np.clip(m.dist - np.nan_to_num(m.floors, nan=0.0)[:, None, None], 0.0, None)
    d = np.where(no_move, 0.0, d)
    # a (base, parameter) counts where it is active, its base rendered and a side has a value
    counted = plan.active & m.base_ok[:, None] & ~np.isnan(d).all(axis=-1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: not counted anyway
        per_base = np.nanmean(d, axis=-1)  # (B, P)
    counts = counted.sum(axis=0)
    registry = plan.registry
    importance: dict[str, float] = {}
    active_bases: dict[str, int] = {}
    for p, j in enumerate(plan.perturbed):
        name = registry.continuous[j].name
        active_bases[name] = int(counts[p])
        if counts[p]:
            importance[name] = float(per_base[counted[:, p], p].mean())
    failed = int(sum(m.failures.values()))
    if not importance:
        raise ValueError(
            f"{path}: no perturbed parameter was active and rendered in the {len(plan.cont)} base presets "
            f"({failed} renders failed); nothing stored"
        )
    measured = np.array(list(importance.values()))
    if not measured.mean() > 0:
        raise ValueError(f"{path}: no perturbation changed the audio (delta {config.delta}); nothing stored")
    low = config.min_weight * float(measured.mean())
    fallback = float(np.median(np.maximum(measured, low)))
    raw = {
        s.name: max(importance[s.name], low) if s.name in importance else fallback
        for s in registry.continuous
    }
    mean = float(np.mean(list(raw.values())))
    return ImportanceResult(
        path=path,
        weights={name: float(v / mean) for name, v in raw.items()},
        importance=importance,
        active_bases=active_bases,
        fallback=fallback / mean,
        not_measured=sorted(n for n, c in active_bases.items() if c == 0),
        n_base=len(plan.cont),
        renders=m.renders,
        failed=failed,
        failures=dict(m.failures),
        floor=float(np.nanmean(m.floors)) if np.isfinite(m.floors).any() else 0.0,
        seconds=0.0,
    )
