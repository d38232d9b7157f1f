"""Rendering: normalised parameter vectors -> stereo audio from Vital's engine.

Stage: render. Input: a preset as the full normalised vectors of a
:class:`~vitalmatch.synth.params.ParamRegistry` (``(C,)`` float32 in [0, 1] and ``(K,)`` int32)
plus the wavetables it chooses. Output: ``(n_notes, 2, T)`` float32 audio, one row per MIDI note,
``T = int(float32(render_duration_s) * sample_rate)``.

:class:`RenderEngine` holds one ``vita.Synth``; make one per worker process (a segfault then
kills only that worker, see :mod:`vitalmatch.synth.pool`). Per preset it

1. reloads the init preset with the chosen wavetables and every raw value written into the
   preset JSON (one ``load_json``: resets all controls and modulations, and makes controls such
   as ``oversampling`` that only act on load take effect, vita-facts §2.2);
2. sets every registry control again through cached handles, clamped and rounded
   (``ControlValue.set`` does no clamping, vita-facts §4);
3. before each note, renders a short throw-away note: ``render`` does not stop voices, and a voice
   still sounding from the previous render bleeds into the first ~50 ms of the next
   (vita-facts §6).

Reproducibility. Vital smooths some per-voice values (oscillator level and phase among them)
and each voice of its pool keeps its smoothed state from its last use; the voices rotate, so
the first ~50 ms of a render depend on the presets rendered before it (measured: up to 0.6 of
full scale; no length of priming render, nor polyphony 1, removes it). A reused synth also
renders every effect differently each time (reverb 0.047, compressor 0.14 apart), and the random
LFOs (``random_1..4``: 0.23), the note-on ``random`` source and the init preset's noise sample
draw from generators whose state lives in the process, so even a fresh ``vita.Synth`` per preset
renders a real preset differently each time (measured on shared presets: up to 1.39 of full
scale apart; per effect and source: ``benchmarks/determinism.py``).
With ``RenderConfig.reproducible`` (the default) :meth:`RenderEngine.render` therefore renders
each preset in a child process forked from a *template*: a synth built once and never played
(Linux ``fork``: copy-on-write; 8-15 ms plus the pages the child writes, about what a new synth
costs). Every preset then
starts from the same memory, generators included, so renders are bit-identical across engines,
processes and histories, with every effect on and for real presets too
(``tests/synth/test_render.py``). A crash of the synth in the child costs that preset only
(:class:`RenderError`), not the worker. Where ``fork`` is missing the engine falls back to a
fresh synth per preset (reproducible only without those effects, with ``osc_N_random_phase = 0``,
the sampler's pin). Searches that render thousands of candidates turn reproducibility off for
speed, and move from one candidate to the next with :meth:`RenderEngine.update`, which sets only
the controls that changed (a full load only when a load-only control or a wavetable changes).

Vital also smooths global values towards a newly loaded preset while audio is processed, so the
first note rendered after a load would differ from later ones. :meth:`RenderEngine.load` ends
with a silent render of ``settle_duration_s`` (1 s, ~5 ms of work) that lets them settle: a note
then renders bit for bit the same whether it comes first or after other notes of the same
preset (measured: 0.38 apart without settling, 2e-9 after 0.5 s, 0 after 1 s).
"""

from __future__ import annotations

import base64
import copy
import faulthandler
import functools
import json
import mmap
import os
import select
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vitalmatch.synth.modulation import Connection, write_lfos, write_modulations
from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.wavetables.format import NUM_OSCILLATORS, wavetable_problem


class RenderError(RuntimeError):
    """The synth refused a preset (for example ``load_json`` returned False)."""


def inject_wavetable(preset: dict, osc: int, table: dict) -> None:
    """Put a deep copy of ``table`` into ``preset["settings"]["wavetables"][osc - 1]`` (osc is 1..3).

    The render engine does: preset = init JSON dict -> inject tables ->
    ``synth.load_json(json.dumps(preset))``.

    Raises:
        ValueError: ``osc`` is not 1..3, ``table`` is not a wavetable dict
            (:func:`~vitalmatch.synth.wavetables.format.wavetable_problem`), or the preset has no
            ``settings.wavetables[osc - 1]``.
    """
    if isinstance(osc, bool) or not isinstance(osc, int) or not 1 <= osc <= NUM_OSCILLATORS:
        raise ValueError(f"osc must be 1..{NUM_OSCILLATORS}, got {osc!r}")
    problem = wavetable_problem(table)
    if problem:
        raise ValueError(problem)
    settings = preset.get("settings") if isinstance(preset, dict) else None
    tables = settings.get("wavetables") if isinstance(settings, dict) else None
    if not isinstance(tables, list) or len(tables) < osc:
        raise ValueError(f"preset has no settings.wavetables[{osc - 1}]")
    tables[osc - 1] = copy.deepcopy(table)


@dataclass(frozen=True)
class PresetExtras:
    """What a preset holds beyond its registry vectors (Tier 3 and real presets).

    Attributes:
        modulations: connections in slot order (:class:`~vitalmatch.synth.modulation.Connection`).
        lfos: Vital LFO shape dicts for ``lfo_1`` .. (None keeps the init shape).
        sample: Vital sample dict (``name``, ``length``, ``sample_rate``, ``samples`` base64) for
            the sample oscillator; None: a fixed white noise like the init preset's
            (:func:`init_noise_sample`).
        wavetable_files: per oscillator 1..3, the path of a JSON file holding a Vital wavetable
            dict that replaces the catalog's choice (a real preset's custom table), or None. A
            path, not the table: extras travel with every search task, and a table is ~10 kB-2 MB
            (each process reads a file once, :func:`wavetable_from_file`).
    """

    modulations: tuple[Connection, ...] = ()
    lfos: tuple[dict | None, ...] = ()
    sample: dict | None = None
    wavetable_files: tuple[str | None, ...] = ()

    @property
    def empty(self) -> bool:
        return (
            not self.modulations
            and not any(x is not None for x in self.lfos)
            and self.sample is None
            and not any(self.wavetable_files)
        )

    def structure_key(self) -> tuple:
        """What a synth must reload for (everything but the connection amounts): two extras
        with equal keys differ only in ``modulation_N_amount`` values, which
        :meth:`RenderEngine.update` sets through handles."""
        conns = tuple((c.source, c.destination, c.bipolar, c.power, c.stereo) for c in self.modulations)
        lfos = tuple(None if x is None else json.dumps(x, sort_keys=True) for x in self.lfos)
        sample = None if self.sample is None else hash(str(self.sample.get("samples", ""))[:4096])
        return (conns, lfos, sample, tuple(self.wavetable_files))

    def with_amounts(self, amounts: Sequence[float]) -> PresetExtras:
        """A copy whose connections carry ``amounts`` (clipped to [-1, 1]), in slot order."""
        import dataclasses

        conns = tuple(
            dataclasses.replace(c, amount=float(min(1.0, max(-1.0, a))))
            for c, a in zip(self.modulations, amounts, strict=True)
        )
        return dataclasses.replace(self, modulations=conns)


@functools.lru_cache(maxsize=32)
def wavetable_from_file(path: str) -> dict:
    """A Vital wavetable dict read from a JSON file (cached per process).

    Raises:
        RenderError: the file is missing, not JSON, or no usable wavetable.
    """
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except (OSError, ValueError) as e:
        raise RenderError(f"cannot read wavetable file {path}: {e}") from None
    problem = wavetable_problem(table) if isinstance(table, dict) else "not a JSON object"
    if problem:
        raise RenderError(f"wavetable file {path}: {problem}")
    return table


#: Samples and peak (int16) of Vital's init "White Noise" sample (measured: 44100 mono samples,
#: uniform in about +-29490).
_NOISE_LENGTH, _NOISE_PEAK = 44100, 29490


@functools.cache
def _noise_text() -> str:
    rng = np.random.default_rng(0x5A4D)  # fixed: the same noise in every process
    pcm = rng.integers(-_NOISE_PEAK, _NOISE_PEAK + 1, _NOISE_LENGTH).astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode("ascii")


def init_noise_sample() -> dict:
    """A fixed white-noise sample in Vital's JSON form (``name``, ``length``, ``sample_rate``,
    ``samples``: base64 of mono 16-bit PCM), like the init preset's.

    Every ``vita.Synth`` fills its init sample with fresh random noise that depends on how many
    synths the process built before (measured: the first and second synth of a process differ), so
    a preset with the sample oscillator on would render differently in different processes. The
    engine therefore writes this one into every preset that brings no sample of its own."""
    return {"length": _NOISE_LENGTH, "name": "White Noise", "sample_rate": 44100, "samples": _noise_text()}


#: Set to 1 to make reproducible renders build a fresh synth per preset instead of forking (the
#: path of systems without ``fork``; ``benchmarks/generate_throughput.py`` compares the two).
NO_FORK_ENV = "VITALMATCH_NO_FORK"


def _can_fork() -> bool:
    return hasattr(os, "fork") and os.environ.get(NO_FORK_ENV, "") not in ("1", "true", "yes")


#: Seconds a forked render may take per note before it is killed (a hung synth).
FORK_TIMEOUT_PER_NOTE_S = 60.0


@dataclass(frozen=True)
class RenderConfig:
    """How every preset is played.

    Attributes:
        sample_rate: Hz; rendering directly at a lower rate is cheaper than resampling later.
        notes: MIDI notes, one render each.
        velocity: MIDI velocity in [0, 1] (the init preset ignores it: ``velocity_track`` = 0).
        note_duration_s: seconds from note-on to note-off.
        render_duration_s: seconds of audio returned per note (the release tail follows note-off).
        bpm: tempo for tempo-synced controls.
        flush_duration_s: length of the throw-away render that ends lingering voices.
        reproducible: build a fresh synth per preset so that a render does not depend on
            earlier ones (see the module docstring).
        settle_duration_s: silent render after each load that lets smoothed values settle.
    """

    sample_rate: int = 44100
    notes: tuple[int, ...] = (48, 60, 72)
    velocity: float = 0.7
    note_duration_s: float = 1.0
    render_duration_s: float = 2.0
    bpm: float = 120.0
    flush_duration_s: float = 0.05
    reproducible: bool = True
    settle_duration_s: float = 1.0

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample rate must be in 8000..192000 Hz, got {self.sample_rate}")
        if not self.notes or any(not 0 <= n <= 127 for n in self.notes):
            raise ValueError(f"notes must be MIDI numbers in 0..127, got {list(self.notes)}")
        if not 0 < self.render_duration_s <= 60:
            raise ValueError(f"render duration must be in (0, 60] s, got {self.render_duration_s}")
        if not self.note_duration_s > 0:
            raise ValueError(f"note duration must be > 0 s, got {self.note_duration_s}")
        if not 0 <= self.velocity <= 1:
            raise ValueError(f"velocity must be in [0, 1], got {self.velocity}")

    @property
    def n_samples(self) -> int:
        """Samples per render, exactly as vita computes it."""
        return int(np.float32(self.render_duration_s) * self.sample_rate)


class RenderEngine:
    """One ``vita.Synth`` with cached control handles (state: the synth).

    Args:
        registry: the full registry (every column of the stored vectors).
        wavetables: catalog tables in catalog order (Vital wavetable JSON dicts); the
            ``osc_N_wavetable`` categoricals index this list.
        config: render settings.
    """

    def __init__(
        self, registry: ParamRegistry, wavetables: Sequence[dict], config: RenderConfig = RenderConfig()
    ) -> None:
        self.registry = registry
        self.wavetables = list(wavetables)
        self.config = config
        self._control_names = [s.name for s in registry.specs if s.control]
        self._needs_load = [s.name for s in registry.specs if s.needs_load]
        self._loaded: dict[str, float] | None = None  # raw values the synth holds (None: unknown)
        self._loaded_structure: tuple = ()
        self._loaded_amounts: list[float] = []
        self._new_synth()
        self._init_preset = json.loads(self.synth.to_json())
        self._wt_cols = {
            osc: registry.locate(f"osc_{osc}_wavetable")[1]
            for osc in (1, 2, 3)
            if f"osc_{osc}_wavetable" in registry
        }

    # ------------------------------------------------------------------------------------ state
    def _new_synth(self) -> None:
        """Replace the synth (and its control handles, which must not outlive it)."""
        import vita

        self._controls = []
        self._amount_handles: dict[int, object] = {}
        self.synth = vita.Synth()
        self.synth.set_sample_rate(float(self.config.sample_rate))
        handles = self.synth.get_controls()
        self._controls = [(name, handles[name]) for name in self._control_names]

    def preset_json(
        self, continuous: np.ndarray, categorical: np.ndarray, extras: PresetExtras | None = None
    ) -> dict:
        """The Vital preset dict for a parameter vector (init preset + values + wavetables, and
        the modulations, LFO shapes and sample of ``extras``).

        Raises:
            RenderError: a wavetable index outside the catalog.
            ValueError: invalid ``extras`` (unknown modulation names, bad LFO shapes).
        """
        raw = self.registry.to_raw(continuous, categorical)
        preset = dict(self._init_preset)
        settings = dict(preset["settings"])
        settings.update({name: raw[name] for name, _ in self._controls})
        settings["wavetables"] = list(settings["wavetables"])
        preset["settings"] = settings
        for osc, col in self._wt_cols.items():
            index = int(categorical[col])
            if not 0 <= index < len(self.wavetables):
                raise RenderError(
                    f"osc_{osc}_wavetable index {index} is outside the catalog (size {len(self.wavetables)})"
                )
            inject_wavetable(preset, osc, self.wavetables[index])
        files = extras.wavetable_files if extras is not None else ()
        for osc, path in enumerate(files[:NUM_OSCILLATORS], start=1):
            if path:
                inject_wavetable(preset, osc, wavetable_from_file(path))
        if extras is not None and not extras.empty:
            write_modulations(preset, list(extras.modulations))
            write_lfos(preset, list(extras.lfos))
        sample = extras.sample if extras is not None else None
        settings["sample"] = copy.deepcopy(sample) if sample is not None else init_noise_sample()
        return preset

    def load(
        self, continuous: np.ndarray, categorical: np.ndarray, extras: PresetExtras | None = None
    ) -> None:
        """Reset the synth to the preset given by the normalised vectors (and ``extras``)."""
        self._loaded = None
        preset = self.preset_json(continuous, categorical, extras)
        if self.config.reproducible:
            self._new_synth()
        if not self.synth.load_json(json.dumps(preset)):
            raise RenderError("the synth rejected the preset JSON")
        settings = preset["settings"]
        for name, handle in self._controls:
            handle.set(settings[name])
        self.synth.set_bpm(self.config.bpm)
        self.settle()
        extras = extras if extras is not None else PresetExtras()
        self._loaded = self.registry.to_raw(continuous, categorical)
        self._loaded_structure = extras.structure_key()
        self._loaded_amounts = [float(c.amount) for c in extras.modulations]

    def update(
        self, continuous: np.ndarray, categorical: np.ndarray, extras: PresetExtras | None = None
    ) -> None:
        """Bring the synth to another preset, changing only what differs from the last one.

        Sets, through the cached handles, only the controls whose clamped raw value changed since
        the last :meth:`load` / :meth:`update`, and the ``modulation_N_amount`` of connections
        whose amount changed. A full :meth:`load` happens instead when there was none, when a
        control that acts only on load (``oversampling``, vita-facts §2.2), a wavetable choice or
        the structure of ``extras`` changed (which connections, their bipolar/power/stereo
        settings, LFO shapes, sample, wavetable files: :meth:`PresetExtras.structure_key`), or
        with ``config.reproducible`` (a fresh synth per preset). Vital smooths the values it was
        given towards their targets while audio is processed: :meth:`render_note`'s flush lets
        them arrive. Cost: ~0.1 ms plus the controls set, against ~15-40 ms for a load.
        """
        extras = extras if extras is not None else PresetExtras()
        raw = self.registry.to_raw(continuous, categorical)
        old = self._loaded
        if (
            old is None
            or self.config.reproducible
            or extras.structure_key() != self._loaded_structure
            or any(raw[n] != old[n] for n in self._needs_load)
        ):
            self.load(continuous, categorical, extras)
            return
        for name, handle in self._controls:
            if raw[name] != old[name]:
                handle.set(raw[name])
        for k, c in enumerate(extras.modulations):
            if float(c.amount) != self._loaded_amounts[k]:
                self._amount_handle(k).set(float(c.amount))
                self._loaded_amounts[k] = float(c.amount)
        self._loaded = raw

    def _amount_handle(self, slot: int):
        """The control handle of ``modulation_{slot + 1}_amount`` (cached with the synth)."""
        handles = self._amount_handles
        if slot not in handles:
            handles[slot] = self.synth.get_controls()[f"modulation_{slot + 1}_amount"]
        return handles[slot]

    def load_preset_dict(self, preset: dict) -> None:
        """Load an arbitrary Vital preset dict (e.g. a real ``.vital`` file) as it is."""
        self._loaded = None
        if self.config.reproducible:
            self._new_synth()
        if not self.synth.load_json(json.dumps(preset)):
            raise RenderError("the synth rejected the preset JSON")
        self.synth.set_bpm(self.config.bpm)
        self.settle()

    def to_json(self) -> str:
        """The synth's current state as ``.vital`` JSON text."""
        return self.synth.to_json()

    # ------------------------------------------------------------------------------------ audio
    def settle(self) -> None:
        """Silent render that lets Vital's smoothed values reach the loaded preset's values."""
        if self.config.settle_duration_s > 0:
            self.synth.render(0, 0.0, 0.001, self.config.settle_duration_s)

    def flush(self) -> None:
        """End voices left over from earlier renders (a short throw-away note)."""
        self.synth.render(0, 0.0, 0.001, self.config.flush_duration_s)

    def render_note(
        self, note: int, note_s: float | None = None, render_s: float | None = None
    ) -> np.ndarray:
        """``(2, T)`` float32 render of one MIDI note of the loaded preset at the configured velocity,
        after a flush.

        Args:
            note: MIDI note.
            note_s: seconds from note-on to note-off (may exceed ``render_s``: the note is then
                held to the end); default ``config.note_duration_s``.
            render_s: seconds of audio, ``T = int(float32(render_s) * sample_rate)``; default
                ``config.render_duration_s``.
        """
        cfg = self.config
        note_s = cfg.note_duration_s if note_s is None else float(note_s)
        render_s = cfg.render_duration_s if render_s is None else float(render_s)
        self.flush()
        return self.synth.render(int(note), cfg.velocity, note_s, render_s)

    def crash(self) -> None:
        """Test hook: crash this process for real (SIGSEGV), as a bad preset would.

        Sets ``chorus_voices`` to 7, unclamped on purpose (vita-facts §4), and renders. Tests use it
        through the fault switches of the worker pools (``generate``'s and the search's) to check
        that a crashed worker costs one task, not the job.
        """
        handles = self.synth.get_controls()
        handles["chorus_on"].set(1.0)
        handles["chorus_voices"].set(7.0)
        self.synth.render(60, self.config.velocity, 0.1, 0.2)

    def render(
        self,
        continuous: np.ndarray,
        categorical: np.ndarray,
        notes: Sequence[int] | None = None,
        extras: PresetExtras | None = None,
    ) -> np.ndarray:
        """Load a preset and render it at each note: ``(n_notes, 2, T)`` float32.

        With ``config.reproducible`` and ``fork`` available the work happens in a child forked
        from this engine's template synth (module docstring); the engine's own synth is never
        played, so every call starts from the same state.

        Raises:
            RenderError: the synth refused the preset, or crashed or hung while rendering it.
        """
        notes = tuple(self.config.notes if notes is None else notes)
        if self.config.reproducible and _can_fork():
            preset = self.preset_json(continuous, categorical, extras)
            return self._render_forked(preset, notes)
        self.load(continuous, categorical, extras)
        return np.stack([self.render_note(n) for n in notes])

    def render_preset_dict(self, preset: dict, notes: Sequence[int] | None = None) -> np.ndarray:
        """Render an arbitrary Vital preset dict as it is at each note: ``(n_notes, 2, T)`` float32.

        Reproducible like :meth:`render` (forked from the template when ``config.reproducible``).
        """
        notes = tuple(self.config.notes if notes is None else notes)
        if self.config.reproducible and _can_fork():
            return self._render_forked(preset, notes, set_controls=False)
        self.load_preset_dict(preset)
        return np.stack([self.render_note(n) for n in notes])

    def _render_forked(self, preset: dict, notes: tuple[int, ...], set_controls: bool = True) -> np.ndarray:
        """Render ``preset`` at ``notes`` in a child forked from the template synth.

        The child loads the preset (with ``set_controls``, the registry's settings set again
        through the handles, as :meth:`load` does; :meth:`load_preset_dict` does not), settles,
        renders each note after a flush, writes the audio into an anonymous shared mapping and
        exits with ``os._exit`` (no Python clean-up runs in the child). A
        nonzero exit status, a signal or the timeout (:data:`FORK_TIMEOUT_PER_NOTE_S` per note)
        is a :class:`RenderError`; the template is untouched either way.
        """
        text = json.dumps(preset)
        settings = preset["settings"]
        values = [(h, settings[n]) for n, h in self._controls if n in settings] if set_controls else []
        shape = (len(notes), 2, self.config.n_samples)
        nbytes = int(np.prod(shape)) * 4
        buf = mmap.mmap(-1, max(nbytes, 1))  # MAP_SHARED | MAP_ANONYMOUS: the child's writes show here
        # The pipe's write end closes when the child exits or dies: the parent wakes at once.
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:  # child: never returns
                code = 1
                try:
                    os.close(read_fd)
                    # A crash here is reported by the parent as a RenderError: a faulthandler
                    # inherited from the parent (pytest enables one) would only print a traceback.
                    faulthandler.disable()
                    if self.synth.load_json(text):
                        for handle, value in values:
                            handle.set(value)
                        self.synth.set_bpm(self.config.bpm)
                        self.settle()
                        out = np.frombuffer(buf, dtype=np.float32, count=int(np.prod(shape))).reshape(shape)
                        for i, note in enumerate(notes):
                            out[i] = self.render_note(note)
                        code = 0
                    else:
                        code = 3
                finally:
                    os._exit(code)
            os.close(write_fd)
            write_fd = -1
            status = _wait_child(pid, read_fd, FORK_TIMEOUT_PER_NOTE_S * max(len(notes), 1))
            if status == "ok":
                return np.frombuffer(buf, dtype=np.float32, count=int(np.prod(shape))).reshape(shape).copy()
            raise RenderError(status)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
            buf.close()


def _wait_child(pid: int, read_fd: int, timeout_s: float) -> str:
    """Wait for a forked render; ``"ok"`` or a one-line reason (the child is reaped either way).

    ``read_fd`` is the read end of a pipe whose only write end the child holds: it becomes
    readable (EOF) the moment the child exits or dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"the synth hung (no result after {timeout_s:g} s)"
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            break
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"the synth crashed ({name})"
    code = os.WEXITSTATUS(status)
    if code == 0:
        return "ok"
    if code == 3:
        return "the synth rejected the preset JSON"
    return f"the render process failed (exit status {code})"
