"""Demo: a local web page that turns an uploaded or recorded sound into a ``.vital`` preset.

Stage: demo (a thin file over :mod:`vitalmatch.match` and :mod:`vitalmatch.tutorial`). Input: an
audio file from the browser (upload, microphone, or one of three example sounds rendered by the
project's own synth). Output, in the page: the prepared target and the matched render side by
side, a spectrogram comparison, the distances, the preset's non-default parameters grouped by
module with Vital's display values, the offline tutorial, and the ``.vital`` file to download.

The page is a Gradio ``Blocks`` app (:func:`build_app`); :func:`serve` runs it until Ctrl-C.
One :class:`~vitalmatch.match.Matcher` (its synth worker pool) is made on the first match and
reused, so a match does not respawn workers; matches run one at a time. Privacy and limits: the
server binds 127.0.0.1 unless told otherwise, Gradio's telemetry and version check are off, the
fonts are Gradio's bundled ones (no CDN), uploads are capped at ``max_upload_mb`` and clips at
``max_clip_s`` seconds (longer ones are cropped by the matcher); the tutorial is the offline one
(no LLM call).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vitalmatch.interrupts import signals_caught

if TYPE_CHECKING:
    import gradio

__all__ = ["DemoConfig", "build_app", "note_name", "serve", "spectrogram_image"]


_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_TABLE_HEADERS = ["Module", "Parameter", "Value", "Init value"]


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo server.

    Attributes:
        host: address to listen on; 127.0.0.1 serves this machine only.
        port: TCP port.
        checkpoint: a model file or a training run's ``best.pt`` (None: the default model, if one
            is installed; see vitalmatch.learn.default_model).
        no_model: match without a network (the starting set and the init preset only).
        start_set_size: presets in the built-in starting set (0: init preset only).
        workers: synth render processes of the matcher.
        max_budget_s: the largest refinement budget the page offers (seconds).
        default_budget_s: the budget the page starts with (seconds).
        max_upload_mb: the largest upload accepted (MB).
        max_clip_s: the longest clip matched; longer sounds are cropped.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    checkpoint: Path | None = None
    no_model: bool = False
    start_set_size: int = 256
    workers: int = 2
    max_budget_s: float = 60.0
    default_budget_s: float = 15.0
    max_upload_mb: int = 20
    max_clip_s: float = 10.0

    def check(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {self.port}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        from vitalmatch.match import check_start_set_size

        check_start_set_size(self.start_set_size)
        if not 2 <= self.default_budget_s <= self.max_budget_s:
            raise ValueError(f"budgets must satisfy 2 <= default <= max, got {self.default_budget_s}")
        from vitalmatch.learn.default_model import resolve

        resolve(self.checkpoint, self.no_model)  # a missing file, or both given: one line


def _gradio():
    """Import gradio with its telemetry and version check off (read from the environment)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    try:
        import gradio as gr
    except ImportError:
        raise RuntimeError("the demo needs gradio: pip install 'vitalmatch[demo]'") from None
    return gr


# ------------------------------------------------------------------------------------ pieces
def note_name(note: int) -> str:
    """MIDI note -> name with octave: 57 -> ``"A3"``, 60 -> ``"C4"``."""
    return f"{_NOTE_NAMES[note % 12]}{note // 12 - 1}"


def spectrogram_image(
    target: np.ndarray, match: np.ndarray, sample_rate: int, path: str | os.PathLike
) -> Path:
    """Write a PNG of the target's and the match's log-mel spectrograms side by side.

    Both panels share one colour scale (dB, the top 80 dB of the louder one), so level
    differences show. The image is 1000 x 360 pixels.

    Args:
        target: ``(T,)`` mono audio.
        match: ``(T,)`` mono or ``(2, T)`` stereo audio (mixed to mono).
        sample_rate: Hz of both.
        path: the PNG to write.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in server threads

    from vitalmatch.features import FeatureConfig, log_mel

    config = FeatureConfig(sample_rate=sample_rate, n_fft=2048, hop_length=256, n_mels=128)
    db = 10.0 / math.log(10.0)  # natural log of power -> dB
    panels = [
        ("your sound (as matched)", log_mel(np.asarray(target, np.float32), config).numpy() * db),
        ("matched preset", log_mel(np.asarray(match, np.float32), config).numpy() * db),
    ]
    vmax = max(float(p.max()) for _, p in panels)
    fig = Figure(figsize=(10, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    ticks_hz = [f for f in (100, 300, 1000, 3000, 10000) if f < sample_rate / 2]
    mel_hz = _mel_frequencies(config)
    for ax, (title, spec) in zip(axes, panels, strict=True):
        seconds = spec.shape[-1] * config.hop_length / sample_rate
        image = ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=vmax - 80.0,
            vmax=vmax,
            extent=(0.0, seconds, -0.5, spec.shape[0] - 0.5),
        )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds")
    axes[0].set_yticks([int(np.argmin(np.abs(mel_hz - f))) for f in ticks_hz])
    axes[0].set_yticklabels([f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks_hz])
    axes[0].set_ylabel("Hz (mel scale)")
    fig.colorbar(image, ax=axes, label="dB", shrink=0.9)
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def _mel_frequencies(config) -> np.ndarray:
    """Centre frequency (Hz) of each mel band of ``log_mel`` (librosa's Slaney mel scale)."""
    import librosa

    fmax = config.fmax or config.sample_rate / 2
    return librosa.mel_frequencies(config.n_mels + 2, fmin=config.fmin, fmax=fmax)[1:-1]


def _safe_stem(path: str | os.PathLike) -> str:
    """A file stem fit for a download name: ``"my kick!.wav"`` -> ``"my kick_"``."""
    stem = re.sub(r"[^\w .-]", "_", Path(path).stem).strip(" .")[:60]
    return stem or "match"


def _distances_markdown(result, max_clip_s: float) -> str:
    """The result's distances and how it was played, as Markdown."""
    p = result.prepared
    ref = result.refinement
    pitch = f"{p.pitch_text()} ({note_name(result.note)})"  # the CLI's phrase, plus the note name
    ratio = result.distance / result.distance_init if result.distance_init > 0 else float("nan")
    lines = [
        "**Distance to your sound** (multi-scale log-mel L1; lower is closer)",
        "",
        "| | distance | |",
        "|---|---:|---|",
        f"| Vital's init preset | {result.distance_init:.3f} | |",
        f"| before refinement | {result.distance_start:.3f} | start: {result.start} |",
        f"| after refinement | {result.distance:.3f} | {ratio:.0%} of init; kept: {result.kept} |",
        "",
    ]
    if ref is not None:
        lines.append(f"- Search: {ref.evals} renders in {ref.seconds:.1f} s (stopped by {ref.stopped_by})")
    lines.append(f"- Detected pitch: {pitch}")
    cropped = p.clip.source_seconds - p.offset_seconds > max_clip_s
    clip = f" (your sound was cropped to {max_clip_s:g} s)" if cropped else ""
    lines.append(f"- Note held {result.note_s:.2f} s of a {result.render_s:.2f} s render{clip}")
    lines.append(f"- Total time: {result.seconds:.1f} s")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ app state
class _Session:
    """The app's state: one matcher kept between matches (state: its worker pool) and a folder
    for the files of each request.

    The matcher is made on the first match and made again only when the tier changes; the budget
    is read per match from ``matcher.config``, so a new budget costs nothing.
    """

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.matcher = None
        self.root = Path(tempfile.mkdtemp(prefix="vitalmatch-demo-"))

    def get_matcher(self, tier: int, budget_s: float, progress: Callable):
        """The app's matcher set to ``tier`` and ``budget_s`` (made now if needed)."""
        from vitalmatch.match import MatchConfig, Matcher

        cfg = self.config
        wanted = MatchConfig(
            tier=tier,
            budget_s=budget_s,
            workers=cfg.workers,
            start_set_size=cfg.start_set_size,
            max_render_s=cfg.max_clip_s,
        )
        if self.matcher is not None and dataclasses.replace(self.matcher.config, budget_s=budget_s) != wanted:
            self.matcher.close()
            self.matcher = None
        if self.matcher is None:
            progress(0.0, desc="starting the synth workers (first match only)")
            from vitalmatch.learn.default_model import resolve

            model = resolve(cfg.checkpoint, cfg.no_model)
            # starts and warms up the workers (~5 s); a default model that does not fit is left out
            matcher = Matcher(wanted, model, notify=lambda message: print(message, file=sys.stderr))
            self.matcher = matcher
        self.matcher.config = wanted  # match_file reads the budget from here
        return self.matcher

    def request_folder(self) -> Path:
        """A new folder for one request's files; folders older than an hour are removed."""
        now = time.time()
        for old in self.root.iterdir():
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > 3600:
                    shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.root))

    def run(self, audio_path: str | None, budget_s: float, tier: int, progress: Callable) -> tuple:
        """Match one sound: the outputs of the page, in :func:`build_app`'s order.

        A bad upload or a failed match gives a one-line message in the status box and empty
        outputs; the traceback of an unexpected failure goes to the server's stderr only.
        """
        empty = (None, None, None, "", _table([]), "", None)
        if not audio_path:
            return ("Upload or record a sound first, or pick an example.", *empty)
        name = Path(audio_path).name
        budget_s = float(min(max(budget_s, 1.0), self.config.max_budget_s))
        try:
            with self.lock:
                return ("", *self._match(Path(audio_path), budget_s, int(tier), progress))
        except ValueError as e:  # AudioError and the synth's one-line errors
            message = str(e).replace(str(audio_path), name).splitlines()[0]
            return (f"**Could not match this sound.** {message}", *empty)
        except Exception as e:  # noqa: BLE001 - the page shows one line, the log the rest
            traceback.print_exc()
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            return (f"**The match failed.** {first}", *empty)

    def _match(self, path: Path, budget_s: float, tier: int, progress: Callable) -> tuple:
        import soundfile as sf

        from vitalmatch.audio import load_audio
        from vitalmatch.synth.export import write_vital
        from vitalmatch.tutorial import load_state, non_default, parameter_table, write_tutorial

        progress(0.0, desc="reading the sound")
        # a bad file fails here, before the first match starts the workers
        load_audio(path, 44100, max_seconds=self.config.max_clip_s)
        matcher = self.get_matcher(tier, budget_s, progress)

        def searching(evals: int, seconds: float, best: float) -> None:
            progress(min(seconds / budget_s, 1.0), desc=f"searching: {evals} renders, best loss {best:.3f}")

        progress(0.0, desc="analysing the sound, choosing a starting preset")
        stem = _safe_stem(path)
        result = matcher.match_file(path, name=stem, progress=searching)
        progress(1.0, desc="writing the preset, the table and the tutorial")
        folder = self.request_folder()
        sf.write(folder / "original.wav", np.clip(result.target, -1, 1), result.sample_rate, subtype="PCM_16")
        sf.write(
            folder / "matched.wav", np.clip(result.render, -1, 1).T, result.sample_rate, subtype="PCM_16"
        )
        image = spectrogram_image(
            result.target, result.render, result.sample_rate, folder / "spectrogram.png"
        )
        preset = write_vital(folder / f"{stem}.vital", result.preset)
        state = load_state(result.preset)  # one synth load for both the table and the tutorial
        rows = non_default(parameter_table(state))
        tutorial = write_tutorial(state, name=stem).text
        return (
            str(folder / "original.wav"),
            str(folder / "matched.wav"),
            str(image),
            _distances_markdown(result, self.config.max_clip_s),
            _table(rows),
            tutorial,
            str(preset),
        )

    def close(self) -> None:
        """Stop the matcher's workers and remove the request files."""
        if self.matcher is not None:
            self.matcher.close()
            self.matcher = None
        shutil.rmtree(self.root, ignore_errors=True)


def _table(rows):
    """Parameter rows -> the table's DataFrame (module, parameter, value, init value)."""
    import pandas as pd

    return pd.DataFrame([(r.group, r.label, r.text, r.default_text) for r in rows], columns=_TABLE_HEADERS)


# ------------------------------------------------------------------------------------ page
_INTRO = """\
# vitalmatch: sound -> Vital preset

Upload or record a short sound (one note, up to {clip:g} s; longer sounds are cropped), choose a
refinement budget and press **Match**. vitalmatch picks a starting preset, then searches with the
synth in the loop and gives you a `.vital` file, its parameters and a tutorial to build it by hand.
Everything runs on this machine.
"""


_CSS = "#status { color: var(--error-text-color); }"  # the status box shows only problems


def build_app(config: DemoConfig = DemoConfig()) -> gradio.Blocks:
    """The demo page (not started; see :func:`serve`).

    The app's matcher is kept in ``app.vitalmatch_session`` and closed at interpreter exit.
    """
    gr = _gradio()
    config.check()
    session = _Session(config)
    atexit.register(session.close)
    from vitalmatch.examples import EXAMPLES, example_sounds

    examples = example_sounds()

    def match(audio_path, budget_s, tier, progress=gr.Progress()):  # noqa: B008 - how Gradio passes a progress bar
        return session.run(audio_path, budget_s, tier, progress)

    with gr.Blocks(title="vitalmatch", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(_INTRO.format(clip=config.max_clip_s))
        with gr.Row():
            with gr.Column(scale=1):
                sound = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label=f"Your sound (up to {config.max_upload_mb} MB)",
                    buttons=["download"],
                    elem_id="upload",
                )
                gr.Examples(
                    [[str(p)] for p in examples],
                    inputs=[sound],
                    label="Example sounds (rendered by vitalmatch's synth)",
                    example_labels=list(EXAMPLES),
                )
                budget = gr.Slider(
                    2,
                    config.max_budget_s,
                    value=config.default_budget_s,
                    step=1,
                    label="Refinement budget (seconds)",
                    elem_id="budget",
                )
                tier = gr.Radio(
                    [("1: oscillators 1-2, filter 1, amp envelope", 1), ("2: more modules and effects", 2)],
                    value=1,
                    label="Tier (what the search may change)",
                    elem_id="tier",
                )
                button = gr.Button("Match", variant="primary", elem_id="match-btn")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2):
                with gr.Row():
                    original = gr.Audio(
                        label="Your sound (as matched)",
                        interactive=False,
                        buttons=["download"],
                        elem_id="original",
                    )
                    matched = gr.Audio(
                        label="Matched preset", interactive=False, buttons=["download"], elem_id="matched"
                    )
                spectrogram = gr.Image(
                    label="Spectrograms", type="filepath", interactive=False, elem_id="spectrogram"
                )
                distances = gr.Markdown(elem_id="distances")
                download = gr.File(label="Preset (.vital)", interactive=False, height=90, elem_id="download")
        table = gr.Dataframe(
            headers=_TABLE_HEADERS,
            label="Parameters that differ from Vital's init preset, by module",
            interactive=False,
            wrap=True,
            elem_id="params",
        )
        tutorial = gr.Markdown(elem_id="tutorial")
        button.click(
            match,
            inputs=[sound, budget, tier],
            outputs=[status, original, matched, spectrogram, distances, table, tutorial, download],
            concurrency_limit=1,
        )
    app.vitalmatch_session = session
    return app


def serve(config: DemoConfig = DemoConfig(), *, ready: Callable[[str], None] | None = None) -> None:
    """Build the starting set and the examples if needed, run the page until Ctrl-C or SIGTERM.

    Args:
        config: server settings.
        ready: called with the page's URL once the server listens.
    """
    from vitalmatch.match import ensure_start_set

    _gradio()  # fail at once when the extra is not installed
    config.check()
    ensure_start_set(
        config.start_set_size,
        workers=config.workers,
        progress=True,
        notify=lambda message: print(message, file=sys.stderr),
    )
    app = build_app(config)
    app.queue(default_concurrency_limit=1, max_size=16)
    _, url, _ = app.launch(
        server_name=config.host,
        server_port=config.port,
        max_file_size=f"{config.max_upload_mb}mb",
        prevent_thread_lock=True,
        quiet=True,
        share=False,
        inbrowser=False,
        show_error=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        pwa=False,
        footer_links=["settings"],
        css=_CSS,
    )
    if ready is not None:
        ready(url)

    def stop(signum: int) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a server started in the background inherits an ignored SIGINT
    try:
        with signals_caught((signal.SIGINT, signal.SIGTERM), stop):
            while True:
                time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping the demo", file=sys.stderr)
    finally:
        app.close()
        app.vitalmatch_session.close()
