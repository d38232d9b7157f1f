"""Sound analysis: what an input sound shows that a preset's structure must reproduce.

Stage: matching (the structure pass's evidence; issue 18 section 1). Input: audio ``(T,)`` mono or
``(2, T)`` stereo float at ``sample_rate``, the time of note-off ``note_s`` and optionally the
MIDI note played. Output: :class:`Findings`: a release or reverb tail after note-off, periodic
amplitude (tremolo) and pitch (vibrato) movement, a noise floor, stereo width, a sweep of the
spectral centroid (a filter envelope) and the attack time, each in physical units.

Pure DSP, knows nothing of Vital: :mod:`vitalmatch.synth.structure` turns the findings into
module switches and modulation routings. Every detector returns 0 ("not found") unless the
evidence is clear, so a plain static tone gives no findings (``tests/test_analysis.py``):

* envelopes are RMS over 20 ms frames every 5 ms (20 ms passes a 15 Hz tremolo at 0.93 of its
  depth); levels are dB relative to the loudest frame;
* a periodic movement (tremolo, vibrato) counts only when one sinusoid, fitted by least squares
  at the peak of the detrended track's spectrum, explains at least :data:`PERIODIC_SHARE` of the
  track's variance and moves it by more than a floor (:data:`TREMOLO_MIN_DEPTH`,
  :data:`VIBRATO_MIN_CENTS`), with at least :data:`MIN_CYCLES` cycles in the held part;
* pitch is tracked on the strongest harmonic of the played note (peak of a zero-padded Hann
  spectrum, interpolated on the log magnitude), a few milliseconds per 2 s clip where pYIN takes
  seconds; frames whose peak does not stand clear of the spectrum around it are dropped.

Written with numpy and scipy rather than librosa's feature functions: each detector needs only
one spectrum or envelope, and computing them once keeps :func:`analyse` at ~0.05 s for a 2 s clip
at 44.1 kHz on one core (librosa is used only to guess the pitch when no note is given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: RMS envelope frame and hop, seconds.
FRAME_S, HOP_S = 0.020, 0.005

#: Level (dB relative to the peak frame) that counts as sound: the tail ends below it.
TAIL_FLOOR_DB = -60.0

#: Level (dB relative to the peak frame) above which frames take part in the centroid track.
CENTROID_FLOOR_DB = -30.0

#: Share of a detrended track's variance one fitted sinusoid must explain to be "periodic".
PERIODIC_SHARE = 0.4

#: Smallest tremolo reported (peak-to-peak depth, 0..1) and vibrato (cents, peak).
TREMOLO_MIN_DEPTH = 0.04
VIBRATO_MIN_CENTS = 3.0

#: Cycles of a periodic movement that must fit in the held part (fewer cannot be told from a bend).
MIN_CYCLES = 3.0

#: Rate bands searched (Hz).
TREMOLO_BAND = (1.0, 20.0)
VIBRATO_BAND = (1.5, 15.0)

#: Pitch tracking looks for the partial within this frequency ratio of the expected one (1 semitone).
_SEARCH = 2.0 ** (1.0 / 12.0)

#: Smallest centroid sweep reported (octaves) and shortest tail (seconds).
SWEEP_MIN_OCTAVES = 0.25
TAIL_MIN_S = 0.05


@dataclass(frozen=True)
class Findings:
    """What a sound shows; every field is 0 when its detector found nothing.

    Attributes:
        tail_s: seconds of sound after note-off above :data:`TAIL_FLOOR_DB` of the peak.
        tail_db: level 50 ms after note-off relative to the held part (dB, <= 0 for a fading tail).
        decay_s: time constant of the tail's exponential decay (seconds per e-fold, from a line
            fitted to its dB envelope; RT60 = 6.91 x decay_s).
        tremolo_hz: rate of periodic amplitude movement during the held part.
        tremolo_depth: its peak-to-peak depth relative to the envelope's maximum, 0..1
            (``(max - min) / max``; amplitude modulation ``1 + m sin`` gives ``2m / (1 + m)``).
        vibrato_hz: rate of periodic pitch movement.
        vibrato_cents: its depth, cents from the centre pitch to a peak.
        noise_ratio: share of the held part's energy that is broadband (between and under the
            harmonics), 0..1.
        width: stereo width of the held part, side over mid energy clipped to 0..1 (0 for mono,
            1 for two decorrelated channels of equal level).
        sweep_octaves: movement of the spectral centroid from the attack to note-off (octaves;
            + opens, - closes).
        sweep_s: time from the onset until 90% of that movement is done (seconds).
        attack_s: time from the onset (first frame above -40 dB) to the first frame within 1 dB
            of the peak (seconds).
        centroid_low_hz: the spectral centroid at the closed end of the sweep (its start for an
            opening sweep, its end for a closing one; Hz), 0 when there is no sweep.
    """

    tail_s: float = 0.0
    tail_db: float = 0.0
    decay_s: float = 0.0
    tremolo_hz: float = 0.0
    tremolo_depth: float = 0.0
    vibrato_hz: float = 0.0
    vibrato_cents: float = 0.0
    noise_ratio: float = 0.0
    width: float = 0.0
    sweep_octaves: float = 0.0
    sweep_s: float = 0.0
    attack_s: float = 0.0
    centroid_low_hz: float = 0.0


def analyse(audio: np.ndarray, sample_rate: int, note_s: float, note: int | None = None) -> Findings:
    """Findings of one note.

    Args:
        audio: ``(T,)`` mono or ``(2, T)`` stereo float samples (stereo: the width is measured,
            everything else on the mono mix).
        sample_rate: Hz.
        note_s: seconds from the start of ``audio`` to note-off (past the end: held throughout).
        note: MIDI note played, if known; else the pitch is guessed (librosa's YIN).

    Returns:
        :class:`Findings`; all zeros for a silent or too short clip.

    Raises:
        ValueError: ``audio`` is not ``(T,)`` or ``(2, T)``, or ``sample_rate`` is not positive.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[0] != 2):
        raise ValueError(f"audio must be (T,) or (2, T), got shape {x.shape}")
    if not sample_rate > 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    x = np.nan_to_num(x)
    sr = int(sample_rate)
    mono = x.mean(axis=0) if x.ndim == 2 else x
    env = _rms_envelope(mono, sr)
    if len(env) < 8 or env.max() <= 1e-7:
        return Findings()
    hop = HOP_S
    db = 20.0 * np.log10(np.maximum(env, 1e-12) / env.max())
    times = np.arange(len(env)) * hop + FRAME_S / 2
    onset_i = int(np.argmax(db > -40.0))
    onset = times[onset_i]
    peak_i = onset_i + int(np.argmax(db[onset_i:] > -1.0))
    attack_s = max(0.0, float(times[peak_i] - onset))
    off = float(note_s)
    # held part: from just after the peak to just before note-off (or to the end)
    held_lo = times[peak_i] + 0.03
    held_hi = min(off, times[-1]) - 0.02
    held = (times >= held_lo) & (times <= held_hi)

    tail_s, tail_db, decay_s = _tail(db, times, off, held)
    trem_hz, trem_depth = _tremolo(env[held], hop) if held.sum() >= 16 else (0.0, 0.0)
    a, b = int(max(held_lo, 0) * sr), int(max(held_hi, 0) * sr)
    segment = mono[a:b] if b - a >= int(0.1 * sr) else mono[int(onset * sr) : int(max(off, onset) * sr)]
    f0 = _note_hz(note) if note is not None else _guess_f0(segment, sr)
    vib_hz, vib_cents = _vibrato(segment, sr, f0) if f0 else (0.0, 0.0)
    noise = _noise_ratio(segment, sr, f0)
    width = _width(x[:, a:b] if b - a >= int(0.05 * sr) else x) if x.ndim == 2 else 0.0
    sweep, sweep_s, low_hz = _sweep(mono, sr, db, times, onset, min(off, times[-1]))
    return Findings(
        tail_s=tail_s,
        tail_db=tail_db,
        decay_s=decay_s,
        tremolo_hz=trem_hz,
        tremolo_depth=trem_depth,
        vibrato_hz=vib_hz,
        vibrato_cents=vib_cents,
        noise_ratio=noise,
        width=width,
        sweep_octaves=sweep,
        sweep_s=sweep_s,
        attack_s=attack_s,
        centroid_low_hz=low_hz,
    )


# ------------------------------------------------------------------------------------------ helpers
def _note_hz(note: int) -> float:
    return 440.0 * 2.0 ** ((float(note) - 69.0) / 12.0)


def _rms_envelope(x: np.ndarray, sr: int) -> np.ndarray:
    """RMS over :data:`FRAME_S` frames every :data:`HOP_S` (a cumulative sum: O(T))."""
    n, h = max(1, int(round(FRAME_S * sr))), max(1, int(round(HOP_S * sr)))
    if len(x) < n:
        return np.zeros(0)
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, len(x) - n + 1, h)
    return np.sqrt(np.maximum(c[starts + n] - c[starts], 0.0) / n)


def _tail(db: np.ndarray, times: np.ndarray, off: float, held: np.ndarray) -> tuple[float, float, float]:
    """``(tail_s, tail_db, decay_s)`` after note-off at ``off`` seconds."""
    after = times > off
    if not after.any() or not held.any():
        return 0.0, 0.0, 0.0
    loud = np.flatnonzero(after & (db > TAIL_FLOOR_DB))
    if not len(loud):
        return 0.0, 0.0, 0.0
    # the end of the contiguous run of sound from note-off on (a later blip is not the tail)
    first_after = int(np.argmax(after))
    quiet = np.flatnonzero(after & (db <= TAIL_FLOOR_DB))
    end = (int(quiet[0]) - 1) if len(quiet) else len(db) - 1
    if end < first_after:
        return 0.0, 0.0, 0.0
    tail_s = float(times[end] - off)
    if tail_s < TAIL_MIN_S:
        return 0.0, 0.0, 0.0
    held_db = float(np.median(db[held][-20:]))  # the last 100 ms of the held part
    at = int(np.argmin(np.abs(times - (off + 0.05))))
    tail_db = float(min(db[min(at, end)] - held_db, 0.0))
    # decay: line through the tail's dB envelope from 50 ms after note-off to its end
    seg = np.arange(min(at, end), end + 1)
    decay_s = 0.0
    if len(seg) >= 4:
        slope = np.polyfit(times[seg], db[seg], 1)[0]
        if slope < -1e-3:
            decay_s = float(20.0 * np.log10(np.e) / -slope)
    return tail_s, tail_db, decay_s


def _sinusoid(track: np.ndarray, rate: float, band: tuple[float, float]) -> tuple[float, float, float]:
    """``(frequency, amplitude, share of variance)`` of the strongest sinusoid of a detrended track.

    The track (sampled at ``rate`` Hz) loses a quadratic trend; the peak of its zero-padded,
    Hann-windowed spectrum inside ``band`` gives the frequency (at least :data:`MIN_CYCLES` must fit),
    and a least-squares fit of sine and cosine at it the amplitude and the variance it explains.
    """
    n = len(track)
    t = np.arange(n) / rate
    if n < 8:
        return 0.0, 0.0, 0.0
    r = track - np.polyval(np.polyfit(t, track, 2), t)
    var = float(np.mean(r * r))
    if var <= 0:
        return 0.0, 0.0, 0.0
    n_fft = max(4096, 1 << int(np.ceil(np.log2(8 * n))))
    spec = np.abs(np.fft.rfft(r * np.hanning(n), n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lo = max(band[0], MIN_CYCLES / (n / rate))
    sel = (freqs >= lo) & (freqs <= band[1])
    if not sel.any():
        return 0.0, 0.0, 0.0
    f = float(freqs[sel][np.argmax(spec[sel])])
    basis = np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t), np.ones(n)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, r, rcond=None)
    fit = basis @ coef
    share = 1.0 - float(np.mean((r - fit) ** 2)) / var
    return f, float(np.hypot(coef[0], coef[1])), share


def _periodic(track: np.ndarray, rate: float, band: tuple[float, float]) -> tuple[float, float, float]:
    """``(frequency, amplitude, share)`` of a periodic movement of ``track``: the candidate rate of
    :func:`_sinusoid`, checked again after removing a moving average over one period of it (which
    keeps any slow trend and removes that sinusoid entirely). A smooth bend of the track (a filter
    closing, a decay) leaves little after that and no sinusoid explains it; a real periodic
    movement does."""
    f, _, share = _sinusoid(track, rate, band)
    if f <= 0 or share < PERIODIC_SHARE:
        return 0.0, 0.0, 0.0
    from scipy.ndimage import uniform_filter1d

    period = max(2, int(round(rate / f)))
    r = track - uniform_filter1d(track, period, mode="nearest")
    edge = period // 2 + 1  # the moving average is biased within half a period of either end
    if len(r) <= 2 * edge + 8:
        return 0.0, 0.0, 0.0
    r = r[edge:-edge]
    t = np.arange(len(r)) / rate
    basis = np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t), np.ones(len(r))], axis=1)
    coef, *_ = np.linalg.lstsq(basis, r, rcond=None)
    var = float(np.mean((r - r.mean()) ** 2))
    if var <= 0:
        return 0.0, 0.0, 0.0
    share = 1.0 - float(np.mean((r - basis @ coef) ** 2)) / var
    return f, float(np.hypot(coef[0], coef[1])), share


def _tremolo(env: np.ndarray, hop: float) -> tuple[float, float]:
    """``(rate Hz, depth 0..1)`` of the held part's RMS envelope ``env`` (linear)."""
    mean = float(env.mean())
    if mean <= 0:
        return 0.0, 0.0
    f, amp, share = _periodic(env / mean, 1.0 / hop, TREMOLO_BAND)
    amp = min(amp, 0.99)
    depth = 2.0 * amp / (1.0 + amp)
    if share < PERIODIC_SHARE or depth < TREMOLO_MIN_DEPTH:
        return 0.0, 0.0
    return f, float(depth)


def _guess_f0(x: np.ndarray, sr: int) -> float:
    """Median YIN pitch of a held segment (Hz), 0 when the segment is too short or unpitched."""
    if len(x) < int(0.1 * sr) or not np.any(x):
        return 0.0
    import librosa

    f0 = librosa.yin(x.astype(np.float32), fmin=40.0, fmax=2000.0, sr=sr, frame_length=4096)
    f0 = f0[np.isfinite(f0)]
    return float(np.median(f0)) if len(f0) else 0.0


def _frames(x: np.ndarray, n: int, hop: int) -> np.ndarray:
    starts = np.arange(0, len(x) - n + 1, hop)
    return x[starts[:, None] + np.arange(n)[None, :]]


def _vibrato(x: np.ndarray, sr: int, f0: float) -> tuple[float, float]:
    """``(rate Hz, depth cents)`` of periodic pitch movement of a held segment around ``f0``."""
    win = int(max(0.04, 8.0 / f0) * sr)
    hop = max(1, int(HOP_S * sr))
    if len(x) < win + 16 * hop:
        return 0.0, 0.0
    frames = _frames(x, win, hop) * np.hanning(win)
    n_fft = 1 << int(np.ceil(np.log2(4 * win)))
    mag = np.abs(np.fft.rfft(frames, n_fft, axis=1)) + 1e-12
    bin_hz = sr / n_fft
    mean = mag.mean(axis=0)
    # cents are the same on every harmonic and a higher one has more bins per cent: take the
    # highest of the first 8 whose level is within 6 dB of the strongest
    levels = {}
    for h in range(1, 9):
        if f0 * (h + 0.5) >= sr / 2:
            break
        levels[h] = float(mean[int(f0 * h / _SEARCH / bin_hz) : int(f0 * h * _SEARCH / bin_hz) + 2].max())
    if not levels:
        return 0.0, 0.0
    top = max(levels.values())
    h = max(k for k, v in levels.items() if v >= top / 2)
    centre = f0 * h
    lo, hi = int(centre / _SEARCH / bin_hz), int(np.ceil(centre * _SEARCH / bin_hz))
    band = np.log(mag[:, lo : hi + 1])
    k = np.clip(np.argmax(band, axis=1), 1, band.shape[1] - 2)
    rows = np.arange(len(k))
    a, b, c = band[rows, k - 1], band[rows, k], band[rows, k + 1]
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    freq = (lo + k + np.clip(shift, -0.5, 0.5)) * bin_hz
    # a real partial stands clear (20 dB) of the spectrum half a harmonic spacing around it
    around = np.log(mag[:, int((centre - f0 / 2) / bin_hz) : int((centre + f0 / 2) / bin_hz) + 1])
    clear = b - np.median(around, axis=1) > np.log(10.0)
    if clear.mean() < 0.8:
        return 0.0, 0.0
    cents = 1200.0 * np.log2(freq / np.median(freq[clear]))
    cents = np.where(clear, cents, np.median(cents[clear]))
    f, amp, share = _periodic(cents, sr / hop, VIBRATO_BAND)
    if share < PERIODIC_SHARE or amp < VIBRATO_MIN_CENTS:
        return 0.0, 0.0
    # the Hann window averages the pitch over about half its length: undo that attenuation
    amp /= max(np.sinc(f * win / (2.0 * sr)), 0.5)
    return float(f), float(amp)


def _noise_ratio(x: np.ndarray, sr: int, f0: float) -> float:
    """Share of broadband energy in a held segment: a running median of the Welch power spectrum
    (over two harmonic spacings, so the harmonic peaks do not lift it) is the noise floor."""
    n = 2048 if sr <= 48000 else 4096
    if len(x) < n:
        return 0.0
    frames = _frames(x, n, n // 2) * np.hanning(n)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    total = float(power.sum())
    if total <= 0:
        return 0.0
    from scipy.ndimage import median_filter

    spacing = f0 if f0 > 0 else 200.0
    width = int(np.clip(2.0 * spacing / (sr / n), 5, len(power) // 4)) | 1
    floor = np.minimum(median_filter(power, size=width, mode="nearest"), power)
    return float(np.clip(floor.sum() / total, 0.0, 1.0))


def _width(x: np.ndarray) -> float:
    """Side over mid energy of a ``(2, T)`` segment, clipped to 0..1."""
    mid, side = (x[0] + x[1]) / 2.0, (x[0] - x[1]) / 2.0
    em, es = float(np.sum(mid * mid)), float(np.sum(side * side))
    if em + es <= 0:
        return 0.0
    return float(np.clip(es / em, 0.0, 1.0)) if em > 0 else 1.0


def _sweep(
    x: np.ndarray, sr: int, db: np.ndarray, times: np.ndarray, onset: float, end: float
) -> tuple[float, float, float]:
    """``(octaves, seconds, Hz at the closed end)`` of the spectral centroid's movement between the
    attack (10 ms after the onset) and ``end`` (note-off); frames below
    :data:`CENTROID_FLOOR_DB` are left out."""
    n, hop = 2048 if sr <= 48000 else 4096, max(1, int(HOP_S * sr))
    a, b = int(max(onset + 0.01, 0) * sr), int(end * sr)
    if b - a < n + 8 * hop:
        return 0.0, 0.0, 0.0
    frames = _frames(x[a:b], n, hop) * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    energy = power.sum(axis=1)
    ok = energy > energy.max() * 10 ** (CENTROID_FLOOR_DB / 10)
    if ok.sum() < 8:
        return 0.0, 0.0, 0.0
    centroid = (power @ freqs) / np.maximum(energy, 1e-20)
    t = (a + np.arange(len(centroid)) * hop + n / 2) / sr - onset
    c = np.log2(np.maximum(centroid[ok], 1.0))
    t = t[ok]
    k = max(1, int(round(0.02 / HOP_S)))  # 20 ms of frames at each end
    start, stop = float(np.median(c[:k])), float(np.median(c[-4 * k :]))
    octaves = stop - start
    if abs(octaves) < SWEEP_MIN_OCTAVES:
        return 0.0, 0.0, 0.0
    # smooth over 20 ms, then the first time 90% of the movement is done
    from scipy.ndimage import uniform_filter1d

    smooth = uniform_filter1d(c, k, mode="nearest")
    done = np.flatnonzero((smooth - start) / octaves >= 0.9)
    seconds = float(t[done[0]]) if len(done) else float(t[-1])
    low = 2.0 ** min(start, stop)
    return float(octaves), max(seconds, 0.0), float(low)


__all__ = ["Findings", "analyse"]
