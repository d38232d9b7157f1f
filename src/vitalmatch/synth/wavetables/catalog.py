"""The wavetable catalog: an ordered, content-deduplicated set of wavetables, saved as one JSON file.

Stage: synth (wavetables). Input: wavetable dicts (from :mod:`~vitalmatch.synth.wavetables.builtin`,
:func:`~vitalmatch.synth.wavetables.discovery.discover` or a saved catalog). Output: a
:class:`WavetableCatalog`; the ``osc_N_wavetable`` categoricals of the parameter registry index it.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vitalmatch.synth.wavetables.builtin import builtin_tables
from vitalmatch.synth.wavetables.format import wavetable_hash, wavetable_problem

CATALOG_FORMAT = "vitalmatch-wavetables"
CATALOG_VERSION = 1
__all__ = ["CATALOG_FORMAT", "CATALOG_VERSION", "CatalogEntry", "WavetableCatalog"]


@dataclass
class CatalogEntry:
    """One unique table. ``count`` is how often its content was added (1 + duplicates seen).

    ``custom`` is False for stock tables (Vital's init table, tables from Vital's install folders and the
    built-in set) and True for tables people made. Do not mutate ``table``: ``hash`` describes it.
    """

    name: str
    hash: str
    origin: str
    custom: bool
    table: dict
    count: int = 1

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "hash": self.hash,
            "origin": self.origin,
            "custom": self.custom,
            "count": self.count,
            "table": self.table,
        }


class WavetableCatalog:
    """Ordered, content-deduplicated wavetables. Index 0 of :meth:`builtin` is Vital's init saw.

    Names are unique: a different table arriving under a taken name becomes "Name (2)", "Name (3)", ...
    Lookup by ``int`` index or by name; :meth:`index_of` finds a content hash.
    """

    def __init__(self) -> None:
        self._entries: list[CatalogEntry] = []
        self._by_hash: dict[str, int] = {}
        self._by_name: dict[str, int] = {}

    def add(
        self, table: dict, name: str | None = None, origin: str = "unknown", custom: bool = True
    ) -> tuple[int, bool]:
        """Add ``table`` (deep-copied) unless its content is already here -> ``(index, added)``.

        A duplicate keeps the first entry's name and origin, bumps its ``count``, and clears ``custom``
        when the new copy is stock (``custom=False``). ``name`` defaults to the table's own name.
        """
        problem = wavetable_problem(table)
        if problem:
            raise ValueError(problem)
        return self._add_hashed(table, wavetable_hash(table), name, origin, custom)

    def _add_hashed(
        self, table: dict, content_hash: str, name: str | None, origin: str, custom: bool
    ) -> tuple[int, bool]:
        index = self._by_hash.get(content_hash)
        if index is not None:
            entry = self._entries[index]
            entry.count += 1
            entry.custom = entry.custom and custom
            return index, False
        base = (name if name is not None else str(table.get("name") or "")).strip() or "Untitled"
        unique, k = base, 2
        while unique in self._by_name:
            unique, k = f"{base} ({k})", k + 1
        index = len(self._entries)
        self._entries.append(CatalogEntry(unique, content_hash, origin, bool(custom), copy.deepcopy(table)))
        self._by_hash[content_hash] = index
        self._by_name[unique] = index
        return index, True

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries)

    def __getitem__(self, key: int | str) -> CatalogEntry:
        """Entry by position (negative allowed) or by exact name; IndexError / KeyError otherwise."""
        if isinstance(key, str):
            if key not in self._by_name:
                raise KeyError(f"no wavetable named {key!r}")
            return self._entries[self._by_name[key]]
        return self._entries[key]

    def __contains__(self, content_hash: object) -> bool:
        return content_hash in self._by_hash

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    @property
    def hashes(self) -> list[str]:
        return [e.hash for e in self._entries]

    def index_of(self, content_hash: str) -> int:
        """Index of the entry with this content hash; KeyError if absent."""
        if content_hash not in self._by_hash:
            raise KeyError(f"no wavetable with hash {content_hash[:12]}...")
        return self._by_hash[content_hash]

    def extended(self, tables: Iterable[tuple[dict, str, str]]) -> WavetableCatalog:
        """A copy of this catalog (unchanged) with ``(table, name, origin)`` items appended in order
        as custom tables, deduplicated by content hash (a table already present bumps its count)."""
        out = copy.deepcopy(self)
        for table, name, origin in tables:
            out.add(table, name=name, origin=origin, custom=True)
        return out

    def to_json(self) -> str:
        """``{"format", "version", "entries": [...]}`` with one entry per line (stable bytes)."""
        head = json.dumps({"format": CATALOG_FORMAT, "version": CATALOG_VERSION})[:-1]
        lines = ",\n".join(json.dumps(e.to_json(), separators=(",", ":")) for e in self._entries)
        return f'{head}, "entries": [\n{lines}\n]}}\n'

    def save(self, path: str | os.PathLike) -> None:
        """Write the catalog as JSON (see :meth:`to_json`), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WavetableCatalog:
        """Read a file written by :meth:`save`. ValueError (one line) if it is not such a catalog."""
        path = Path(path)
        try:
            data = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a vitalmatch wavetable catalog (invalid JSON: {e})") from None
        try:
            return cls.from_json_data(data)
        except ValueError as e:
            raise ValueError(f"{path}: not a vitalmatch wavetable catalog ({e})") from None

    @classmethod
    def from_json_data(cls, data: object) -> WavetableCatalog:
        """Build from parsed catalog JSON; checks format, version, fields and every stored hash."""
        if not isinstance(data, dict) or data.get("format") != CATALOG_FORMAT:
            raise ValueError(f"'format' is not {CATALOG_FORMAT!r}")
        if data.get("version") != CATALOG_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}, expected {CATALOG_VERSION}")
        entries = data.get("entries")
        if not isinstance(entries, list):
            raise ValueError("'entries' is not a list")
        catalog = cls()
        for i, raw in enumerate(entries):
            if not isinstance(raw, dict):
                raise ValueError(f"entry {i} is not an object")
            name, origin, custom = raw.get("name"), raw.get("origin"), raw.get("custom")
            count = raw.get("count", 1)
            if not isinstance(name, str) or not isinstance(origin, str) or not isinstance(custom, bool):
                raise ValueError(f"entry {i} lacks name/origin/custom")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"entry {i} has a bad count {count!r}")
            table = raw.get("table")
            problem = wavetable_problem(table)
            if problem:
                raise ValueError(f"entry {i}: {problem}")
            assert isinstance(table, dict)  # wavetable_problem checked it
            content_hash = wavetable_hash(table)
            if raw.get("hash") != content_hash:
                raise ValueError(f"entry {i} ({name!r}) hash does not match its table")
            if content_hash in catalog._by_hash or name in catalog._by_name:
                raise ValueError(f"entry {i} ({name!r}) duplicates an earlier entry")
            catalog._add_hashed(table, content_hash, name, origin, custom)
            catalog._entries[-1].count = count
        return catalog

    @classmethod
    def builtin(cls) -> WavetableCatalog:
        """The built-in set (:func:`~vitalmatch.synth.wavetables.builtin.builtin_tables`): entry 0 is
        Vital's init saw, "Init Saw"."""
        catalog = cls()
        for name, table in builtin_tables():
            catalog.add(table, name=name, origin="builtin", custom=False)
        return catalog
