"""Benchmark data: sounds that Vital did not make, for issue 18's "other" set of ``match_quality.py``.

Stage: benchmark data (not a test). Input: the recipes in :data:`SOUNDS` -- instruments of the
Faust standard library (physical models of ``physmodels.lib``: plucked and bowed strings, a reed,
a drum; FM, additive and subtractive voices, noise through a resonator; reverb and echo as effects)
compiled and rendered by DawDreamer (``pip install -e '.[bench]'``). Output: one float32 stereo WAV
per sound at 44.1 kHz in ``$VITALMATCH_CACHE/bench/other_sounds/`` (default
``~/.cache/vitalmatch/bench/other_sounds/``) and ``manifest.json`` beside them: per sound its file,
the MIDI note it was played at, how long the note was held, the render length, timbre tags, the
peak, the SHA-256 of the samples and the note :func:`vitalmatch.audio.estimate_pitch` hears (the
matcher's pitch detection; physical models are not always in tune with the note they are given).

Usage::

    python benchmarks/other_sounds.py [--out DIR] [--force] [--verify]

Each sound is one MIDI note (velocity 100) at time 0, held ``hold_s`` seconds, in a render of
``render_s`` seconds; the voice is Faust-polyphonic with one voice (``freq``/``gain``/``gate`` come
from the note), the effect (when there is one) runs after it. The result is scaled to a peak of
:data:`PEAK`. Faust's noise generators are seeded constants and DawDreamer renders offline, so a
render is bit-identical each time (``--verify`` renders every sound twice and compares). Files are
rebuilt when missing or when their recipe (or the DawDreamer version) changed; ``--force`` rebuilds
all. Other code reuses the set through :func:`ensure_other_sounds`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 44100
#: Peak every sound is scaled to (-6 dBFS).
PEAK = 0.5
#: MIDI velocity of every note.
VELOCITY = 100
#: Bumped when the rendering code changes in a way the recipes do not show.
RECIPE_VERSION = 1

# Voices without MIDI metadata of their own read these three controls, which Faust's polyphony
# drives from the note (freq in Hz, gain = velocity / 127, gate 1 while the note is held).
_POLY = (
    'freq = hslider("freq", 440, 20, 8000, 0.01); gain = hslider("gain", 0.5, 0, 1, 0.01);\n'
    'gate = button("gate");\n'
)


@dataclass(frozen=True)
class OtherSound:
    """One recipe.

    Attributes:
        name: file stem.
        tags: what it is (``"plucked"``, ``"bowed"``, ``"blown"``, ``"struck"``, ``"vibrato"``,
            ``"reverb"`` ...).
        note: MIDI note played (40..80).
        hold_s: seconds from note-on to note-off.
        render_s: seconds rendered (the tail after note-off included).
        voice: Faust expression of one voice (mono); may use ``freq``, ``gain`` and ``gate``
            when ``poly_controls``.
        effect: Faust definitions added after ``process`` (``effect = ...``, stereo in/out), or "".
        params: voice controls to set, ``{name suffix: value}`` (e.g. ``{"vibratoGain": 0}``).
        poly_controls: declare ``freq``/``gain``/``gate`` (the ``*_ui_MIDI`` models declare
            their own).
    """

    name: str
    tags: tuple[str, ...]
    note: int
    hold_s: float
    render_s: float
    voice: str
    effect: str = ""
    params: dict[str, float] = field(default_factory=dict)
    poly_controls: bool = True

    def dsp(self) -> str:
        """The whole Faust program."""
        head = 'import("stdfaust.lib");\n' + (_POLY if self.poly_controls else "")
        return head + f"process = {self.voice} <: _, _;\n" + self.effect


def _reverb(t60_mid: float, wet: float = 0.6, t60_low: float | None = None) -> str:
    """A zita_rev1 reverb (stereo, fully wet) mixed with the dry signal: ``dry + wet * reverb``."""
    low = t60_mid * 1.3 if t60_low is None else t60_low
    return (
        "effect = _, _ <: (_, _), (re.zita_rev1_stereo(20, 200, 6000, "
        f"{low:g}, {t60_mid:g}, 44100) : par(i, 2, *({wet:g}))) :> _, _;\n"
    )


#: The set: plucked, bowed, blown, struck, sustained and noisy; with and without vibrato,
#: tremolo, reverb and echo; notes 40..79. The first 12 cover every kind (the benchmark's default).
SOUNDS: tuple[OtherSound, ...] = (
    OtherSound("guitar_pluck", ("plucked", "string"), 52, 0.6, 2.0, "pm.guitar_ui_MIDI", poly_controls=False),
    OtherSound(
        "violin_bowed",
        ("bowed", "string", "sustained"),
        67,
        1.2,
        2.0,
        "pm.violin_ui_MIDI",
        poly_controls=False,
    ),
    OtherSound(
        "clarinet_vibrato",
        ("blown", "reed", "sustained", "vibrato"),
        50,
        1.0,
        1.5,
        "pm.clarinet_ui_MIDI",
        params={"vibratoGain": 0.4, "vibratoFreq": 5.5},
        poly_controls=False,
    ),
    OtherSound("djembe_hit", ("struck", "drum"), 45, 0.2, 1.5, "pm.djembe_ui_MIDI", poly_controls=False),
    OtherSound(
        "fm_epiano_tremolo",
        ("struck", "fm", "tremolo"),
        60,
        1.0,
        2.0,
        "os.osc(freq * (1 + 2.5 * en.adsr(0.001, 0.4, 0.1, 0.2, gate) * os.osc(freq)))"
        " * en.adsr(0.002, 1.6, 0.0, 0.3, gate) * gain * (1 + 0.3 * os.osc(4.5)) / 1.3",
    ),
    OtherSound(
        "saw_pad_reverb",
        ("pad", "subtractive", "reverb", "filter sweep"),
        48,
        1.5,
        3.0,
        "(os.sawtooth(freq * 0.994) + os.sawtooth(freq) + os.sawtooth(freq * 1.006)) / 3"
        " : fi.resonlp(300 + 3000 * en.adsr(0.6, 0.8, 0.3, 0.8, gate), 2, 1)"
        " * en.adsr(0.4, 0.5, 0.8, 0.8, gate) * gain",
        effect=_reverb(3.0, 0.7),
    ),
    OtherSound(
        "nylon_pluck_reverb",
        ("plucked", "string", "reverb"),
        64,
        0.5,
        2.5,
        "pm.nylonGuitar_ui_MIDI",
        effect=_reverb(2.0, 0.8),
        poly_controls=False,
    ),
    OtherSound(
        "organ_vibrato",
        ("additive", "organ", "sustained", "vibrato"),
        55,
        1.2,
        1.6,
        "sum(i, 6, ba.take(i + 1, (1, 0.8, 0.6, 0.4, 0.3, 0.2))"
        " * os.osc(ba.take(i + 1, (1, 2, 3, 4, 6, 8)) * freq * (1 + 0.004 * os.osc(6.2)))) / 3.3"
        " * en.asr(0.01, 1, 0.08, gate) * gain",
    ),
    OtherSound(
        "breath_noise",
        ("blown", "noise", "tremolo"),
        76,
        1.0,
        1.5,
        "(no.noise : fi.resonbp(freq, 25, 1)) * 4 * en.adsr(0.15, 0.1, 0.9, 0.3, gate)"
        " * (1 + 0.4 * os.osc(5)) * gain",
    ),
    OtherSound(
        "fm_bell",
        ("struck", "fm", "inharmonic"),
        72,
        0.3,
        2.5,
        "os.osc(freq * (1 + 4 * en.adsr(0.001, 2.0, 0, 1.0, gate) * os.osc(3.5 * freq)))"
        " * en.ar(0.001, 2.4, gate) * gain",
    ),
    OtherSound(
        "pulse_bass_echo",
        ("plucked", "subtractive", "filter envelope", "echo"),
        41,
        0.5,
        2.0,
        "os.square(freq) : fi.resonlp(100 + 4000 * en.adsr(0.001, 0.25, 0, 0.1, gate), 4, 1)"
        " * en.adsr(0.001, 0.6, 0.6, 0.1, gate) * gain * 0.5",
        effect="effect = par(i, 2, ef.echo(1.0, 0.3, 0.45));\n",
    ),
    OtherSound(
        "violin_reverb",
        ("bowed", "string", "sustained", "reverb"),
        62,
        1.0,
        2.5,
        "pm.violin_ui_MIDI",
        effect=_reverb(2.5, 0.6),
        poly_controls=False,
    ),
    OtherSound(
        "comb_string",
        ("plucked", "string", "comb"),
        40,
        0.8,
        2.0,
        "sy.combString(freq, 0.6, gate) * gain",
    ),
    OtherSound(
        "clarinet_plain",
        ("blown", "reed", "sustained"),
        58,
        0.8,
        1.2,
        "pm.clarinet_ui_MIDI",
        params={"vibratoGain": 0.0},
        poly_controls=False,
    ),
    OtherSound(
        "elec_guitar",
        ("plucked", "string"),
        69,
        0.8,
        2.0,
        "pm.elecGuitar_ui_MIDI",
        poly_controls=False,
    ),
    OtherSound(
        "ks_pluck_high",
        ("plucked", "karplus-strong"),
        79,
        0.4,
        1.5,
        "pm.ks(pm.f2l(freq), 0.05, pm.impulseExcitation(gate)) * gain",
    ),
)


def _dawdreamer_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("dawdreamer")


def recipe_key(sound: OtherSound) -> str:
    """SHA-1 of everything that makes the sound: the recipe, the Faust program and the renderer."""
    text = json.dumps([RECIPE_VERSION, asdict(sound), sound.dsp(), _dawdreamer_version(), SAMPLE_RATE, PEAK])
    return hashlib.sha1(text.encode()).hexdigest()


def render_sound(sound: OtherSound, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(2, T)`` float32 render of one recipe, ``T = round(render_s * sample_rate)``, scaled to
    a peak of :data:`PEAK`.

    Raises:
        RuntimeError: Faust did not compile the program, a ``params`` name matched no control, or
            the render is silent or not finite.
    """
    import dawdreamer as daw

    engine = daw.RenderEngine(sample_rate, 128)
    proc = engine.make_faust_processor(sound.name)
    proc.num_voices = 1  # polyphonic mode: the note drives freq / gain / gate
    if not proc.set_dsp_string(sound.dsp()):
        raise RuntimeError(f"{sound.name}: Faust did not compile the program")
    names = [d["name"] for d in proc.get_parameters_description()]
    for suffix, value in sound.params.items():
        hits = [n for n in names if n.endswith("/" + suffix)]
        if not hits:
            raise RuntimeError(f"{sound.name}: no control named {suffix!r} (controls: {', '.join(names)})")
        for n in hits:
            proc.set_parameter(n, float(value))
    proc.add_midi_note(sound.note, VELOCITY, 0.0, sound.hold_s)
    engine.load_graph([(proc, [])])
    engine.render(sound.render_s)
    audio = np.asarray(engine.get_audio(), dtype=np.float32)[:, : int(round(sound.render_s * sample_rate))]
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if not np.isfinite(audio).all() or peak < 1e-4:
        raise RuntimeError(f"{sound.name}: the render is silent or not finite (peak {peak:g})")
    return (audio * (PEAK / peak)).astype(np.float32)


def default_folder() -> Path:
    """``$VITALMATCH_CACHE/bench/other_sounds`` (default ``~/.cache/vitalmatch/...``)."""
    from vitalmatch.match.start_set import cache_dir

    return cache_dir() / "bench" / "other_sounds"


def ensure_other_sounds(folder: Path | None = None, *, force: bool = False, log=None) -> list[dict]:
    """Render the sounds that are missing or out of date, and return the manifest's rows.

    Args:
        folder: where the WAVs and ``manifest.json`` live (default :func:`default_folder`).
        force: render every sound again.
        log: called with one line per sound rendered (e.g. ``print``), or None.

    Returns:
        One dict per sound of :data:`SOUNDS`, in order: ``name, path, note, note_s, render_s,
        tags, peak, sha256, detected_note, detected_hz, recipe``.
    """
    import soundfile as sf

    folder = Path(folder or default_folder())
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    try:
        old = {row["name"]: row for row in json.loads(manifest_path.read_text())["sounds"]}
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    rows = []
    for sound in SOUNDS:
        key = recipe_key(sound)
        path = folder / f"{sound.name}.wav"
        row = old.get(sound.name)
        if force or row is None or row.get("recipe") != key or not path.is_file():
            audio = render_sound(sound)
            sf.write(path, audio.T, SAMPLE_RATE, subtype="FLOAT")
            row = _describe(sound, audio, key, path)
            if log is not None:
                log(
                    f"rendered {sound.name:20} note {sound.note} (heard {row['detected_note']}) "
                    f"held {sound.hold_s:g} s of {sound.render_s:g} s -> {path}"
                )
        rows.append(row | {"path": str(path)})
        # written after every sound: an interrupted build keeps what it rendered
        manifest_path.write_text(json.dumps({"sample_rate": SAMPLE_RATE, "sounds": rows}, indent=1))
    return rows


def _describe(sound: OtherSound, audio: np.ndarray, key: str, path: Path) -> dict:
    from vitalmatch.audio import estimate_pitch

    pitch = estimate_pitch(audio.mean(axis=0), SAMPLE_RATE)
    return {
        "name": sound.name,
        "path": str(path),
        "note": sound.note,
        "note_s": sound.hold_s,
        "render_s": sound.render_s,
        "tags": list(sound.tags),
        "peak": float(np.abs(audio).max()),
        "sha256": hashlib.sha256(audio.tobytes()).hexdigest(),
        "detected_note": None if pitch is None else pitch.midi,
        "detected_hz": None if pitch is None else round(pitch.hz, 2),
        "recipe": key,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=None, help="folder (default: $VITALMATCH_CACHE/bench/other_sounds)"
    )
    ap.add_argument("--force", action="store_true", help="render every sound again")
    ap.add_argument(
        "--verify", action="store_true", help="render each sound twice and check they are identical"
    )
    args = ap.parse_args()
    try:
        rows = ensure_other_sounds(args.out, force=args.force, log=print)
    except ImportError:
        sys.exit("error: DawDreamer is not installed: pip install -e '.[bench]'")
    except RuntimeError as e:
        sys.exit(f"error: {e}")
    for sound, row in zip(SOUNDS, rows, strict=True):
        same = ""
        if args.verify:
            a, b = render_sound(sound), render_sound(sound)
            same = "  identical" if np.array_equal(a, b) else "  DIFFERENT between renders"
        heard = row["detected_note"]
        print(
            f"{row['name']:20} note {row['note']:3} heard {heard if heard is not None else '-':>3}  "
            f"held {row['note_s']:.2f} s / {row['render_s']:.2f} s  {', '.join(row['tags'])}{same}"
        )
    print(f"{len(rows)} sounds in {Path(rows[0]['path']).parent}")


if __name__ == "__main__":
    main()
