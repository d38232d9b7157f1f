"""Matching: an audio file -> a ``.vital`` preset that sounds like it (the product's main job).

Stage: match. Input: an audio file (any format :func:`vitalmatch.audio.load_audio` reads), or mono
samples. Output: :class:`MatchResult` -- the preset (Vital JSON as the synth writes it, with its
effects and modulations), its full-quality render ``(2, T)`` at 44.1 kHz, and the distances
before and after refinement.

Steps (:meth:`Matcher.match_file`):

1. prepare the audio: trim leading silence, detect the pitch (MIDI note) and note length
   (:func:`vitalmatch.audio.prepare`); the match is played at that note, held that long, for the
   clip's length (0.25-10 s); analyse what the sound shows (:func:`vitalmatch.analysis.analyse`:
   a tail, tremolo, vibrato, noise, width, a cutoff sweep) for the structure phase;
2. starting candidates (below a 30-s budget only as many as fit a share of it, the network's
   first: :func:`plan_starts`): the init preset, the ``start_candidates`` nearest presets of the built-in
   starting set (whole-synth presets: :class:`~vitalmatch.match.start_set.StartSet`), the
   ``library_candidates`` nearest presets of the user's preset libraries (``library``:
   :class:`~vitalmatch.match.library.Library`), and with a model (a model file or checkpoint)
   the network's ``model_candidates`` predictions (the plain one, then MC-dropout draws:
   :meth:`~vitalmatch.learn.predict.Predictor.predict_candidates`); all are rendered at the
   target's note and the one with the lowest loss is the start;
3. pitch: the best candidates are also tried an octave below and above the detected note (and a
   semitone either way when the detection is unsure); the note the loss prefers is kept
   (measured on 143 sounds of known note: the detector is an octave off for 34% of Vital presets,
   which often transpose their oscillators by octaves);
4. refinement with the synth in the loop (:func:`vitalmatch.search.refine`: structure, coarse to
   fine) on the rest of the time budget;
5. a full-quality render (fresh synth, 44.1 kHz, the whole clip) of the init preset, the start,
   the refined preset and the search's runner-up best points (:attr:`Refinement.elites`: the
   search's reused synth can rank near-equal points differently from a fresh one); the closest by
   the metric (:func:`vitalmatch.metrics.magnitude_mel_l1`) that is not silent is kept, so the
   result is never worse than the start (nor than the init preset) and never silent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitalmatch.match.start_set import check_start_set_size, ensure_start_set
from vitalmatch.search import (
    ELITES,
    Budget,
    RefineConfig,
    Refinement,
    SearchTarget,
    evaluate_batch,
    final_task,
    refine,
)
from vitalmatch.search.loss import SILENT_PEAK
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import PresetExtras

#: Longest search budget accepted (a day); past it, a budget is a typo or ``inf``.
MAX_BUDGET_S = 86_400.0
#: Budgets (seconds) from which every starting candidate is scored as configured and every
#: runner-up of the search is re-rendered at the end (:func:`plan_starts`).
FULL_BUDGET_S = 30.0
#: Share of a shorter budget that scoring the starting candidates (the pitch trials included)
#: may use (:func:`plan_starts`).
START_SHARE = 0.5
#: The order in which the sources of starting candidates get the slots of a short budget, with
#: and without a model (:func:`plan_starts`, :func:`_in_turns`).
SOURCE_TURNS = {True: ("model", "model", "neighbour", "model", "library"), False: ("neighbour", "library")}
#: Seconds per worker to score one starting candidate before any was measured: a full load
#: (``load_json``: ~0.15 s, almost all of it the synth computing the candidate's wavetables) plus
#: the render and its loss (~0.09 s per second of audio); quiet 2-core machine,
#: ``benchmarks/start_cost.py``. The matcher replaces it with a running measurement.
LOAD_S, RENDER_S_PER_S = 0.15, 0.09
#: Seconds per worker of one final full-quality render before any was measured (a fresh synth,
#: a full load, a 1-s settle, the render at 44.1 kHz, the metrics in the parent): ``FINAL_S`` plus
#: ``RENDER_S_PER_S`` per second of the clip.
FINAL_S = 0.2


@dataclass(frozen=True)
class StartPlan:
    """How many starting candidates of each source a match scores (:func:`plan_starts`).

    Attributes:
        neighbours, library, model: nearest start-set presets, nearest library presets, network
            candidates scored (the init preset is always scored too).
        shifts: semitone shifts of the pitch trials (the best candidates at ``note + shift``).
        pitch_best: best candidates re-scored at each shift.
        rounds: batches of ``workers`` evaluations the plan takes (init, candidates, pitch trials).
    """

    neighbours: int
    library: int
    model: int
    shifts: tuple[int, ...]
    pitch_best: int
    rounds: int


def plan_starts(
    budget_s: float,
    round_s: float,
    workers: int,
    *,
    neighbours: int,
    library: int = 0,
    model: int = 0,
    shifts: tuple[int, ...] = (-12, 12),
) -> StartPlan:
    """Which starting candidates fit a budget: a pure rule, so a short match keeps time to search.

    From :data:`FULL_BUDGET_S` on, everything asked for is scored (``neighbours``, ``library``,
    ``model`` candidates, the best two at every shift). Below it, scoring may take
    :data:`START_SHARE` of ``budget_s``: ``rounds = floor(share * budget_s / round_s)`` batches
    (at least one), a batch being one evaluation per worker taking ``round_s`` seconds. The pitch
    trials come first (the best ``min(2, workers)`` candidates at each shift, one batch per note:
    the detector is an octave off for a third of Vital presets): the octaves (the first two
    shifts), then the semitones, each pair only while a batch is left for the candidates. The
    other slots (``rounds * workers``, less one for the init preset) go to the sources in turn,
    with a model ``model, model, neighbour, model, library`` (the network's top candidates were
    closer than the nearest start-set presets on every benchmark set: docs/model.md), without one
    ``neighbour, library``; a source asked for fewer gives its turns to the others.

    Args:
        budget_s: the match's budget (seconds).
        round_s: seconds one batch of starting candidates takes (a full load and a render per
            worker; measured, or :data:`LOAD_S` + :data:`RENDER_S_PER_S` per second of audio).
        workers: render processes.
        neighbours, library, model: candidates asked for per source (0: none).
        shifts: the pitch trials asked for (empty: none).
    """
    if budget_s >= FULL_BUDGET_S:
        best = 2 if shifts else 0
        n = 1 + neighbours + library + model
        return StartPlan(
            neighbours,
            library,
            model,
            tuple(shifts),
            best,
            -(-n // workers) + len(shifts) * -(-best // workers),
        )
    rounds = max(1, int(START_SHARE * budget_s / max(round_s, 1e-6)))
    best = min(2, workers)
    kept: list[int] = []
    for pair in (tuple(shifts[:2]), tuple(shifts[2:])):
        if pair and rounds - len(kept) - len(pair) >= 1:
            kept += pair
    slots = (rounds - len(kept)) * workers - 1
    asked = {"neighbour": neighbours, "library": library, "model": model}
    got = dict.fromkeys(asked, 0)
    turns = SOURCE_TURNS[bool(model)]
    while slots > 0 and any(got[k] < asked[k] for k in asked):
        for source in [*turns, *(k for k in asked if k not in turns)]:
            if slots > 0 and got[source] < asked[source]:
                got[source] += 1
                slots -= 1
    return StartPlan(got["neighbour"], got["library"], got["model"], tuple(kept), best if kept else 0, rounds)


def finish_elites(budget_s: float, points: int, workers: int, elites: int) -> int:
    """Runner-ups of the search to re-render at full quality with ``points`` other final renders
    (init, start, result, the init preset at the detected note): all ``elites`` from
    :data:`FULL_BUDGET_S` on, below it only as many as fill the last batch of ``workers``
    renders (the renders then take no extra batch)."""
    if budget_s >= FULL_BUDGET_S:
        return elites
    return min(elites, -(-points // workers) * workers - points)


@dataclass(frozen=True)
class MatchConfig:
    """Settings of a match.

    Attributes:
        tier: what the search may change: 1 (oscillators 1-2, filter 1, envelope 1, volume),
            2 (every parameter: effects, filter 2, osc 3, noise, envelopes, LFOs; the structure
            phase adds modules and routings and the search tunes their amounts) or 3 (also the
            amounts of every connection a start brings, e.g. a library preset's matrix).
        budget_s: seconds for choosing the start, refining and the final full-quality renders
            (their estimated time is kept back from the search); the audio analysis before and
            the export after are not counted (~0.1-0.3 s). Below :data:`FULL_BUDGET_S` the
            starting candidates get :data:`START_SHARE` of it (:func:`plan_starts`) and fewer of
            the search's runner-ups are re-rendered (:func:`finish_elites`).
        max_evals: evaluations at most (None: only the time budget).
        refine: False: keep the best starting candidate (no search).
        workers: render processes.
        sample_rate: Hz of the input analysis, final render and distances.
        search_sample_rate: Hz of the renders during the search.
        search_max_s: seconds of each search render at most (the start of the clip). Shorter is
            faster but the full-quality distance follows the search less (measured on two sounds,
            30 s each: 0.75 s windows ended at 2.04 / 1.41, 1.9 s windows at 1.12 / 1.30).
        max_render_s: the longest clip matched; longer inputs are cropped.
        start_candidates: nearest neighbours of the starting set scored at the target's note.
        start_set_size: presets in the built-in starting set (0: no starting set, only init).
        start_from: ``"best"`` (the candidate with the lowest search loss), or only ``"init"``,
            ``"neighbour"`` (nearest presets of the starting set) or ``"prediction"`` (the network's
            candidates, the best of them).
        model_candidates: starts from the network when a model is used: its prediction, then
            MC-dropout passes with sampled categoricals (seeded by ``seed``); 1 = the prediction only.
        envelope_weight: weight of the loudness-contour term of the search loss.
        match_level: score candidates at their best output level and set ``volume`` to it
            (:attr:`vitalmatch.search.SearchTarget.match_level`).
        library: folders of ``.vital`` / ``.vitalbank`` presets to start from (indexed once,
            :class:`~vitalmatch.match.library.Library`; Vital's factory folders join when present).
        library_candidates: nearest library presets scored at the target's note.
        pitch_search: try the detected note's octaves (and neighbours when unsure) as the note.
        structure: run the search's structure phase (Tier 2+).
        sigma0, popsize, seed: CMA-ES settings (see :class:`vitalmatch.search.RefineConfig`).
    """

    tier: int = 3
    budget_s: float = 30.0
    max_evals: int | None = None
    refine: bool = True
    workers: int = 2
    sample_rate: int = 44100
    search_sample_rate: int = 44100
    search_max_s: float = 2.0
    max_render_s: float = 10.0
    start_candidates: int = 6
    start_set_size: int = 256
    start_from: str = "best"
    envelope_weight: float = 0.5
    match_level: bool = True
    sigma0: float = 0.1
    popsize: int | None = None
    seed: int = 0
    library: tuple[str, ...] = ()
    library_candidates: int = 8
    model_candidates: int = 8
    pitch_search: bool = True
    structure: bool = True

    def check(self) -> None:
        from vitalmatch.synth.params import check_tier

        check_tier(self.tier)
        if self.library_candidates < 0:
            raise ValueError(f"--library-candidates must be >= 0, got {self.library_candidates}")
        if not 1 <= self.model_candidates <= 256:
            raise ValueError(f"--model-candidates must be in 1..256, got {self.model_candidates}")
        if not 0 < self.budget_s <= MAX_BUDGET_S:
            raise ValueError(
                f"--budget-s must be a number of seconds in (0, {MAX_BUDGET_S:g}], got {self.budget_s}"
            )
        if self.max_evals is not None and self.max_evals < 1:
            raise ValueError(f"--max-evals must be >= 1, got {self.max_evals}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if not 0.1 <= self.search_max_s <= self.max_render_s:
            raise ValueError(f"search window must be in 0.1..{self.max_render_s} s, got {self.search_max_s}")
        if self.start_from not in ("best", "init", "neighbour", "prediction"):
            raise ValueError(
                f"start_from must be best, init, neighbour or prediction, got {self.start_from!r}"
            )
        check_start_set_size(self.start_set_size)

    def refine_config(self) -> RefineConfig:
        return RefineConfig(
            tier=self.tier,
            budget_s=self.budget_s,
            max_evals=self.max_evals,
            sigma0=self.sigma0,
            popsize=self.popsize,
            seed=self.seed,
            structure=self.structure,
        )


@dataclass
class Candidate:
    """A starting point: full vectors and extras, where it came from, its search loss."""

    name: str
    continuous: np.ndarray
    categorical: np.ndarray
    extras: PresetExtras = field(default_factory=PresetExtras)
    loss: float = math.nan
    probabilities: dict[str, np.ndarray] | None = None
    note: int = -1


@dataclass
class MatchResult:
    """One matched sound.

    Attributes:
        preset: the Vital preset dict (as the synth wrote it, with name/author/comments).
        continuous, categorical: its full normalised vectors.
        start: the chosen starting candidate's name (``"init"``, ``"prediction"``,
            ``"prediction #3"``, ``"start set #12 (random-t1-0000012@60)"``).
        distance_init, distance_start, distance: full-quality distances to the input by the
            metric (:func:`vitalmatch.metrics.magnitude_mel_l1`) of the init preset (at the note
            played), the start, and the result.
        power_distance_init, power_distance: the same for the init preset and the result by the
            project's earlier metric (:func:`vitalmatch.metrics.multiscale_mel_l1`, power mels).
        extras: the result's modulations (and LFO shapes, sample, custom wavetables).
        detected_note: the note the input was analysed at (``note`` is the one the loss chose).
        findings: what the analysis found in the input (:class:`vitalmatch.analysis.Findings`).
        render: ``(2, T)`` float32 full-quality render of the result at ``sample_rate``.
        target: ``(T,)`` float32 the prepared input it was compared with.
        note, note_s, render_s: how the preset is played (MIDI note, seconds held, seconds).
        kept: which full-quality render was closest and is returned: ``"refined"``, ``"start"``
            or ``"init"``.
        candidates: ``{name: search loss}`` of the starting candidates.
        refinement: the search, or None with ``refine=False``.
        seconds: wall-clock time of the whole match.
        interrupted: Ctrl-C ended the search early.
        prepared: the analysed input (:class:`vitalmatch.audio.Prepared`).
    """

    preset: dict
    continuous: np.ndarray
    categorical: np.ndarray
    start: str
    distance_init: float
    distance_start: float
    distance: float
    render: np.ndarray
    target: np.ndarray
    sample_rate: int
    note: int
    note_s: float
    render_s: float
    kept: str = "refined"
    candidates: dict[str, float] = field(default_factory=dict)
    refinement: Refinement | None = None
    seconds: float = 0.0
    interrupted: bool = False
    prepared: object = None
    power_distance_init: float = math.nan
    power_distance: float = math.nan
    extras: PresetExtras = field(default_factory=PresetExtras)
    detected_note: int = -1
    findings: object = None


def _union_catalog(primary, extra):
    """Catalog with ``primary``'s tables first (their indices unchanged), then ``extra``'s others."""
    from vitalmatch.synth.wavetables import WavetableCatalog

    out = WavetableCatalog()
    for cat in (primary, extra):
        if cat is None:
            continue
        for e in cat:
            out.add(e.table, name=e.name, origin=e.origin, custom=e.custom)
    return out


class Matcher:
    """Matches sounds one after another on one pool of synth workers (state: pool, start set,
    optional network).

    Args:
        config: match settings.
        checkpoint: a model file (``.safetensors``) or a training run's ``best.pt`` / ``last.pt``
            (None: start set and init only; :func:`vitalmatch.learn.default_model.resolve` picks
            the default). It must fit the live synth (``ValueError`` otherwise), except the default
            model (:func:`~vitalmatch.learn.default_model.is_default`): that one is then left out
            with a one-line warning (``notify``, else :func:`warnings.warn`) and
            :attr:`model_warning` says why.
        progress: show the starting set's build progress bar (stderr), if it is built now.
        notify: called with a one-line message when the starting set is built now (see
            :func:`~vitalmatch.match.start_set.ensure_start_set`) or the default model is left out.
    """

    def __init__(
        self,
        config: MatchConfig = MatchConfig(),
        checkpoint=None,
        *,
        progress: bool = False,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        import torch

        from vitalmatch.search import init_worker
        from vitalmatch.synth.pool import WorkerPool
        from vitalmatch.synth.wavetables import WavetableCatalog

        config.check()
        self.config = config
        self.show_progress = progress
        torch.set_num_threads(1)  # the workers have the cores
        self.predictor = None
        self.model_warning: str | None = None
        ckpt_catalog = None
        if checkpoint is not None:
            from vitalmatch.learn.default_model import is_default
            from vitalmatch.learn.predict import Predictor

            try:
                predictor = Predictor(checkpoint)
                predictor.synth_registry()  # check_layout: its parameters are the live synth's
                ckpt_catalog = predictor.wavetables()
                self.predictor = predictor
            except ValueError as e:
                if not is_default(checkpoint):
                    raise
                self.model_warning = f"warning: the default model is not used ({e}); matching without it"
                if notify is not None:
                    notify(self.model_warning)
                else:
                    import warnings

                    warnings.warn(self.model_warning, stacklevel=2)
        self.starts = ensure_start_set(
            config.start_set_size, workers=config.workers, progress=progress, notify=notify
        )
        self.catalog = _union_catalog(
            ckpt_catalog, self.starts.catalog if self.starts else WavetableCatalog.builtin()
        )
        self.registry = ParamRegistry.from_synth(wavetable_names=self.catalog.names)
        other = self.predictor.full_registry if self.predictor else None
        if other is not None and (
            other.continuous_names != self.registry.continuous_names
            or other.categorical_names != self.registry.categorical_names
        ):
            raise ValueError("the checkpoint was made with a different synth version (parameters differ)")
        self.tables = [e.table for e in self.catalog]
        self._wt_cols = [j for j, s in enumerate(self.registry.categorical) if s.name.endswith("_wavetable")]
        self.library = None
        if config.library:
            from vitalmatch.match.library import Library, LibraryConfig

            self.library = Library(
                [Path(d) for d in config.library],
                self.registry,
                self.catalog,
                LibraryConfig(workers=config.workers, progress=progress),
                notify=notify,
            )
            if self.library.failures and notify is not None:  # listed; the rest is used
                shown = "; ".join(f"{f}: {why}" for f, why in self.library.failures[:5])
                more = (
                    f"; and {len(self.library.failures) - 5} more" if len(self.library.failures) > 5 else ""
                )
                notify(
                    f"library: {len(self.library)} presets used, {len(self.library.failures)} left out "
                    f"({shown}{more})"
                )
        self.pool = WorkerPool(
            config.workers,
            initializer=init_worker,
            initargs=(self.registry.to_json(), self.tables, config.search_sample_rate),
            task_timeout_s=30.0,
        )
        self._init_vectors = self._init_preset()
        self._speed: dict[str, float] = {}  # measured / prior seconds per batch (_round_s)
        # Pay start-up costs here, not inside a sound's budget: pYIN's first call compiles (numba,
        # ~3 s), each worker starts and loads its synth (~3-6 s on 2 cores), the search's first
        # import of ``cma`` (~0.5 s).
        import cma  # noqa: F401

        from vitalmatch.audio import estimate_pitch

        t = np.arange(config.sample_rate // 2) / config.sample_rate
        tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        estimate_pitch(tone, config.sample_rate)
        warm = SearchTarget(
            "warm-up", tone[: config.search_sample_rate // 4], config.search_sample_rate, 57, 0.1
        )
        evaluate_batch(self.pool, [self._init_vectors] * config.workers, warm)
        # then a batch of each kind a match sends, twice (the first pays first-call costs), the
        # second timed for the first match's plan (:meth:`_round_s`): starting candidates (a full
        # load each) at a 0.5-s target, final renders of a 1-s clip
        half = dataclasses.replace(warm, key="warm-up 0.5 s", audio=tone)
        init = (*self._init_vectors, None)
        for point in (
            init,
            self._from_start_set(0) if self.starts is not None and len(self.starts) else init,
        ):
            self._speed = {}
            self._score([Candidate("warm-up", *point)] * config.workers, half)
            t = time.perf_counter()
            task = (*point[:2], 57, 0.5, 1.0, config.sample_rate, point[2])
            list(self.pool.map(final_task, [task] * config.workers))
            self._measured("final", FINAL_S + RENDER_S_PER_S, time.perf_counter() - t, config.workers)

    # -- pieces -------------------------------------------------------------------------------
    def _init_preset(self) -> tuple[np.ndarray, np.ndarray]:
        """Vital's init preset with the reproducibility pins (random phase 0)."""
        from vitalmatch.synth.params import reproducibility_pins

        return self.registry.from_raw(reproducibility_pins())

    def _from_start_set(self, row: int) -> tuple[np.ndarray, np.ndarray, PresetExtras]:
        """A starting-set row's vectors (wavetable indices mapped to this catalog) and extras."""
        cont = self.starts.continuous[row].copy()
        cat = self.starts.categorical[row].copy()
        catalog = self.starts.catalog_of(row)
        for j in self._wt_cols:
            content_hash = catalog[int(cat[j])].hash
            cat[j] = self.catalog.index_of(content_hash)
        return cont, cat, self.starts.extras[row]

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Matcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- matching -----------------------------------------------------------------------------
    def match_file(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        author: str = "vitalmatch",
        progress: Callable[[int, float, float], None] | None = None,
        on_batch: Callable[[int, float, tuple], None] | None = None,
    ) -> MatchResult:
        """Match an audio file (see the module docstring).

        Args:
            name, author: the preset's name (default: the file's stem) and author.
            progress: called as ``progress(evaluations, seconds, best_loss)`` during the search.
            on_batch: as :meth:`match_audio`'s.

        Raises:
            vitalmatch.audio.AudioError: the file is missing, not audio, silent or too short.
        """
        from vitalmatch.audio import prepare

        cfg = self.config
        t0 = time.perf_counter()
        prepared = prepare(path, cfg.sample_rate, int(cfg.max_render_s * cfg.sample_rate))
        clip_s = (len(prepared.clip.samples) - prepared.offset_samples) / cfg.sample_rate
        render_s = float(min(max(clip_s, 0.25), cfg.max_render_s))
        note_s = float(min(max(prepared.note_length_s, 0.05), render_s))
        n = int(np.float32(render_s) * cfg.sample_rate)
        target = prepared.samples[:n].copy()
        stem = Path(path).stem
        pitch = (
            f"note {prepared.midi_note} (default: no pitch found)"
            if prepared.midi_is_default
            else f"note {prepared.midi_note} ({prepared.pitch.hz:.1f} Hz)"
        )
        result = self.match_audio(
            target,
            prepared.midi_note,
            note_s,
            name=name or stem,
            author=author,
            comments=f"Matched by vitalmatch from {Path(path).name}: {pitch}, held {note_s:.2f} s.",
            progress=progress,
            on_batch=on_batch,
            pitch_confidence=0.0 if prepared.pitch is None else prepared.pitch.confidence,
            stereo=_stereo_clip(path, prepared.offset_samples / cfg.sample_rate, render_s, cfg.sample_rate),
        )
        result.seconds = time.perf_counter() - t0
        result.prepared = prepared
        return result

    def match_audio(
        self,
        target: np.ndarray,
        note: int,
        note_s: float,
        *,
        name: str = "vitalmatch",
        author: str = "vitalmatch",
        comments: str = "",
        progress: Callable[[int, float, float], None] | None = None,
        on_batch: Callable[[int, float, tuple], None] | None = None,
        start: tuple | None = None,
        pitch_confidence: float | None = None,
        stereo: np.ndarray | None = None,
    ) -> MatchResult:
        """Match mono ``target`` ``(T,)`` at ``config.sample_rate`` played at MIDI ``note`` held
        ``note_s`` seconds (the render lasts ``T`` samples).

        Args:
            name, author, comments: the preset's text fields.
            progress: called as ``progress(evaluations, seconds, best_loss)`` during the search
                (seconds since this call began: the budget includes choosing the start).
            on_batch: called as ``on_batch(evaluations, seconds, (continuous, categorical, loss, extras))``
                with the search's best point after each batch (:func:`vitalmatch.search.refine`).
            start: ``(continuous (C,), categorical (K,)[, extras])`` of a given starting preset;
                the search then starts from it (not from the starting set, libraries or the
                network), and the init preset is still a fallback at the end.
            pitch_confidence: the pitch detector's confidence in ``note`` (0..1; below 0.5 the
                neighbouring semitones are tried too); None: a note given by the caller.
            stereo: ``(2, T')`` of the input when it has two channels (only for the analysis of
                its width; the metric is mono).
        """
        import soxr

        from vitalmatch.analysis import analyse

        cfg = self.config
        t0 = time.perf_counter()
        target = np.asarray(target, np.float32).reshape(-1)
        render_s = len(target) / cfg.sample_rate
        # the final full-quality renders are inside the budget: their estimated time is kept back
        search_s = min(render_s, cfg.search_max_s)
        start_round = self._round_s("start", LOAD_S + RENDER_S_PER_S * search_s)
        final_round = self._round_s("final", FINAL_S + RENDER_S_PER_S * render_s)
        plan = self._plan(start_round, pitch_confidence if start is None else 1.0)
        base = 4 if plan.shifts and start is None else 3  # init, start, result (, init at the detected note)
        n_final = base + finish_elites(cfg.budget_s, base, cfg.workers, ELITES - 1)
        reserve = min(0.5 * cfg.budget_s, -(-n_final // cfg.workers) * final_round)
        budget = Budget(cfg.budget_s - reserve, cfg.max_evals, start=t0)
        # estimates for the search's first batches: its structure and discrete changes reload
        # as the starting candidates do; its CMA-ES steps only render
        budget.costs["change"] = start_round
        budget.costs["step"] = self._round_s("start", RENDER_S_PER_S * search_s)
        search_audio = soxr.resample(target, cfg.sample_rate, cfg.search_sample_rate).astype(np.float32)
        search_audio = search_audio[: int(cfg.search_max_s * cfg.search_sample_rate)]
        key = hashlib.sha1(search_audio.tobytes() + f"{note}:{note_s}".encode()).hexdigest()
        search_target = SearchTarget(
            key,
            search_audio,
            cfg.search_sample_rate,
            int(note),
            float(note_s),
            cfg.envelope_weight,
            cfg.match_level,
        )
        analysed = stereo if stereo is not None and np.ndim(stereo) == 2 else target
        findings = analyse(analysed, cfg.sample_rate, float(note_s), int(note))

        # 1. starting candidates, scored at the target's note, as many as the budget affords
        candidates = [Candidate("init", *self._init_vectors)]
        if start is not None:
            given = (np.asarray(start[0], np.float32).copy(), np.asarray(start[1], np.int32).copy())
            extras = start[2] if len(start) > 2 and start[2] is not None else PresetExtras()
            candidates.append(Candidate("given", *given, extras))
        else:
            if self.starts is not None:
                for row in self.starts.nearest(search_audio, cfg.search_sample_rate, note, plan.neighbours):
                    label = f"start set #{row} ({self.starts.names[row]}@{self.starts.notes[row]})"
                    candidates.append(Candidate(label, *self._from_start_set(row)))
            if self.library is not None and plan.library:
                for entry in self.library.nearest(search_audio, cfg.search_sample_rate, note, plan.library):
                    candidates.append(
                        Candidate(
                            f"library: {entry.name} ({entry.file})",
                            entry.continuous,
                            entry.categorical,
                            entry.extras,
                        )
                    )
        if self.predictor is not None and start is None and plan.model:
            preds = self.predictor.predict_candidates(target, cfg.sample_rate, plan.model, cfg.seed)
            for i, pred in enumerate(preds):
                candidates.append(
                    Candidate(
                        "prediction" if i == 0 else f"prediction #{i + 1}",
                        pred.continuous,
                        pred.categorical,
                        probabilities=pred.probabilities,
                    )
                )
        interrupted = False
        # a short budget scores in the plan's order, a few batches at a time, and stops at its
        # share (the plan's estimate of a batch can be off: presets differ in cost, so does the load)
        short = cfg.refine and cfg.budget_s < FULL_BUDGET_S and start is None
        share_end = t0 + START_SHARE * cfg.budget_s if short else math.inf
        prior = LOAD_S + RENDER_S_PER_S * search_s
        if short:
            candidates = _in_turns(candidates, self.predictor is not None)
        step = 2 * cfg.workers if short else max(1, len(candidates))
        scored = 0
        try:
            while scored < len(candidates):
                pitch_s = len(plan.shifts) * self._round_s("start", prior)
                if scored and time.perf_counter() + pitch_s + self._round_s("start", prior) > share_end:
                    break
                self._score(candidates[scored : scored + step], search_target)
                scored += step
        except KeyboardInterrupt:
            interrupted = True
        if not interrupted:
            candidates = candidates[:scored]
        budget.evals += len(candidates)
        if start is not None:
            prefix = "given"
        else:
            prefix = {"init": "init", "neighbour": "start set", "prediction": "prediction"}.get(
                cfg.start_from, ""
            )
        eligible = [c for c in candidates if c.name.startswith(prefix)] or candidates[:1]

        # 2. pitch: the best candidates an octave either way (and a semitone when unsure)
        detected = int(note)
        shifts: list[int] = []
        for pair in (plan.shifts[:2], plan.shifts[2:]):  # the octaves, then the semitones, while time is left
            n_notes = len(shifts) + len(pair)
            if pair and time.perf_counter() + (n_notes - 1) * self._round_s("start", prior) <= share_end:
                shifts += pair
        if shifts and not interrupted and start is None:
            best_two = sorted((c for c in eligible if math.isfinite(c.loss)), key=lambda c: c.loss)
            trials = [
                dataclasses.replace(c, name=f"{c.name} at note {note + d}", note=note + d, loss=math.nan)
                for c in best_two[: plan.pitch_best]
                for d in shifts
                if 0 <= note + d <= 127
            ]
            try:
                for n in sorted({t.note for t in trials}):
                    self._score(
                        [t for t in trials if t.note == n], dataclasses.replace(search_target, note=n)
                    )
            except KeyboardInterrupt:
                interrupted = True
            budget.evals += len(trials)
            candidates += trials
            eligible += trials
        finite = [c for c in eligible if math.isfinite(c.loss)]
        chosen = min(finite, key=lambda c: c.loss) if finite else eligible[0]
        if chosen.note >= 0 and chosen.note != note:
            note = int(chosen.note)
            search_target = dataclasses.replace(search_target, note=note)

        # 3. refinement
        refinement = None
        best = (chosen.continuous, chosen.categorical, chosen.extras)
        if cfg.refine and not interrupted:
            refinement = refine(
                self.pool,
                self.registry,
                best,
                search_target,
                cfg.refine_config(),
                probabilities=chosen.probabilities,
                start_loss=chosen.loss,
                progress=progress,
                budget=budget,
                on_batch=on_batch,
                findings=findings,
            )
            best = (refinement.continuous, refinement.categorical, refinement.extras)
            interrupted = refinement.stopped_by == "interrupt"
        return self._finish(
            target,
            note,
            detected,
            note_s,
            render_s,
            chosen,
            best,
            refinement,
            candidates,
            findings,
            interrupted,
            t0,
            name=name,
            author=author,
            comments=comments,
        )

    def _plan(self, round_s: float, pitch_confidence: float | None) -> StartPlan:
        """The starting candidates of this match (:func:`plan_starts`): all of them without a
        search or from :data:`FULL_BUDGET_S` on; below, only from the sources ``start_from`` can
        choose, as many as :data:`START_SHARE` of the budget affords."""
        cfg = self.config
        unsure = pitch_confidence is not None and pitch_confidence < 0.5
        shifts = ((-12, 12) + ((-1, 1) if unsure else ())) if cfg.pitch_search else ()
        asked = {
            "neighbours": cfg.start_candidates if self.starts is not None else 0,
            "library": cfg.library_candidates if self.library is not None else 0,
            "model": cfg.model_candidates if self.predictor is not None else 0,
        }
        budget_s = cfg.budget_s if cfg.refine else FULL_BUDGET_S
        if budget_s < FULL_BUDGET_S:  # a candidate start_from cannot choose is not worth its time
            keep = {"neighbour": "neighbours", "prediction": "model", "init": ""}.get(cfg.start_from)
            if keep is not None:
                asked = {k: (v if k == keep else 0) for k, v in asked.items()}
        return plan_starts(budget_s, round_s, cfg.workers, shifts=shifts, **asked)

    def _round_s(self, kind: str, prior: float) -> float:
        """Seconds one batch of ``kind`` (``"start"``: starting candidates, ``"final"``: final
        renders) takes: ``prior`` times the running ratio of measured to prior times."""
        return prior * self._speed.get(kind, 1.0)

    def _measured(self, kind: str, prior: float, seconds: float, n: int) -> None:
        """Fold a batch of ``n`` tasks that took ``seconds`` into the running ratio of ``kind``."""
        if n <= 0 or prior <= 0:
            return
        ratio = seconds / (-(-n // self.config.workers) * prior)
        old = self._speed.get(kind)
        self._speed[kind] = ratio if old is None else 0.5 * (old + ratio)

    def _score(self, candidates: list[Candidate], target: SearchTarget) -> None:
        """Set each candidate's loss (and move its volume to the level it was scored at)."""
        t = time.perf_counter()
        losses, gains, _ = evaluate_batch(
            self.pool, [(c.continuous, c.categorical, c.extras) for c in candidates], target
        )
        search_s = len(target.audio) / target.sample_rate
        self._measured("start", LOAD_S + RENDER_S_PER_S * search_s, time.perf_counter() - t, len(candidates))
        for c, loss, gain in zip(candidates, losses, gains, strict=True):
            c.loss = float(loss)
            if gain:  # scored at another output level: move the candidate's volume there
                c.continuous = self.registry.with_output_gain(c.continuous, gain)

    def _finish(
        self,
        target,
        note,
        detected,
        note_s,
        render_s,
        chosen,
        best,
        refinement,
        candidates,
        findings,
        interrupted,
        t0,
        *,
        name,
        author,
        comments,
    ) -> MatchResult:
        """Full-quality renders of init, start, result and the search's runner-up best points
        (its loss comes from a reused synth: a runner-up can be closer at full quality); the
        closest by the metric that is not silent is kept."""
        from vitalmatch.metrics import magnitude_mel_l1, multiscale_mel_l1

        cfg = self.config
        points = [
            (*self._init_vectors, PresetExtras()),
            (chosen.continuous, chosen.categorical, chosen.extras),
            best,
        ]
        # the init preset at the detected note (the metric's reference) joins the same batch
        ref_task = (
            [(*self._init_vectors, detected, float(note_s), float(render_s), cfg.sample_rate, None)]
            if detected != note
            else []
        )
        if refinement is not None:
            base = len(points) + len(ref_task)
            n_elites = finish_elites(cfg.budget_s, base, cfg.workers, len(refinement.elites) - 1)
            points += [(c, k, x) for c, k, _, x in refinement.elites[1 : 1 + n_elites]]
        tasks = [(c, k, int(note), float(note_s), float(render_s), cfg.sample_rate, x) for c, k, x in points]
        # a point met twice (the result is often the start itself at short budgets) renders once:
        # full-quality renders are reproducible
        unique: list[int] = []
        for i, p in enumerate(points):
            if not any(_same_point(p, points[j]) for j in unique):
                unique.append(i)
        t = time.perf_counter()
        done = list(self.pool.map(final_task, [tasks[i] for i in unique] + ref_task))
        ref = done[len(unique)] if ref_task else None
        by_point = {i: done[n] for n, i in enumerate(unique)}
        finals = [
            by_point[i] if i in by_point else by_point[next(j for j in unique if _same_point(p, points[j]))]
            for i, p in enumerate(points)
        ]
        if not finals[1].ok:
            raise RuntimeError(f"the starting preset could not be rendered: {finals[1].error}")

        def mono(res):
            return res.value[0].mean(axis=0)

        dist = [
            float(magnitude_mel_l1(mono(r), target, cfg.sample_rate)) if r.ok else math.inf for r in finals
        ]

        def sounding(i: int) -> bool:
            return finals[i].ok and float(np.abs(finals[i].value[0]).max()) >= SILENT_PEAK

        # the start unless a refined point is as close; the init preset only when strictly
        # closer; a silent render never (the metric can prefer silence: search/loss.py)
        keep = None
        for i in (1, *range(2, len(finals))):
            if sounding(i) and (keep is None or dist[i] <= dist[keep]):
                keep = i
        if sounding(0) and (keep is None or dist[0] < dist[keep]):
            keep = 0
        if keep is None:
            raise RuntimeError("every candidate, the init preset too, rendered silent at this note")
        init_dist = dist[0]
        if ref is not None and ref.ok:  # the metric's reference is the init preset at the note played
            init_dist = min(init_dist, float(magnitude_mel_l1(mono(ref), target, cfg.sample_rate)))
        self._measured(
            "final", FINAL_S + RENDER_S_PER_S * render_s, time.perf_counter() - t, len(unique) + len(ref_task)
        )
        audio, text = finals[keep].value
        cont, cat, extras = points[keep]
        preset = json.loads(text)
        preset.update({"preset_name": name, "author": author, "comments": comments, "preset_style": ""})
        return MatchResult(
            preset=preset,
            continuous=np.asarray(cont, np.float32),
            categorical=np.asarray(cat, np.int32),
            start=chosen.name,
            kept=("init", "start")[keep] if keep < 2 else "refined",
            distance_init=init_dist,
            distance_start=dist[1],
            distance=dist[keep],
            render=audio,
            target=target,
            sample_rate=cfg.sample_rate,
            note=int(note),
            note_s=float(note_s),
            render_s=float(render_s),
            candidates={c.name: c.loss for c in candidates},
            refinement=refinement,
            seconds=time.perf_counter() - t0,
            interrupted=interrupted,
            power_distance_init=float(multiscale_mel_l1(mono(finals[0]), target, cfg.sample_rate))
            if finals[0].ok
            else math.nan,
            power_distance=float(multiscale_mel_l1(audio.mean(axis=0), target, cfg.sample_rate)),
            extras=extras,
            detected_note=detected,
            findings=findings,
        )


def _in_turns(candidates: list[Candidate], model: bool) -> list[Candidate]:
    """``candidates`` (the init preset first, then by source) reordered as :func:`plan_starts`
    gives its turns: the init preset, then with a model ``model, model, neighbour, model,
    library`` in turn, without ``neighbour, library``, each source's own order kept."""
    sources = {"model": "prediction", "neighbour": "start set", "library": "library"}
    queues = {k: [c for c in candidates[1:] if c.name.startswith(v)] for k, v in sources.items()}
    turns = SOURCE_TURNS[bool(model)]
    out = candidates[:1]
    while any(queues.values()):
        for source in [*turns, *(k for k in queues if k not in turns)]:
            if queues[source]:
                out.append(queues[source].pop(0))
    rest = [c for c in candidates if not any(c is o for o in out)]  # (a source not listed above)
    return out + rest


def _same_point(a: tuple, b: tuple) -> bool:
    """Whether two points ``(continuous, categorical, extras)`` are the same preset."""
    return (
        np.array_equal(a[0], b[0])
        and np.array_equal(a[1], b[1])
        and (a[2] if a[2] is not None else PresetExtras()) == (b[2] if b[2] is not None else PresetExtras())
    )


def _stereo_clip(path, offset_s: float, seconds: float, sample_rate: int) -> np.ndarray | None:
    """``(2, T)`` of a two-channel file from ``offset_s`` for ``seconds`` at ``sample_rate``, for
    the width analysis; None for mono files or formats soundfile does not read."""
    import soundfile as sf
    import soxr

    try:
        with sf.SoundFile(str(path)) as f:
            if f.channels != 2:
                return None
            f.seek(int(offset_s * f.samplerate))
            data = f.read(int(seconds * f.samplerate), dtype="float32", always_2d=True)
            rate = f.samplerate
    except (RuntimeError, OSError, ValueError, TypeError):
        return None
    if not len(data) or not np.isfinite(data).all():
        return None
    if rate != sample_rate:
        data = soxr.resample(data, rate, sample_rate)
    return np.ascontiguousarray(data.T, dtype=np.float32)
