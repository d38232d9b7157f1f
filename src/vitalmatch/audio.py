"""Audio input: a user's sound file -> mono samples plus the note the synth should play.

Stage: audio input. Input: a path to an audio file in any common format (WAV 16/24/32-bit
integer or float, FLAC, OGG/Vorbis or Opus, MP3, AIFF, ...), any sample rate, any channel count,
any length. Output: :class:`Clip` (``(T,)`` float32 mono at the requested rate) and, through
:func:`prepare`, :class:`Prepared`: the clip with leading silence trimmed and fitted to the
model's ``n_samples``, plus the estimated MIDI note and note length that the preset is rendered
with (:class:`~vitalmatch.synth.render.RenderConfig` ``notes`` / ``note_duration_s``).

Decoding is libsndfile's (through ``soundfile``; version 1.1+ reads MP3 too). Formats it does not
know (AAC/M4A, WMA, ...) are tried with ``audioread``, which needs ffmpeg or GStreamer on the
machine. Files are decoded block by block: at most ``max_seconds`` of leading silence is scanned
for the first sound, and at most ``max_seconds`` after it is kept, so an hour-long file costs
no more than a minute-long one. Channels are averaged to mono and the result is resampled with
soxr (``HQ``). Every problem with the file itself is reported as :class:`AudioError`, a
``ValueError`` with a one-line message that starts with the file name.

Levels are in dB: dBFS for absolute sample levels (full scale = 1.0), dB relative to the clip's
loudest envelope frame otherwise. Envelopes are RMS over short windows, so a single-sample click
counts for its energy, not its peak.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SILENCE_DBFS = -60.0
"""A clip whose peak sample is below this level (dBFS) is silent; the first sample at or above it
is the first sound."""

TRIM_THRESHOLD_DB = -50.0
"""Default onset threshold of :func:`trim_silence`, in dB relative to the loudest RMS frame."""

MIN_SOUND_S = 0.05
"""Shortest accepted sound (seconds from the onset to the last frame above the trim threshold)."""

PRE_ROLL_S = 0.005
"""Seconds kept before the detected onset when trimming."""

DEFAULT_MIDI_NOTE = 60
"""The note :func:`prepare` falls back to when no pitch is found (C4, 261.63 Hz)."""

PITCH_FMIN_HZ = 32.70
"""pYIN search floor: C1."""

PITCH_FMAX_HZ = 2093.0
"""pYIN search ceiling: C7."""

_BLOCK_FRAMES = 1 << 16  # frames decoded per read
_PITCH_RATE = 22050  # Hz; pitch tracking runs at this rate (fmax = C7 is far below its Nyquist)
_PITCH_SECONDS = 1.0  # seconds of sound (after the onset) given to pYIN
_PITCH_FRAME = 2048  # samples per pYIN frame at _PITCH_RATE (93 ms: 3 periods of C1)
_PITCH_HOP = 512
_PITCH_MIN_VOICED = 0.5  # fraction of the loud frames that must be voiced
_PITCH_LOUD_DB = -40.0  # frames within this of the loudest frame count for the voiced fraction


class AudioError(ValueError):
    """The file cannot serve as input: missing, unreadable, silent, too short, ...

    The message is one line and starts with the file name as given.
    """


@dataclass(frozen=True, eq=False)
class Clip:
    """A decoded, mono-mixed, resampled and possibly cropped audio file.

    Attributes:
        samples: ``(T,)`` float32 mono at ``sample_rate`` (the average of the file's channels),
            full scale 1.0. Starts at the file's start and ends at most ``max_seconds`` after the
            first sound (see :func:`load_audio`).
        sample_rate: Hz of ``samples``.
        source_rate: Hz of the file.
        channels: channels in the file.
        source_seconds: the file's full duration as its header states it (the decoded length when
            the header has none); longer than ``seconds`` when the file was cropped.
        gain_db: gain applied to ``samples`` (dB, <= 0): a float file that peaks above full scale
            (1.0) is scaled down to peak at 1.0, so that no later step overflows (a float WAV may
            hold values up to 3.4e38); 0 for every other file.
    """

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    channels: int
    source_seconds: float
    gain_db: float = 0.0

    @property
    def seconds(self) -> float:
        """Duration of ``samples``."""
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class Pitch:
    """A note estimate.

    Attributes:
        hz: fundamental frequency.
        midi: nearest MIDI note, clamped to 0..127 (69 = A4 = 440 Hz).
        cents_off: ``hz`` relative to ``midi`` in cents (about -50..50 unless clamped).
        confidence: pYIN's mean voicing probability over the loud analysed frames, 0..1.
    """

    hz: float
    midi: int
    cents_off: float
    confidence: float


@dataclass(frozen=True, eq=False)
class Prepared:
    """What the model and the synth need from a user's file (:func:`prepare`).

    Attributes:
        samples: ``(n_samples,)`` float32 mono at ``sample_rate``: the clip from just before its
            onset, cropped or zero-padded at the end.
        sample_rate: Hz.
        midi_note: the note to render the matched preset at: the estimated pitch's, or
            :data:`DEFAULT_MIDI_NOTE` when none was found.
        midi_is_default: True when ``midi_note`` is the default rather than an estimate.
        pitch: the estimate, or None.
        note_length_s: estimated seconds from onset to note-off (:func:`estimate_note_length`);
            measured on the whole trimmed clip, so it may exceed ``n_samples / sample_rate``.
        offset_samples: samples trimmed from the clip's start (leading silence).
        clip: the loaded clip (its rate, channels, source duration and untrimmed samples).
    """

    samples: np.ndarray
    sample_rate: int
    midi_note: int
    midi_is_default: bool
    pitch: Pitch | None
    note_length_s: float
    offset_samples: int
    clip: Clip

    @property
    def offset_seconds(self) -> float:
        return self.offset_samples / self.sample_rate

    def pitch_text(self) -> str:
        """The detected pitch in one phrase, the same for every stage and page:
        ``"220.3 Hz -> MIDI 57"``, or ``"none found, using MIDI 60"``."""
        if self.midi_is_default or self.pitch is None:
            return f"none found, using MIDI {self.midi_note}"
        return f"{self.pitch.hz:.1f} Hz -> MIDI {self.midi_note}"


# ------------------------------------------------------------------------------------------ loading
class _Undecodable(Exception):
    """A decoder could not open the file; ``args[0]`` is a one-line reason."""


_Decoded = tuple[np.ndarray, int | None, bool, int, int, float | None]
"""``(mono, first, exhausted, rate, channels, header_seconds)``: see :func:`_collect`; the file's rate
and channel count; its duration as the header states it (None if unknown)."""


def _one_line(text: object) -> str:
    """``text`` on one line, without a trailing full stop (libsndfile ends its messages with one)."""
    return " ".join(str(text).split()).rstrip(".")


def _check_path(path: Path, name: str) -> None:
    if not path.exists():
        raise AudioError(f"{name}: no such file")
    if path.is_dir():
        raise AudioError(f"{name}: is a directory, not an audio file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise AudioError(f"{name}: cannot read ({_one_line(exc.strerror or exc)})") from exc
    if size == 0:
        raise AudioError(f"{name}: empty file (0 bytes)")


def _collect(
    blocks: Iterable[np.ndarray], rate: int, name: str, max_seconds: float
) -> tuple[np.ndarray, int | None, bool]:
    """Mix ``(frames, channels)`` blocks to mono until ``max_seconds`` after the first sound.

    Returns ``(mono, first, exhausted)``: float32 samples at the source rate, the index of the
    first sample at or above :data:`SILENCE_DBFS` (None if none was found within ``max_seconds``),
    and whether the stream was read to its end.
    """
    limit = int(np.ceil(max_seconds * rate))
    loud = 10.0 ** (SILENCE_DBFS / 20.0)
    parts: list[np.ndarray] = []
    n, first, stop = 0, None, limit
    exhausted = True
    for block in blocks:
        if not np.isfinite(block).all():
            raise AudioError(f"{name}: contains NaN or infinite samples")
        # float64 sum: the channels of a float file near 3.4e38 would overflow float32 to inf
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float64)
        if first is None:
            hits = np.flatnonzero(np.abs(mono) >= loud)
            if hits.size:
                first = n + int(hits[0])
                stop = first + limit
        parts.append(np.asarray(mono, dtype=np.float32))
        n += len(mono)
        if n >= stop:
            exhausted = False
            break
    mono = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return mono[:stop], first, exhausted


def _read_soundfile(path: Path, name: str, max_seconds: float) -> _Decoded:
    """Decode with libsndfile: ``(mono, first, exhausted, rate, channels, header_seconds)``."""
    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile reports every failure as some exception
        detail = _one_line(getattr(exc, "error_string", None) or exc)
        if "does not exist" in detail:  # libsndfile's words for undecodable MP3 data; the file exists
            detail = "unrecognised or corrupt data"
        raise _Undecodable(detail) from exc
    with f:
        rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)

        def blocks() -> Iterator[np.ndarray]:
            while True:
                block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block

        mono, first, exhausted = _collect(blocks(), rate, name, max_seconds)
    header = frames / rate if 0 < frames < 1 << 62 and rate > 0 else None
    return mono, first, exhausted, rate, channels, header


def _read_audioread(path: Path, name: str, max_seconds: float) -> _Decoded:
    """Decode with audioread (ffmpeg / GStreamer / Core Audio / the standard library's WAV)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # its backends import aifc, audioop, sunau
            import audioread

            f = audioread.audio_open(str(path))
    except Exception as exc:
        raise _Undecodable(_one_line(exc) or type(exc).__name__) from exc
    with f:
        rate, channels = int(f.samplerate), int(f.channels)
        if rate <= 0 or channels <= 0:
            raise _Undecodable(f"{rate} Hz, {channels} channels")

        def blocks() -> Iterator[np.ndarray]:
            pending = b""
            width = 2 * channels  # audioread yields interleaved little-endian int16
            for buf in f:
                data = pending + bytes(buf)
                whole = len(data) - len(data) % width
                pending = data[whole:]
                if whole:
                    pcm = np.frombuffer(data[:whole], dtype="<i2").reshape(-1, channels)
                    yield pcm.astype(np.float32) / np.float32(32768.0)

        mono, first, exhausted = _collect(blocks(), rate, name, max_seconds)
        duration = float(getattr(f, "duration", 0) or 0)
    return mono, first, exhausted, rate, channels, duration if duration > 0 else None


def load_audio(path: str | os.PathLike, sample_rate: int = 44100, max_seconds: float = 60.0) -> Clip:
    """Decode an audio file to mono float32 at ``sample_rate``.

    Reading stops ``max_seconds`` after the first sound (the first sample of the mono mix at or
    above :data:`SILENCE_DBFS`); leading silence before it is kept (it is what
    :func:`trim_silence` removes), and a file with no sound within its first ``max_seconds`` is
    reported silent without decoding the rest.

    Args:
        path: the file.
        sample_rate: Hz of the returned samples (resampled with soxr ``HQ`` when the file's rate
            differs).
        max_seconds: longest stretch of sound kept (and of leading silence scanned).

    Returns:
        :class:`Clip`.

    Raises:
        AudioError: the file is missing, a directory, empty, not audio or corrupt, has no samples,
            has NaN/Inf samples, is silent (peak below -60 dBFS) or has less than
            :data:`MIN_SOUND_S` of sound.
        ValueError: ``sample_rate`` or ``max_seconds`` is not positive.
    """
    if int(sample_rate) <= 0 or int(sample_rate) != sample_rate:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    sample_rate = int(sample_rate)
    name = os.fspath(path)
    path = Path(path)
    _check_path(path, name)
    try:
        try:
            mono, first, exhausted, rate, channels, header = _read_soundfile(path, name, max_seconds)
        except _Undecodable as sf_error:
            try:
                mono, first, exhausted, rate, channels, header = _read_audioread(path, name, max_seconds)
            except _Undecodable:
                raise AudioError(f"{name}: not a readable audio file ({sf_error.args[0]})") from sf_error
    except AudioError:
        raise
    except Exception as exc:  # a decoder failing mid-stream (truncated, corrupt frames)
        raise AudioError(f"{name}: corrupt audio data ({_one_line(exc) or type(exc).__name__})") from exc

    if mono.size == 0:
        raise AudioError(f"{name}: no audio samples")
    if first is None:
        peak = float(np.abs(mono).max())
        peak_db = 20.0 * np.log10(peak) if peak > 0 else -np.inf
        scope = "" if exhausted else f" in the first {max_seconds:g} s"
        raise AudioError(f"{name}: silent (peak {peak_db:.1f} dBFS{scope}, below {SILENCE_DBFS:g} dBFS)")
    peak = float(np.abs(mono).max(initial=0.0))
    gain_db = 0.0
    if peak > 1.0:  # only float files get here; bring them to full scale before any arithmetic
        mono = (mono.astype(np.float64) / peak).astype(np.float32)
        gain_db = -20.0 * float(np.log10(peak))
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    bounds = _sound_bounds(mono, sample_rate, TRIM_THRESHOLD_DB)
    sound = 0 if bounds is None else bounds[1] - bounds[0]
    if sound < MIN_SOUND_S * sample_rate:
        raise AudioError(
            f"{name}: too short ({1000 * sound / sample_rate:.0f} ms of sound after trimming silence, "
            f"at least {1000 * MIN_SOUND_S:.0f} ms needed)"
        )
    source_seconds = header if header is not None else len(mono) / sample_rate
    return Clip(mono, sample_rate, rate, channels, float(source_seconds), gain_db)


# ---------------------------------------------------------------------------------------- envelopes
def _envelope(
    x: np.ndarray, sample_rate: int, window_s: float, hop_s: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean-square envelope: ``(power, starts, window)``.

    ``power[k]`` is the mean of ``x**2`` over ``x[starts[k] : starts[k] + window]`` (float64, from a
    cumulative sum, so any hop costs the same); frames cover the signal in steps of ``hop_s``.
    Windows longer than the signal shrink to its length; an empty signal has no frames.
    """
    window = max(1, min(len(x), round(window_s * sample_rate)))
    hop = max(1, round(hop_s * sample_rate))
    if len(x) == 0:
        return np.zeros(0), np.zeros(0, np.int64), window
    csum = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    starts = np.arange(0, len(x) - window + 1, hop)
    power = np.maximum(csum[starts + window] - csum[starts], 0.0) / window
    return power, starts, window


def _sound_bounds(x: np.ndarray, sample_rate: int, threshold_db: float) -> tuple[int, int] | None:
    """``(onset, end)`` sample indices of the sound, or None for an all-zero signal.

    On a 10 ms RMS envelope (1 ms hop) the first and last frames within ``threshold_db`` of the
    loudest frame are found; inside them, the first (last) sample whose magnitude reaches the
    threshold RMS marks the onset (one past the end): such a sample exists, as a window's RMS never
    exceeds its peak.
    """
    power, starts, window = _envelope(x, sample_rate, 0.010, 0.001)
    if power.size == 0 or not power.max() > 0:
        return None
    threshold = power.max() * 10.0 ** (threshold_db / 10.0)
    above = np.flatnonzero(power >= threshold)
    amp = np.sqrt(threshold)
    first, last = int(starts[above[0]]), int(starts[above[-1]])
    onset = first + int(np.argmax(np.abs(x[first : first + window]) >= amp))
    tail = np.abs(x[last : last + window]) >= amp
    end = last + window - int(np.argmax(tail[::-1]))
    return onset, end


def trim_silence(
    samples: np.ndarray, sample_rate: int, threshold_db: float = TRIM_THRESHOLD_DB
) -> tuple[np.ndarray, int]:
    """Drop leading silence.

    The onset is the first sample where a 10 ms RMS envelope comes within ``threshold_db`` of its
    loudest frame (the reference is the envelope, not the peak sample, so one loud click does not
    make the real sound look like silence); :data:`PRE_ROLL_S` (5 ms) before it are kept.

    Args:
        samples: ``(T,)`` mono audio.
        sample_rate: Hz.
        threshold_db: onset level in dB relative to the loudest envelope frame (negative).

    Returns:
        ``(trimmed, offset_samples)``: ``samples[offset_samples:]`` as float32 (a view when the
        input is float32) and the number of samples dropped. An all-zero input comes back whole
        with offset 0.
    """
    x = np.asarray(samples, dtype=np.float32)
    bounds = _sound_bounds(x, sample_rate, threshold_db)
    if bounds is None:
        return x, 0
    offset = max(0, bounds[0] - round(PRE_ROLL_S * sample_rate))
    return x[offset:], offset


# -------------------------------------------------------------------------------------------- pitch
def estimate_pitch(samples: np.ndarray, sample_rate: int) -> Pitch | None:
    """The note of a pitched sound, or None for noise, drums and other unpitched sounds.

    Method: after :func:`trim_silence`, the first second of sound is resampled to 22.05 kHz and
    tracked with ``librosa.pyin`` (C1..C7, 93 ms frames, 23 ms hop, 0.2-semitone grid). The
    frames within 40 dB of the loudest count; when fewer than half of them are voiced the result is
    None. Otherwise the median f0 of the voiced frames picks the note, and is refined off pYIN's
    grid by the median ``librosa.yin`` estimate (parabolic interpolation) within a semitone of it
    (measured bias: +2..+4 cents on pure tones).

    Args:
        samples: ``(T,)`` mono audio.
        sample_rate: Hz.

    Returns:
        :class:`Pitch`, or None.
    """
    import librosa

    x, _ = trim_silence(samples, sample_rate)
    x = x[: round(_PITCH_SECONDS * sample_rate)]
    if sample_rate != _PITCH_RATE:
        x = soxr.resample(x, sample_rate, _PITCH_RATE, quality="HQ").astype(np.float32, copy=False)
    if len(x) < _PITCH_FRAME:
        x = np.pad(x, (0, _PITCH_FRAME - len(x)))
    if not np.abs(x).max() > 0:
        return None
    f0, voiced, prob = librosa.pyin(
        x,
        fmin=PITCH_FMIN_HZ,
        fmax=PITCH_FMAX_HZ,
        sr=_PITCH_RATE,
        frame_length=_PITCH_FRAME,
        hop_length=_PITCH_HOP,
        resolution=0.2,
    )
    rms = librosa.feature.rms(y=x, frame_length=_PITCH_FRAME, hop_length=_PITCH_HOP)[0]
    n = min(len(rms), len(f0))
    f0, voiced, prob, rms = f0[:n], voiced[:n], prob[:n], rms[:n]
    loud = rms >= rms.max() * 10.0 ** (_PITCH_LOUD_DB / 20.0)
    voiced = voiced & loud & np.isfinite(f0)
    if voiced.sum() < _PITCH_MIN_VOICED * loud.sum() or not voiced.any():
        return None
    hz = float(np.median(f0[voiced]))
    semitone = 2.0 ** (1.0 / 12.0)
    fine = librosa.yin(
        x,
        fmin=hz / semitone,
        fmax=hz * semitone,
        sr=_PITCH_RATE,
        frame_length=_PITCH_FRAME,
        hop_length=_PITCH_HOP,
    )[:n]
    near = voiced & (np.abs(1200.0 * np.log2(fine / hz)) < 50.0)
    if near.any():
        hz = float(np.median(fine[near]))
    midi_float = 69.0 + 12.0 * np.log2(hz / 440.0)
    midi = int(np.clip(round(midi_float), 0, 127))
    return Pitch(
        hz=hz, midi=midi, cents_off=float(100.0 * (midi_float - midi)), confidence=float(prob[loud].mean())
    )


# -------------------------------------------------------------------------------------- note length
_LENGTH_WINDOW_S = 0.020  # RMS window of the note-length envelope
_LENGTH_HOP_S = 0.005
_PLATEAU_S = 0.1  # a plateau lasts at least this long ...
_PLATEAU_DB = 1.0  # ... and its level changes by at most this much over that time
_PLATEAU_MIN_DB = -30.0  # plateau level relative to the peak: a release starts from a loud sound
_RELEASE_MIN_DB = 12.0  # the fall after the plateau that makes it a release
_DECAY_DB = 40.0  # fallback: time to fall this far below the peak


def estimate_note_length(samples: np.ndarray, sample_rate: int) -> float:
    """Seconds from the onset to the note-off, estimated from the RMS envelope.

    Heuristic, on a 20 ms RMS envelope in dB (5 ms hop), relative to its peak ``P``:

    1. The onset is :func:`trim_silence`'s (-50 dB). The end of the release is the first frame
       after the peak below ``max(P - 40, floor + 6)`` dB (``floor``: the quietest frame after the
       peak, so a noise floor above -40 dB does not hide the release).
    2. From there, walk back while the level 100 ms earlier is more than 1 dB higher: that is the
       release decay (any decay faster than 10 dB/s). The walk stops at the first frame where the
       level is flat over the preceding 100 ms: the end of the sustain plateau.
    3. If it stopped on a plateau (flat within +-1 dB over 100 ms, no lower than ``P - 30`` dB)
       and the release from it falls at least 12 dB, the note-off is that frame.
    4. Otherwise the sound decays without a plateau (plucks, percussion, or a sustain that never
       ends within the clip) and the result is the time until the envelope first falls 40 dB
       below its peak, or the clip's length after the onset if it never does.

    The envelope's 20 ms window and the 1 dB tolerance place the note-off a few ms after the
    release starts for fast releases, ~50 ms after for a release of 20 dB/s. Slow tremolo can
    move it by up to half a tremolo period.

    Args:
        samples: ``(T,)`` mono audio.
        sample_rate: Hz.

    Returns:
        Seconds, in ``[0, T / sample_rate - onset]``; 0.0 for an all-zero input.
    """
    x = np.asarray(samples, dtype=np.float32)
    bounds = _sound_bounds(x, sample_rate, TRIM_THRESHOLD_DB)
    if bounds is None:
        return 0.0
    t_on = bounds[0] / sample_rate
    length = len(x) / sample_rate - t_on
    power, starts, window = _envelope(x, sample_rate, _LENGTH_WINDOW_S, _LENGTH_HOP_S)
    level = 10.0 * np.log10(power + 1e-20)
    times = (starts + window / 2.0) / sample_rate
    k_peak = int(np.argmax(level))
    peak = level[k_peak]
    tail = level[k_peak:]

    below = np.flatnonzero(tail < peak - _DECAY_DB)
    decay_time = times[k_peak + below[0]] - t_on if below.size else length

    below = np.flatnonzero(tail < max(peak - _DECAY_DB, tail.min() + 6.0))
    if below.size:
        k_end = k_peak + int(below[0])
        lag = max(1, round(_PLATEAU_S / _LENGTH_HOP_S))
        k = k_end
        while k - lag >= k_peak and level[k - lag] - level[k] > _PLATEAU_DB:
            k -= 1
        on_plateau = (
            k - lag >= k_peak
            and abs(level[k - lag] - level[k]) <= _PLATEAU_DB
            and level[k] >= peak + _PLATEAU_MIN_DB
            and level[k] - level[k_end] >= _RELEASE_MIN_DB
        )
        if on_plateau:
            return float(np.clip(times[k] - t_on, 0.0, length))
    return float(np.clip(decay_time, 0.0, length))


# ------------------------------------------------------------------------------------------ fitting
def fit_length(samples: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` float32: ``samples`` cropped, or zero-padded at the end (always a new array)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    x = np.asarray(samples, dtype=np.float32)
    out = np.zeros(n, np.float32)
    m = min(n, len(x))
    out[:m] = x[:m]
    return out


def prepare(
    path: str | os.PathLike, sample_rate: int = 44100, n_samples: int = 88200, max_seconds: float = 60.0
) -> Prepared:
    """Load a user's file and make it ready for matching: load -> trim -> pitch -> length -> fit.

    Args:
        path: the audio file.
        sample_rate: Hz of the output (the render rate, 44.1 kHz by default).
        n_samples: length of ``Prepared.samples`` (the render length; 88200 = 2 s at 44.1 kHz).
        max_seconds: passed to :func:`load_audio`.

    Returns:
        :class:`Prepared`.

    Raises:
        AudioError: see :func:`load_audio`.
    """
    clip = load_audio(path, sample_rate, max_seconds)
    trimmed, offset = trim_silence(clip.samples, sample_rate)
    pitch = estimate_pitch(trimmed, sample_rate)
    return Prepared(
        samples=fit_length(trimmed, n_samples),
        sample_rate=sample_rate,
        midi_note=DEFAULT_MIDI_NOTE if pitch is None else pitch.midi,
        midi_is_default=pitch is None,
        pitch=pitch,
        note_length_s=estimate_note_length(trimmed, sample_rate),
        offset_samples=offset,
        clip=clip,
    )
