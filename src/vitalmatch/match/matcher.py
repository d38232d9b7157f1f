"""Matching: an audio file -> a ``.vital`` preset that sounds like it (the product's main job).

Stage: match. Input: an audio file (any format :func:`vitalmatch.audio.load_audio` reads), or mono
samples. Output: :class:`MatchResult` -- the preset (Vital JSON as the synth writes it), its
full-quality render ``(2, T)`` at 44.1 kHz, and the distances before and after refinement.

Steps (:meth:`Matcher.match_file`):

1. prepare the audio: trim leading silence, detect the pitch (MIDI note) and note length
   (:func:`vitalmatch.audio.prepare`); the match is played at that note, held that long, for the
   clip's length (0.25-10 s);
2. starting candidates: the init preset, the ``start_candidates`` nearest presets of the built-in
   starting set (:class:`~vitalmatch.match.start_set.StartSet`, coarse log-mels at the stored note
   nearest the target's), and with a checkpoint the network's prediction; all are rendered at the
   target's note and the one with the lowest search loss is the start;
3. refinement with the synth in the loop (:func:`vitalmatch.search.refine`) on the rest of the
   time budget;
4. a full-quality render (fresh synth, 44.1 kHz, the whole clip) of the init preset, the start,
   the refined preset and the search's runner-up best points (:attr:`Refinement.elites`: the
   search's reused synth can rank near-equal points differently from a fresh one); the closest by
   :func:`vitalmatch.metrics.multiscale_mel_l1` that is not silent is kept, so the result is never
   worse than the start (nor than the init preset).
"""

from __future__ import annotations

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
    Budget,
    RefineConfig,
    Refinement,
    SearchTarget,
    evaluate_batch,
    final_task,
    refine,
)
from vitalmatch.synth.params import ParamRegistry

#: Longest search budget accepted (a day); past it, a budget is a typo or ``inf``.
MAX_BUDGET_S = 86_400.0


@dataclass(frozen=True)
class MatchConfig:
    """Settings of a match.

    Attributes:
        tier: parameters the search may change (1 or 2).
        budget_s: seconds for choosing the start and refining (the final render and export
            come after, ~1 s).
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
            ``"neighbour"`` (nearest presets of the starting set) or ``"prediction"`` (the network).
        envelope_weight: weight of the loudness-contour term of the search loss.
        match_level: score candidates at their best output level and set ``volume`` to it
            (:attr:`vitalmatch.search.SearchTarget.match_level`).
        sigma0, popsize, seed: CMA-ES settings (see :class:`vitalmatch.search.RefineConfig`).
    """

    tier: int = 1
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

    def check(self) -> None:
        from vitalmatch.synth.params import check_tier

        check_tier(self.tier)
        if self.tier > 2:
            raise ValueError("matching supports --tier 1 or 2")
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
        )


@dataclass
class Candidate:
    """A starting point: full vectors, where it came from, its search loss."""

    name: str
    continuous: np.ndarray
    categorical: np.ndarray
    loss: float = math.nan
    probabilities: dict[str, np.ndarray] | None = None


@dataclass
class MatchResult:
    """One matched sound.

    Attributes:
        preset: the Vital preset dict (as the synth wrote it, with name/author/comments).
        continuous, categorical: its full normalised vectors.
        start: the chosen starting candidate's name (``"init"``, ``"prediction"``,
            ``"start set #12 (random-t1-0000012@60)"``).
        distance_init, distance_start, distance: full-quality multi-scale log-mel L1 to the input of
            the init preset, the start, and the result.
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
        checkpoint: a training run's ``best.pt`` / ``last.pt`` (None: start set and init only).
        progress: show the starting set's build progress bar (stderr), if it is built now.
        notify: called with a one-line message when the starting set is built now (see
            :func:`~vitalmatch.match.start_set.ensure_start_set`).
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
        ckpt_catalog = None
        if checkpoint is not None:
            from vitalmatch.learn.predict import Predictor

            self.predictor = Predictor(checkpoint)
            ckpt_catalog = self.predictor.wavetables()
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
        self.pool = WorkerPool(
            config.workers,
            initializer=init_worker,
            initargs=(self.registry.to_json(), self.tables, config.search_sample_rate),
            task_timeout_s=30.0,
        )
        self._init_vectors = self._init_preset()
        # Pay start-up costs here, not inside a sound's budget: pYIN's first call compiles (numba,
        # ~3 s) and each worker starts and loads its synth (~3-6 s on 2 cores).
        from vitalmatch.audio import estimate_pitch

        t = np.arange(config.sample_rate // 2) / config.sample_rate
        tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        estimate_pitch(tone, config.sample_rate)
        warm = SearchTarget(
            "warm-up", tone[: config.search_sample_rate // 4], config.search_sample_rate, 57, 0.1
        )
        evaluate_batch(self.pool, [self._init_vectors] * config.workers, warm)

    # -- pieces -------------------------------------------------------------------------------
    def _init_preset(self) -> tuple[np.ndarray, np.ndarray]:
        """Vital's init preset with the reproducibility pins (random phase 0)."""
        from vitalmatch.synth.params import reproducibility_pins

        return self.registry.from_raw(reproducibility_pins())

    def _from_start_set(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """A starting-set row's vectors with its wavetable indices mapped to this catalog."""
        cont = self.starts.continuous[row].copy()
        cat = self.starts.categorical[row].copy()
        for j in self._wt_cols:
            content_hash = self.starts.catalog[int(cat[j])].hash
            cat[j] = self.catalog.index_of(content_hash)
        return cont, cat

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
    ) -> MatchResult:
        """Match an audio file (see the module docstring).

        Args:
            name, author: the preset's name (default: the file's stem) and author.
            progress: called as ``progress(evaluations, seconds, best_loss)`` during the search.

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
        on_batch: Callable[[int, float, tuple[np.ndarray, np.ndarray, float]], None] | None = None,
        start: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> MatchResult:
        """Match mono ``target`` ``(T,)`` at ``config.sample_rate`` played at MIDI ``note`` held
        ``note_s`` seconds (the render lasts ``T`` samples).

        Args:
            name, author, comments: the preset's text fields.
            progress: called as ``progress(evaluations, seconds, best_loss)`` during the search
                (seconds since this call began: the budget includes choosing the start).
            on_batch: called as ``on_batch(evaluations, seconds, (continuous, categorical, loss))``
                with the search's best point after each batch (:func:`vitalmatch.search.refine`).
            start: full vectors ``(continuous (C,), categorical (K,))`` of a given starting
                preset; the search then starts from it (not from the starting set or the
                network), and the init preset is still a fallback at the end.
        """
        import soxr

        from vitalmatch.metrics import multiscale_mel_l1

        cfg = self.config
        t0 = time.perf_counter()
        budget = Budget(cfg.budget_s, cfg.max_evals, start=t0)
        target = np.asarray(target, np.float32).reshape(-1)
        render_s = len(target) / cfg.sample_rate
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

        # 1. starting candidates, scored at the target's note
        candidates = [Candidate("init", *self._init_vectors)]
        if start is not None:
            given = (np.asarray(start[0], np.float32).copy(), np.asarray(start[1], np.int32).copy())
            candidates.append(Candidate("given", *given))
        elif self.starts is not None:
            for row in self.starts.nearest(search_audio, cfg.search_sample_rate, note, cfg.start_candidates):
                label = f"start set #{row} ({self.starts.names[row]}@{self.starts.notes[row]})"
                candidates.append(Candidate(label, *self._from_start_set(row)))
        if self.predictor is not None and start is None:
            pred = self.predictor.predict_audio(target, cfg.sample_rate)
            candidates.append(
                Candidate("prediction", pred.continuous, pred.categorical, probabilities=pred.probabilities)
            )
        interrupted = False
        try:
            losses, gains, _ = evaluate_batch(
                self.pool, [(c.continuous, c.categorical) for c in candidates], search_target
            )
        except KeyboardInterrupt:
            losses, gains, interrupted = np.full(len(candidates), np.nan), np.zeros(len(candidates)), True
        budget.evals += len(candidates)
        for c, loss, gain in zip(candidates, losses, gains, strict=True):
            c.loss = float(loss)
            if gain:  # scored at another output level: move the candidate's volume there
                c.continuous = self.registry.with_output_gain(c.continuous, gain)
        if start is not None:
            prefix = "given"
        else:
            prefix = {"init": "init", "neighbour": "start set", "prediction": "prediction"}.get(
                cfg.start_from, ""
            )
        finite = [c for c in candidates if math.isfinite(c.loss) and c.name.startswith(prefix)]
        chosen = min(finite, key=lambda c: c.loss) if finite else candidates[0]

        # 2. refinement
        refinement = None
        best = (chosen.continuous, chosen.categorical)
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
            )
            best = (refinement.continuous, refinement.categorical)
            interrupted = refinement.stopped_by == "interrupt"

        # 3. full-quality renders: init, start, result and the search's runner-up best points
        # (its loss comes from a reused synth: a runner-up can be closer at full quality)
        vectors = [self._init_vectors, (chosen.continuous, chosen.categorical), best]
        if refinement is not None:
            vectors += [(c, k) for c, k, _ in refinement.elites[1:]]
        tasks = [(c, k, int(note), float(note_s), float(render_s), cfg.sample_rate) for c, k in vectors]
        finals = list(self.pool.map(final_task, tasks))
        if not finals[1].ok:
            raise RuntimeError(f"the starting preset could not be rendered: {finals[1].error}")

        def mono(res):
            return res.value[0].mean(axis=0)

        dist = [
            float(multiscale_mel_l1(mono(r), target, cfg.sample_rate)) if r.ok else math.inf for r in finals
        ]
        # the closest sounding search point, unless the start or the init preset is closer
        keep = 1
        for i in range(2, len(finals)):
            silent = not finals[i].ok or float(np.abs(finals[i].value[0]).max()) < 1e-4
            if not silent and dist[i] <= dist[keep]:
                keep = i
        if finals[0].ok and dist[0] < dist[keep]:
            keep = 0
        audio, text = finals[keep].value
        cont, cat = vectors[keep]
        preset = json.loads(text)
        preset.update({"preset_name": name, "author": author, "comments": comments, "preset_style": ""})
        return MatchResult(
            preset=preset,
            continuous=np.asarray(cont, np.float32),
            categorical=np.asarray(cat, np.int32),
            start=chosen.name,
            kept=("init", "start")[keep] if keep < 2 else "refined",
            distance_init=dist[0],
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
        )
