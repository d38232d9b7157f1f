"""The built-in wavetables: Vital's init saw and 27 tables generated here, the same bytes on every machine.

Stage: synth (wavetables). Input: nothing (Vital's init table comes from the live synth). Output:
:func:`builtin_tables`, 28 ``(name, table)`` pairs that :meth:`WavetableCatalog.builtin
<vitalmatch.synth.wavetables.catalog.WavetableCatalog.builtin>` puts first in every catalog.

The tables are generated with float64 arithmetic restricted to IEEE-exact operations (+, -, *,
/, sqrt, floor), a polynomial sine and a pure-Python PRNG, then cast to float32, so their bytes and
hashes do not depend on the machine, libm or numpy's SIMD paths.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from vitalmatch.synth.wavetables.format import MAX_POSITION, WAVE_SIZE, _init_table_cached, make_wavetable

__all__ = ["builtin_tables"]

_IDX = np.arange(WAVE_SIZE, dtype=np.int64)
_T = _IDX / WAVE_SIZE  # exact: the divisor is a power of two
_QUARTER = WAVE_SIZE // 4
# Taylor coefficients of sin: (-1)^j / (2j+1)!; int/int true division is correctly rounded in Python.
_SIN_COEFFS = tuple((-1) ** j * (1 / math.factorial(2 * j + 1)) for j in range(13))


def _sin_cycles(x: np.ndarray) -> np.ndarray:
    """sin(2*pi*x) from +, -, *, floor only, so every machine gets the same bits (error < 1e-15)."""
    f = x - np.floor(x)
    negative = f >= 0.5
    f = np.where(negative, f - 0.5, f)
    f = np.minimum(f, 0.5 - f)  # now in [0, 1/4]: theta in [0, pi/2]
    theta = f * math.tau
    z = theta * theta
    acc = np.full_like(z, _SIN_COEFFS[-1])
    for c in reversed(_SIN_COEFFS[:-1]):
        acc = acc * z + c
    s = acc * theta
    return np.where(negative, -s, s)


_SIN = _sin_cycles(_T)


def _harmonic(k: int, phase: int = 0) -> np.ndarray:
    """sin(2*pi*(k*n + phase)/2048): a table lookup, exact and cheap. ``phase`` is in samples."""
    return _SIN[(k * _IDX + phase) % WAVE_SIZE]


def _additive(amps: Iterable[float], phases: Iterable[int] | None = None) -> np.ndarray:
    """Sum of sine harmonics k = 1, 2, ... with amplitudes ``amps`` (sequential sum: fixed rounding)."""
    out = np.zeros(WAVE_SIZE)
    phases = list(phases) if phases is not None else None
    for k, a in enumerate(amps, start=1):
        if a != 0.0:
            out += float(a) * _harmonic(k, 0 if phases is None else int(phases[k - 1]))
    return out


def _finish(wave: np.ndarray) -> np.ndarray:
    """Remove DC (exact ``math.fsum`` mean) and scale to peak 1."""
    wave = np.asarray(wave, dtype=np.float64)
    wave = wave - math.fsum(wave.tolist()) / WAVE_SIZE
    peak = float(np.max(np.abs(wave)))
    if peak == 0.0:
        raise ValueError("silent frame")
    return wave / peak


def _spread(m: int) -> list[int]:
    """m keyframe positions spread evenly over 0..256 (integer arithmetic)."""
    if m == 1:
        return [0]
    return [(MAX_POSITION * i + (m - 1) // 2) // (m - 1) for i in range(m)]


def _splitmix(seed: int, n: int) -> np.ndarray:
    """n uniform floats in [0, 1) from SplitMix64 in pure Python: identical on every platform/version."""
    mask = (1 << 64) - 1
    x = seed & mask
    out = []
    for _ in range(n):
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append((z >> 11) * 2.0**-53)
    return np.array(out, dtype=np.float64)


def _sine() -> np.ndarray:
    return _SIN.copy()


def _triangle() -> np.ndarray:
    """Sine-phase triangle: 0 -> 1 at n=512 -> -1 at n=1536 -> 0."""
    n = _IDX
    return np.where(n <= 512, n / 512, np.where(n <= 1536, (1024 - n) / 512, (n - 2048) / 512))


def _square() -> np.ndarray:
    """Exact square, +1 then -1: half-wave antisymmetric, so even harmonics are exactly zero."""
    return np.where(_IDX < 1024, 1.0, -1.0)


def _saw_up() -> np.ndarray:
    """Rising saw with Vital's half-sample grid: the negative of Vital's init saw, sine phase."""
    n = _IDX
    return np.where(n < 1024, (2 * n + 1) / 2047, -(2 * (2047 - n) + 1) / 2047)


def _pulse(width: float) -> np.ndarray:
    n = _IDX
    return np.where(n < round(width * WAVE_SIZE), 1.0, -1.0)


def _schroeder(count: int) -> list[int]:
    """Schroeder phases pi*k*(k-1)/K in samples: flat spectra without a tall peak."""
    return [(WAVE_SIZE * k * (k - 1) // (2 * count)) % WAVE_SIZE for k in range(1, count + 1)]


def _table_harmonic_series() -> list[np.ndarray]:
    counts = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128]
    return [_additive([(-1) ** (k + 1) / k for k in range(1, c + 1)]) for c in counts]


def _table_harmonic_sweep() -> list[np.ndarray]:
    return [_harmonic(k) for k in range(1, 9)]


def _table_odd_harmonics() -> list[np.ndarray]:
    counts = [1, 2, 3, 4, 6, 8, 16, 32, 64]
    return [_additive([1 / k if k % 2 and k < 2 * c else 0.0 for k in range(1, 2 * c)]) for c in counts]


def _table_even_harmonics() -> list[np.ndarray]:
    counts = [0, 1, 2, 3, 4, 6, 8, 16, 32]
    return [_additive([1.0] + [1 / k if k % 2 == 0 else 0.0 for k in range(2, 2 * c + 1)]) for c in counts]


def _table_partials(sets: list[dict[int, float]]) -> list[np.ndarray]:
    frames = []
    for partials in sets:
        amps = [0.0] * max(partials)
        for k, a in partials.items():
            amps[k - 1] = a
        frames.append(_additive(amps))
    return frames


def _table_drawbars() -> list[np.ndarray]:
    """Hammond registrations; footages 16' 5 1/3' 8' 4' 2 2/3' 2' 1 3/5' 1 1/3' 1' -> these harmonics."""
    harmonics = [1, 3, 2, 4, 6, 8, 10, 12, 16]
    step = math.sqrt(0.5)  # one drawbar step ~ 3 dB
    registrations = ["008000000", "808000000", "888000000", "688600000", "886400008", "838000008",
                     "888800000", "888888888"]  # fmt: skip
    frames = []
    for reg in registrations:
        partials = {}
        for h, d in zip(harmonics, reg, strict=True):
            if d != "0":
                amp = 1.0
                for _ in range(8 - int(d)):
                    amp *= step
                partials[h] = amp
        frames.extend(_table_partials([partials]))
    return frames


def _table_vowels(f0: float, formants: Sequence[tuple[float, float, float]]) -> list[np.ndarray]:
    """Glottal-like 1/sqrt(k) source through three Lorentzian formants (Hz, for a note at f0 Hz)."""
    count = int(5000 // f0)
    phases = _schroeder(count)
    bandwidths, gains = (80.0, 100.0, 150.0), (1.0, 0.6, 0.35)
    frames = []
    for vowel in formants:
        amps = []
        for k in range(1, count + 1):
            f = k * f0
            env = 0.01
            for fc, bw, g in zip(vowel, bandwidths, gains, strict=True):
                d = (f - fc) / (0.5 * bw)
                env += g / (1.0 + d * d)
            amps.append(env / math.sqrt(k))
        frames.append(_additive(amps, phases))
    return frames


# Formant centres (Hz) for A E I O U: adult male (Peterson & Barney style averages) and adult female.
_VOWELS_LOW = [(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240)]
_VOWELS_HIGH = [(850, 1220, 2810), (610, 2330, 2990), (310, 2790, 3310), (590, 920, 2710), (370, 950, 2670)]


def _table_resonant_sweep() -> list[np.ndarray]:
    """Saw through a 2-pole resonant low-pass (Q=5) whose cutoff climbs from harmonic 2 to 64."""
    q = 5.0
    frames = []
    for kc in [2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]:
        amps = []
        for k in range(1, 257):
            r = k / kc
            a = 1.0 - r * r
            amps.append((-1) ** (k + 1) / k / math.sqrt(a * a + (r / q) * (r / q)))
        frames.append(_additive(amps))
    return frames


def _table_sync(shape: str) -> list[np.ndarray]:
    """Hard sync: a slave cycle at ``ratio`` x the master, restarted every master cycle."""
    frames = []
    for ratio in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.5, 8.0]:
        x = ratio * _T
        frames.append(2.0 * (x - np.floor(x)) - 1.0 if shape == "saw" else _sin_cycles(x))
    return frames


def _table_fm(ratio: int, indices: list[float]) -> list[np.ndarray]:
    """Phase modulation sin(2 pi t + I sin(2 pi ratio t)) over a sweep of indices I."""
    mod = _harmonic(ratio)
    return [_sin_cycles(_T + (index / math.tau) * mod) for index in indices]


def _table_phase_distortion() -> list[np.ndarray]:
    """Casio-CZ style: the read phase bends at d, turning -cos into a resonant saw as d shrinks."""
    t, frames = _T, []
    for d in [0.5, 0.4, 0.3, 0.2, 0.12, 0.07, 0.04, 0.02]:
        phase = np.where(t < d, 0.5 * t / d, 0.5 + 0.5 * (t - d) / (1.0 - d))
        frames.append(_sin_cycles(phase - 0.25))
    return frames


def _table_skew() -> list[np.ndarray]:
    """Triangle whose peak moves from the middle to the start: triangle -> falling saw."""
    t, frames = _T, []
    for d in [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01]:
        frames.append(np.where(t < d, -1.0 + 2.0 * t / d, 1.0 - 2.0 * (t - d) / (1.0 - d)))
    return frames


def _table_fold() -> list[np.ndarray]:
    """Sine driven into a triangle wavefolder (period 4 in amplitude) with rising gain."""
    frames = []
    for gain in [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0]:
        x = gain * _SIN - 1.0
        m = x - 4.0 * np.floor(x / 4.0)
        frames.append(np.abs(m - 2.0) - 1.0)
    return frames


def _table_drive() -> list[np.ndarray]:
    """Sine through the soft clipper g*x / sqrt(1 + (g*x)^2) with rising gain: sine -> near square."""
    frames = []
    for gain in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]:
        x = gain * _SIN
        frames.append(x / np.sqrt(1.0 + x * x))
    return frames


def _table_supersaw() -> list[np.ndarray]:
    """Bright saw (512 harmonics, seeded random phases) with comb ripples like detuned copies beating."""
    count = 512
    phases = [int(u * WAVE_SIZE) for u in _splitmix(0x5A5A, count)]
    frames = []
    for spacing in [0, 5, 11, 23, 37, 59]:
        amps = []
        for k in range(1, count + 1):
            comb = 1.0 if spacing == 0 else 0.6 + 0.4 * float(_SIN[(k * spacing + _QUARTER) % WAVE_SIZE])
            amps.append(comb / k)
        frames.append(_additive(amps, phases))
    return frames


def _table_soft_noise() -> list[np.ndarray]:
    """Seeded random amplitudes and phases under a soft low-pass tilt: a breathy, noise-like cycle."""
    count = 256
    frames = []
    for seed in range(5):
        u = _splitmix(1000 + seed, 2 * count)
        amps = [
            (0.25 + 0.75 * u[k - 1]) / math.sqrt(k) / (1.0 + (k / 48) * (k / 48)) for k in range(1, count + 1)
        ]
        frames.append(_additive(amps, [int(p * WAVE_SIZE) for p in u[count:]]))
    return frames


def _table_metallic() -> list[np.ndarray]:
    """Sparse prime-numbered partials whose emphasis climbs: clangy, bell-like timbres."""
    primes = [1, 7, 11, 17, 23, 29, 37, 43, 53]
    frames = []
    for centre in [1, 7, 13, 19, 25, 31]:
        partials = {}
        for p in primes:
            d = (p - centre) / 8.0
            partials[p] = 0.15 + 1.0 / (1.0 + d * d)
        frames.extend(_table_partials([partials]))
    return frames


_BUILTIN_SPECS: list[tuple[str, Callable[[], list[np.ndarray]]]] = [
    ("Sine", lambda: [_sine()]),
    ("Triangle", lambda: [_triangle()]),
    ("Square", lambda: [_square()]),
    ("Basic Shapes", lambda: [_sine(), _triangle(), _square(), _saw_up()]),
    ("Sine Saw Square", lambda: [_sine(), _saw_up(), _square()]),
    ("Harmonic Series", _table_harmonic_series),
    ("Harmonic Sweep", _table_harmonic_sweep),
    ("Odd Harmonics", _table_odd_harmonics),
    ("Even Harmonics", _table_even_harmonics),
    ("Pulse Width", lambda: [_pulse(w) for w in [0.5, 0.42, 0.35, 0.28, 0.21, 0.15, 0.1, 0.06, 0.03]]),
    ("Skew Sweep", _table_skew),
    (
        "Organ Odd",
        lambda: _table_partials(
            [
                {1: 1.0},
                {1: 1.0, 3: 0.5},
                {1: 1.0, 3: 0.55, 5: 0.35},
                {1: 1.0, 3: 0.6, 5: 0.45, 7: 0.3, 9: 0.2},
                {1: 0.8, 3: 0.8, 5: 0.6, 7: 0.5, 9: 0.4, 11: 0.3, 13: 0.2},
            ]
        ),
    ),
    (
        "Organ Even",
        lambda: _table_partials(
            [
                {1: 1.0, 2: 0.5},
                {1: 1.0, 2: 0.6, 4: 0.4},
                {1: 1.0, 2: 0.7, 4: 0.5, 6: 0.3, 8: 0.2},
                {1: 0.8, 2: 0.8, 4: 0.6, 6: 0.5, 8: 0.4, 10: 0.3, 12: 0.2},
            ]
        ),
    ),
    ("Organ Drawbars", _table_drawbars),
    ("Vowels Low", lambda: _table_vowels(110.0, _VOWELS_LOW)),
    ("Vowels High", lambda: _table_vowels(220.0, _VOWELS_HIGH)),
    ("Resonant Sweep", _table_resonant_sweep),
    ("Sync Saw", lambda: _table_sync("saw")),
    ("Sync Sine", lambda: _table_sync("sine")),
    ("FM Sweep", lambda: _table_fm(1, [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])),
    ("FM Bell", lambda: _table_fm(3, [0.0, 0.4, 0.8, 1.2, 1.8, 2.5, 3.5])),
    ("Phase Distortion", _table_phase_distortion),
    ("Fold Sweep", _table_fold),
    ("Drive Sweep", _table_drive),
    ("Supersaw Stack", _table_supersaw),
    ("Soft Noise", _table_soft_noise),
    ("Metallic", _table_metallic),
]


@functools.cache
def _builtin_tables_cached() -> tuple[tuple[str, dict], ...]:
    tables = [("Init Saw", _init_table_cached())]
    for name, make in _BUILTIN_SPECS:
        waves = [_finish(w) for w in make()]
        tables.append((name, make_wavetable(name, list(zip(_spread(len(waves)), waves, strict=True)))))
    return tuple(tables)


def builtin_tables() -> list[tuple[str, dict]]:
    """``[(name, table), ...]`` of the built-in set, fresh copies. Generated once per process (~0.3 s).

    0 "Init Saw" is Vital's own init table (from the live synth). The rest are generated here, one
    keyframe per listed wave, positions spread evenly over 0..256; every frame is DC-free with peak 1.
    """
    return [(name, copy.deepcopy(table)) for name, table in _builtin_tables_cached()]
