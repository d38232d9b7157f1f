"""Metrics: audio distances for evaluating how well a rendered preset matches a target sound.

Stage: metrics. Input: ``pred`` and ``target`` audio, torch tensors or numpy arrays, float32, shape
``(T,)`` (one mono clip) or ``(B, T)`` (a batch of mono clips), both at ``sample_rate`` Hz. Output:
a Python ``float`` for ``(T,)`` input, a float32 torch tensor ``(B,)`` for ``(B, T)`` input.

Conventions shared by every distance here:

* Mono only. A ``(2, T)`` array is read as a *batch of two clips*, not as stereo: mixing stereo to
  mono (e.g. ``x.mean(-2)``) is the caller's job.
* Length mismatch: when ``pred`` and ``target`` differ in length both are cropped to the shorter
  one (from the start; the tails are dropped). Clips of length 0 raise ``ValueError``.
* Pure functions: nothing is trained or stored, except small caches of filterbanks / DCT matrices
  / the auraloss module per configuration.

Distances (lower is closer unless noted):

* :func:`multiscale_mel_l1` -- the project's main audio metric: L1 between log-mel spectrograms at
  three scales (~10 / 25 / 100 ms windows). Identical signals give exactly 0.
* :func:`mrstft` -- multi-resolution STFT distance of auraloss (Steinmetz & Reiss 2020), i.e.
  spectral convergence + log-magnitude L1 averaged over three STFT resolutions (Yamamoto et al.
  2019, https://arxiv.org/abs/1910.11480; Arik et al. 2018, https://arxiv.org/abs/1808.06719).
* :func:`mfcc_distance` -- mean Euclidean distance between MFCC frames (c0 excluded: timbre, not
  loudness).
* :func:`envelope_cosine` -- cosine *similarity* (higher is closer, 1 at best) of the 10 ms RMS
  envelopes: temporal shape, gain-invariant.
* :func:`all_metrics` -- all four in a dict; :func:`median_ci` -- median with a bootstrap
  confidence interval, for summarising a metric over an evaluation set.

Speed: a two-second clip costs ~10 ms in :func:`multiscale_mel_l1` on one CPU thread. When the cores
are shared with other jobs, torch's intra-op threads can make these small calls many times slower;
evaluation workers should then run with ``torch.set_num_threads(1)`` and parallelise over clips.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from vitalmatch.features import FeatureConfig, log_mel

__all__ = [
    "all_metrics",
    "envelope_cosine",
    "magnitude_mel_l1",
    "magnitude_scale_configs",
    "mel_scale_configs",
    "mfcc",
    "mfcc_config",
    "mfcc_distance",
    "median_ci",
    "mrstft",
    "multiscale_mel_l1",
]

#: (window seconds, mel bands) of the three :func:`multiscale_mel_l1` scales.
MEL_SCALES: tuple[tuple[float, int], ...] = ((0.010, 32), (0.025, 64), (0.100, 128))
#: floor added to the mel power before the natural log (as ``FeatureConfig.log_floor``).
MEL_LOG_FLOOR = 1e-5


# ------------------------------------------------------------------------------------------------ inputs


def _prepare(pred, target):
    """Both inputs as float32 torch tensors ``(B, T)`` cropped to a common length.

    Returns:
        ``(pred, target, single)``, ``single`` True when the inputs were ``(T,)``.
    """
    import torch

    p = torch.as_tensor(pred, dtype=torch.float32)
    t = torch.as_tensor(target, dtype=torch.float32)
    if p.ndim != t.ndim or p.ndim not in (1, 2):
        raise ValueError(
            f"pred and target must both be (T,) or both (B, T); got shapes {tuple(p.shape)} and "
            f"{tuple(t.shape)} (mix stereo to mono first)"
        )
    if p.ndim == 2 and p.shape[0] != t.shape[0]:
        raise ValueError(f"batch sizes differ: {p.shape[0]} vs {t.shape[0]}")
    n = min(p.shape[-1], t.shape[-1])
    if n == 0:
        raise ValueError("empty audio (length 0)")
    single = p.ndim == 1
    p = p[..., :n].reshape(-1, n)
    t = t[..., :n].reshape(-1, n)
    return p, t, single


def _finish(values, single: bool):
    """``(B,)`` float32 tensor, or a Python float for single-clip input."""
    import torch

    values = values.to(torch.float32)
    return float(values[0]) if single else values


def _pow2_near(n_samples: float) -> int:
    """The power of two nearest to ``n_samples`` on a log scale (at least 16)."""
    return max(16, 2 ** round(math.log2(n_samples)))


def _log_mel_rows(x, config: FeatureConfig):
    """:func:`vitalmatch.features.log_mel` of mono rows ``(B, T)`` -> ``(B, n_mels, frames)``.

    ``log_mel`` reads a ``(..., 1 or 2, T)`` input as channels and averages them, so a batch of 1
    or 2 clips would be mixed: one clip goes in as ``(T,)``, two as ``(2, 1, T)`` (the mean over a
    singleton axis is exact); larger batches go in as they are (no extra copy).
    """
    if x.shape[0] == 1:
        return log_mel(x[0], config).unsqueeze(0)
    if x.shape[0] == 2:
        return log_mel(x.unsqueeze(-2), config)
    return log_mel(x, config)


#: samples per torch thread in one log-mel call on CPU (see :func:`_row_chunks`).
CPU_CHUNK_SAMPLES = 1 << 17


def _row_chunks(x) -> list[slice]:
    """Row slices of a ``(B, T)`` batch for the spectrogram calls.

    On CPU, batches are cut into chunks of at most ``CPU_CHUNK_SAMPLES`` samples per torch thread
    (at least one clip; ~3 s at 44.1 kHz): the spectrogram intermediates then stay in cache. On one
    thread, 32 two-second clips took ~0.35 s this way against ~0.7-0.9 s in one call. Other devices take
    the whole batch in one call.
    """
    import torch

    n_rows = x.shape[0]
    if x.device.type != "cpu":
        return [slice(0, n_rows)]
    rows = max(1, CPU_CHUNK_SAMPLES * torch.get_num_threads() // x.shape[-1])
    return [slice(i, min(n_rows, i + rows)) for i in range(0, n_rows, rows)]


# ------------------------------------------------------------------------------------------------ mel L1


@lru_cache(maxsize=16)
def mel_scale_configs(sample_rate: int) -> tuple[FeatureConfig, ...]:
    """The three :func:`multiscale_mel_l1` feature settings at ``sample_rate``.

    Windows of about 10 / 25 / 100 ms: the FFT size is the power of two nearest (in log2) to that
    duration in samples, the Hann window spans the whole FFT, hop = FFT / 4, with 32 / 64 / 128 mel
    bands (librosa Slaney filterbank, 20 Hz to Nyquist) and ``log(mel + 1e-5)``. At 44.1 kHz:
    n_fft 512 / 1024 / 4096, hop 128 / 256 / 1024.
    """
    return _scale_configs(sample_rate, MEL_SCALES, _pow2_near, fmin=20.0)


def _scale_configs(sample_rate: int, scales, n_fft_of, fmin: float) -> tuple[FeatureConfig, ...]:
    """One :class:`FeatureConfig` per ``(window seconds, bands)`` of ``scales``: FFT size
    ``n_fft_of(window samples)``, hop a quarter of it."""
    configs = []
    for seconds, n_mels in scales:
        n_fft = int(n_fft_of(seconds * sample_rate))
        configs.append(
            FeatureConfig(
                sample_rate=int(sample_rate),
                n_fft=n_fft,
                hop_length=n_fft // 4,
                n_mels=n_mels,
                fmin=fmin,
                log_floor=MEL_LOG_FLOOR,
            )
        )
    return tuple(configs)


def multiscale_mel_l1(pred, target, sample_rate: int):
    """Multi-scale log-mel L1 distance (the project's main audio metric).

    For each of the three scales of :func:`mel_scale_configs` (~10 / 25 / 100 ms windows, 32 / 64 /
    128 mel bands), the mean absolute difference between ``log(mel_power + 1e-5)`` of ``pred`` and
    ``target`` over all bands and frames; then the mean over the three scales. Natural-log units: a
    gain of ``g`` on a loud signal shifts every loud bin by ``2 ln g`` (half amplitude: ln 4 ~= 1.386).
    Identical signals give exactly 0. Multi-scale spectral distances in this spirit: Engel et al.
    2020 (DDSP, https://arxiv.org/abs/2001.04643); the log-mel itself is
    :func:`vitalmatch.features.log_mel` (torch.stft + librosa mel filterbank).

    Args:
        pred, target: audio ``(T,)`` or ``(B, T)`` float32 (torch or numpy), mono, at
            ``sample_rate``; cropped to the shorter length.
        sample_rate: Hz.

    Returns:
        float for ``(T,)`` input, float32 tensor ``(B,)`` for ``(B, T)``.
    """
    import torch

    p, t, single = _prepare(pred, target)
    total = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
    configs = mel_scale_configs(int(sample_rate))
    for rows in _row_chunks(p):
        for config in configs:
            # separate calls of identical shape: identical inputs give bit-identical log-mels (exact 0)
            diff = (_log_mel_rows(p[rows], config) - _log_mel_rows(t[rows], config)).abs()
            total[rows] += diff.mean(dim=(-2, -1))
    return _finish(total / len(configs), single)


#: (window seconds, mel bands) of the three :func:`magnitude_mel_l1` scales (issue 18's metric).
MAGNITUDE_SCALES: tuple[tuple[float, int], ...] = ((0.010, 32), (0.025, 64), (0.100, 128))


@lru_cache(maxsize=16)
def magnitude_scale_configs(sample_rate: int) -> tuple[FeatureConfig, ...]:
    """The three :func:`magnitude_mel_l1` settings at ``sample_rate``: windows of 10 / 25 / 100 ms
    with ``n_fft = round(window x rate)`` (no power of two: at 44.1 kHz 441 / 1102 / 4410), Hann
    window over the whole FFT, hop ``n_fft // 4``, 32 / 64 / 128 bands of librosa's default Slaney
    filterbank (0 Hz to Nyquist)."""
    return _scale_configs(sample_rate, MAGNITUDE_SCALES, round, fmin=0.0)


def magnitude_mel_l1(pred, target, sample_rate: int):
    """Multi-scale log-mel L1 of *magnitude* mels with a fixed reference level: the metric the
    matching goals are measured in (issue 18).

    Both signals are divided by the target's peak (no level matching of either side); for each of
    the three scales of :func:`magnitude_scale_configs` the mean absolute difference of
    ``log(mel_magnitude + 1e-5)`` over bands and frames; then the mean over the scales. Against
    :func:`multiscale_mel_l1` (power mels, level-matched in ``evaluate``), magnitude with that
    floor counts quiet parts -- reverb and release tails 40-100 dB down -- that the power version
    floors away. A gain ``g`` on a loud signal shifts its bins by ``ln g``. Identical signals give 0.

    Args:
        pred, target: audio ``(T,)`` or ``(B, T)`` float32 (torch or numpy), mono, at
            ``sample_rate``; cropped to the shorter length. A silent target is not normalised.
        sample_rate: Hz.

    Returns:
        float for ``(T,)`` input, float32 tensor ``(B,)`` for ``(B, T)``.
    """
    import torch

    from vitalmatch.features import mel_magnitude

    p, t, single = _prepare(pred, target)
    peak = t.abs().amax(dim=-1, keepdim=True)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    p, t = p / peak, t / peak
    total = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
    configs = magnitude_scale_configs(int(sample_rate))
    for rows in _row_chunks(p):
        for config in configs:
            # rows as (B, 1, T): mel_magnitude would read a (2, T) batch as stereo and mix it
            a = torch.log(mel_magnitude(p[rows].unsqueeze(-2), config) + MEL_LOG_FLOOR)
            b = torch.log(mel_magnitude(t[rows].unsqueeze(-2), config) + MEL_LOG_FLOOR)
            total[rows] += (a - b).abs().mean(dim=(-2, -1))
    return _finish(total / len(configs), single)


# ------------------------------------------------------------------------------------------------ MRSTFT

#: auraloss MultiResolutionSTFTLoss default resolutions (FFT, hop, window), in samples.
MRSTFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


@lru_cache(maxsize=1)
def _mrstft_module():
    from auraloss.freq import MultiResolutionSTFTLoss

    ffts, hops, wins = (list(v) for v in zip(*MRSTFT_RESOLUTIONS, strict=True))
    return MultiResolutionSTFTLoss(fft_sizes=ffts, hop_sizes=hops, win_lengths=wins)


def mrstft(pred, target, sample_rate: int):
    """Multi-resolution STFT distance, ``auraloss.freq.MultiResolutionSTFTLoss`` with its defaults.

    Per resolution (FFT 1024 / 2048 / 512, hop 120 / 240 / 50, Hann window 600 / 1200 / 240 samples):
    spectral convergence ``||Y - X||_F / ||Y||_F`` plus the mean L1 of the log magnitudes (power
    clamped at 1e-8), averaged over the three resolutions (Yamamoto et al. 2019,
    https://arxiv.org/abs/1910.11480; auraloss, Steinmetz & Reiss 2020). auraloss reduces over the
    whole batch (its spectral convergence is one Frobenius norm over all examples), so each example
    is evaluated on its own. The resolutions are fixed in samples, as in auraloss: ``sample_rate``
    is accepted for a uniform signature and not used. Clips shorter than the largest FFT (2048) are
    zero-padded at the end to 2048 samples (auraloss's reflect padding needs it). Identical signals
    give 0 (up to rounding).

    Args:
        pred, target: audio ``(T,)`` or ``(B, T)`` float32 (torch or numpy), mono; cropped to the
            shorter length.
        sample_rate: Hz (unused).

    Returns:
        float for ``(T,)`` input, float32 tensor ``(B,)`` for ``(B, T)``. Requires ``auraloss``
        (the ``torch`` extra).
    """
    import torch

    del sample_rate
    p, t, single = _prepare(pred, target)
    min_len = max(fft for fft, _, _ in MRSTFT_RESOLUTIONS)
    if p.shape[-1] < min_len:
        pad = min_len - p.shape[-1]
        p = torch.nn.functional.pad(p, (0, pad))
        t = torch.nn.functional.pad(t, (0, pad))
    loss = _mrstft_module()
    with torch.no_grad():
        values = torch.stack([loss(p[i].view(1, 1, -1), t[i].view(1, 1, -1)) for i in range(p.shape[0])])
    return _finish(values, single)


# ------------------------------------------------------------------------------------------------ MFCC


@lru_cache(maxsize=16)
def mfcc_config(sample_rate: int) -> FeatureConfig:
    """Log-mel settings under :func:`mfcc`: librosa's MFCC defaults scaled to the sample rate.

    FFT = power of two nearest ~46 ms (2048 at 44.1 kHz), hop = FFT / 4, 128 mel bands, floor 1e-5.
    """
    n_fft = _pow2_near(2048 / 44100 * sample_rate)
    return FeatureConfig(
        sample_rate=int(sample_rate), n_fft=n_fft, hop_length=n_fft // 4, n_mels=128, log_floor=MEL_LOG_FLOOR
    )


@lru_cache(maxsize=16)
def _dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II rows ``(n_mfcc, n_mels)``, as ``scipy.fft.dct(type=2, norm="ortho")``."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


def mfcc(audio, sample_rate: int, n_mfcc: int = 20):
    """MFCCs ``c0 .. c(n_mfcc-1)`` of mono audio, in torch.

    DCT-II (orthonormal) over the mel axis of ``log(mel_power + 1e-5)`` from
    :func:`vitalmatch.features.log_mel` with :func:`mfcc_config` -- the construction of
    ``librosa.feature.mfcc`` (Davis & Mermelstein 1980) except that the log is natural and floored
    at 1e-5 instead of librosa's dB with ``top_db=80``, so coefficients are ``ln 10 / 10`` times
    librosa's where no clipping happens.

    Args:
        audio: ``(T,)`` or ``(B, T)`` float32 (torch or numpy), mono.
        sample_rate: Hz.
        n_mfcc: coefficients kept, c0 included (1..128).

    Returns:
        float32 tensor ``(n_mfcc, frames)`` or ``(B, n_mfcc, frames)``, ``frames = 1 + T // hop``.
    """
    import torch

    x = torch.as_tensor(audio, dtype=torch.float32)
    config = mfcc_config(int(sample_rate))
    if not 1 <= n_mfcc <= config.n_mels:
        raise ValueError(f"n_mfcc must be in 1..{config.n_mels}, got {n_mfcc}")
    single = x.ndim == 1
    mel = _log_mel_rows(x.reshape(-1, x.shape[-1]), config)
    dct = torch.from_numpy(_dct_matrix(n_mfcc, config.n_mels)).to(mel.device)
    out = torch.matmul(dct, mel)
    return out[0] if single else out


def mfcc_distance(pred, target, sample_rate: int, n_mfcc: int = 20):
    """Mean Euclidean distance between the MFCC frames of ``pred`` and ``target``.

    MFCCs from :func:`mfcc` (c0 .. c(n_mfcc-1), natural-log mel, see there); **c0 is excluded**, so
    the distance compares spectral envelope (timbre) over time rather than level (c0 is the frame's
    mean log energy up to a factor). It is not fully gain-invariant: bands near the 1e-5 log floor
    do not follow a gain, so a +6 dB copy of a tone is still a few units away. Per frame
    ``||c_pred - c_target||_2`` over c1 .. c(n_mfcc-1), then the mean over frames. Identical signals
    give exactly 0. Mel-cepstral distances of this kind: Kubichek 1993 (mel-cepstral distortion,
    which also drops c0).

    Args:
        pred, target: audio ``(T,)`` or ``(B, T)`` float32 (torch or numpy), mono; cropped to the
            shorter length.
        sample_rate: Hz.
        n_mfcc: as in :func:`mfcc` (at least 2); ``n_mfcc - 1`` coefficients enter the distance.

    Returns:
        float for ``(T,)`` input, float32 tensor ``(B,)`` for ``(B, T)``.
    """
    if n_mfcc < 2:
        raise ValueError(f"n_mfcc must be at least 2 (c0 is excluded), got {n_mfcc}")
    import torch

    p, t, single = _prepare(pred, target)
    dist = []
    for rows in _row_chunks(p):
        cp = mfcc(p[rows], sample_rate, n_mfcc)[:, 1:]
        ct = mfcc(t[rows], sample_rate, n_mfcc)[:, 1:]
        dist.append((cp - ct).square().sum(dim=-2).sqrt().mean(dim=-1))
    return _finish(torch.cat(dist), single)


# ------------------------------------------------------------------------------------------------ envelope


def _rms_envelope(x, frame: int):
    """RMS over non-overlapping frames of ``frame`` samples, float64 ``(B, frames)``.

    The last partial frame is zero-padded to a whole frame.
    """
    import torch

    x = x.to(torch.float64)
    pad = (-x.shape[-1]) % frame
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(x.shape[0], -1, frame).square().mean(dim=-1).sqrt()


def envelope_cosine(pred, target, sample_rate: int, frame_ms: float = 10.0):
    """Cosine similarity of the RMS envelopes of ``pred`` and ``target`` (higher is closer).

    Envelope: RMS over non-overlapping frames of ``round(frame_ms * sample_rate / 1000)`` samples
    (the last partial frame zero-padded), in float64. Similarity ``<e_p, e_t> / (|e_p| |e_t|)`` in
    ``[0, 1]`` (envelopes are non-negative): 1 for identical signals and for any positive gain of
    the same signal (**gain-invariant**: it measures temporal shape only -- pair it with a loudness
    -sensitive distance such as :func:`multiscale_mel_l1`); lower for different shapes (onsets,
    decays, shifts). Silence: 1 if both envelopes are all zero, 0 if exactly one is.

    Args:
        pred, target: audio ``(T,)`` or ``(B, T)`` float32 (torch or numpy), mono; cropped to the
            shorter length.
        sample_rate: Hz.
        frame_ms: frame length in milliseconds.

    Returns:
        float for ``(T,)`` input, float32 tensor ``(B,)`` for ``(B, T)``.
    """
    import torch

    p, t, single = _prepare(pred, target)
    frame = max(1, round(frame_ms * sample_rate / 1000.0))
    ep, et = _rms_envelope(p, frame), _rms_envelope(t, frame)
    sp, st = ep.square().sum(-1), et.square().sum(-1)
    dot = (ep * et).sum(-1)
    cos = (dot / (sp * st).sqrt()).clamp(0.0, 1.0)  # sqrt(s * s) == s exactly: identical -> 1
    silent_p, silent_t = sp == 0, st == 0
    cos = torch.where(silent_p & silent_t, torch.ones_like(cos), cos)
    cos = torch.where(silent_p ^ silent_t, torch.zeros_like(cos), cos)
    return _finish(cos, single)


# ------------------------------------------------------------------------------------------------ summary


def all_metrics(pred, target, sample_rate: int) -> dict:
    """All distances with their defaults.

    Returns:
        ``{"mel_l1": multiscale_mel_l1, "mrstft": mrstft, "mfcc": mfcc_distance, "envelope_cos":
        envelope_cosine}``, each a float for ``(T,)`` input or a float32 tensor ``(B,)`` for
        ``(B, T)``.
    """
    import torch

    # convert and crop once; the functions re-check cheaply
    p, t, single = _prepare(pred, target)
    if single:
        p, t = p[0], t[0]
    with torch.no_grad():
        return {
            "mel_l1": multiscale_mel_l1(p, t, sample_rate),
            "mrstft": mrstft(p, t, sample_rate),
            "mfcc": mfcc_distance(p, t, sample_rate),
            "envelope_cos": envelope_cosine(p, t, sample_rate),
        }


def median_ci(
    values, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Median with a bootstrap percentile confidence interval (Efron & Tibshirani 1993, ch. 13).

    Resamples the values with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``, so
    the result is deterministic for a given seed), takes each resample's median, and returns the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those medians.

    Args:
        values: 1-D array-like of numbers; NaNs are ignored.
        confidence: interval coverage in (0, 1).
        n_boot: bootstrap resamples (>= 1).
        seed: seed of the resampling.

    Returns:
        ``(median, low, high)`` as floats; ``(median, nan, nan)`` with fewer than 2 non-NaN values
        (``(nan, nan, nan)`` with none).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    median = float(np.median(x))
    if x.size < 2:
        return (median, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    medians = np.empty(n_boot)
    chunk = max(1, 4_000_000 // x.size)  # bound memory to ~32 MB of indices per chunk
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        medians[start:stop] = np.median(x[idx], axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(medians, [alpha / 2, 1 - alpha / 2])
    return (median, float(low), float(high))
