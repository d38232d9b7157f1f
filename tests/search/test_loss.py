"""Search loss: the metric (fine), its time-pooled stand-in (coarse), and the output gain that fits best."""

from __future__ import annotations

import numpy as np
import pytest

from vitalmatch.metrics import magnitude_mel_l1
from vitalmatch.search.loss import SearchTarget, best_gain, search_features, search_loss

SR = 44100


def test_search_loss_is_zero_for_identical_audio_and_grows_with_gain():
    t = np.linspace(0, 0.5, SR // 2, dtype=np.float32)
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    fx = search_features(x, SR)
    assert search_loss(fx, fx) == 0.0
    half = search_loss(search_features(0.5 * x, SR), fx, envelope_weight=0.0)
    quarter = search_loss(search_features(0.25 * x, SR), fx, envelope_weight=0.0)
    assert 0.1 < half < quarter  # loud bins shift by ln 2 per halving (quiet ones stay at the floor)
    assert search_loss(search_features(0.5 * x, SR), fx, envelope_weight=1.0) > half


def test_best_gain_finds_the_level_and_never_loses():
    t = np.linspace(0, 0.5, SR // 2, dtype=np.float32)
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-3 * t)).astype(np.float32)
    fx = search_features(x, SR)
    gain, loss = best_gain(search_features(0.5 * x, SR), fx)
    assert gain == pytest.approx(20 * np.log10(2), abs=0.1) and loss < 0.02
    assert search_loss(search_features(0.5 * x, SR), fx, gain_db=gain) == pytest.approx(loss)
    capped, capped_loss = best_gain(search_features(0.5 * x, SR), fx, hi_db=3.0)  # volume at its top
    assert 2.9 <= capped <= 3.0 and loss < capped_loss < search_loss(search_features(0.5 * x, SR), fx)
    other = search_features(np.sign(x) * 0.01, SR)  # another timbre: whatever the gain, not worse than 0 dB
    assert best_gain(other, fx)[1] <= search_loss(other, fx)
    assert best_gain(search_features(np.zeros_like(x), SR), fx)[0] == 0.0  # silence: nothing to scale


def _beating(detune_hz: float, seconds: float = 1.0) -> np.ndarray:
    """Two saw-like partial stacks ``detune_hz`` apart: the beating that unison detune makes."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(
        np.sin(2 * np.pi * k * 220 * t) / k + np.sin(2 * np.pi * k * (220 + detune_hz) * t) / k
        for k in range(1, 8)
    )
    return (0.1 * x).astype(np.float32)


def test_the_fine_objective_is_the_metric():
    """At 0 dB without the envelope term, the fine loss equals magnitude_mel_l1 (both divided by
    the target's peak)."""
    x, y = _beating(1.0), 0.7 * _beating(1.6)
    peak = float(np.abs(x).max())
    fine = search_loss(search_features(y, SR, "fine", peak), search_features(x, SR, "fine", peak), 0.0)
    # 1e-3: numpy's and torch's float32 FFTs round differently in these tones' deepest bins (2.7e-4
    # here; test_the_numpy_loss_agrees_with_the_torch_version); in float64 the two agree to 1e-8
    assert fine == pytest.approx(magnitude_mel_l1(y, x, SR), rel=1e-3)
    unnormalised = search_loss(search_features(y, SR), search_features(x, SR), 0.0)
    assert unnormalised != pytest.approx(fine, rel=1e-3)  # the peak matters: the floor is absolute


def test_the_coarse_objective_is_smooth_along_unison_detune(registry, catalog):
    """Along Vital's unison detune the metric is a needle: 0 at the target, a plateau 0.5% away
    (the beating lands in other frames). The coarse objective (the metric plus clip-averaged
    spectra) falls towards the target from further out, and ranks the nearer detune closer."""
    from vitalmatch.synth.params import reproducibility_pins
    from vitalmatch.synth.render import RenderConfig, RenderEngine

    engine = RenderEngine(
        registry,
        [e.table for e in catalog],
        RenderConfig(notes=(60,), note_duration_s=1.0, render_duration_s=2.0),
    )
    cont, cat = registry.from_raw({**reproducibility_pins(), "osc_1_unison_voices": 4})
    j = registry.locate("osc_1_unison_detune")[1]
    detunes = float(cont[j]) + np.linspace(-0.05, 0.05, 11)

    def render(u: float) -> np.ndarray:
        c = cont.copy()
        c[j] = u
        return engine.render(c, cat)[0].mean(axis=0)

    target = render(float(cont[j]))
    peak = float(np.abs(target).max())
    renders = [render(u) for u in detunes]

    def curve(objective: str) -> np.ndarray:
        ft = search_features(target, SR, objective, peak)
        return np.array([search_loss(search_features(r, SR, objective, peak), ft, 0.0) for r in renders])

    fine, coarse = curve("fine"), curve("coarse")
    assert fine[5] == 0.0 and coarse[5] == 0.0  # the target's own detune (fork renders are exact)
    # a funnel: 1% of the range away, the coarse loss has come down further from its value 5% away
    for near, far in ((4, 0), (6, 10)):
        assert coarse[near] / coarse[far] < fine[near] / fine[far] - 0.05, (coarse, fine)
    assert coarse[0] > coarse[2] > coarse[4] and coarse[10] > coarse[8] > coarse[6]


def test_a_search_target_refuses_an_unknown_objective():
    with pytest.raises(ValueError, match="objective"):
        SearchTarget("k", np.zeros(100, np.float32), SR, 60, 0.5, objective="medium")


# ------------------------------------------------------------------- the torch version it replaced
def _torch_mel64(x, config):
    """features.mel_magnitude in float64 (it computes in float32)."""
    import torch

    from vitalmatch.features import _mel_basis

    window = torch.hann_window(config.n_fft, dtype=torch.float64)
    spec = torch.stft(
        x,
        config.n_fft,
        config.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    basis = torch.from_numpy(_mel_basis(config.sample_rate, config.n_fft, config.n_mels, config.fmin, None))
    return basis.double() @ spec.abs()


def _torch_features(audio: np.ndarray, sample_rate: int, objective: str, peak: float, double=False) -> list:
    """The search features as computed with torch before the workers dropped it (reference; in
    float64 with ``double``)."""
    import torch

    from vitalmatch.features import mel_magnitude
    from vitalmatch.metrics import magnitude_scale_configs

    dtype = torch.float64 if double else torch.float32
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1)).to(dtype) / float(peak)
    frame = round(0.010 * sample_rate)
    n = (len(x) // frame) * frame
    env = x[:n].reshape(-1, frame).square().mean(dim=1) if n else torch.zeros(1, dtype=dtype)
    mel = _torch_mel64 if double else mel_magnitude
    feats = [(mel(x, c), 1) for c in magnitude_scale_configs(sample_rate)]
    if objective == "coarse":
        feats += [(m.mean(dim=-1, keepdim=True), 1) for m, _ in feats]
        if env.shape[-1] < 5:
            env = env.mean(dim=-1, keepdim=True)
        else:
            env = torch.nn.functional.avg_pool1d(env.reshape(1, 1, -1), 5, 5, ceil_mode=True).reshape(-1)
    feats.append((env, 2))
    return feats


def _torch_loss(candidate: list, target: list, weight: float, gain_db: float = 0.0) -> float:
    import torch

    g = 10.0 ** (gain_db / 20.0)
    logs_c = [torch.log((g**e) * f + 1e-5) for f, e in candidate]
    logs_t = [torch.log(f + 1e-5) for f, _ in target]
    mel = sum(float((c - t).abs().mean()) for c, t in zip(logs_c[:-1], logs_t[:-1], strict=True))
    env = float((logs_c[-1] - logs_t[-1]).abs().mean()) if weight else 0.0
    return mel / (len(logs_c) - 1) + weight * env


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(int(0.25 * SR)) / SR
    decay = (0.4 * np.sin(2 * np.pi * 330 * t) * np.exp(-8 * t)).astype(np.float32)
    return {
        "beating": _beating(3.0, seconds=0.25),
        "decay": decay,
        "noise burst": (0.2 * rng.standard_normal(len(t)) * (t < 0.08)).astype(np.float32),
        "silence": np.zeros(len(t), np.float32),
    }


@pytest.mark.parametrize("objective", ["fine", "coarse"])
def test_the_numpy_loss_agrees_with_the_torch_version(objective):
    """The loss without torch (numpy + scipy.fft) is the torch version's: on tones, noise, silence
    (as candidate and as target) and a clip shorter than the largest window (100 ms = 4410
    samples), with and without the envelope term and a gain.

    In float64 both give the same values (to 1e-8: the same definition). In float32 (what the
    workers run) neither is exact: bins 100 dB below a spectrum's peak, where the 1e-5 floor of the
    log sits, carry each FFT's rounding, up to 0.15 relative on the loss (two beating tones, coarse
    objective); the numpy loss must be no further from the exact value than torch's was (+1e-5)
    and, where torch's own error is below 1e-6, agree with it to 1e-5.
    """
    clips = _signals()
    cases = [
        ("beating", "decay"),
        ("decay", "noise burst"),
        ("noise burst", "silence"),
        ("silence", "beating"),
        ("short", "short"),
    ]
    short = _beating(1.0, seconds=0.06)  # 2646 samples
    for cand_name, target_name in cases:
        if cand_name == "short":
            cand, target = 0.5 * short, short
        else:
            cand, target = clips[cand_name], clips[target_name]
        peak = float(np.abs(target).max()) or 1.0
        mine = [search_features(x, SR, objective, peak) for x in (cand, target)]
        mine64 = [search_features(x, SR, objective, peak, np.float64) for x in (cand, target)]
        ref = [_torch_features(x, SR, objective, peak) for x in (cand, target)]
        ref64 = [_torch_features(x, SR, objective, peak, double=True) for x in (cand, target)]
        assert [f.shape for f, _ in mine[0]] == [tuple(f.shape) for f, _ in ref[0]]
        assert all(f.dtype == np.float32 for f, _ in mine[0])
        for weight, gain_db in ((0.0, 0.0), (0.5, 0.0), (0.5, 4.5)):
            case = (cand_name, target_name, weight, gain_db)
            exact = _torch_loss(*ref64, weight, gain_db)
            assert search_loss(*mine64, weight, gain_db) == pytest.approx(exact, rel=1e-8), case
            torch32, numpy32 = _torch_loss(*ref, weight, gain_db), search_loss(*mine, weight, gain_db)
            assert abs(numpy32 - exact) <= abs(torch32 - exact) + 1e-5 * exact, case
            if abs(torch32 - exact) < 1e-6 * exact:
                assert numpy32 == pytest.approx(torch32, rel=1e-5), case
        gain, loss = best_gain(*mine64, 0.5)
        assert loss == pytest.approx(_torch_loss(*ref64, 0.5, gain), rel=1e-8)


def test_the_numpy_spectra_match_librosa_and_torch():
    """The filterbank is librosa's (Slaney) and the mel magnitudes those of features.mel_magnitude,
    at each scale of the metric."""
    import librosa
    import torch

    from vitalmatch.features import mel_magnitude as torch_mel
    from vitalmatch.metrics import magnitude_scale_configs
    from vitalmatch.search import spectra

    x = _beating(1.0, seconds=0.5)
    for c in magnitude_scale_configs(SR):
        ref = librosa.filters.mel(sr=SR, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax)
        basis = spectra.mel_basis(SR, c.n_fft, c.n_mels, c.fmin, c.fmax)
        np.testing.assert_allclose(basis, ref, rtol=1e-6, atol=1e-9)
        mine = spectra.mel_magnitude(x, SR, c.n_fft, c.hop_length, c.n_mels, c.fmin, c.fmax)
        want = torch_mel(torch.from_numpy(x), c).numpy()
        assert mine.shape == want.shape and mine.dtype == np.float32
        np.testing.assert_allclose(mine, want, rtol=0, atol=1e-6 * float(want.max()))


def test_the_coarse_pooling_averages_partial_blocks_like_avg_pool1d():
    import torch

    from vitalmatch.search.loss import _pool

    x = np.random.default_rng(0).random(23).astype(np.float32)  # 4 blocks of 5 and one of 3
    want = torch.nn.functional.avg_pool1d(torch.from_numpy(x)[None, None], 5, 5, ceil_mode=True)[0, 0]
    np.testing.assert_allclose(_pool(x, 0.01, 0.05), want.numpy(), rtol=1e-6)
    assert _pool(x[:3], 0.01, 0.05) == pytest.approx([x[:3].mean()])


def test_a_search_worker_never_imports_torch(registry, catalog):
    """Start-up of every search worker paid ~3 s for torch's and librosa's imports; after
    init_worker, an evaluation (both objectives, level matched) and a final render, a spawned
    worker has imported neither."""
    from tests.search import worker_probe
    from vitalmatch.search import evaluate_batch, final_task, init_worker
    from vitalmatch.synth.params import reproducibility_pins
    from vitalmatch.synth.pool import WorkerPool

    cont, cat = registry.from_raw(reproducibility_pins())
    target = _beating(1.0, seconds=0.3)
    tables = [e.table for e in catalog]
    with WorkerPool(1, initializer=init_worker, initargs=(registry.to_json(), tables, SR)) as pool:
        for objective in ("coarse", "fine"):
            losses, _, failures = evaluate_batch(
                pool, [(cont, cat)], SearchTarget("t", target, SR, 60, 0.2, objective=objective)
            )
            assert failures == 0 and np.isfinite(losses).all()
        [final] = pool.map(final_task, [(cont, cat, 60, 0.2, 0.3, SR)])
        assert final.ok and final.value[0].shape == (2, int(0.3 * SR))
        [probe] = pool.map(worker_probe.loaded, [("torch", "librosa", "vitalmatch.search.worker")])
    assert probe.ok and probe.value == ["vitalmatch.search.worker"]
