"""Matching several sounds: an audio file or a folder of them -> one ``.vital`` each and a summary.

Stage: match (what ``vitalmatch match INPUT -o OUT`` runs). Input: an audio file and a ``.vital``
path, or a folder (searched recursively for :data:`AUDIO_SUFFIXES`) and an output folder.
Output: each input's preset (and with ``wav`` its full-quality render, ``NAME.match.wav``), and
for more than one input ``summary.tsv`` in the output folder: one row per input with its note,
the distances of the init preset, the start and the result, the renders searched and the
seconds taken (a failed input's row holds its error).

Steps: :func:`plan_batch` names every output and refuses clashes (an existing file without
``overwrite``, an output that is an input) before any work; :func:`match_batch` checks the
settings, starts one :class:`~vitalmatch.match.matcher.Matcher` and matches the inputs in turn
(with ``backend="ray"``, one Matcher per Ray worker, each input's search on one node).
An input that is not usable audio fails alone (its row says why) unless it is the only one; Ctrl-C
ends the current search, writes its best preset so far and stops the batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from vitalmatch.match.matcher import MatchConfig, Matcher, MatchResult
from vitalmatch.synth.ray_pool import check_backend

#: Audio file types a folder input is searched for (lower-case suffixes).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".m4a", ".opus")
#: Columns of the summary table and ``summary.tsv``.
SUMMARY_COLUMNS = ("input", "note", "init", "start", "final", "renders", "seconds")

#: ``progress(evaluations, seconds, best_loss)`` during one search.
SearchProgress = Callable[[int, float, float], None]


@dataclass(frozen=True)
class Batch:
    """The files of one ``match`` run.

    Attributes:
        inputs: the audio files, in the order they are matched.
        outputs: the ``.vital`` file of each input.
        wav: also write each full-quality render next to its preset.
        summary: ``summary.tsv`` (more than one input), else None.
    """

    inputs: list[Path]
    outputs: list[Path]
    wav: bool = False
    summary: Path | None = None

    def files(self) -> list[Path]:
        """Every file the run writes."""
        from vitalmatch.outputs import render_wav_path

        out = [f for o in self.outputs for f in [o] + ([render_wav_path(o)] if self.wav else [])]
        return out + ([self.summary] if self.summary is not None else [])


def plan_batch(
    input_path: str | os.PathLike, output: str | os.PathLike, *, wav: bool, overwrite: bool
) -> Batch:
    """The outputs of matching ``input_path`` (a file or a folder) into ``output``.

    A folder's sounds keep their relative paths under ``output``; two inputs that share a stem
    (``a.wav``, ``a.flac``) become ``a.wav.vital`` and ``a.flac.vital``
    (:func:`vitalmatch.outputs.unique_stems`). A file's output gets the ``.vital`` suffix.

    Raises:
        ValueError: no such input, a folder without audio files or with a ``.vital`` output, or
            an output that exists (without ``overwrite``), is an input, or cannot be written.
    """
    from vitalmatch.outputs import check_outputs, unique_stems

    input_path, output = Path(input_path), Path(output)
    if input_path.is_dir():
        inputs = sorted(
            p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
        )
        if not inputs:
            raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {input_path}")
        if output.suffix.lower() == ".vital":
            raise ValueError("INPUT is a folder: -o must be a folder for the presets")
        outputs = [output / f"{stem}.vital" for stem in unique_stems(inputs, input_path)]
    elif input_path.is_file():
        inputs = [input_path]
        outputs = [output if output.suffix.lower() == ".vital" else output.with_suffix(".vital")]
    else:
        raise ValueError(f"input {input_path} does not exist")
    batch = Batch(inputs, outputs, wav, output / "summary.tsv" if len(inputs) > 1 else None)
    check_outputs(batch.files(), inputs=inputs, overwrite=overwrite)  # before any search starts
    return batch


@dataclass
class BatchItem:
    """One input's outcome.

    Attributes:
        input, output: the audio file and its ``.vital``.
        result: the match (None when it failed).
        written: the files written (the preset, then the render).
        error: why the input failed (not usable audio), else None.
    """

    input: Path
    output: Path
    result: MatchResult | None = None
    written: list[Path] = field(default_factory=list)
    error: str | None = None

    def row(self) -> tuple[str, ...]:
        """The item's summary row (:data:`SUMMARY_COLUMNS`; distances to 3 decimals)."""
        r = self.result
        if r is None:
            return (self.input.name, "-", "-", "-", "-", "-", f"error: {self.error}")
        return (
            self.input.name,
            str(r.note),
            f"{r.distance_init:.3f}",
            f"{r.distance_start:.3f}",
            f"{r.distance:.3f}",
            str(r.refinement.evals if r.refinement else 0),
            f"{r.seconds:.1f}",
        )


@dataclass
class BatchReport:
    """What a :func:`match_batch` run did.

    Attributes:
        items: one per input tried, in order (fewer than the inputs after Ctrl-C).
        interrupted: Ctrl-C ended the run.
        summary: the ``summary.tsv`` written, or None (one input).
    """

    items: list[BatchItem]
    interrupted: bool = False
    summary: Path | None = None

    @property
    def failed(self) -> int:
        """Inputs that failed."""
        return sum(item.result is None for item in self.items)

    def table(self) -> str:
        """The summary as aligned text columns, a header line first."""
        rows = [SUMMARY_COLUMNS] + [item.row() for item in self.items]
        widths = [max(len(r[i]) for r in rows) for i in range(len(SUMMARY_COLUMNS))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows)

    def tsv(self) -> str:
        """The summary as tab-separated lines (``summary.tsv``)."""
        rows = [SUMMARY_COLUMNS] + [item.row() for item in self.items]
        return "\n".join("\t".join(r) for r in rows) + "\n"


def write_match(result: MatchResult, out: Path, wav: bool) -> list[Path]:
    """Write ``result``'s preset to ``out`` and, with ``wav``, its render (32-bit float WAV at the
    match's sample rate) next to it; returns the paths written."""
    import soundfile as sf

    from vitalmatch.outputs import render_wav_path
    from vitalmatch.synth.export import write_vital

    written = [write_vital(out, result.preset)]
    if wav:
        path = render_wav_path(out)
        sf.write(path, result.render.T, result.sample_rate, subtype="FLOAT")
        written.append(path)
    return written


@contextlib.contextmanager
def _no_progress(_: Path) -> Iterator[None]:
    yield None


def match_batch(
    batch: Batch,
    config: MatchConfig,
    checkpoint: str | os.PathLike | None = None,
    *,
    no_model: bool = False,
    name: str | None = None,
    author: str = "vitalmatch",
    progress: bool = False,
    search_progress: Callable[[Path], AbstractContextManager[SearchProgress | None]] | None = None,
    on_item: Callable[[BatchItem], None] | None = None,
    notify: Callable[[str], None] | None = None,
    backend: str = "local",
    address: str | None = None,
) -> BatchReport:
    """Match every input of ``batch`` on one :class:`Matcher` (see the module docstring).

    Args:
        config: the match settings (checked here, before the synth workers start).
        checkpoint: a model file or a training run's ``best.pt`` (None: the default model, if
            one is installed: :func:`vitalmatch.learn.default_model.resolve`).
        no_model: use no network (the starting set and the init preset only).
        name: the preset name of a single input (default: its stem); several inputs are named by
            their output's stem.
        author: the presets' author.
        progress: show the starting set's build progress bar (stderr), if it is built now.
        search_progress: called with each input's path; gives a context manager that lasts the
            input's match and yields its search's progress callback (or None).
        on_item: called with each input's outcome as soon as it is known (before the next input).
        notify: one-line messages (the starting set's build announcement).
        backend: ``"local"`` (one Matcher here) or ``"ray"``: every input's whole match runs on
            one node of a Ray cluster (see :func:`_match_on_ray`); this process writes the
            presets and the summary exactly as the local path does.
        address: the Ray cluster (``"auto"``, ``HOST:PORT``; None: a private Ray here).

    Returns:
        :class:`BatchReport`; ``summary.tsv`` is written for more than one input.

    Raises:
        ValueError: bad settings, a missing checkpoint, or both a checkpoint and ``no_model``.
        vitalmatch.audio.AudioError: the only input is not usable audio.
    """
    from vitalmatch.audio import AudioError, load_audio
    from vitalmatch.learn.default_model import resolve

    checkpoint = resolve(checkpoint, no_model)
    config.check()
    check_backend(backend, address)
    single = len(batch.inputs) == 1
    if single:  # fail fast on a bad file, before the synth workers start
        load_audio(batch.inputs[0], 44100)
    if backend == "ray":
        report = _match_on_ray(batch, config, checkpoint, name, author, on_item, address)
        if batch.summary is not None:
            batch.summary.write_text(report.tsv())
            report.summary = batch.summary
        return report
    report = BatchReport([])
    search_progress = search_progress or _no_progress
    with Matcher(config, checkpoint, progress=progress, notify=notify) as matcher:
        for path, out in zip(batch.inputs, batch.outputs, strict=True):
            out.parent.mkdir(parents=True, exist_ok=True)
            item = BatchItem(path, out)
            try:
                with search_progress(path) as update:
                    item.result = matcher.match_file(
                        path, name=name if single else out.stem, author=author, progress=update
                    )
            except AudioError as e:
                if single:
                    raise
                item.error = str(e)
            else:
                item.written = write_match(item.result, out, batch.wav)
            report.items.append(item)
            if on_item is not None:
                on_item(item)
            if item.result is not None and item.result.interrupted:
                report.interrupted = True
                break
    if batch.summary is not None:
        batch.summary.write_text(report.tsv())
        report.summary = batch.summary
    return report


# ---------------------------------------------------------------------------------------- Ray
#: Seconds a Ray match task may take beyond twice its time budget (the final render and export,
#: reading the file) before its worker is killed and the input counted as failed.
RAY_TASK_MARGIN_S = 120.0

_MATCHER: Matcher | None = None  # one per Ray worker process (set by _init_matcher)


def _init_matcher(config: MatchConfig, checkpoint: str | None) -> None:
    """Ray worker initializer: this worker's Matcher (its own local pool of ``config.workers``
    synth processes; the starting set comes from the node's ``$VITALMATCH_CACHE``)."""
    global _MATCHER
    _MATCHER = Matcher(config, checkpoint)


def _match_task(task: tuple[str, str, bytes, str, str]) -> tuple[str, object]:
    """One input's whole match, in a Ray worker: ``(shown path, file name, bytes, name, author)``
    -> ``("ok", MatchResult)`` or ``("audio_error", message)``.

    The file travels as bytes, so the nodes need no shared file system; it is matched from a
    temporary copy with the same name (the preset's comment names the file, as locally)."""
    import tempfile

    from vitalmatch.audio import AudioError

    shown, filename, data, name, author = task
    assert _MATCHER is not None
    with tempfile.TemporaryDirectory(prefix="vitalmatch-match-") as folder:
        path = Path(folder) / filename
        path.write_bytes(data)
        try:
            result = _MATCHER.match_file(path, name=name, author=author)
        except AudioError as e:
            return ("audio_error", str(e).replace(str(path), shown))
    result.prepared = None  # holds the decoded input again: not worth sending back
    return ("ok", result)


def _match_on_ray(
    batch: Batch,
    config: MatchConfig,
    checkpoint: str | os.PathLike | None,
    name: str | None,
    author: str,
    on_item: Callable[[BatchItem], None] | None,
    address: str | None,
) -> BatchReport:
    """Match ``batch`` on a Ray cluster: one :class:`~vitalmatch.synth.ray_pool.RayPool` worker
    per input (at most what the cluster's CPUs hold, or this machine's cores for a private Ray;
    ``config.workers`` CPUs each), each with its own Matcher; results come back in input order
    and are written here.

    A worker that dies (segfault, lost node) or overruns ``2 * budget_s + RAY_TASK_MARGIN_S`` is
    that input's failure in the report (its row says why), not the batch's; it is not retried.
    Ctrl-C stops the batch; the inputs finished so far are written and listed."""
    from vitalmatch.synth.ray_pool import RayPool

    single = len(batch.inputs) == 1
    ckpt = None if checkpoint is None else str(Path(checkpoint).resolve())

    def tasks():
        for path, out in zip(batch.inputs, batch.outputs, strict=True):
            preset_name = (name or path.stem) if single else out.stem
            yield (str(path), path.name, path.read_bytes(), preset_name, author)

    slots = len(batch.inputs)
    if address is None:  # a private Ray here: no more Matchers than this machine's cores hold
        slots = min(slots, max(1, (os.cpu_count() or 1) // config.workers))
    report = BatchReport([])
    with RayPool(
        slots,
        initializer=_init_matcher,
        initargs=(config, ckpt),
        task_timeout_s=2 * config.budget_s + RAY_TASK_MARGIN_S,
        max_tasks_per_worker=None,
        window=2 * len(batch.inputs),
        address=address,
        cpus_per_worker=config.workers,
        init_timeout_s=None,  # a node without the starting set builds it first (minutes)
    ) as pool:
        try:
            for result in pool.map(_match_task, tasks()):
                path, out = batch.inputs[result.index], batch.outputs[result.index]
                item = BatchItem(path, out)
                if not result.ok:
                    item.error = f"{path.name}: {result.error}"
                elif result.value[0] == "audio_error":
                    item.error = str(result.value[1])
                else:
                    item.result = result.value[1]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    item.written = write_match(item.result, out, batch.wav)
                report.items.append(item)
                if on_item is not None:
                    on_item(item)
        except KeyboardInterrupt:
            report.interrupted = True
    return report
