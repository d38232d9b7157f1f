"""Crash-isolated rendering of a predicted preset: the synth runs in a worker process.

Stage: learn (inference, the synth side of ``vitalmatch predict``). Input: the full normalised
vectors of a preset (``(C,)`` float32 in [0, 1], ``(K,)`` int32) in the column order of the *live*
synth's registry, the wavetables they index and how to play them. Output: the Vital preset dict
(as the synth wrote it back) and the ``(2, T)`` float32 render of one note.

The values are clamped to the live synth's ranges before they get here, but the rest of a
checkpoint (its wavetables above all) still reaches Vital's loader, and ``vita`` can segfault or
hang on some inputs (vita-facts §4). So, as ``generate``, ``match`` and ``evaluate`` do, the synth
runs in a :class:`~vitalmatch.synth.pool.WorkerPool` process: a crash or a hang there becomes a
:class:`~vitalmatch.synth.render.RenderError` (one line), not the end of the caller. This module
imports no torch, so the worker starts quickly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.render import RenderConfig, RenderEngine, RenderError

#: The worker's engine (set by :func:`_init_worker`, one per worker process).
_ENGINE: RenderEngine | None = None


def _init_worker(registry_json: str, tables: list[dict], render: RenderConfig) -> None:
    global _ENGINE
    _ENGINE = RenderEngine(ParamRegistry.from_json(registry_json), tables, render)


def _preset_task(task: tuple) -> tuple[dict, np.ndarray]:
    """``(render, continuous, categorical, note, metadata)`` -> ``(preset dict, (2, T) render)``."""
    from vitalmatch.synth.export import preset_dict

    global _ENGINE
    assert _ENGINE is not None
    render, continuous, categorical, note, meta = task
    if render.sample_rate != _ENGINE.config.sample_rate:
        _ENGINE = RenderEngine(_ENGINE.registry, _ENGINE.wavetables, render)
    else:  # the note and render lengths only act at render time (and the synth is remade per load)
        _ENGINE.config = render
    preset = preset_dict(_ENGINE, continuous, categorical, **meta)
    audio = _ENGINE.render_note(int(note))
    return preset, audio


class PresetWorker:
    """One synth worker process that applies and renders presets (state: the process).

    The process starts (and loads its synth) in the background as soon as this is made, so work
    done meanwhile (loading the audio, predicting) hides its start-up. Use as a context manager:
    leaving the block ends the process.

    Args:
        registry: the live synth's registry (:meth:`ParamRegistry.from_synth`): its ranges, not a
            file's, drive the engine.
        tables: catalog tables the ``osc_N_wavetable`` columns index.
        sample_rate: Hz the synth renders at.
        timeout_s: seconds one preset may take before the worker is killed.
    """

    def __init__(
        self, registry: ParamRegistry, tables: Sequence[dict], sample_rate: int, timeout_s: float = 120.0
    ) -> None:
        from vitalmatch.synth.pool import WorkerPool

        self.pool = WorkerPool(
            1,
            initializer=_init_worker,
            initargs=(registry.to_json(), list(tables), RenderConfig(sample_rate=sample_rate)),
            task_timeout_s=timeout_s,
            max_tasks_per_worker=None,
        )

    def render(
        self,
        render: RenderConfig,
        continuous: np.ndarray,
        categorical: np.ndarray,
        note: int,
        *,
        name: str,
        author: str,
        comments: str,
    ) -> tuple[dict, np.ndarray]:
        """Apply a preset in a fresh synth, read it back and render ``note``.

        Args:
            render: note and render lengths, velocity, sample rate.
            continuous, categorical: ``(C,)`` / ``(K,)`` vectors of the worker's registry.
            note: MIDI note of the render.
            name, author, comments: the preset's metadata.

        Returns:
            ``(preset, audio)``: the preset dict and its ``(2, T)`` float32 render.

        Raises:
            RenderError: the synth refused, crashed on or hung on the preset (one line).
        """
        task = (
            render,
            np.asarray(continuous, dtype=np.float32),
            np.asarray(categorical, dtype=np.int32),
            int(note),
            {"name": name, "author": author, "comments": comments},
        )
        (result,) = list(self.pool.map(_preset_task, [task]))
        if result.ok:
            return result.value
        what = {"crash": "crashed on", "timeout": "hung on"}.get(result.status, "refused")
        raise RenderError(f"the synth {what} the predicted preset ({result.error}); nothing was written")

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> PresetWorker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
