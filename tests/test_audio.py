"""Audio input: real files in every common format, bad files, and estimates on real synth notes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from vitalmatch import audio
from vitalmatch.audio import (
    AudioError,
    estimate_note_length,
    estimate_pitch,
    fit_length,
    load_audio,
    prepare,
    trim_silence,
)

SR = 44100
HAS_MP3 = "MP3" in sf.available_formats() and "MPEG_LAYER_III" in sf.available_subtypes("MP3")


def _sine(f0: float = 440.0, sr: int = SR, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f0 * np.arange(round(sr * seconds)) / sr)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the largest FFT bin (Hann window, 8x zero padding)."""
    n = 8 * len(x)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    return float(np.argmax(spectrum) * sr / n)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.fixture(scope="module")
def synth():
    import vita

    s = vita.Synth()
    s.set_sample_rate(float(SR))
    s.get_controls()["osc_1_random_phase"].set(0.0)
    return s


def _note(synth, note: int, note_s: float = 1.0, render_s: float = 2.0) -> np.ndarray:
    """Mono vita render of the init preset (sustain 1, release ~80 ms to -60 dB)."""
    return synth.render(note, 0.7, note_s, render_s).mean(axis=0)


# ------------------------------------------------------------------------------------- formats
FORMATS = [
    ("wav", "WAV", "PCM_16", 8000, 1),
    ("wav", "WAV", "PCM_24", 22050, 2),
    ("wav", "WAV", "FLOAT", 48000, 6),
    ("wav", "WAV", "PCM_16", 96000, 2),
    ("flac", "FLAC", "PCM_16", 96000, 1),
    ("flac", "FLAC", "PCM_24", 8000, 6),
    ("ogg", "OGG", "VORBIS", 48000, 2),
    ("ogg", "OGG", "VORBIS", 22050, 1),
    pytest.param(
        "mp3",
        "MP3",
        "MPEG_LAYER_III",
        22050,
        2,
        marks=pytest.mark.skipif(not HAS_MP3, reason="this libsndfile cannot write MP3 (needs >= 1.1)"),
    ),
    pytest.param(
        "mp3",
        "MP3",
        "MPEG_LAYER_III",
        48000,
        1,
        marks=pytest.mark.skipif(not HAS_MP3, reason="this libsndfile cannot write MP3 (needs >= 1.1)"),
    ),
]


@pytest.mark.parametrize(("ext", "fmt", "subtype", "rate", "channels"), FORMATS)
def test_a_sine_survives_every_format_rate_and_layout(tmp_path, ext, fmt, subtype, rate, channels):
    seconds = 1.0
    tone = _sine(sr=rate, seconds=seconds)
    path = tmp_path / f"tone_{rate}_{channels}.{ext}"
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), rate, format=fmt, subtype=subtype)

    clip = load_audio(path)
    lossy = fmt in ("OGG", "MP3")
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert (clip.sample_rate, clip.source_rate, clip.channels) == (SR, rate, channels)
    assert clip.source_seconds == pytest.approx(seconds, abs=1e-3)
    assert abs(len(clip.samples) - round(seconds * SR)) <= 2
    assert _peak_hz(clip.samples, SR) == pytest.approx(440.0, abs=2.0)
    core = clip.samples[SR // 10 : -SR // 10]  # away from codec edge effects
    assert _rms(core) == pytest.approx(0.5 / np.sqrt(2), rel=0.05 if lossy else 0.005)


def test_length_scales_with_the_rate(tmp_path):
    for rate, seconds in [(8000, 0.37), (22050, 1.3), (96000, 0.25)]:
        path = tmp_path / f"len_{rate}.wav"
        sf.write(path, _sine(sr=rate, seconds=seconds), rate)
        for out_rate in (SR, 16000):
            clip = load_audio(path, sample_rate=out_rate)
            assert abs(len(clip.samples) - round(seconds * out_rate)) <= 1
            assert clip.seconds == pytest.approx(seconds, abs=1e-3)


def test_channels_are_averaged(tmp_path):
    tone = _sine(sr=22050)
    half = tmp_path / "left_only.wav"
    sf.write(half, np.stack([tone, np.zeros_like(tone)], axis=1), 22050, subtype="FLOAT")
    assert _rms(load_audio(half, sample_rate=22050).samples) == pytest.approx(0.5 * _rms(tone), rel=1e-3)

    gains = np.array([1.0, 0.0, 0.5, -0.5, 0.25, 0.75], np.float32)  # mean 1/3
    six = tmp_path / "six.flac"
    sf.write(six, tone[:, None] * gains[None, :], 22050, subtype="PCM_24")
    clip = load_audio(six, sample_rate=22050)
    np.testing.assert_allclose(clip.samples, tone / 3, atol=1e-5)

    cancel = tmp_path / "antiphase.wav"
    sf.write(cancel, np.stack([tone, -tone], axis=1), 22050, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"silent \(peak -9\d\.\d dBFS, below -60 dBFS\)"):
        load_audio(cancel)  # 16-bit rounding leaves at most half an LSB (-96 dBFS)


def test_long_files_are_read_only_up_to_max_seconds(tmp_path):
    rate = 8000
    x = np.zeros(90 * rate, np.float32)
    x[2 * rate : 72 * rate] = _sine(sr=rate, seconds=70.0)
    x[75 * rate :] = np.nan  # decoding this far would raise AudioError
    path = tmp_path / "long.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    clip = load_audio(path, max_seconds=60.0)
    assert clip.source_seconds == pytest.approx(90.0)
    # 2 s of leading silence are kept, then 60 s from the first sound
    assert clip.seconds == pytest.approx(62.0, abs=2e-3)
    assert len(clip.samples) == pytest.approx(62 * SR, abs=0.002 * SR)

    silent = np.zeros(90 * rate, np.float32)
    silent[20 * rate :] = np.nan
    path = tmp_path / "long_silence.wav"
    sf.write(path, silent, rate, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"silent \(peak -inf dBFS in the first 10 s, below -60 dBFS\)"):
        load_audio(path, max_seconds=10.0)


def test_truncated_data_keeps_what_is_there(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, _sine(sr=22050, seconds=1.0), 22050, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * 11025])  # header says 1 s, half the data follows
    clip = load_audio(path)
    assert clip.seconds == pytest.approx(0.5, abs=1e-3)
    assert _peak_hz(clip.samples, SR) == pytest.approx(440.0, abs=2.0)


def test_audioread_fallback(tmp_path, monkeypatch):
    """Formats libsndfile cannot open go to audioread (here: its standard-library WAV reader)."""

    def refuse(*args, **kwargs):
        raise audio._Undecodable("pretend libsndfile failed")

    monkeypatch.setattr(audio, "_read_soundfile", refuse)
    path = tmp_path / "tone.wav"
    sf.write(path, np.stack([_sine(sr=22050), np.zeros(22050, np.float32)], axis=1), 22050, subtype="PCM_16")
    clip = load_audio(path)
    assert (clip.source_rate, clip.channels) == (22050, 2)
    assert clip.source_seconds == pytest.approx(1.0, abs=1e-3)
    assert _peak_hz(clip.samples, SR) == pytest.approx(440.0, abs=2.0)
    assert _rms(clip.samples) == pytest.approx(0.25 / np.sqrt(2), rel=0.01)

    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 50)
    with pytest.raises(AudioError, match=r"not a readable audio file \(pretend libsndfile failed\)$"):
        load_audio(text)


# ------------------------------------------------------------------------------------- bad input
def _write_tone(path, seconds=1.0, amp=0.5, subtype="PCM_16"):
    sf.write(path, _sine(seconds=seconds, amp=amp), SR, subtype=subtype)
    return path


def _bad_files(tmp_path):
    """name -> (path, expected message after ``"{path}: "``, as a regex)."""
    cases = {}
    cases["missing"] = (tmp_path / "nope.wav", r"no such file")
    (tmp_path / "folder.wav").mkdir()
    cases["directory"] = (tmp_path / "folder.wav", r"is a directory, not an audio file")
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.wav", r"empty file \(0 bytes\)")
    (tmp_path / "text.wav").write_text("this is a text file, not a WAV\n" * 20)
    cases["text"] = (tmp_path / "text.wav", r"not a readable audio file \(Format not recognised\)")
    good = _write_tone(tmp_path / "good.wav").read_bytes()
    (tmp_path / "header_cut.wav").write_bytes(good[:20])
    cases["header_cut"] = (tmp_path / "header_cut.wav", r"not a readable audio file \(.*fmt.*\)")
    (tmp_path / "noise.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    cases["random_mp3"] = (
        tmp_path / "noise.mp3",
        r"not a readable audio file \(unrecognised or corrupt data\)",
    )
    (tmp_path / "header_only.wav").write_bytes(good[:44])
    cases["no_samples"] = (tmp_path / "header_only.wav", r"no audio samples")
    sf.write(tmp_path / "zeros.wav", np.zeros(SR, np.float32), SR)
    cases["zeros"] = (tmp_path / "zeros.wav", r"silent \(peak -inf dBFS, below -60 dBFS\)")
    _write_tone(tmp_path / "quiet.wav", amp=10 ** (-70 / 20), subtype="FLOAT")
    cases["quiet"] = (tmp_path / "quiet.wav", r"silent \(peak -70\.0 dBFS, below -60 dBFS\)")
    nan = _sine()
    nan[1000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, SR, subtype="FLOAT")
    cases["nan"] = (tmp_path / "nan.wav", r"contains NaN or infinite samples")
    inf = _sine()
    inf[-10] = -np.inf
    sf.write(tmp_path / "inf.wav", inf, SR, subtype="DOUBLE")
    cases["inf"] = (tmp_path / "inf.wav", r"contains NaN or infinite samples")
    _write_tone(tmp_path / "blip.wav", seconds=0.02)
    cases["short_file"] = (tmp_path / "blip.wav", r"too short \(20 ms of sound after trimming silence")
    blip = np.zeros(SR, np.float32)
    blip[SR // 2 : SR // 2 + round(0.03 * SR)] = _sine(seconds=0.03)
    sf.write(tmp_path / "silence_blip.wav", blip, SR)
    cases["short_sound"] = (
        tmp_path / "silence_blip.wav",
        r"too short \(30 ms of sound after trimming silence",
    )
    return cases


BAD = [
    "missing",
    "directory",
    "empty",
    "text",
    "header_cut",
    "random_mp3",
    "no_samples",
    "zeros",
    "quiet",
    "nan",
    "inf",
    "short_file",
    "short_sound",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_gives_one_line_audio_error(tmp_path, case):
    path, expected = _bad_files(tmp_path)[case]
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert re.fullmatch(rf"{re.escape(str(path))}: {expected}.*", message), message
    with pytest.raises(AudioError):
        prepare(path)


def test_enough_sound_is_accepted(tmp_path):
    clip = load_audio(_write_tone(tmp_path / "sixty_ms.wav", seconds=0.06))
    assert clip.seconds == pytest.approx(0.06, abs=1e-3)
    load_audio(_write_tone(tmp_path / "minus_55.wav", amp=10 ** (-55 / 20), subtype="FLOAT"))


def test_bad_arguments_are_plain_value_errors(tmp_path):
    path = _write_tone(tmp_path / "ok.wav")
    for kwargs in ({"sample_rate": 0}, {"sample_rate": 44100.5}, {"max_seconds": 0.0}):
        with pytest.raises(ValueError) as info:
            load_audio(path, **kwargs)
        assert not isinstance(info.value, AudioError)


# ------------------------------------------------------------------------------------- trimming
def test_leading_silence_is_trimmed():
    x = np.concatenate([np.zeros(SR // 2, np.float32), _sine()])
    trimmed, offset = trim_silence(x, SR)
    assert offset / SR == pytest.approx(0.5, abs=0.010)
    assert offset <= SR // 2  # the onset itself is kept
    assert len(trimmed) == len(x) - offset
    nothing, offset = trim_silence(np.zeros(100, np.float32), SR)
    assert (len(nothing), offset) == (100, 0)


def test_a_loud_click_does_not_turn_the_sound_into_silence():
    """A sample-peak reference (1.0) would put this -50.5 dBFS tone under a -50 dB threshold."""
    x = np.zeros(2 * SR, np.float32)
    x[SR // 2 :] = _sine(seconds=1.5, amp=10 ** (-50.5 / 20))
    x[int(0.9 * SR)] = 1.0
    _, offset = trim_silence(x, SR)
    assert offset / SR == pytest.approx(0.5, abs=0.010)


def test_fit_length():
    x = np.arange(10, dtype=np.float64)
    cropped, padded = fit_length(x, 4), fit_length(x, 13)
    assert cropped.dtype == padded.dtype == np.float32
    np.testing.assert_array_equal(cropped, [0, 1, 2, 3])
    np.testing.assert_array_equal(padded, [*range(10), 0, 0, 0])
    assert fit_length(x, 0).shape == (0,)


# ---------------------------------------------------------------------------------------- pitch
@pytest.mark.parametrize("note", [36, 48, 60, 72, 84])
def test_pitch_of_synth_notes(synth, note):
    pitch = estimate_pitch(_note(synth, note), SR)
    assert pitch is not None
    assert pitch.midi == note
    assert abs(pitch.cents_off) < 10
    assert pitch.hz == pytest.approx(440 * 2 ** ((note - 69) / 12), rel=0.006)
    assert 0.3 < pitch.confidence <= 1.0


def test_pitch_of_a_sine_after_silence():
    x = np.concatenate([np.zeros(SR // 2, np.float32), _sine(261.63, seconds=2.0)])
    pitch = estimate_pitch(x, SR)
    assert pitch is not None and pitch.midi == 60
    assert abs(pitch.cents_off) < 6
    detuned = estimate_pitch(_sine(261.63 * 2 ** (30 / 1200), seconds=1.0), SR)
    assert detuned.midi == 60 and detuned.cents_off == pytest.approx(30, abs=6)


def test_noise_has_no_pitch():
    rng = np.random.default_rng(0)
    assert estimate_pitch((0.3 * rng.standard_normal(2 * SR)).astype(np.float32), SR) is None
    t = np.arange(SR) / SR
    snare = (0.5 * rng.standard_normal(SR) * np.exp(-30 * t)).astype(np.float32)
    assert estimate_pitch(snare, SR) is None


# ---------------------------------------------------------------------------------- note length
@pytest.mark.parametrize("note_s", [0.3, 0.8, 1.5])
def test_note_length_of_sustained_synth_notes(synth, note_s):
    x = _note(synth, 60, note_s, 2.5)
    assert estimate_note_length(x, SR) == pytest.approx(note_s, abs=0.05)
    delayed = np.concatenate([np.zeros(SR // 4, np.float32), x])  # measured from the onset
    assert estimate_note_length(delayed, SR) == pytest.approx(note_s, abs=0.05)


def test_note_length_with_decay_sustain_and_slow_release():
    import vita

    s = vita.Synth()
    s.set_sample_rate(float(SR))
    controls = s.get_controls()
    controls["osc_1_random_phase"].set(0.0)
    controls["env_1_decay"].set(0.5)  # falls to the sustain level (-20 dB) ...
    controls["env_1_sustain"].set(0.3)
    controls["env_1_release"].set(0.9)  # ... and releases over ~0.5 s
    x = s.render(60, 0.7, 0.8, 2.5).mean(axis=0)
    assert estimate_note_length(x, SR) == pytest.approx(0.8, abs=0.1)


def test_note_length_of_a_decay_without_plateau():
    t = np.arange(round(1.5 * SR)) / SR
    tau = 0.6 / np.log(100.0)  # amplitude exp(-t / tau) is 40 dB down at 0.6 s
    x = (0.8 * np.sin(2 * np.pi * 440 * t) * np.exp(-t / tau)).astype(np.float32)
    assert estimate_note_length(x, SR) == pytest.approx(0.6, abs=0.05)
    # the -40 dB point lies beyond the clip: capped to the clip length
    assert estimate_note_length(x[: SR // 2], SR) == pytest.approx(0.5, abs=0.01)


def test_note_held_past_the_end_lasts_the_whole_clip():
    assert estimate_note_length(_sine(seconds=1.2), SR) == pytest.approx(1.2, abs=0.01)
    assert estimate_note_length(np.zeros(SR, np.float32), SR) == 0.0


# --------------------------------------------------------------------------------------- prepare
def test_prepare_a_synth_note_file(synth, tmp_path):
    import soxr

    x = np.concatenate([np.zeros(round(0.3 * SR), np.float32), _note(synth, 48, 0.8, 2.0)])
    stereo48k = soxr.resample(np.stack([x, 0.5 * x], axis=1), SR, 48000)
    path = tmp_path / "note48.flac"
    sf.write(path, stereo48k, 48000, subtype="PCM_24")

    prepared = prepare(path, sample_rate=SR, n_samples=2 * SR)
    assert prepared.samples.shape == (2 * SR,) and prepared.samples.dtype == np.float32
    assert (prepared.midi_note, prepared.midi_is_default) == (48, False)
    assert prepared.pitch is not None and prepared.pitch.midi == 48
    assert prepared.offset_seconds == pytest.approx(0.3, abs=0.010)
    assert prepared.note_length_s == pytest.approx(0.8, abs=0.05)
    assert (prepared.clip.source_rate, prepared.clip.channels) == (48000, 2)
    assert prepared.clip.source_seconds == pytest.approx(2.3, abs=1e-3)
    assert _rms(prepared.samples) == pytest.approx(0.75 * _rms(x[round(0.3 * SR) :]), rel=0.01)


def test_prepare_falls_back_to_middle_c_without_pitch(tmp_path):
    path = tmp_path / "noise.ogg"
    noise = 0.3 * np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    sf.write(path, noise, SR, format="OGG", subtype="VORBIS")
    prepared = prepare(path, n_samples=SR // 2)
    assert (prepared.midi_note, prepared.midi_is_default, prepared.pitch) == (60, True, None)
    assert prepared.samples.shape == (SR // 2,)
