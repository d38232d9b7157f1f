"""Parameter registry: the one contract between the network, the datasets and the synth.

Stage: discovery. Input: a live ``vita.Synth`` (its 772 controls) and the names of the
wavetables in the catalog. Output: a :class:`ParamRegistry` of :class:`ParamSpec`, split into
continuous parameters (normalised to [0, 1]) and categorical parameters (integer indices).

Only this module knows Vital's value ranges. Everything else in vitalmatch sees

* continuous values ``u`` in [0, 1], *linear in the raw engine value*:
  ``u = (raw - min) / (max - min)``;
* categorical values as indices ``0 .. n_options - 1`` with ``raw = min + index``.

``vita``'s own ``set_normalized`` is never used: it is broken for the 30 Exponential controls
(docs/vita-facts.md §2.2).

Classification (vita-facts §2.1):

* the 320 ``modulation_N_*`` slot controls belong to Tier 3 and are excluded here;
* the view-only controls (``osc_N_view_2d``, ``view_spectrogram``) are excluded;
* Indexed controls *with* option names (including the ``*_on`` switches) are categorical, with
  ``n_options = max - min + 1`` (``filter_*_style`` spans 10 values but names 5: the names are
  padded);
* Indexed controls without option names (unison voices, transposes, polyphony, ...) are ordinal:
  they are treated as continuous and rounded to an integer before every ``set()``;
* everything else is continuous.

On vita 0.1.0 this gives 448 parameters: 322 continuous + 126 categorical. Three further
categoricals, ``osc_N_wavetable``, choose a wavetable from the catalog; they are not synth
controls (the render engine injects the table into the preset JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

#: Controls with no audible effect that only set what Vital's editor shows (kept out of the
#: registry and of parameter tables: :func:`is_view_only`).
VIEW_ONLY = ("osc_1_view_2d", "osc_2_view_2d", "osc_3_view_2d", "view_spectrogram")

#: Controls that take effect only when a preset is loaded, not when set (vita-facts §2.2:
#: ``oversampling``). Wavetable choices also need a load (:attr:`ParamSpec.needs_load`).
LOAD_ONLY = frozenset({"oversampling"})

#: Pitch offsets of the oscillators: ``osc_N_transpose`` (whole semitones, -48..48) and
#: ``osc_N_tune`` (-1..1 semitone).
PITCH = frozenset([f"osc_{i}_transpose" for i in (1, 2, 3)] + [f"osc_{i}_tune" for i in (1, 2, 3)])

#: Reproducibility pins, raw values: ``osc_N_random_phase = 0`` makes renders bit-identical
#: (vita-facts §6); ``osc_N_transpose_quantize = 0`` only matters with modulated transposition,
#: which Tiers 1-2 do not have. Sampled and starting presets carry them; searches leave them alone.
_PINS = {f"osc_{i}_random_phase": 0.0 for i in (1, 2, 3)} | {
    f"osc_{i}_transpose_quantize": 0.0 for i in (1, 2, 3)
}

#: Frequency in Hz of MIDI note 0 (Vital's ``kMidi0Frequency``): controls in semitones (filter
#: cutoffs) count from it.
_MIDI0_HZ = 8.1757989156

#: Modules of Tier 1 (plus the wavetable choice of oscillators 1-2, which live in osc_1/osc_2).
TIER1_MODULES = ("osc_1", "osc_2", "filter_1", "env_1", "volume")

#: Highest tier implemented (Tier 3 varies every registry parameter plus the modulation matrix and
#: LFO shapes, which live outside the registry: :mod:`vitalmatch.synth.modulation`).
MAX_TIER = 3

_MODULE_RE = re.compile(
    r"^(osc_\d|filter_fx|filter_\d|env_\d|lfo_\d|random_\d|modulation_\d+|macro_control_\d|"
    r"sample|chorus|compressor|delay|distortion|eq|flanger|phaser|reverb|volume)(_|$)"
)

CONTINUOUS = "continuous"
CATEGORICAL = "categorical"


def reproducibility_pins() -> dict[str, float]:
    """``{name: raw}`` of the reproducibility pins (a fresh dict; see ``_PINS``)."""
    return dict(_PINS)


def is_view_only(name: str) -> bool:
    """True for the controls that only set what Vital's editor shows (:data:`VIEW_ONLY`)."""
    return name in VIEW_ONLY


def is_modulation_slot(name: str) -> bool:
    """True for the 320 ``modulation_N_*`` slot controls (Tier 3, outside the registry)."""
    return module_of(name).startswith("modulation_")


def module_of(name: str) -> str:
    """Vital module a control belongs to, from its name (``"osc_1_level"`` -> ``"osc_1"``).

    Controls that belong to no module (``polyphony``, ``voice_tune``, ...) return ``"global"``.
    """
    m = _MODULE_RE.match(name)
    return m.group(1) if m else "global"


def tier_of(name: str) -> int:
    """Lowest tier whose parameter set contains ``name`` (1 or 2; modulation slots are 3)."""
    module = module_of(name)
    if module.startswith("modulation_"):
        return 3
    return 1 if module in TIER1_MODULES else 2


@dataclass(frozen=True)
class ParamSpec:
    """One learnable parameter.

    Attributes:
        name: synth control name (or ``osc_N_wavetable`` for a wavetable choice).
        kind: ``"continuous"`` or ``"categorical"``.
        min, max: raw engine range (for categoricals ``max - min + 1`` options).
        default: raw value in Vital's init preset.
        scale: Vital's ValueScale name (``Linear``, ``Quadratic``, ``Exponential``, ``Indexed``, ...);
            ``"Wavetable"`` for wavetable choices. Kept for display only: normalisation is always
            linear in the raw value.
        integer: the engine expects whole numbers (Indexed scale); values are rounded before ``set``.
        options: option names for categoricals (padded to ``n_options``), empty otherwise.
        display_name, display_units: as Vital's UI shows them.
        module: Vital module (``osc_1``, ``filter_1``, ``env_1``, ``volume``, ``global``, ...).
        tier: lowest tier containing this parameter.
        control: True for synth controls, False for wavetable choices (set through the preset JSON).
    """

    name: str
    kind: str
    min: float
    max: float
    default: float
    scale: str
    integer: bool
    options: tuple[str, ...] = ()
    display_name: str = ""
    display_units: str = ""
    module: str = "global"
    tier: int = 2
    control: bool = True

    @property
    def n_options(self) -> int:
        """Number of categories (categoricals only)."""
        return int(round(self.max - self.min)) + 1

    @property
    def span(self) -> float:
        return self.max - self.min

    def clamp(self, raw: float) -> float:
        """Clamp a raw value to [min, max] and round it if the engine expects an integer.

        Every value goes through here before ``ControlValue.set``: ``set`` does no clamping and
        out-of-range values can crash or corrupt the engine (vita-facts §4).
        """
        if not np.isfinite(raw):
            raw = self.default
        raw = min(max(float(raw), self.min), self.max)
        return float(round(raw)) if self.integer else raw

    def to_unit(self, raw: float) -> float:
        """Raw engine value -> [0, 1] (continuous) or option index (categorical)."""
        raw = self.clamp(raw)
        if self.kind == CATEGORICAL:
            return float(int(round(raw - self.min)))
        return 0.0 if self.span == 0 else (raw - self.min) / self.span

    def from_unit(self, value: float) -> float:
        """[0, 1] (continuous) or option index (categorical) -> clamped raw engine value."""
        if self.kind == CATEGORICAL:
            return self.clamp(self.min + int(round(value)))
        u = min(max(float(value), 0.0), 1.0) if np.isfinite(value) else self.to_unit(self.default)
        return self.clamp(self.min + u * self.span)

    @property
    def load_only(self) -> bool:
        """The control acts only when a preset is loaded (:data:`LOAD_ONLY`)."""
        return self.name in LOAD_ONLY

    @property
    def needs_load(self) -> bool:
        """Changing it needs a full preset load: a load-only control or a wavetable choice (which
        is written into the preset JSON, not set)."""
        return self.load_only or not self.control

    @property
    def pitch(self) -> bool:
        """An oscillator pitch offset (:data:`PITCH`)."""
        return self.name in PITCH

    @property
    def pinned(self) -> bool:
        """Fixed for reproducibility (:func:`reproducibility_pins`)."""
        return self.name in _PINS

    def option_name(self, index: int) -> str:
        """Name of option ``index`` of a categorical."""
        return self.options[index] if 0 <= index < len(self.options) else str(index)


@dataclass(frozen=True)
class ParamRegistry:
    """All parameters of a tier, continuous ones first, each group sorted by name.

    ``continuous`` and ``categorical`` fix the column order of the ``params/continuous``
    ``(N, C)`` and ``params/categorical`` ``(N, K)`` arrays in every dataset and model.
    """

    continuous: tuple[ParamSpec, ...]
    categorical: tuple[ParamSpec, ...]
    tier: int = MAX_TIER
    vita_version: str = ""
    _index: dict[str, tuple[str, int]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        index = {s.name: (CONTINUOUS, i) for i, s in enumerate(self.continuous)}
        index.update({s.name: (CATEGORICAL, i) for i, s in enumerate(self.categorical)})
        object.__setattr__(self, "_index", index)

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_synth(cls, synth=None, wavetable_names: Sequence[str] = ("Init Saw",)) -> ParamRegistry:
        """Discover every non-modulation control of a live synth (Tier 2 = the full registry).

        Args:
            synth: a ``vita.Synth``; a fresh one is made when None.
            wavetable_names: catalog names, the options of the ``osc_N_wavetable`` categoricals.
        """
        import vita  # only the synth package touches vita

        synth = synth if synth is not None else vita.Synth()
        continuous: list[ParamSpec] = []
        categorical: list[ParamSpec] = []
        for name in sorted(synth.get_controls()):
            if is_view_only(name) or is_modulation_slot(name):
                continue
            d = synth.get_control_details(name)
            scale = str(d.scale).split(".")[-1]
            options = tuple(str(o) for o in d.options)
            spec = ParamSpec(
                name=name,
                kind=CATEGORICAL if (d.is_discrete and options) else CONTINUOUS,
                min=float(d.min),
                max=float(d.max),
                default=float(d.default_value),
                scale=scale,
                integer=bool(d.is_discrete),
                display_name=str(d.display_name),
                display_units=str(d.display_units).strip(),
                module=module_of(name),
                tier=tier_of(name),
            )
            if spec.kind == CATEGORICAL:
                padded = options + tuple(f"{options[-1]} ({i})" for i in range(len(options), spec.n_options))
                spec = _replace(spec, options=padded[: spec.n_options])
                categorical.append(spec)
            else:
                continuous.append(spec)
        names = tuple(wavetable_names) or ("Init Saw",)
        for osc in (1, 2, 3):
            categorical.append(
                ParamSpec(
                    name=f"osc_{osc}_wavetable",
                    kind=CATEGORICAL,
                    min=0.0,
                    max=float(len(names) - 1),
                    default=0.0,
                    scale="Wavetable",
                    integer=True,
                    options=names,
                    display_name=f"Oscillator {osc} Wavetable",
                    module=f"osc_{osc}",
                    tier=tier_of(f"osc_{osc}_wavetable"),
                    control=False,
                )
            )
        categorical.sort(key=lambda s: s.name)
        return cls(tuple(continuous), tuple(categorical), MAX_TIER, _vita_version())

    def for_tier(self, tier: int) -> ParamRegistry:
        """The parameters a tier varies (a subset; column order is kept)."""
        check_tier(tier)
        return ParamRegistry(
            tuple(s for s in self.continuous if s.tier <= tier),
            tuple(s for s in self.categorical if s.tier <= tier),
            tier,
            self.vita_version,
        )

    # ----------------------------------------------------------------------------- access
    @property
    def specs(self) -> tuple[ParamSpec, ...]:
        return self.continuous + self.categorical

    @property
    def continuous_names(self) -> list[str]:
        return [s.name for s in self.continuous]

    @property
    def categorical_names(self) -> list[str]:
        return [s.name for s in self.categorical]

    def __len__(self) -> int:
        return len(self.continuous) + len(self.categorical)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> ParamSpec:
        kind, i = self.locate(name)
        return self.continuous[i] if kind == CONTINUOUS else self.categorical[i]

    def locate(self, name: str) -> tuple[str, int]:
        """``(kind, column)`` of a parameter; KeyError with the name if unknown."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown parameter {name!r}") from None

    def counts(self) -> dict[str, int]:
        return {
            "continuous": len(self.continuous),
            "categorical": len(self.categorical),
            "total": len(self),
        }

    # ----------------------------------------------------------------------------- vectors
    def defaults(self) -> tuple[np.ndarray, np.ndarray]:
        """Init-preset values: continuous ``(C,)`` float32 in [0,1], categorical ``(K,)`` int32."""
        cont = np.array([s.to_unit(s.default) for s in self.continuous], dtype=np.float32)
        cat = np.array([s.to_unit(s.default) for s in self.categorical], dtype=np.int32)
        return cont, cat

    def to_raw(self, continuous: np.ndarray, categorical: np.ndarray) -> dict[str, float]:
        """Normalised vectors ``(C,)``, ``(K,)`` -> ``{name: clamped raw value}`` for every parameter.

        Wavetable choices come back as the catalog index (as a float).
        """
        continuous = np.asarray(continuous, dtype=np.float64).reshape(-1)
        categorical = np.asarray(categorical).reshape(-1)
        if continuous.shape[0] != len(self.continuous) or categorical.shape[0] != len(self.categorical):
            raise ValueError(
                f"expected {len(self.continuous)} continuous and {len(self.categorical)} categorical "
                f"values, got {continuous.shape[0]} and {categorical.shape[0]}"
            )
        raw = {s.name: s.from_unit(u) for s, u in zip(self.continuous, continuous, strict=True)}
        raw.update({s.name: s.from_unit(k) for s, k in zip(self.categorical, categorical, strict=True)})
        return raw

    def with_output_gain(self, continuous: np.ndarray, gain_db: float) -> np.ndarray:
        """A copy of ``continuous`` ``(C,)`` whose master ``volume`` is ``gain_db`` louder (clamped
        to the control's range, so at most +6.02 dB in all): see :func:`volume_db`."""
        spec = self["volume"]
        j = self.locate("volume")[1]
        out = np.array(continuous, dtype=np.float32, copy=True)
        db = volume_db(spec.from_unit(float(out[j]))) + float(gain_db)
        out[j] = spec.to_unit(volume_raw(db))
        return out

    def from_raw(self, values: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """``{name: raw}`` -> normalised vectors; parameters missing from ``values`` take defaults."""
        cont = np.array([s.to_unit(values.get(s.name, s.default)) for s in self.continuous], dtype=np.float32)
        cat = np.array([s.to_unit(values.get(s.name, s.default)) for s in self.categorical], dtype=np.int32)
        return cont, cat

    def mask(self, names: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Boolean column masks ``(C,)``, ``(K,)`` selecting ``names``."""
        wanted = set(names)
        return (
            np.array([s.name in wanted for s in self.continuous], dtype=bool),
            np.array([s.name in wanted for s in self.categorical], dtype=bool),
        )

    # ----------------------------------------------------------------------------- serialisation
    def to_json(self) -> str:
        """JSON text stored in every dataset (``registry_json`` attribute) and checkpoint."""
        return json.dumps(
            {
                "format": "vitalmatch-registry",
                "version": 1,
                "tier": self.tier,
                "vita_version": self.vita_version,
                "continuous": [asdict(s) for s in self.continuous],
                "categorical": [asdict(s) for s in self.categorical],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ParamRegistry:
        try:
            data = json.loads(text)
            if data.get("format") != "vitalmatch-registry":
                raise ValueError("not a vitalmatch parameter registry")

            def load(items: list[dict]) -> tuple[ParamSpec, ...]:
                return tuple(ParamSpec(**{**d, "options": tuple(d["options"])}) for d in items)

            return cls(
                load(data["continuous"]),
                load(data["categorical"]),
                int(data["tier"]),
                data.get("vita_version", ""),
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid parameter registry JSON: {exc}") from None


def volume_db(raw: float) -> float:
    """Output gain in dB of Vital's master ``volume`` control at raw value ``raw``.

    Vital shows ``sqrt(raw) - 80`` dB (SquareRoot scale, offset -80: raw 0 .. 7399.44 is
    -80 .. +6.02 dB, the init preset's 5473.04 is -6.02 dB), and the volume is a pure gain on the
    synth's output, after the effects (measured: renders at two volumes differ by exactly that
    factor, to 1e-7 relative, for random Tier-1 presets and for a real preset with compressor,
    distortion, delay and reverb on).
    """
    return float(np.sqrt(max(0.0, float(raw)))) - 80.0


def volume_raw(db: float) -> float:
    """Inverse of :func:`volume_db` (-80 dB and below: raw 0; the caller clamps the top)."""
    return max(float(db) + 80.0, 0.0) ** 2


def semitones_of_hz(hz: float) -> float:
    """Raw value of a Vital control in semitones (``filter_N_cutoff``: MIDI notes, 8 .. 136) for a
    frequency in Hz: ``12 log2(hz / 8.1758)``, so 440 Hz is 69."""
    return 12.0 * float(np.log2(float(hz) / _MIDI0_HZ))


def hz_of_semitones(semitones: float) -> float:
    """Inverse of :func:`semitones_of_hz`: the frequency in Hz of a raw value in semitones."""
    return _MIDI0_HZ * 2.0 ** (float(semitones) / 12.0)


def envelope_time_raw(seconds: float) -> float:
    """Raw value of an envelope time control (``env_N_attack`` / ``decay`` / ``release`` /
    ``delay`` / ``hold``, Quartic scale: Vital shows ``raw**4`` seconds) for ``seconds``."""
    return max(float(seconds), 0.0) ** 0.25


def frequency_raw(hz: float) -> float:
    """Raw value of an Exponential-scale rate control (``lfo_N_frequency``, ``random_N_frequency``,
    ``chorus/flanger/phaser/delay_frequency``) for a rate in Hz: ``log2(hz)`` (Vital shows the
    period ``2**-raw`` seconds: raw 1 reads "0.5 secs")."""
    return float(np.log2(float(hz)))


def exponential_time_raw(seconds: float) -> float:
    """Raw value of an Exponential-scale time control (``reverb_decay_time``, ``portamento_time``)
    for ``seconds``: ``log2(seconds)`` (Vital shows ``2**raw`` seconds)."""
    return float(np.log2(float(seconds)))


def check_tier(tier: int) -> int:
    """Validate a tier number; ValueError with the allowed values otherwise."""
    if isinstance(tier, bool) or tier not in (1, 2, 3):
        raise ValueError(f"tier must be 1, 2 or 3, got {tier}")
    return tier


def _replace(spec: ParamSpec, **changes) -> ParamSpec:
    return ParamSpec(**{**asdict(spec), **changes})


def _vita_version() -> str:
    try:
        from importlib.metadata import version

        return version("vita")
    except Exception:  # noqa: BLE001 - metadata missing is not an error
        return ""
