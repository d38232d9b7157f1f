"""Command line: one subcommand per pipeline stage (``vitalmatch STAGE --help``).

Each stage with a config dataclass (generate, train, evaluate, match, tutorial, demo) is a thin
command over a table of :class:`~vitalmatch.config.Flag`: the flags, their defaults and their help
come from the dataclass, and ``--config FILE`` reads a flat TOML file of the same settings (flags
override the file, the file overrides the defaults). Inputs, outputs and ``--overwrite`` are plain
options.

Errors the user can fix (bad options, missing or foreign files, an existing output) print one
line ``error: ...`` to stderr and exit with status 1; Ctrl-C exits with 130 after saving what was
done. An unexpected exception (a bug) also prints one line and exits with 1; ``VITALMATCH_DEBUG=1``
shows its traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from vitalmatch import __version__
from vitalmatch.config import ConfigCommand, Flag, fields_as_flags, from_dict


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names (blanks dropped)."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


def _midi_notes(text: str) -> tuple[int, ...]:
    """``--notes``: comma-separated whole MIDI note numbers in 0..127 (``60.0`` is 60; ``60.9`` is
    refused rather than rendered as 60)."""
    values = _floats(text, "--notes")
    bad = [v for v in values if not (v.is_integer() and 0 <= v <= 127)]
    if bad:
        raise ValueError(f"--notes must be whole MIDI note numbers in 0..127, got {bad[0]:g}")
    return tuple(int(v) for v in values)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="vitalmatch")
def cli() -> None:
    """vitalmatch: turn a sound into a preset for the Vital synthesizer.

    Stages: params -> discover-wt -> generate -> inspect -> train -> predict -> evaluate -> match;
    tutorial explains a preset; demo serves matching as a local web page.
    """


def stage(name: str, setup, **kwargs: Any):
    """A command whose settings come from a config dataclass: ``setup() -> (config class, flags)``
    (run only when the command is used); the callback gets ``settings`` (see ConfigCommand)."""
    return cli.command(name, cls=ConfigCommand, setup=setup, **kwargs)


# Inputs several commands share (one definition, so their help stays the same).
checkpoint_option = click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Model file (.safetensors) or best.pt of a training run (default: the installed default "
    "model, if any; $VITALMATCH_DEFAULT_MODEL names another, '' none).",
)
no_model_option = click.option(
    "--no-model", is_flag=True, help="Use no network, not even the default model (starting set and init)."
)


# ---------------------------------------------------------------------------------------- params
@cli.command("params")
@click.option(
    "--tier",
    type=int,
    default=1,
    show_default=True,
    help="1, 2 or 3 (3 adds the modulation matrix, outside the registry).",
)
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
        f"{'name':34} {'kind':11} {'module':10} {'scale':11} {'min':>9} {'max':>10} {'default':>10}"
        "  options/units"
    )
    for s in reg.specs:
        extra = (
            f"{s.n_options}: {', '.join(s.options[:6])}{', ...' if s.n_options > 6 else ''}"
            if s.kind == "categorical"
            else s.display_units
        )
        click.echo(
            f"{s.name:34} {s.kind:11} {s.module:10} {s.scale:11} {s.min:9.4g} {s.max:10.6g} "
            f"{s.default:10.6g}  {extra}"
        )
    c = reg.counts()
    fc = full.counts()
    click.echo(
        f"tier {tier}: {c['total']} parameters ({c['continuous']} continuous, "
        f"{c['categorical']} categorical); "
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
    from vitalmatch.outputs import check_outputs
    from vitalmatch.synth.wavetables import WavetableCatalog, discover

    for p in paths:
        if not p.exists():
            raise click.UsageError(f"{p} does not exist")
    check_outputs([output], inputs=paths, overwrite=overwrite, create_folders=False)
    catalog = WavetableCatalog.builtin() if builtin else WavetableCatalog()
    report = discover(paths, include_install_dirs=install_dirs, catalog=catalog)
    report.catalog.save(output)
    click.echo(report.summary())
    click.echo(f"catalog: {len(report.catalog)} wavetables -> {output}")


# --------------------------------------------------------------------------------------- generate
_REUSE_SYNTH_HELP = (
    "Keep one synth per worker instead of a fresh one per preset: ~15-20% faster, but the first "
    "50 ms of a render then depend on what the worker rendered before, so the file is not "
    "bit-reproducible (re-renders, --resume and worker counts give slightly different audio)."
)


def _generate_settings():
    from vitalmatch.data.generate import GenerateConfig
    from vitalmatch.data.schema import AUDIO_FORMATS, CHANNELS
    from vitalmatch.data.shards import parse_shard

    return GenerateConfig, (
        Flag("tier"),
        Flag("workers"),
        Flag("backend", type=click.Choice(["local", "ray"])),
        Flag("address"),
        Flag("seed"),
        Flag("render.notes", parse=_midi_notes),
        Flag("render.sample_rate"),
        Flag("render.note_duration_s", "--note-duration"),
        Flag("render.render_duration_s", "--render-duration"),
        Flag("storage.audio_format", type=click.Choice(AUDIO_FORMATS)),
        Flag("storage.channels", type=click.Choice(list(CHANNELS))),
        Flag("store_mels", negatable=False),
        Flag("notes_per_preset"),
        Flag("wavetables"),
        Flag("split", parse=lambda text: _floats(text, "--split")),
        Flag("validation.silence_peak_db", "--silence-db"),
        Flag("validation.clip_peak"),
        Flag("task_timeout_s", "--timeout"),
        Flag("commit_every"),
        Flag("give_up_after"),
        Flag("render.reproducible", "--reuse-synth", invert=True, help=_REUSE_SYNTH_HELP),
        Flag("progress"),
        Flag("shard_size"),
        Flag("shard", parse=parse_shard),
    )


@stage("generate", _generate_settings)
@click.option(
    "-n",
    "n_presets",
    type=int,
    default=None,
    help="Sampled presets to keep (each gives one render per note); may be 0 with --presets.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    required=True,
    help="HDF5 file to write, or a directory DIR/ of shard files (docs/cluster.md).",
)
@click.option(
    "--presets",
    "preset_dirs",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Folder or file of real .vital/.vitalbank presets to ingest (--presets A B, or repeated).",
)
@click.argument("more_presets", nargs=-1, type=click.Path(path_type=Path), metavar="[DIR]...")
@click.option("--resume", is_flag=True, help="Continue an interrupted run (same options).")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def generate_cmd(
    n_presets: int | None,
    output: str,
    preset_dirs: tuple[Path, ...],
    more_presets: tuple[Path, ...],
    resume: bool,
    overwrite: bool,
    settings: dict,
) -> None:
    """Render random presets of a tier, and real presets from folders, into an HDF5 dataset
    (crash-proof, resumable)."""
    import dataclasses

    from vitalmatch.data.generate import GenerateConfig, generate

    if more_presets and not preset_dirs:
        raise click.UsageError(
            f"unexpected argument {str(more_presets[0])!r} (preset folders follow --presets)"
        )
    presets = tuple(preset_dirs) + tuple(more_presets)
    for folder in presets:
        if not folder.exists():
            raise click.UsageError(f"--presets: {folder} does not exist")
    if n_presets is None:
        if not presets:
            raise click.UsageError(
                "give -n N (presets to sample), --presets DIR (presets to ingest), or both"
            )
        n_presets = 0
    wavetables = settings.get("wavetables")
    if wavetables is not None and not Path(wavetables).is_file():
        raise click.UsageError(f"wavetable catalog {wavetables} does not exist")
    path = Path(output)
    fixed = dict(output=path, n_presets=n_presets, resume=resume, overwrite=overwrite, presets=presets)
    config = from_dict(GenerateConfig, settings, source="options", fixed=fixed)
    if output.endswith(("/", os.sep)) and config.shard_size is None:  # -o DIR/: a sharded run
        from vitalmatch.data.shards import DEFAULT_SHARD_SIZE

        config = dataclasses.replace(config, shard_size=DEFAULT_SHARD_SIZE)
    # pcm16 stores up to the clipping threshold without clipping it again
    storage = dataclasses.replace(config.storage, full_scale=max(1.0, config.validation.clip_peak))
    config = dataclasses.replace(config, storage=storage)
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


# ------------------------------------------------------------------------------------------ index
@cli.command("index")
@click.argument("directory", metavar="DIR/", type=click.Path(path_type=Path))
def index_cmd(directory: Path) -> None:
    """Check a directory of shard files (every block there, finished, of one run, no overlap) and
    write its index.json; one error line and exit 1 otherwise."""
    from vitalmatch.data.shards import index_directory

    click.echo(index_directory(directory).line())


# ------------------------------------------------------------------------------- download-presets
def _download_settings():
    from vitalmatch.data.download import DownloadConfig

    return DownloadConfig, (
        Flag("max_download_mb"),
        Flag("max_extracted_mb"),
        Flag("max_files"),
        Flag("timeout_s", "--timeout"),
    )


@stage("download-presets", _download_settings)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder: one subfolder per repository.",
)
@click.option(
    "--repo",
    "repos",
    multiple=True,
    help="Git or http(s) .zip/.tar.gz/.tgz/.tar URL (repeatable; default: --list).",
)
@click.option("--list", "list_only", is_flag=True, help="Print the default repositories and exit.")
def download_presets_cmd(
    output: Path | None, repos: tuple[str, ...], list_only: bool, settings: dict
) -> None:
    """Download public Vital preset repositories, keeping presets, banks, wavetables and licences.

    Exit status 0 while at least one repository is ok or already complete (failures are listed), 1
    when every one failed.
    """
    from vitalmatch.data.download import (
        DEFAULT_SOURCES,
        DownloadConfig,
        download_presets,
        sources_from_urls,
        summary_lines,
    )

    if list_only:
        for source in DEFAULT_SOURCES:
            click.echo(source.line())
        return
    if output is None:
        raise click.UsageError("missing option -o/--output")
    config = from_dict(DownloadConfig, settings, source="options")
    sources = sources_from_urls(repos) if repos else DEFAULT_SOURCES
    results = download_presets(
        output, sources, config, progress=lambda s: click.echo(f"{s.name}: fetching {s.url}", err=True)
    )
    for line in summary_lines(results):
        click.echo(line)
    if results and all(r.status == "failed" for r in results):
        raise ValueError(f"all {len(results)} repositories failed (reasons above)")


# -------------------------------------------------------------------------------- compute-weights
def _importance_settings():
    from vitalmatch.data.importance import ImportanceConfig

    return ImportanceConfig, fields_as_flags(ImportanceConfig, skip=("data", "overwrite"))


@stage("compute-weights", _importance_settings)
@click.argument("data", metavar="DATA.h5", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace importance weights the file already has.")
def compute_weights_cmd(data: Path, overwrite: bool, settings: dict) -> None:
    """Measure how much each continuous parameter changes the sound (renders with it moved by
    +-delta from base presets of the file) and store the weights in the dataset for train."""
    from vitalmatch.data.importance import ImportanceConfig, compute_weights

    fixed = dict(data=data, overwrite=overwrite)
    config = from_dict(ImportanceConfig, settings, source="options", fixed=fixed)
    for line in compute_weights(config).lines():
        click.echo(line)


# ---------------------------------------------------------------------------------------- train
def _train_settings():
    from vitalmatch.learn.config import TrainConfig

    return TrainConfig, fields_as_flags(TrainConfig, skip=("data", "out"))


@stage("train", _train_settings, file_keys=("data", "out"))
@click.option(
    "--data", type=click.Path(path_type=Path), required=True, help="Dataset file (.h5) or sharded DIR/."
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from last.pt.")
@click.option("--overwrite", is_flag=True, help="Start a new run even if --out holds one.")
def train_cmd(data: Path, out: Path, resume: bool, overwrite: bool, settings: dict) -> None:
    """Train a parameter-prediction network on a dataset (CPU or GPU; torchrun for several GPUs).

    Options override the --config file, which overrides the defaults.
    """
    from vitalmatch.learn.config import TrainConfig
    from vitalmatch.learn.train import fit

    config = TrainConfig.from_dict({**settings, "data": str(data), "out": str(out)}, source="options")
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    state = fit(config, resume=resume, overwrite=overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(
            f"{state.stop_reason} at step {state.step}, epoch {state.epoch}; best val loss "
            f"{state.best_val:.4f} at step {state.best_step}; checkpoints in {out}"
        )
        best = out / "best.pt"
        if best.is_file():  # the weights-only file predict / match / the demo load (a second)
            from vitalmatch.learn import checkpoint

            written = checkpoint.save_model(out / "model.safetensors", checkpoint.load(best))
            click.echo(f"model file: {written} ({written.stat().st_size / 1e6:.1f} MB, weights only)")


# ----------------------------------------------------------------------------------- export-model
@cli.command("export-model")
@click.argument("source", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help=".safetensors file to write."
)
@click.option("--half", is_flag=True, help="Store the weights as float16 (about half the size).")
@click.option(
    "--card",
    type=click.Path(path_type=Path),
    default=None,
    help="JSON object merged into the model card (data, steps, metrics, ...).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def export_model_cmd(source: Path, output: Path, half: bool, card: Path | None, overwrite: bool) -> None:
    """Write a model file: the weights and what prediction needs, as safetensors (no pickle, no
    training state), for predict / match / the demo (--checkpoint) or as the default model."""
    from vitalmatch.learn import checkpoint
    from vitalmatch.outputs import check_outputs

    if output.suffix.lower() != ".safetensors":
        raise ValueError(f"the model file must end in .safetensors, got {output.name}")
    inputs = [source] + ([card] if card is not None else [])
    check_outputs([output], inputs=inputs, overwrite=overwrite, create_folders=False)
    extra = None
    if card is not None:
        try:
            extra = json.loads(card.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"--card {card} is not a readable JSON file ({str(e)[:100]})") from None
        if not isinstance(extra, dict):
            raise ValueError(f"--card {card} must hold a JSON object, not a {type(extra).__name__}")
    ckpt = checkpoint.load(source)
    written = checkpoint.save_model(output, ckpt, half=half, card=extra)
    before = source.stat().st_size / 1e6
    after = written.stat().st_size / 1e6
    click.echo(
        f"wrote {written}: {after:.1f} MB ({'float16' if half else 'float32'} weights; "
        f"{source.name} is {before:.1f} MB)"
    )


# ---------------------------------------------------------------------------------------- predict
def _clip_text(clip) -> str:
    """What a decoded input was: ``"44100 Hz, 2 ch, 1.20 s"``."""
    return f"{clip.source_rate} Hz, {clip.channels} ch, {clip.source_seconds:.2f} s"


@cli.command("predict")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help=".vital file to write.")
@checkpoint_option
@click.option("--wav", is_flag=True, help="Also write the matched render as WAV next to the preset.")
@click.option("--name", default=None, help="Preset name (default: the input's file name).")
@click.option("--author", default="vitalmatch", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def predict_cmd(input_path, output, checkpoint, wav, name, author, overwrite) -> None:
    """Turn an audio file into a .vital preset with a trained model (no search): --checkpoint, or
    the default model when one is installed.

    The preset is applied and rendered in a synth worker process, with every value clamped to the
    live synth's ranges (never the checkpoint's).
    """
    import soundfile as sf

    from vitalmatch.learn.default_model import resolve
    from vitalmatch.learn.predict import Predictor, predict_file
    from vitalmatch.outputs import check_outputs, render_wav_path
    from vitalmatch.synth.export import write_vital

    checkpoint = resolve(checkpoint)
    if checkpoint is None:
        raise ValueError(
            "predict needs a model: give --checkpoint (a model file or best.pt); no default model "
            "is installed"
        )
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
    click.echo(f"input: {input_path} ({_clip_text(p.clip)})")
    click.echo(f"pitch: {p.pitch_text()}; note length {match.render.note_duration_s:.2f} s")
    click.echo(f"wrote {written}")
    audio = match.audio
    if float(abs(audio).max()) < 1e-4:
        click.echo(f"warning: the predicted preset renders silent at note {p.midi_note}", err=True)
    if wav:
        sf.write(targets[1], audio.T, match.render.sample_rate, subtype="FLOAT")
        click.echo(f"wrote {targets[1]}")


# ---------------------------------------------------------------------------------------- evaluate
def _evaluate_settings():
    from vitalmatch.evaluate import METHODS, EvaluateConfig

    methods_help = f"Comma-separated from {','.join(METHODS)}; model only with --checkpoint."
    return EvaluateConfig, (
        Flag("max_test"),
        Flag("max_presets"),
        Flag("preset_note"),
        Flag("methods", parse=_names, help=methods_help),
        Flag("nn_rows"),
        Flag("level_match"),
        Flag("clap"),
        Flag("workers"),
        Flag("images"),
        Flag("seed"),
        Flag("progress"),
    )


@stage("evaluate", _evaluate_settings)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Dataset (.h5, or DIR/ of shards): test split, baselines.",
)
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), default=None, help="Trained model (method 'model')."
)
@click.option(
    "--presets", type=click.Path(path_type=Path), default=None, help="Folder of real .vital presets."
)
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Report folder.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier report in --out.")
def evaluate_cmd(
    data: Path, checkpoint: Path | None, presets: Path | None, out: Path, overwrite: bool, settings: dict
) -> None:
    """Audio distances of re-rendered predictions against targets, beside baselines."""
    from vitalmatch.evaluate import METHODS, EvaluateConfig, evaluate, format_report

    if not settings.get("methods"):  # all that can run: the model needs a checkpoint
        settings["methods"] = tuple(m for m in METHODS if m != "model" or checkpoint is not None)
    fixed = dict(out=out, data=data, checkpoint=checkpoint, presets=presets, overwrite=overwrite)
    config = from_dict(EvaluateConfig, settings, source="options", fixed=fixed)
    report = evaluate(config)
    click.echo(format_report(report))
    click.echo(f"wrote {config.out / 'report.md'} and {config.out / 'results.json'}")


# ---------------------------------------------------------------------------------------- match
def _match_progress_bar(budget_s: float):
    """Per sound, a tqdm bar over the time budget with the best search loss: returns a function
    ``path -> context manager`` yielding the search's progress callback (closes the bar on exit)."""
    import contextlib

    from tqdm import tqdm

    @contextlib.contextmanager
    def bar_for(path: Path):
        bar = tqdm(
            total=round(budget_s, 1),
            desc=path.name,
            unit="s",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} s{postfix}",
        )

        def update(evals: int, seconds: float, best: float) -> None:
            bar.n = round(min(seconds, budget_s), 1)
            bar.set_postfix_str(f"best {best:.3f}, {evals} evals", refresh=True)

        try:
            yield update
        finally:
            bar.close()

    return bar_for


def _print_match(item, single: bool) -> None:
    """What ``match`` says about one sound: the details of a single one, errors and Ctrl-C."""
    result = item.result
    if result is None:
        click.echo(f"error: {item.error}", err=True)
        return
    if single:
        p, ref = result.prepared, result.refinement
        click.echo(f"input: {item.input} ({_clip_text(p.clip)})")
        click.echo(f"pitch: {p.pitch_text()}; note held {result.note_s:.2f} s of {result.render_s:.2f} s")
        click.echo(f"start: {result.start} ({_starts_text(result)})")
        if ref is not None:
            rate = ref.evals / max(ref.seconds, 1e-9)
            click.echo(
                f"search: {ref.evals} renders in {ref.seconds:.1f} s ({rate:.1f}/s), "
                f"stopped by {ref.stopped_by}"
            )
        if result.note != result.detected_note:
            click.echo(
                f"note: played at MIDI {result.note} (the loss preferred it to the detected "
                f"{result.detected_note})"
            )
        if ref is not None and ref.changes:
            shown = "; ".join(ref.changes[:6]) + ("; ..." if len(ref.changes) > 6 else "")
            click.echo(f"changes: {shown}")
        if result.extras.modulations:
            conns = ", ".join(f"{c.source}->{c.destination}" for c in result.extras.modulations[:6])
            more = ", ..." if len(result.extras.modulations) > 6 else ""
            click.echo(f"modulations: {len(result.extras.modulations)} ({conns}{more})")
        click.echo(
            f"distance (log-mel L1 of magnitude mels): init {result.distance_init:.3f}, "
            f"start {result.distance_start:.3f}, after {result.distance:.3f} "
            f"({result.distance / result.distance_init:.0%} of init); power log-mel L1: init "
            f"{result.power_distance_init:.3f}, after {result.power_distance:.3f}"
        )
        for w in item.written:
            click.echo(f"wrote {w}")
    if result.interrupted:
        click.echo(f"interrupted: wrote the best preset found so far to {item.written[0]}", err=True)


def _starts_text(result) -> str:
    """How many starts were scored and where they came from: ``"best of 15 starts: 8 from the
    model, 6 from the start set"`` (the pitch trials of the best two are not counted)."""
    names = [n for n in result.candidates if " at note " not in n]
    model = sum(n.startswith("prediction") for n in names)
    starts = sum(n.startswith("start set") for n in names)
    library = sum(n.startswith("library") for n in names)
    parts = [f"{model} from the model", f"{starts} from the start set"]
    if library:
        parts.append(f"{library} from libraries")
    return f"best of {len(names)} starts: {', '.join(parts)}"


def _match_settings():
    from vitalmatch.match import MatchConfig

    return MatchConfig, (
        Flag("budget_s"),
        Flag("max_evals"),
        Flag("refine", "--no-refine", invert=True, help="Keep the best starting point (no search)."),
        Flag("tier"),
        Flag("workers"),
        Flag("start_set_size", "--start-set"),
        Flag("library_candidates"),
        Flag("model_candidates"),
        Flag("structure", help="Let the search switch modules on and add routings (Tier 2+)."),
        Flag("pitch_search", help="Try the detected note's octaves (and neighbours when unsure)."),
        Flag("seed"),
    )


@stage("match", _match_settings)
@click.argument("input_path", metavar="[INPUT]", required=False, type=click.Path(path_type=Path))
@click.option(
    "--example",
    default=None,
    metavar="NAME",
    help="Match a built-in example sound instead of INPUT: pad, pluck or bass (rendered on first use).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help=".vital file to write (a folder when INPUT is a folder).",
)
@checkpoint_option
@no_model_option
@click.option("--wav", is_flag=True, help="Also write the matched render as WAV next to each preset.")
@click.option("--name", default=None, help="Preset name (default: the input's file name).")
@click.option("--author", default="vitalmatch", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option(
    "--library",
    "libraries",
    multiple=True,
    metavar="DIR",
    help="A folder of .vital/.vitalbank presets to start from (repeat for several; a list joined "
    f"by {os.pathsep!r} works too). Indexed once, cached in $VITALMATCH_CACHE; Vital's factory "
    "folders join when present.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: match each sound on one node of a Ray cluster (--workers CPUs each; no progress bars).",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster with --backend ray: auto or HOST:PORT (default: a private Ray on this machine).",
)
def match_cmd(
    input_path: Path | None,
    example: str | None,
    output: Path,
    libraries: tuple[str, ...],
    checkpoint: Path | None,
    no_model: bool,
    wav: bool,
    name: str | None,
    author: str,
    overwrite: bool,
    progress: bool,
    backend: str,
    address: str | None,
    settings: dict,
) -> None:
    """Turn a sound (or a folder of sounds, or a built-in --example) into a .vital preset: start point +
    CMA-ES with the synth.

    Uses the default model when one is installed (--no-model: none; --checkpoint: another); without
    a model it starts from the best of a built-in starting set, rendered on first use, or the init
    preset. Ctrl-C ends the search and writes the best preset so far.
    """
    from vitalmatch.match import MatchConfig, match_batch, plan_batch

    if (input_path is None) == (example is None):
        raise ValueError("give one sound: an INPUT file or folder, or --example NAME")
    if example is not None:
        from vitalmatch.examples import example_sound

        input_path = example_sound(example)
    batch = plan_batch(input_path, output, wav=wav, overwrite=overwrite)
    single = len(batch.inputs) == 1
    config = from_dict(MatchConfig, settings, source="options")
    folders = tuple(d for given in libraries for d in str(given).split(os.pathsep) if d)
    if folders:
        config = dataclasses.replace(config, library=folders)
    report = match_batch(
        batch,
        config,
        checkpoint,
        no_model=no_model,
        name=name,
        author=author,
        progress=progress,
        search_progress=_match_progress_bar(config.budget_s) if progress else None,
        on_item=lambda item: _print_match(item, single),
        # said whatever --progress is: a first build can take long (it is cached for later runs)
        notify=lambda message: click.echo(message, err=True),
        backend=backend,
        address=address,
    )
    if report.summary is not None:
        click.echo(report.table())
        click.echo(f"wrote {len(report.items) - report.failed} presets and {report.summary}")
    if report.interrupted:
        sys.exit(130)
    if report.failed:
        raise click.ClickException(f"{report.failed} of {len(batch.inputs)} inputs failed")


# ---------------------------------------------------------------------------------------- tutorial
def _tutorial_settings():
    from vitalmatch.tutorial import TutorialConfig

    return TutorialConfig, (
        Flag("llm", negatable=False),
        Flag("model"),
        Flag("timeout_s", "--timeout"),
        Flag("max_tokens"),
        Flag("base_url"),
    )


@stage("tutorial", _tutorial_settings)
@click.argument("preset_path", metavar="PRESET", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Markdown file (default: stdout).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--name", default=None, help="Title (default: the preset's name, else the file name).")
def tutorial_cmd(
    preset_path: Path, output: Path | None, overwrite: bool, name: str | None, settings: dict
) -> None:
    """Write a step-by-step guide to build a .vital preset by hand in Vital (Markdown).

    With --llm, Claude rewrites the guide (needs ANTHROPIC_API_KEY; on any failure the offline
    guide is used and a note goes to stderr).
    """
    from vitalmatch.outputs import check_outputs
    from vitalmatch.synth.export import read_vital
    from vitalmatch.tutorial import TutorialConfig, write_tutorial

    if output is not None:  # the one overwrite / writability check (vitalmatch.outputs)
        check_outputs([output], inputs=[preset_path], overwrite=overwrite, create_folders=False)
    config = from_dict(TutorialConfig, settings, source="options")
    if config.timeout_s <= 0 or config.max_tokens < 1:
        raise ValueError("--timeout must be > 0 and --max-tokens >= 1")
    preset = read_vital(preset_path)
    title = name or str(preset.get("preset_name") or "").strip() or preset_path.stem
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


# ---------------------------------------------------------------------------------------- demo
def _demo_settings():
    from vitalmatch.demo import DemoConfig

    return DemoConfig, (
        Flag("host"),
        Flag("port"),
        Flag("no_model", negatable=False),
        Flag("start_set_size", "--start-set"),
        Flag("workers"),
    )


@stage("demo", _demo_settings)
@checkpoint_option
def demo_cmd(checkpoint: Path | None, settings: dict) -> None:
    """Open a local web page: upload or record a sound, get a matched .vital preset.

    Needs the demo extra (pip install 'vitalmatch[demo]'). Ctrl-C stops the server.
    """
    from vitalmatch.demo import DemoConfig, serve

    config = from_dict(DemoConfig, settings, source="options", fixed={"checkpoint": checkpoint})
    config.check()
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"note: listening on {config.host}: anyone who can reach it can use the demo", err=True)
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
