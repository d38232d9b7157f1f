"""Spectra for the search loss in numpy + scipy.fft: the mel magnitudes of
:func:`vitalmatch.features.mel_magnitude` without torch (or librosa) in the search workers.

Stage: refine (scoring). Input: mono audio ``(T,)`` float32. Output: mel magnitudes ``(n_mels,
frames)`` float32, ``frames = 1 + (T + 2 * (n_fft // 2) - n_fft) // hop``, the numbers of
:func:`~vitalmatch.features.mel_magnitude` for the same :class:`~vitalmatch.features.FeatureConfig`
(in float64 the two agree to 1e-8 on the search loss; in float32 both round differently in bins
~100 dB below the peak, where the loss's log floor sits: ``tests/search/test_loss.py``).

Why not torch. A search worker used torch only for this, and its import cost 2.5-3.3 s of a
worker's ~5.5 s start (librosa's, for the filterbank, as much again); and torch's FFT is slow for
the metric's 25 ms window (``n_fft = 1102 = 2 x 19 x 29`` at 44.1 kHz): 6.1 ms against 2.7 ms in
scipy.fft on one thread for a 2 s clip (``docs/benchmarks.md``, "Speed against the synth's
limit"). The same definition, step by step:

* the STFT of ``torch.stft(center=True, pad_mode="constant")``: ``n_fft // 2`` zeros on each side,
  frames of ``n_fft`` samples every ``hop`` samples, a *periodic* Hann window over the whole frame,
  a real FFT of ``n_fft`` points (``scipy.fft.rfft``, one thread, on a strided view of the padded
  signal: no copy until the window is applied);
* magnitude ``sqrt(re^2 + im^2)`` in float32;
* librosa's default mel filterbank (Slaney mel scale, Slaney area normalisation, ``fmin`` to
  ``fmax`` or Nyquist), computed here in float64 and stored float32 as librosa returns it, cached
  per configuration, and applied as a sparse matrix: each FFT bin lies in at most two triangles
  (~2 nonzeros per column), so the product costs ~0.1 ms against 0.2-0.8 ms for the dense one on
  one thread, and uses no BLAS threads (numpy's OpenBLAS would take every core in a worker).

Measured (2 s at 44.1 kHz, one thread, CPU time): the three scales' STFT magnitudes 2.4-3.0 ms
each (of which the FFT 1.5-2.0 ms), the mel products ~0.1 ms each; the search loss's features
6-8 ms against 11-15 ms with torch (``benchmarks/search_loss_speed.py``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.sparse
from numpy.lib.stride_tricks import sliding_window_view

# Slaney's mel scale (librosa.hz_to_mel with htk=False): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0  # Hz per mel in the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mels of frequencies in Hz (librosa ``hz_to_mel(htk=False)``), float64."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    high = hz >= _MIN_LOG_HZ
    return np.where(high, _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mel)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`, float64 Hz."""
    mel = np.asarray(mel, dtype=np.float64)
    high = mel >= _MIN_LOG_MEL
    return np.where(
        high, _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL)), _F_SP * mel
    )


@lru_cache(maxsize=16)
def mel_basis(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """librosa's ``filters.mel(sr, n_fft, n_mels, fmin, fmax)`` (Slaney scale and norm):
    ``(n_mels, n_fft // 2 + 1)`` float32, read-only (cached per configuration)."""
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]  # rising edge of each triangle
    upper = ramps[2:] / widths[1:, None]  # falling edge
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # Slaney: each band has unit area
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=16)
def hann(n: int, dtype=np.float32) -> np.ndarray:
    """Periodic Hann window of ``n`` points (``torch.hann_window(n)``), read-only."""
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(dtype)
    w.flags.writeable = False
    return w


def stft_magnitude(audio: np.ndarray, n_fft: int, hop: int, dtype=np.float32) -> np.ndarray:
    """``|STFT|`` ``(frames, n_fft // 2 + 1)`` of mono ``(T,)`` audio, framed as
    ``torch.stft(center=True, pad_mode="constant")`` with a periodic Hann window, computed in
    ``dtype`` (float32; float64 for reference values: its FFT is ~4x slower)."""
    x = np.asarray(audio, dtype=dtype).reshape(-1)
    pad = n_fft // 2
    padded = np.zeros(len(x) + 2 * pad, dtype=dtype)
    padded[pad : pad + len(x)] = x
    frames = sliding_window_view(padded, n_fft)[::hop]  # (frames, n_fft), a strided view
    spec = scipy.fft.rfft(frames * hann(n_fft, dtype), axis=-1, workers=1)
    power = np.square(spec.real)
    power += np.square(spec.imag)
    return np.sqrt(power, out=power)


@lru_cache(maxsize=16)
def _sparse_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None):
    return scipy.sparse.csr_matrix(mel_basis(sample_rate, n_fft, n_mels, fmin, fmax))


def mel_magnitude(
    audio: np.ndarray,
    sample_rate: int,
    n_fft: int,
    hop: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """Mel magnitudes ``(n_mels, frames)`` of mono ``(T,)`` audio: the numpy twin of
    :func:`vitalmatch.features.mel_magnitude` for ``FeatureConfig(sample_rate, n_fft, hop, n_mels,
    fmin, fmax)`` (module docstring), computed in ``dtype`` (float32, or float64 for reference)."""
    basis = _sparse_basis(int(sample_rate), int(n_fft), int(n_mels), float(fmin), fmax)
    mag = np.ascontiguousarray(stft_magnitude(audio, n_fft, hop, dtype).T)  # (bins, frames)
    return np.asarray(basis @ mag, dtype=dtype)
