"""Discovery: the wavetables of Vital's files on disk -> a :class:`WavetableCatalog`.

Stage: synth (wavetables). Input: files and folders of ``.vital`` presets, ``.vitaltable`` files and
``.vitalbank`` zips, and Vital's install folders. Output: a :class:`DiscoveryReport` holding the
catalog they were added to and what was scanned and skipped.

A ``.vitaltable`` file is a wavetable dict as JSON (Vital's ``WavetableEditSection::exportWavetable``
writes ``stateToJson().dump()``; on load Vital renames the table after the file). A ``.vitalbank`` is a
zip (JUCE ``ZipFile::Builder`` in Vital's ``BankExporter``) of ``<bank>/Presets/*.vital``,
``<bank>/Wavetables/*.vitaltable`` and other folders. Both facts were read in github.com/mtytel/vital.
"""

from __future__ import annotations

import json
import os
import re
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vitalmatch.synth.wavetables.catalog import WavetableCatalog
from vitalmatch.synth.wavetables.format import (
    NUM_OSCILLATORS,
    _init_table_cached,
    wavetable_hash,
    wavetable_problem,
)

VITAL_INSTALL_DIRS: tuple[str, ...] = (
    # Linux
    "~/.local/share/vital",
    "~/Documents/Vital",
    "~/.vital",
    # macOS
    "~/Library/Application Support/Vital",
    "~/Music/Vital",
    "/Library/Application Support/Vital",
    # Windows
    "%USERPROFILE%/Documents/Vital",
    "%APPDATA%/Vital",
)
"""Where Vital keeps factory and user content. ``~`` and ``%VAR%`` are expanded at call time."""

PRESET_EXTENSION = ".vital"
TABLE_EXTENSION = ".vitaltable"
BANK_EXTENSION = ".vitalbank"
MAX_FILE_BYTES = 256 * 1024 * 1024
"""Files (and zip members) larger than this are skipped unread."""

__all__ = [
    "BANK_EXTENSION",
    "MAX_FILE_BYTES",
    "PRESET_EXTENSION",
    "TABLE_EXTENSION",
    "VITAL_INSTALL_DIRS",
    "DiscoveryReport",
    "discover",
    "existing_install_dirs",
]


@dataclass
class DiscoveryReport:
    """What :func:`discover` did. ``skipped`` holds ``(path, one-line reason)``; ``seconds`` is wall time."""

    catalog: WavetableCatalog
    roots: list[str] = field(default_factory=list)
    files_scanned: int = 0
    presets_parsed: int = 0
    table_files_parsed: int = 0
    tables_found: int = 0
    unique_added: int = 0
    custom: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, max_skipped: int = 10) -> str:
        """A few human-readable lines; at most ``max_skipped`` skip reasons are listed."""
        lines = [
            f"scanned {self.files_scanned} files under {len(self.roots)} roots in {self.seconds:.2f} s: "
            f"{self.presets_parsed} presets, {self.table_files_parsed} wavetable files parsed, "
            f"{len(self.skipped)} skipped",
            f"{self.tables_found} tables found -> {self.unique_added} unique added ({self.custom} custom); "
            f"catalog now holds {len(self.catalog)}",
        ]
        for path, reason in self.skipped[:max_skipped]:
            lines.append(f"  skipped {path}: {reason}")
        if len(self.skipped) > max_skipped:
            lines.append(f"  ... and {len(self.skipped) - max_skipped} more skipped")
        return "\n".join(lines)


_ENV_VAR = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")


def _expand(template: str) -> Path | None:
    """Expand ``%VAR%`` (None when unset) and ``~``."""
    missing = False

    def sub(m: re.Match) -> str:
        nonlocal missing
        value = os.environ.get(m.group(1))
        missing = missing or not value
        return value or ""

    text = _ENV_VAR.sub(sub, template)
    if missing:
        return None
    return Path(os.path.expanduser(text))


def existing_install_dirs() -> list[Path]:
    """The folders of :data:`VITAL_INSTALL_DIRS` that exist here, each once, in list order."""
    out: list[Path] = []
    seen = set()
    for template in VITAL_INSTALL_DIRS:
        path = _expand(template)
        if path is None or not path.is_dir():
            continue
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


_CANDIDATES = (PRESET_EXTENSION, TABLE_EXTENSION, BANK_EXTENSION)
_BANK_MEMBERS = (PRESET_EXTENSION, TABLE_EXTENSION)


def _candidate_files(root: Path, report: DiscoveryReport) -> Iterator[Path]:
    """Files under ``root`` with a Vital extension, sorted; unreadable folders go to ``report.skipped``."""
    if root.is_file():
        if root.suffix.lower() in _CANDIDATES:
            yield root
        else:
            report.skipped.append((str(root), f"not a {'/'.join(_CANDIDATES)} file"))
        return
    if not root.is_dir():
        report.skipped.append((str(root), "no such file or folder"))
        return

    def on_error(e: OSError) -> None:
        report.skipped.append((str(e.filename or root), f"unreadable folder ({e.strerror or e})"))

    for folder, dirs, files in os.walk(root, onerror=on_error):
        dirs.sort()
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in _CANDIDATES:
                yield Path(folder) / name


def _parse_json(data: bytes) -> tuple[object, str | None]:
    """``(value, None)`` or ``(None, one-line reason)``. Vital (JUCE) writes UTF-8; a BOM is tolerated."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"invalid JSON ({e})"
    except (ValueError, RecursionError) as e:
        return None, f"invalid JSON ({type(e).__name__})"


class _Scanner:
    """Feeds parsed files into a report's catalog; ``stock`` marks Vital install content."""

    def __init__(self, report: DiscoveryReport) -> None:
        self.report = report
        self.init_hash = wavetable_hash(_init_table_cached())

    def add_table(self, table: object, name: str, where: str, origin: str, stock: bool) -> None:
        problem = wavetable_problem(table)
        if problem:
            self.report.skipped.append((where, problem))
            return
        assert isinstance(table, dict)  # wavetable_problem checked it
        self.report.tables_found += 1
        content_hash = wavetable_hash(table)
        custom = not stock and content_hash != self.init_hash
        _, added = self.report.catalog._add_hashed(table, content_hash, name, origin, custom)
        if added:
            self.report.unique_added += 1

    def scan_bytes(self, data: bytes, label: str, stem: str, stock: bool) -> None:
        """One .vital or .vitaltable file's content; ``label`` names it in origins and skip lines."""
        try:
            self._scan_bytes(data, label, stem, stock)
        except Exception as e:  # one odd file must not end a long scan
            first_line = (str(e).splitlines() or [""])[0][:200]
            self.report.skipped.append((label, f"unexpected {type(e).__name__}: {first_line}"))

    def _scan_bytes(self, data: bytes, label: str, stem: str, stock: bool) -> None:
        origin = "vital-install" if stock else f"file:{label}"
        obj, reason = _parse_json(data)
        if reason:
            self.report.skipped.append((label, reason))
            return
        if label.lower().endswith(TABLE_EXTENSION):
            self.report.table_files_parsed += 1
            self.add_table(obj, stem, label, origin, stock)
            return
        settings = obj.get("settings") if isinstance(obj, dict) else None
        tables = settings.get("wavetables") if isinstance(settings, dict) else None
        if not isinstance(tables, list):
            self.report.skipped.append((label, "not a Vital preset (no settings.wavetables list)"))
            return
        self.report.presets_parsed += 1
        for i, table in enumerate(tables[:NUM_OSCILLATORS]):
            name = table.get("name") if isinstance(table, dict) else None
            name = name if isinstance(name, str) and name.strip() else f"{stem} osc {i + 1}"
            self.add_table(table, name, f"{label} [wavetable {i}]", origin, stock)

    def scan_bank(self, path: Path, stock: bool) -> None:
        try:
            with zipfile.ZipFile(path) as bank:
                members = sorted((m for m in bank.infolist() if not m.is_dir()), key=lambda m: m.filename)
                for member in members:
                    if os.path.splitext(member.filename)[1].lower() not in _BANK_MEMBERS:
                        continue
                    label = f"{path}!{member.filename}"
                    if member.file_size > MAX_FILE_BYTES:
                        self.report.skipped.append((label, f"larger than {MAX_FILE_BYTES} bytes"))
                        continue
                    try:
                        data = bank.read(member)
                    except (OSError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as e:
                        self.report.skipped.append((label, f"unreadable zip member ({e})"))
                        continue
                    stem = os.path.splitext(os.path.basename(member.filename))[0]
                    self.scan_bytes(data, label, stem, stock)
        except (OSError, zipfile.BadZipFile) as e:
            self.report.skipped.append((str(path), f"not a readable .vitalbank zip ({e})"))

    def scan_file(self, path: Path, stock: bool) -> None:
        self.report.files_scanned += 1
        if path.suffix.lower() == BANK_EXTENSION:
            self.scan_bank(path, stock)
            return
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                self.report.skipped.append((str(path), f"larger than {MAX_FILE_BYTES} bytes"))
                return
            data = path.read_bytes()
        except OSError as e:
            self.report.skipped.append((str(path), f"unreadable ({e.strerror or e})"))
            return
        self.scan_bytes(data, str(path), path.stem, stock)


def discover(
    paths: Iterable[str | os.PathLike],
    *,
    include_install_dirs: bool = True,
    catalog: WavetableCatalog | None = None,
    install_dirs: Iterable[str | os.PathLike] | None = None,
) -> DiscoveryReport:
    """Collect the wavetables of ``.vital`` presets, ``.vitaltable`` files and ``.vitalbank`` zips.

    ``paths`` are files or folders (walked recursively, sorted, symlinked folders not followed). Each
    preset contributes ``settings.wavetables[0..2]``; a ``.vitaltable`` contributes itself, named after
    its file as Vital does. Tables are deduplicated by content into ``catalog`` (a new empty one when
    None; pass :meth:`WavetableCatalog.builtin` to extend the built-in set).

    Vital's folders (``install_dirs``, default: :func:`existing_install_dirs`) are scanned first when
    ``include_install_dirs``; everything found there is stock: origin ``"vital-install"``, custom=False.
    Elsewhere a table is custom unless it is Vital's init table. Unreadable, non-JSON or foreign files
    are listed in ``report.skipped`` with a one-line reason; nothing raises for bad input files.
    """
    start = time.perf_counter()
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    report = DiscoveryReport(catalog=catalog if catalog is not None else WavetableCatalog())
    before = len(report.catalog)
    scanner = _Scanner(report)

    roots: list[tuple[Path, bool]] = []
    if include_install_dirs:
        dirs = existing_install_dirs() if install_dirs is None else [Path(d) for d in install_dirs]
        roots += [(d, True) for d in dirs if d.is_dir()]
    roots += [(Path(p), False) for p in paths]

    seen: set[str] = set()
    for root, stock in roots:
        report.roots.append(str(root))
        for path in _candidate_files(root, report):
            key = os.path.realpath(path)
            if key in seen:  # a user path inside an install folder, or listed twice
                continue
            seen.add(key)
            scanner.scan_file(path, stock)

    report.custom = sum(1 for e in list(report.catalog)[before:] if e.custom)
    report.seconds = time.perf_counter() - start
    return report
