"""Ingestion: folders of real Vital presets -> presets a dataset can render and store.

Stage: data (real presets). Input: files and folders of ``.vital`` presets and ``.vitalbank``
banks (``vitalmatch generate --presets DIR ...``). Output: an :class:`IngestPlan`: the wavetable
catalog extended by the presets' custom tables, the registry built on it, the LFO-shape and sample
tables, one :class:`IngestedPreset` per preset in a fixed order, and the files that failed with
their reasons.

Two passes (so that every ``osc_N_wavetable`` index refers to the final catalog):

1. every file is read (sorted paths; banks member by member) and staged
   (:func:`~vitalmatch.synth.preset_file.stage_preset`): LFO shapes and samples go into their
   tables, tables the catalog lacks are collected once each (content hash), in first-seen order;
2. the catalog is extended by them, the registry is built on its names, and each staged preset
   becomes registry vectors (:func:`~vitalmatch.synth.preset_file.finish_preset`).

A file that does not parse (not JSON, not a Vital preset, made by a newer Vital, a bad bank or
member, an unusable wavetable) is listed in :attr:`IngestPlan.failures` and skipped; unknown
controls, out-of-range values and skipped modulation slots are listed per preset and never fatal.
A preset that *crashes the synth* is only found when it renders: the render engine raises
``RenderError`` for it (the synth runs in a forked child) and ``generate`` lists it among its
failures. Only ``synth/`` knows Vital's formats; this module walks folders and orders the work.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vitalmatch.synth.params import ParamRegistry
from vitalmatch.synth.preset_file import (
    BANK_EXTENSION,
    PRESET_EXTENSION,
    ParsedPreset,
    PresetTables,
    StagedPreset,
    factory_dirs,
    finish_preset,
    read_presets,
    stage_preset,
)
from vitalmatch.synth.render import PresetExtras
from vitalmatch.synth.wavetables.catalog import WavetableCatalog

#: Metadata ``source`` of presets under Vital's factory folders, and of all others.
FACTORY = "factory"
COMMUNITY = "community"

_EXTENSIONS = (PRESET_EXTENSION, BANK_EXTENSION)

__all__ = ["COMMUNITY", "FACTORY", "IngestPlan", "IngestedPreset", "PresetSource", "ingest", "scan"]


@dataclass(frozen=True)
class PresetSource:
    """A file found by :func:`scan`: its ``path`` and ``file``, the path relative to the folder it
    was found in (with that folder's name first, e.g. ``presets/alanjyu/Abyss.vital``; a file
    given directly is its name)."""

    path: Path
    file: str


def scan(paths: Iterable[str | os.PathLike]) -> list[PresetSource]:
    """The ``.vital`` and ``.vitalbank`` files under ``paths`` (files or folders, walked
    recursively; symlinked folders are not followed), each once, sorted by path.

    Raises:
        ValueError: (one line) a path that does not exist, a file of another kind, a folder with
            no presets (``no presets in DIR``), or no paths at all.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: dict[str, PresetSource] = {}
    n_paths = 0
    for p in paths:
        n_paths += 1
        root = Path(p)
        if root.is_file():
            if root.suffix.lower() not in _EXTENSIONS:
                raise ValueError(f"{root} is not a .vital or .vitalbank file")
            found.setdefault(os.path.realpath(root), PresetSource(root, root.name))
            continue
        if not root.is_dir():
            raise ValueError(f"no such file or folder: {root}")
        here = 0
        top = root.resolve().name or str(root)
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() in _EXTENSIONS:
                    path = Path(folder) / name
                    here += 1
                    rel = Path(top) / path.relative_to(root)
                    found.setdefault(os.path.realpath(path), PresetSource(path, rel.as_posix()))
        if here == 0:
            raise ValueError(f"no presets in {root} (no .vital or .vitalbank files)")
    if n_paths == 0:
        raise ValueError("no preset folders given")
    return sorted(found.values(), key=lambda s: (s.file, str(s.path)))


@dataclass(frozen=True)
class IngestedPreset:
    """One ingested preset: the parsed vectors and its metadata ``source``
    (:data:`FACTORY` under Vital's factory folders, else :data:`COMMUNITY`)."""

    preset: ParsedPreset
    source: str


@dataclass
class IngestPlan:
    """Everything ``generate --presets`` needs, in a deterministic order.

    Attributes:
        registry: the full registry on ``catalog``'s names (the vectors' columns).
        catalog: the base catalog followed by the presets' custom tables (first seen first).
        tables: the LFO-shape and sample tables the presets index (:attr:`lfo_shapes`,
            :attr:`samples`).
        presets: one per parsed preset, by file path then bank member.
        failures: ``(file, one-line reason)`` for files and bank members that did not parse.
        files: the files scanned.
        custom_tables: unique tables added to the catalog.
        seconds: wall time of :func:`ingest`.
    """

    registry: ParamRegistry
    catalog: WavetableCatalog
    tables: PresetTables = field(repr=False)
    presets: list[IngestedPreset] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    files: list[PresetSource] = field(default_factory=list)
    custom_tables: int = 0
    seconds: float = 0.0

    def extras(self, i: int) -> PresetExtras:
        """The :class:`PresetExtras` that renders preset ``i`` (with its vectors)."""
        p = self.presets[i].preset
        return self.tables.extras(p.modulation, p.lfo_shape, p.sample)

    @property
    def lfo_shapes(self) -> list[dict]:
        """Vital LFO dicts (starting with ``LFO_SHAPES``) that ``lfo_shape`` indexes (a dataset's
        ``lfo_shapes`` blob)."""
        return self.tables.lfo_shapes

    @property
    def samples(self) -> list[dict]:
        """Vital sample dicts (index 0 = the init white noise) that ``sample`` indexes (a dataset's
        ``samples`` blob)."""
        return self.tables.samples

    def failure_reasons(self) -> Counter:
        """``{reason: count}`` over :attr:`failures`."""
        return Counter(reason for _, reason in self.failures)

    def summary(self, max_failures: int = 10) -> list[str]:
        """A few human-readable lines: counts, then at most ``max_failures`` failures."""
        n_oor = sum(1 for p in self.presets if p.preset.out_of_range)
        n_unknown = sum(1 for p in self.presets if p.preset.unknown_controls)
        lines = [
            f"presets: {len(self.presets)} parsed from {len(self.files)} files in {self.seconds:.2f} s, "
            f"{len(self.failures)} failed",
            f"  {self.custom_tables} custom wavetables added (catalog {len(self.catalog)}), "
            f"{len(self.lfo_shapes)} LFO shapes, {len(self.samples)} samples; "
            f"{n_oor} presets with out-of-range values, {n_unknown} with unknown controls",
        ]
        for file, reason in self.failures[:max_failures]:
            lines.append(f"  skipped {file}: {reason}")
        if len(self.failures) > max_failures:
            lines.append(f"  ... and {len(self.failures) - max_failures} more")
        return lines


def _default_registry(names: Sequence[str]) -> ParamRegistry:
    return ParamRegistry.from_synth(wavetable_names=names)


def _under(path: Path, roots: Sequence[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(r) for r in roots)


def ingest(
    paths: Iterable[str | os.PathLike],
    catalog: WavetableCatalog | None = None,
    *,
    registry_factory: Callable[[Sequence[str]], ParamRegistry] = _default_registry,
    factory: Sequence[str | os.PathLike] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestPlan:
    """Parse every preset under ``paths`` into registry vectors (module docstring: two passes).

    Args:
        paths: files and folders (:func:`scan`).
        catalog: the base wavetable catalog (not changed); the built-in one when None.
        registry_factory: builds the registry from the extended catalog's names (default: the
            full registry of a live synth, ``ParamRegistry.from_synth``).
        factory: Vital's factory folders (default: those that exist here,
            :func:`~vitalmatch.synth.preset_file.factory_dirs`); files under them get source
            ``factory``.
        progress: called as ``progress(files_done, files_total)`` during the first pass.

    Raises:
        ValueError: (one line) from :func:`scan` (missing path, folder without presets).
    """
    start = time.perf_counter()
    sources = scan(paths)
    base = WavetableCatalog.builtin() if catalog is None else catalog
    roots = [Path(os.path.realpath(d)) for d in (factory_dirs() if factory is None else factory)]
    tables = PresetTables(base)
    staged: list[tuple[StagedPreset, str]] = []
    failures: list[tuple[str, str]] = []
    for done, src in enumerate(sources, start=1):
        try:
            presets, bad = read_presets(src.path, src.file)
        except Exception as e:  # noqa: BLE001 - read_presets lists bad input; this is a safety net
            presets, bad = [], [(src.file, f"unexpected {type(e).__name__}: {str(e)[:200]}")]
        failures += bad
        origin = FACTORY if _under(src.path, roots) else COMMUNITY
        for p in presets:
            try:
                staged.append((stage_preset(p, tables), origin))
            except ValueError as e:
                failures.append((p.file, str(e)))
            except Exception as e:  # noqa: BLE001 - one odd file must not end a long run
                first = (str(e).splitlines() or [""])[0][:200]
                failures.append((p.file, f"unexpected {type(e).__name__}: {first}"))
        if progress is not None:
            progress(done, len(sources))
    extended = tables.catalog()
    registry = registry_factory(extended.names)
    plan = IngestPlan(
        registry=registry,
        catalog=extended,
        tables=tables,
        failures=failures,
        files=sources,
        custom_tables=tables.n_custom_wavetables,
    )
    plan.presets = [IngestedPreset(finish_preset(s, registry, extended), origin) for s, origin in staged]
    plan.seconds = time.perf_counter() - start
    return plan
