"""Preset state: what Vital's engine makes of a preset, read back control by control.

Stage: synth (reading). Input: a Vital preset (the JSON dict of a ``.vital`` file). Output: a
:class:`PresetState`: every control's raw value, the bindings' display text and details, and the
settings that are not controls (wavetable, sample and LFO-shape names, modulation connections,
metadata). The tutorial (:mod:`vitalmatch.tutorial`) and the demo's parameter table are made from it.

The preset is loaded into a live ``vita.Synth`` (``load_json``), so the state is what the synth
makes of it (old-version conversions, missing controls reset to defaults, out-of-range values
clamped), and every control's text comes from ``get_control_text``. Loading an untrusted file into
the C++ engine can crash or hang the process (``docs/vita-facts.md`` §4), so :func:`load_state`
runs it in a one-worker :class:`~vitalmatch.synth.pool.WorkerPool` (:func:`run_isolated`): a crash
or a hang becomes a one-line ``ValueError``. Cost: ~1 s for the worker's start-up, once per preset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ControlInfo", "PresetState", "load_state", "read_state", "run_isolated"]


@dataclass(frozen=True)
class ControlInfo:
    """One synth control as loaded: raw value, the bindings' texts and the control's details.

    Attributes:
        name: control name (``"filter_1_cutoff"``).
        value: raw engine value after ``load_json``.
        text: ``get_control_text`` for ``value`` (uncorrected).
        default: raw value in the init preset (``default_value``).
        default_text: ``get_control_text`` in the init preset.
        min, max: raw range.
        scale: ValueScale name (``"Linear"``, ``"Indexed"``, ...).
        options: option names as the bindings give them (indexed by ``raw - min``).
        display_name: Vital's name (``"Filter 1 Cutoff"``).
        units: display units, stripped (``"semitones"``, ``"%"``, ``""``).
        multiply: ``display_multiply`` (e.g. 100 for percentages, 360 for phases).
    """

    name: str
    value: float
    text: str
    default: float
    default_text: str
    min: float
    max: float
    scale: str
    options: tuple[str, ...]
    display_name: str
    units: str
    multiply: float

    @property
    def is_default(self) -> bool:
        """The value equals the init preset's (to float32 precision of the range)."""
        return abs(self.value - self.default) <= 1e-5 * max(1.0, self.max - self.min)


@dataclass(frozen=True)
class PresetState:
    """What the synth made of a preset (from :func:`load_state`); plain data, picklable.

    Attributes:
        controls: every control by name.
        wavetables: names of the three oscillators' wavetables.
        sample: name of the sample oscillator's sample.
        lfo_shapes: names of the eight LFO shapes.
        modulations: ``(source, destination)`` per slot; slot ``i`` is ``modulation_{i+1}_*``;
            empty strings for an unused slot.
        meta: preset metadata (``preset_name``, ``author``, ``comments``, ``preset_style``,
            ``macro1`` .. ``macro4``).
    """

    controls: dict[str, ControlInfo]
    wavetables: tuple[str, ...] = ()
    sample: str = ""
    lfo_shapes: tuple[str, ...] = ()
    modulations: tuple[tuple[str, str], ...] = ()
    meta: dict[str, str] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """``{control: raw value}``."""
        return {n: c.value for n, c in self.controls.items()}


def read_state(preset_json: str) -> PresetState:
    """Worker body: load a preset into a fresh synth and read everything the guide needs."""
    import vita

    synth = vita.Synth()
    defaults = {name: synth.get_control_text(name) for name in synth.get_controls()}
    if not synth.load_json(preset_json):
        raise ValueError("Vital's loader rejected it (missing or malformed settings, or a newer version)")
    state = json.loads(synth.to_json())
    settings = state.get("settings", {})
    controls = {}
    for name, handle in synth.get_controls().items():
        d = synth.get_control_details(name)
        controls[name] = ControlInfo(
            name=name,
            value=float(handle.value()),
            text=synth.get_control_text(name),
            default=float(d.default_value),
            default_text=defaults[name],
            min=float(d.min),
            max=float(d.max),
            scale=str(d.scale).split(".")[-1],
            options=tuple(str(o) for o in d.options),
            display_name=str(d.display_name),
            units=str(d.display_units).strip(),
            multiply=float(d.display_multiply),
        )
    return PresetState(
        controls=controls,
        wavetables=tuple(str(w.get("name", "")) for w in settings.get("wavetables", [])),
        sample=str(settings.get("sample", {}).get("name", "")),
        lfo_shapes=tuple(str(lfo.get("name", "")) for lfo in settings.get("lfos", [])),
        modulations=tuple(
            (str(m.get("source", "")), str(m.get("destination", ""))) for m in settings.get("modulations", [])
        ),
        meta={k: str(v) for k, v in state.items() if k != "settings" and isinstance(v, str | int | float)},
    )


def load_state(preset: Mapping, *, timeout_s: float = 30.0) -> PresetState:
    """Load a preset into the synth in a crash-isolated worker process and read it back.

    Args:
        preset: Vital preset JSON as a dict (a ``.vital`` file's content, e.g. from
            :func:`vitalmatch.synth.export.read_vital`).
        timeout_s: seconds the load may take before the worker is killed.

    Raises:
        ValueError: one line, when the synth rejects the preset, crashes or hangs on it.
    """
    if not isinstance(preset, Mapping) or not isinstance(preset.get("settings"), Mapping):
        raise ValueError("not a Vital preset (no settings)")
    try:
        text = json.dumps(preset, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"not a Vital preset ({e})") from None
    return run_isolated(read_state, text, timeout_s, "the synth could not load the preset")


def run_isolated(fn, item, timeout_s: float, what: str):
    """``fn(item)`` in a one-worker pool; a crash, timeout or error -> ``ValueError(what: reason)``."""
    from vitalmatch.synth.pool import WorkerPool

    with WorkerPool(1, task_timeout_s=timeout_s, max_tasks_per_worker=None) as pool:
        [result] = list(pool.map(fn, [item]))
    if result.ok:
        return result.value
    reason = {
        "crash": f"it crashed the synth ({result.error})",
        "timeout": f"the synth hung on it ({result.error})",
    }.get(result.status, result.error or result.status)
    if result.status == "error" and reason.startswith("ValueError: "):
        reason = reason[len("ValueError: ") :]
    raise ValueError(f"{what}: {reason}")
