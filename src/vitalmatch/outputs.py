"""Output paths: the checks every command makes before it starts work that writes files.

Stage: all (command line). Input: the paths a command will write, the paths it reads. Output:
nothing, or one ``ValueError`` line that says what is wrong, raised before any work starts, so that
a long search or evaluation never ends in "cannot write", and no file the user gave us is replaced.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def render_wav_path(preset_path: str | os.PathLike) -> Path:
    """Where the render of a written preset goes: ``s.vital`` -> ``s.match.wav``.

    Never ``s.wav``: that is the usual name of the input itself (``match s.wav -o s.vital --wav``).
    """
    p = Path(preset_path)
    return p.with_name(f"{p.stem}.match.wav")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_writable_folder(folder: str | os.PathLike, *, create: bool = True) -> Path:
    """Make sure files can be created in ``folder`` (created with its parents when ``create``).

    Probes with a real temporary file, since permission bits do not tell (root, read-only mounts,
    full disks with no inode left).

    Raises:
        ValueError: the folder is a file, cannot be created, or cannot be written (one line).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cannot write into {folder}: it is a file, not a folder")
    if not folder.exists():
        if not create:
            raise ValueError(f"cannot write into {folder}: the folder does not exist")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create folder {folder}: {e.strerror}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vitalmatch-probe-"):
            pass
    except OSError as e:
        raise ValueError(f"cannot write into {folder}: {e.strerror}") from None
    return folder


def check_outputs(
    outputs: Iterable[str | os.PathLike],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    create_folders: bool = True,
) -> None:
    """Refuse, before any work, outputs that would lose data or could not be written.

    Args:
        outputs: files the command will write.
        inputs: files it reads; no output may be one of them (whatever the path spelling, links
            included), even with ``overwrite``.
        overwrite: an existing output may be replaced.
        create_folders: create missing parent folders (else they must exist).

    Raises:
        ValueError: (one line) two outputs are the same file, an output is an input, a folder, or
            exists without ``overwrite``, or its folder cannot be written.
    """
    outputs = [Path(p) for p in outputs]
    inputs = [Path(p) for p in inputs]
    seen: dict[Path, Path] = {}
    for out in outputs:
        key = out.resolve()
        if key in seen:
            raise ValueError(f"two outputs would be the same file: {seen[key]} and {out}")
        seen[key] = out
        for src in inputs:
            if _same_file(out, src):
                raise ValueError(f"output {out} is the input {src}; choose another output name")
        if out.is_dir():
            raise ValueError(f"output {out} is a folder")
        if out.exists() and not overwrite:
            raise ValueError(f"{out} exists; use --overwrite to replace it")
    for folder in dict.fromkeys(p.parent for p in outputs):
        check_writable_folder(folder, create=create_folders)


def unique_stems(paths: Iterable[str | os.PathLike], root: str | os.PathLike) -> list[Path]:
    """Relative output names (without suffix) for input files under ``root``, distinct even when two
    inputs differ only by extension: ``a.wav`` and ``a.flac`` -> ``a.wav``, ``a.flac`` (each keeps its
    extension), a lone ``b.wav`` -> ``b``. Names are compared case-insensitively, as on macOS and
    Windows file systems."""
    rels = [Path(p).relative_to(root) for p in paths]
    counts: dict[str, int] = {}
    for r in rels:
        k = str(r.with_suffix("")).lower()
        counts[k] = counts.get(k, 0) + 1
    return [r if counts[str(r.with_suffix("")).lower()] > 1 else r.with_suffix("") for r in rels]
