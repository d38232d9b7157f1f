"""Command line: one subcommand per pipeline stage (``vitalmatch STAGE --help``).

Errors the user can fix (bad options, missing or foreign files, an existing output) print one
line ``error: ...`` to stderr and exit with status 1; Ctrl-C exits with 130 after saving what was
done. An unexpected exception (a bug) also prints one line and exits with 1; ``VITALMATCH_DEBUG=1``
shows its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from vitalmatch import __version__


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vitalmatch")
def cli() -> None:
    """vitalmatch: turn a sound into a preset for the Vital synthesizer.

    Stages: params -> discover-wt -> generate -> inspect -> train -> predict -> evaluate -> match;
    tutorial explains a preset; demo serves matching as a local web page.
    """


# Options several commands share (one definition, so their defaults and help stay the same).
workers_option = click.option("--workers", type=int, default=2, show_default=True, help="Render processes.")
checkpoint_option = click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="best.pt of a training run (optional).",
)
start_set_option = click.option(
    "--start-set",
    "start_set",
    type=int,
    default=256,
    show_default=True,
    help="Presets in the built-in starting set (0: init preset only).",
)


# ---------------------------------------------------------------------------------------- params
@cli.command("params")
@click.option("--tier", type=int, default=1, show_default=True, help="1 or 2.")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def params_cmd(tier: int, as_json: bool) -> None:
    """List the parameters a tier varies, discovered from the live synth."""
    from vitalmatch.synth.params import ParamRegistry, check_tier
    from vitalmatch.synth.wavetables import WavetableCatalog

    check_tier(tier)
    full = ParamRegistry.from_synth(wavetable_names=WavetableCatalog.builtin().names)
    reg = full.for_tier(tier)
    if as_json:
        click.echo(reg.to_json())
        return
    click.echo(
        f"{'name':34} {'kind':11} {'module':10} {'scale':11} {'min':>9} {'max':>10} {'default':>10}  options/units"
    )
    for s in reg.specs:
        extra = (
            f"{s.n_options}: {', '.join(s.options[:6])}{', ...' if s.n_options > 6 else ''}"
            if s.kind == "categorical"
            else s.display_units
        )
        click.echo(
            f"{s.name:34} {s.kind:11} {s.module:10} {s.scale:11} {s.min:9.4g} {s.max:10.6g} {s.default:10.6g}  {extra}"
        )
    c = reg.counts()
    fc = full.counts()
    click.echo(
        f"tier {tier}: {c['total']} parameters ({c['continuous']} continuous, {c['categorical']} categorical); "
        f"full registry {fc['total']} ({fc['continuous']} continuous, {fc['categorical']} categorical, "
        "3 of them wavetable choices); 320 modulation-slot and 4 view-only controls excluded"
    )


# ------------------------------------------------------------------------------------ discover-wt
@cli.command("discover-wt")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Catalog JSON to write.")
@click.option(
    "--install-dirs/--no-install-dirs",
    default=True,
    show_default=True,
    help="Also scan Vital's install folders.",
)
@click.option(
    "--builtin/--no-builtin", default=True, show_default=True, help="Start from the built-in tables."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing catalog file.")
def discover_wt_cmd(
    paths: tuple[Path, ...], output: Path, install_dirs: bool, builtin: bool, overwrite: bool
) -> None:
    """Extract wavetables from .vital presets and folders into a catalog (dedup by content)."""
    from vitalmatch.synth.wavetables import WavetableCatalog, discover

    for p in paths:
        if not p.exists():
            raise click.UsageError(f"{p} does not exist")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    catalog = WavetableCatalog.builtin() if builtin else WavetableCatalog()
    report = discover(paths, include_install_dirs=install_dirs, catalog=catalog)
    report.catalog.save(output)
    click.echo(report.summary())
    click.echo(f"catalog: {len(report.catalog)} wavetables -> {output}")


# --------------------------------------------------------------------------------------- generate
def _midi_notes(text: str) -> tuple[int, ...]:
    """``--notes``: comma-separated whole MIDI note numbers in 0..127 (``60.0`` is 60; ``60.9`` is
    refused rather than rendered as 60)."""
    values = _floats(text, "--notes")
    bad = [v for v in values if not (v.is_integer() and 0 <= v <= 127)]
    if bad:
        raise ValueError(f"--notes must be whole MIDI note numbers in 0..127, got {bad[0]:g}")
    return tuple(int(v) for v in values)


@cli.command("generate")
@click.option("--tier", type=int, default=1, show_default=True, help="1 or 2.")
@click.option(
    "-n", "n_presets", type=int, required=True, help="Presets to keep (each gives one render per note)."
)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="HDF5 file to write.")
@workers_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted run (same options).")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@click.option("--notes", default="48,60,72", show_default=True, help="MIDI notes to render.")
@click.option("--sample-rate", type=int, default=44100, show_default=True, help="Render rate (Hz).")
@click.option("--note-duration", type=float, default=1.0, show_default=True, help="Seconds held.")
@click.option("--render-duration", type=float, default=2.0, show_default=True, help="Seconds rendered.")
@click.option(
    "--audio-format", type=click.Choice(["pcm16", "float16", "float32"]), default="pcm16", show_default=True
)
@click.option("--channels", type=click.Choice(["mono", "stereo"]), default="mono", show_default=True)
@click.option("--store-mels", is_flag=True, help="Also store float16 log-mels.")
@click.option(
    "--notes-per-preset",
    type=int,
    default=None,
    help="Render a random subset of this many --notes per preset (default: all).",
)
@click.option(
    "--wavetables", type=click.Path(path_type=Path), default=None, help="Catalog JSON (default: built-in)."
)
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="train,val,test fractions.")
@click.option(
    "--silence-db",
    type=float,
    default=-60.0,
    show_default=True,
    help="Reject renders whose peak is below (dBFS).",
)
@click.option(
    "--clip-peak", type=float, default=1.0, show_default=True, help="Reject renders whose peak is above."
)
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds before a render is killed."
)
@click.option(
    "--commit-every", type=int, default=32, show_default=True, help="Presets between durable commits."
)
@click.option(
    "--give-up-after",
    type=int,
    default=1000,
    show_default=True,
    help="Stop with an error after this many presets in a row without a usable render (thresholds "
    "that reject everything); the presets kept so far are saved.",
)
@click.option(
    "--reuse-synth",
    is_flag=True,
    help="Keep one synth per worker instead of a fresh one per preset: ~15-20% faster, but the first "
    "50 ms of a render then depend on what the worker rendered before, so the file is not "
    "bit-reproducible (re-renders, --resume and worker counts give slightly different audio).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def generate_cmd(**kw) -> None:
    """Render random presets of a tier into an HDF5 dataset (crash-proof, resumable)."""
    from vitalmatch.data.generate import GenerateConfig, generate
    from vitalmatch.data.storage import StorageConfig
    from vitalmatch.data.validation import ValidationConfig
    from vitalmatch.synth.render import RenderConfig

    notes = _midi_notes(kw["notes"])
    split = _floats(kw["split"], "--split")
    if kw["wavetables"] is not None and not kw["wavetables"].is_file():
        raise click.UsageError(f"wavetable catalog {kw['wavetables']} does not exist")
    config = GenerateConfig(
        output=kw["output"],
        n_presets=kw["n_presets"],
        tier=kw["tier"],
        seed=kw["seed"],
        workers=kw["workers"],
        render=RenderConfig(
            sample_rate=kw["sample_rate"],
            notes=notes,
            note_duration_s=kw["note_duration"],
            render_duration_s=kw["render_duration"],
            reproducible=not kw["reuse_synth"],
        ),
        validation=ValidationConfig(silence_peak_db=kw["silence_db"], clip_peak=kw["clip_peak"]),
        storage=StorageConfig(
            audio_format=kw["audio_format"], channels=kw["channels"], full_scale=max(1.0, kw["clip_peak"])
        ),
        split=split,  # type: ignore[arg-type]
        wavetables=kw["wavetables"],
        store_mels=kw["store_mels"],
        notes_per_preset=kw["notes_per_preset"],
        commit_every=kw["commit_every"],
        task_timeout_s=kw["timeout"],
        give_up_after=kw["give_up_after"],
        resume=kw["resume"],
        overwrite=kw["overwrite"],
        progress=kw["progress"],
    )
    config.check()
    if not config.resume:  # a new file may go into a new folder (data/ on a fresh checkout)
        config.output.parent.mkdir(parents=True, exist_ok=True)
    summary = generate(config)
    for line in summary.lines():
        click.echo(line)


# ---------------------------------------------------------------------------------------- inspect
@cli.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--export-wav", type=click.Path(path_type=Path), default=None, help="Write a few renders as WAV here."
)
@click.option("-k", type=int, default=5, show_default=True, help="How many WAVs to export.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect_cmd(path: Path, export_wav: Path | None, k: int, as_json: bool) -> None:
    """Describe a dataset: schema, counts, rejections, parameter coverage."""
    from vitalmatch.data.report import describe, export_wavs, format_report

    report = describe(path)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    if export_wav is not None:
        for f in export_wavs(path, export_wav, k):
            click.echo(f"wrote {f}")


# ---------------------------------------------------------------------------------------- train
def _dataclass_options(cls, skip: tuple[str, ...] = ()):
    """Click options generated from a config dataclass's fields (``--flag/--no-flag`` for bools).

    Every option defaults to None, so that only flags given on the command line override the
    ``--config`` file and the dataclass defaults.
    """
    import dataclasses

    helps = _field_help(cls)

    def decorate(f):
        defaults = cls()
        for fld in reversed(dataclasses.fields(cls)):
            if fld.name in skip:
                continue
            flag = fld.name.replace("_", "-")
            default = getattr(defaults, fld.name)
            if isinstance(default, bool):
                f = click.option(
                    f"--{flag}/--no-{flag}", fld.name, default=None, help=f"[default: {default}]"
                )(f)
            else:
                f = click.option(
                    f"--{flag}",
                    fld.name,
                    type=type(default),
                    default=None,
                    help=f"{helps.get(fld.name, '')} [default: {default!r}]",
                )(f)
        return f

    return decorate


def _field_help(cls) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass docstring, where a line
    ``a, b: text`` documents several fields at once."""
    import re

    doc = (cls.__doc__ or "").split("Attributes:", 1)[-1]
    out: dict[str, str] = {}
    names: list[str] = []
    for line in doc.splitlines():
        m = re.match(r"^\s{8}([a-z_][a-z0-9_, ]*):\s*(.*)$", line)
        if m:
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = m.group(2).strip()
        elif names and line.strip():
            for n in names:
                out[n] += " " + line.strip()
    return out


def _train_config(train_config_cls, data, out, config_file, flags):
    values = {}
    if config_file is not None:
        from vitalmatch.learn.config import load_config_file

        values.update(load_config_file(config_file))
    values.update({k: v for k, v in flags.items() if v is not None})
    values.update({"data": str(data), "out": str(out)})
    return train_config_cls.from_dict(values, source="options")


def _train_command():
    from vitalmatch.learn.config import TrainConfig

    @cli.command("train")
    @click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset file (.h5).")
    @click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
    @click.option(
        "--config", "config_file", type=click.Path(path_type=Path), default=None, help="Flat TOML file."
    )
    @click.option("--resume", is_flag=True, help="Continue the run in --out from last.pt.")
    @click.option("--overwrite", is_flag=True, help="Start a new run even if --out holds one.")
    @_dataclass_options(TrainConfig, skip=("data", "out"))
    def train_cmd(data, out, config_file, resume, overwrite, **flags) -> None:
        """Train a parameter-prediction network on a dataset (CPU or GPU; torchrun for several GPUs).

        Options override the --config file, which overrides the defaults.
        """
        from vitalmatch.learn.train import fit

        config = _train_config(TrainConfig, data, out, config_file, flags)
        if resume and overwrite:
            raise click.UsageError("--resume and --overwrite exclude each other")
        state = fit(config, resume=resume, overwrite=overwrite)
        if int(os.environ.get("RANK", "0")) == 0:
            click.echo(
                f"{state.stop_reason} at step {state.step}, epoch {state.epoch}; best val loss "
                f"{state.best_val:.4f} at step {state.best_step}; checkpoints in {out}"
            )


_train_command()


# ---------------------------------------------------------------------------------------- predict
@cli.command("predict")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help=".vital file to write.")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    required=True,
    help="best.pt / last.pt of a training run.",
)
@click.option("--wav", is_flag=True, help="Also write the matched render as WAV next to the preset.")
@click.option("--name", default=None, help="Preset name (default: the input's file name).")
@click.option("--author", default="vitalmatch", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def predict_cmd(input_path, output, checkpoint, wav, name, author, overwrite) -> None:
    """Turn an audio file into a .vital preset with a trained model (no search).

    The preset is applied and rendered in a synth worker process, with every value clamped to the
    live synth's ranges (never the checkpoint's).
    """
    import soundfile as sf

    from vitalmatch.learn.predict import Predictor, predict_file
    from vitalmatch.outputs import check_outputs, render_wav_path
    from vitalmatch.synth.export import write_vital

    out = output if output.suffix.lower() == ".vital" else output.with_suffix(".vital")
    targets = [out] + ([render_wav_path(out)] if wav else [])
    if input_path.is_dir():
        raise ValueError(f"input {input_path} is a folder; predict takes one audio file")
    if not input_path.is_file():
        raise ValueError(f"input {input_path} does not exist")
    check_outputs(targets, inputs=[input_path, checkpoint], overwrite=overwrite, create_folders=False)
    predictor = Predictor(checkpoint)
    match = predict_file(input_path, predictor, name=name, author=author)
    if match.clamped:
        shown = ", ".join(match.clamped[:5]) + (", ..." if len(match.clamped) > 5 else "")
        click.echo(
            f"warning: the checkpoint's ranges of {len(match.clamped)} parameter(s) differ from this "
            f"synth's ({shown}); their values were clamped to the synth's ranges",
            err=True,
        )
    written = write_vital(out, match.preset)
    p = match.prepared
    pitch = "none found, using 60" if p.midi_is_default else f"{p.pitch.hz:.1f} Hz -> MIDI {p.midi_note}"
    click.echo(
        f"input: {input_path} ({p.clip.source_rate} Hz, {p.clip.channels} ch, {p.clip.source_seconds:.2f} s)"
    )
    click.echo(f"pitch: {pitch}; note length {match.render.note_duration_s:.2f} s")
    click.echo(f"wrote {written}")
    audio = match.audio
    if float(abs(audio).max()) < 1e-4:
        click.echo(f"warning: the predicted preset renders silent at note {p.midi_note}", err=True)
    if wav:
        sf.write(targets[1], audio.T, match.render.sample_rate, subtype="FLOAT")
        click.echo(f"wrote {targets[1]}")


# ---------------------------------------------------------------------------------------- evaluate
@cli.command("evaluate")
@click.option(
    "--data", type=click.Path(path_type=Path), required=True, help="Dataset (.h5): test split, baselines."
)
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), default=None, help="Trained model (method 'model')."
)
@click.option(
    "--presets", type=click.Path(path_type=Path), default=None, help="Folder of real .vital presets."
)
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Report folder.")
@click.option("--max-test", type=int, default=200, show_default=True, help="Synthetic targets (0 = none).")
@click.option("--max-presets", type=int, default=0, show_default=True, help="Real presets (0 = all).")
@click.option("--preset-note", type=int, default=60, show_default=True, help="Note the real presets play.")
@click.option(
    "--methods",
    default=None,
    help="Comma-separated from model,nn,mean,random,init,oracle [default: all available].",
)
@click.option(
    "--nn-rows", type=int, default=5000, show_default=True, help="Training rows the nn baseline indexes."
)
@click.option(
    "--level-match/--no-level-match", default=True, show_default=True, help="Equal RMS before metrics."
)
@workers_option
@click.option("--images", type=int, default=4, show_default=True, help="Spectrogram images per target set.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an earlier report in --out.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def evaluate_cmd(**kw) -> None:
    """Audio distances of re-rendered predictions against targets, beside baselines."""
    from vitalmatch.evaluate import METHODS, EvaluateConfig, evaluate

    if kw["methods"]:
        methods = tuple(m.strip() for m in kw["methods"].split(",") if m.strip())
    else:
        methods = tuple(m for m in METHODS if m != "model" or kw["checkpoint"] is not None)
    config = EvaluateConfig(
        out=kw["out"],
        data=kw["data"],
        checkpoint=kw["checkpoint"],
        presets=kw["presets"],
        max_test=kw["max_test"],
        max_presets=kw["max_presets"],
        preset_note=kw["preset_note"],
        methods=methods,
        nn_rows=kw["nn_rows"],
        level_match=kw["level_match"],
        workers=kw["workers"],
        images=kw["images"],
        seed=kw["seed"],
        progress=kw["progress"],
        overwrite=kw["overwrite"],
    )
    from vitalmatch.evaluate import format_report

    report = evaluate(config)
    click.echo(format_report(report))
    click.echo(f"wrote {config.out / 'report.md'} and {config.out / 'results.json'}")


# ---------------------------------------------------------------------------------------- match
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".m4a", ".opus")


def _match_progress_bar(budget_s: float, desc: str):
    """tqdm bar over the time budget with the best search loss; returns ``(bar, callback)``."""
    from tqdm import tqdm

    bar = tqdm(
        total=round(budget_s, 1),
        desc=desc,
        unit="s",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} s{postfix}",
    )

    def update(evals: int, seconds: float, best: float) -> None:
        bar.n = round(min(seconds, budget_s), 1)
        bar.set_postfix_str(f"best {best:.3f}, {evals} evals", refresh=True)

    return bar, update


def _write_match(result, out: Path, wav: bool) -> list[Path]:
    import soundfile as sf

    from vitalmatch.outputs import render_wav_path
    from vitalmatch.synth.export import write_vital

    written = [write_vital(out, result.preset)]
    if wav:
        path = render_wav_path(out)
        sf.write(path, result.render.T, result.sample_rate, subtype="FLOAT")
        written.append(path)
    return written


@cli.command("match")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help=".vital file to write (a folder when INPUT is a folder).",
)
@checkpoint_option
@click.option(
    "--budget-s",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds per sound for choosing the start and searching.",
)
@click.option("--max-evals", type=int, default=None, help="Stop after this many candidate renders.")
@click.option("--no-refine", is_flag=True, help="Keep the best starting point (no search).")
@click.option(
    "--tier", type=int, default=1, show_default=True, help="Parameters the search may change (1 or 2)."
)
@workers_option
@start_set_option
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--wav", is_flag=True, help="Also write the matched render as WAV next to each preset.")
@click.option("--name", default=None, help="Preset name (default: the input's file name).")
@click.option("--author", default="vitalmatch", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def match_cmd(
    input_path,
    output,
    checkpoint,
    budget_s,
    max_evals,
    no_refine,
    tier,
    workers,
    start_set,
    seed,
    wav,
    name,
    author,
    overwrite,
    progress,
) -> None:
    """Turn a sound (or a folder of sounds) into a .vital preset: start point + CMA-ES with the synth.

    Works without a checkpoint (it then starts from the best of a built-in starting set, rendered
    on first use, or the init preset). Ctrl-C ends the search and writes the best preset so far.
    """
    from vitalmatch.audio import AudioError
    from vitalmatch.match import MatchConfig, Matcher
    from vitalmatch.outputs import check_outputs, render_wav_path, unique_stems

    if input_path.is_dir():
        inputs = sorted(
            p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
        )
        if not inputs:
            raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {input_path}")
        if output.suffix.lower() == ".vital":
            raise ValueError("INPUT is a folder: -o must be a folder for the presets")
        # a.wav and a.flac in one folder become a.wav.vital and a.flac.vital, not one a.vital
        outs = [output / f"{stem}.vital" for stem in unique_stems(inputs, input_path)]
    elif input_path.is_file():
        inputs, outs = (
            [input_path],
            [output if output.suffix.lower() == ".vital" else output.with_suffix(".vital")],
        )
    else:
        raise ValueError(f"input {input_path} does not exist")
    targets = [t for out in outs for t in [out] + ([render_wav_path(out)] if wav else [])]
    if len(inputs) > 1:
        targets.append(output / "summary.tsv")
    check_outputs(targets, inputs=inputs, overwrite=overwrite)  # before any search starts
    if checkpoint is not None and not checkpoint.is_file():
        raise ValueError(f"checkpoint {checkpoint} does not exist")
    config = MatchConfig(
        tier=tier,
        budget_s=budget_s,
        max_evals=max_evals,
        refine=not no_refine,
        workers=workers,
        start_set_size=start_set,
        seed=seed,
    )
    config.check()
    if len(inputs) == 1:  # fail fast on a bad file, before the synth workers start
        from vitalmatch.audio import load_audio

        load_audio(inputs[0], 44100)
    rows, failed, interrupted = [], 0, False
    with Matcher(config, checkpoint, progress=progress) as matcher:
        for path, out in zip(inputs, outs, strict=True):
            out.parent.mkdir(parents=True, exist_ok=True)
            bar, update = _match_progress_bar(budget_s, path.name) if progress else (None, None)
            try:
                result = matcher.match_file(
                    path, name=name if len(inputs) == 1 else out.stem, author=author, progress=update
                )
            except AudioError as e:
                failed += 1
                rows.append((path.name, "-", "-", "-", "-", "-", f"error: {e}"))
                if len(inputs) == 1:
                    raise
                click.echo(f"error: {e}", err=True)
                continue
            finally:
                if bar is not None:
                    bar.close()
            written = _write_match(result, out, wav)
            ref = result.refinement
            p = result.prepared
            pitch = (
                "none found, using 60" if p.midi_is_default else f"{p.pitch.hz:.1f} Hz -> MIDI {p.midi_note}"
            )
            if len(inputs) == 1:
                click.echo(
                    f"input: {path} ({p.clip.source_rate} Hz, {p.clip.channels} ch, {p.clip.source_seconds:.2f} s)"
                )
                click.echo(f"pitch: {pitch}; note held {result.note_s:.2f} s of {result.render_s:.2f} s")
                click.echo(f"start: {result.start}")
                if ref is not None:
                    click.echo(
                        f"search: {ref.evals} renders in {ref.seconds:.1f} s ({ref.evals / max(ref.seconds, 1e-9):.1f}/s), stopped by {ref.stopped_by}"
                    )
                click.echo(
                    f"distance (multi-scale log-mel L1): init {result.distance_init:.3f}, "
                    f"before refinement {result.distance_start:.3f}, after {result.distance:.3f} "
                    f"({result.distance / result.distance_init:.0%} of init)"
                )
                for w in written:
                    click.echo(f"wrote {w}")
            rows.append(
                (
                    path.name,
                    str(result.note),
                    f"{result.distance_init:.3f}",
                    f"{result.distance_start:.3f}",
                    f"{result.distance:.3f}",
                    str(ref.evals if ref else 0),
                    f"{result.seconds:.1f}",
                )
            )
            if result.interrupted:
                interrupted = True
                click.echo(f"interrupted: wrote the best preset found so far to {written[0]}", err=True)
                break
    if len(inputs) > 1:
        header = ("input", "note", "init", "start", "final", "renders", "seconds")
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) for r in [header] + rows]
        click.echo("\n".join(lines))
        (output / "summary.tsv").write_text("\n".join("\t".join(map(str, r)) for r in [header] + rows) + "\n")
        click.echo(f"wrote {len(rows) - failed} presets and {output / 'summary.tsv'}")
    if interrupted:
        sys.exit(130)
    if failed:
        raise click.ClickException(f"{failed} of {len(inputs)} inputs failed")


# ---------------------------------------------------------------------------------------- tutorial
def _tutorial_command():
    from vitalmatch.tutorial import TutorialConfig

    defaults = TutorialConfig()

    @cli.command("tutorial")
    @click.argument("preset_path", metavar="PRESET", type=click.Path(path_type=Path))
    @click.option(
        "--llm",
        is_flag=True,
        help="Have Claude rewrite the guide (needs ANTHROPIC_API_KEY; on any failure the offline guide "
        "is used and a note goes to stderr).",
    )
    @click.option("--model", default=defaults.model, show_default=True, help="Claude model id (--llm).")
    @click.option(
        "--timeout",
        type=float,
        default=defaults.timeout_s,
        show_default=True,
        help="Seconds to wait for the LLM before falling back.",
    )
    @click.option(
        "--max-tokens", type=int, default=defaults.max_tokens, show_default=True, help="Longest LLM answer."
    )
    @click.option(
        "--base-url", default=None, help="API base URL [default: $ANTHROPIC_BASE_URL, else Anthropic's]."
    )
    @click.option(
        "-o",
        "--output",
        type=click.Path(path_type=Path),
        default=None,
        help="Markdown file (default: stdout).",
    )
    @click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
    @click.option("--name", default=None, help="Title (default: the preset's name, else the file name).")
    def tutorial_cmd(preset_path, llm, model, timeout, max_tokens, base_url, output, overwrite, name) -> None:
        """Write a step-by-step guide to build a .vital preset by hand in Vital (Markdown)."""
        from vitalmatch.synth.export import read_vital
        from vitalmatch.tutorial import write_tutorial

        if output is not None:
            if output.exists() and not overwrite:
                raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
            if not output.parent.is_dir():
                raise ValueError(f"cannot write {output}: folder {output.parent} does not exist")
        if timeout <= 0 or max_tokens < 1:
            raise ValueError("--timeout must be > 0 and --max-tokens >= 1")
        preset = read_vital(preset_path)
        title = name or str(preset.get("preset_name") or "").strip() or preset_path.stem
        config = TutorialConfig(
            llm=llm, model=model, timeout_s=timeout, max_tokens=max_tokens, base_url=base_url
        )
        try:
            tutorial = write_tutorial(preset, config, name=title)
        except ValueError as e:
            raise ValueError(f"{preset_path}: {e}") from None
        if output is None:
            click.echo(tutorial.text, nl=False)
            return
        tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(tutorial.text, encoding="utf-8")
            os.replace(tmp, output)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ValueError(f"cannot write {output}: {e.strerror}") from None
        source = f"LLM, {tutorial.model}" if tutorial.source == "llm" else "offline guide"
        click.echo(f"wrote {output} ({source})")


_tutorial_command()


# ---------------------------------------------------------------------------------------- demo
@cli.command("demo")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (127.0.0.1: this machine only; the page has no login).",
)
@click.option("--port", type=int, default=7860, show_default=True, help="TCP port.")
@checkpoint_option
@start_set_option
@workers_option
def demo_cmd(host, port, checkpoint, start_set, workers) -> None:
    """Open a local web page: upload or record a sound, get a matched .vital preset.

    Needs the demo extra (pip install 'vitalmatch[demo]'). Ctrl-C stops the server.
    """
    from vitalmatch.demo import DemoConfig, serve

    config = DemoConfig(
        host=host, port=port, checkpoint=checkpoint, start_set_size=start_set, workers=workers
    )
    config.check()
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"note: listening on {host}: anyone who can reach it can use the demo", err=True)
    serve(config, ready=lambda url: click.echo(f"vitalmatch demo: {url} (Ctrl-C stops it)"))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn user errors into one line and exit status 1."""
    from vitalmatch.data.generate import GenerationInterrupted
    from vitalmatch.learn.config import TrainingInterrupted

    try:
        cli.main(args=argv, prog_name="vitalmatch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (GenerationInterrupted, TrainingInterrupted) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(130)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, KeyError):
            msg = msg.strip("'\"")
        click.echo(f"error: {msg}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last guard: a bug still gets one line, not a traceback
        if os.environ.get("VITALMATCH_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(
            f"error: internal error ({type(exc).__name__}{': ' + first if first else ''}); "
            "set VITALMATCH_DEBUG=1 for the traceback and please report it",
            err=True,
        )
        sys.exit(1)
